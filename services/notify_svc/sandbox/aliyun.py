"""Fake Aliyun Dysmsapi: ``SendSms``, ``SendBatchSms`` and ``QuerySendDetails``, V3 (ACS3-HMAC-SHA256) signatures
checked.

The signature is recomputed from the request as received (its path, raw query string, headers and body), with
a canonicalisation written independently of the adapter's signer, so the two only agree when both follow the
spec. Business errors come with HTTP 200, gateway errors (signature, key, throttling) with 4xx, as at Aliyun.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from calendar import timegm
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, unquote

import orjson
from starlette.requests import Request
from starlette.responses import Response

from notify_svc.sandbox._http import hold, json, network_fault, request_id
from notify_svc.sandbox.state import BEIJING, Fault, SandboxMessage, SandboxState, beijing

ALGORITHM = "ACS3-HMAC-SHA256"
REQUIRED_HEADERS = frozenset({"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce",
                              "x-acs-content-sha256"})
MAINLAND = re.compile(r"^1[3-9]\d{9}$")
INTERNATIONAL = re.compile(r"^(?!86)[1-9]\d{6,14}$")


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
_ENCODED = [chr(b) if _UNRESERVED.fullmatch(chr(b)) else f"%{b:02X}" for b in range(256)]


def _encode(text: str) -> str:
    """RFC 3986 percent-encoding of UTF-8 (a table: ``urllib.parse.quote`` costs more than the rest of a request)."""
    return text if _UNRESERVED.fullmatch(text) else "".join([_ENCODED[b] for b in text.encode()])


def _decode(text: str) -> str:
    return unquote(text) if "%" in text else text


def query_pairs(raw: str) -> list[tuple[str, str]]:
    """A received query string as decoded pairs ('+' is a literal plus: RPC queries are RFC 3986 encoded)."""
    pairs = []
    for part in raw.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((_decode(key), _decode(value)))
    return pairs


def canonical_query_of(raw: str | list[tuple[str, str]]) -> str:
    """The canonical form of a received query string: decoded pairs, re-encoded per RFC 3986, sorted."""
    pairs = query_pairs(raw) if isinstance(raw, str) else raw
    return "&".join(f"{k}={v}" for k, v in sorted((_encode(k), _encode(v)) for k, v in pairs))


def string_to_sign(method: str, path: str, raw_query: str | list[tuple[str, str]], headers: dict[str, str],
                   signed: list[str], body: bytes) -> str:
    canonical = "\n".join([
        method, quote(path or "/", safe="/-_.~"), canonical_query_of(raw_query),
        "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed), ";".join(signed),
        hashlib.sha256(body).hexdigest(),
    ])
    return f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"


def _gateway_error(status: int, code: str, message: str, **extra: str) -> Response:
    return json({"RequestId": request_id(), "HostId": "dysmsapi.aliyuncs.com", "Code": code, "Message": message,
                 "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}", **extra}, status)


def _business_error(code: str, message: str) -> Response:
    return json({"RequestId": request_id(), "Code": code, "Message": message})


def _epoch(date: str) -> float:
    """x-acs-date (``2026-01-02T03:04:05Z``, UTC) as epoch seconds; ValueError when malformed."""
    if len(date) != 20 or date[4] != "-" or date[10] != "T" or date[19] != "Z":
        raise ValueError(date)
    return timegm((int(date[:4]), int(date[5:7]), int(date[8:10]), int(date[11:13]), int(date[14:16]),
                   int(date[17:19]), 0, 0, 0))


def verify(state: SandboxState, request: Request, body: bytes, pairs: list[tuple[str, str]]) -> Response | None:
    """None when the request is authentic, else Aliyun's answer. ``pairs``: the decoded query string."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    auth = headers.get("authorization", "")
    if not auth.startswith(ALGORITHM + " "):
        return _gateway_error(400, "MissingAuthorization", "Authorization is mandatory for this action.")
    try:
        fields = dict(part.strip().split("=", 1) for part in auth[len(ALGORITHM) + 1:].split(","))
        key_id, signed, signature = fields["Credential"], fields["SignedHeaders"].split(";"), fields["Signature"]
    except (KeyError, ValueError):
        return _gateway_error(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
    secret = state.aliyun_keys.get(key_id)
    if secret is None:
        return _gateway_error(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
    if not set(signed) >= REQUIRED_HEADERS:
        return _gateway_error(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
    try:
        sent = _epoch(headers.get("x-acs-date", ""))
    except ValueError:
        return _gateway_error(400, "InvalidTimeStamp.Format",
                              "Specified time stamp or date value is not well formatted.")
    if abs(time.time() - sent) > 900:
        return _gateway_error(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
    expected_sign = string_to_sign(request.method, request.scope["path"], pairs, headers, signed, body)
    expected = hmac.new(secret.encode(), expected_sign.encode(), hashlib.sha256).hexdigest()
    content_ok = headers.get("x-acs-content-sha256") == hashlib.sha256(body).hexdigest()
    if not (content_ok and hmac.compare_digest(expected, signature)):
        return _gateway_error(400, "SignatureDoesNotMatch", "Specified signature does not match our calculation. "
                              f"server string to sign is:{expected_sign}")
    if state.nonce_seen(headers["x-acs-signature-nonce"]):
        return _gateway_error(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
    if headers.get("x-acs-version") != "2017-05-25":
        return _gateway_error(400, "InvalidVersion", "Specified parameter Version is not valid.")
    return None


def _params(request: Request, body: bytes, pairs: list[tuple[str, str]]) -> dict[str, str]:
    """RPC parameters: the query string, plus a form body when there is one."""
    params = dict(pairs)
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        params.update(parse_qsl(body.decode(), keep_blank_values=True))
    return params


def send_sms(state: SandboxState, params: dict[str, str], fault: Fault | None) -> tuple[Response, bool]:
    """The answer, and whether the message was accepted."""
    phones = [p.strip() for p in params.get("PhoneNumbers", "").split(",") if p.strip()]
    sign, template = params.get("SignName", ""), params.get("TemplateCode", "")
    if not sign or (state.aliyun_signs is not None and sign not in state.aliyun_signs):
        return _business_error("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名"), False
    if not template or (state.aliyun_templates is not None and template not in state.aliyun_templates):
        return _business_error("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板"), False
    try:
        template_params = orjson.loads(params["TemplateParam"]) if params.get("TemplateParam") else {}
        if not isinstance(template_params, dict):
            raise ValueError
    except ValueError:
        return _business_error("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值"), False
    out_id = params.get("OutId")
    if out_id is not None and len(out_id) > 256:
        return _business_error("isv.INVALID_PARAMETERS", "参数异常: OutId"), False
    mode = fault.mode if fault else None
    if mode == "invalid_number" or not phones or not all(MAINLAND.match(p) or INTERNATIONAL.match(p) for p in phones):
        return _business_error("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号"), False
    if mode == "system_error":
        return _business_error("isp.SYSTEM_ERROR", "系统错误"), False
    if mode == "rate_limit" or not state.aliyun_take(phones, sign, template):
        return _business_error("isv.BUSINESS_LIMIT_CONTROL", f"触发天级流控Permits:{state.aliyun_daily_limit}"), False
    biz_id = f"{state.next_id()}^0"
    now = datetime.now(UTC)
    for phone in phones:
        state.record(SandboxMessage(provider="aliyun", to=phone, sign=sign, template=template, params=template_params,
                                    our_id=out_id, provider_id=biz_id, at=now))
    return json({"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": request_id()}), True


MAX_BATCH = 100


def _json_list(value: str | None) -> list[object] | None:
    try:
        data = orjson.loads(value) if value else None
    except ValueError:
        return None
    return data if isinstance(data, list) else None


def send_batch_sms(state: SandboxState, params: dict[str, str], fault: Fault | None) -> tuple[Response, bool]:
    """``SendBatchSms``: JSON arrays of numbers, signs (one per number) and template parameters (one object per
    number), one template and one ``OutId``. Taken or refused as a whole, as at Aliyun: one bad number, sign or
    limit refuses every number of the request. One ``BizId`` for the batch; each number is its own message."""
    phones, signs = _json_list(params.get("PhoneNumberJson")), _json_list(params.get("SignNameJson"))
    template = params.get("TemplateCode", "")
    template_params = _json_list(params.get("TemplateParamJson")) if params.get("TemplateParamJson") else None
    if phones is None or signs is None or (params.get("TemplateParamJson") and template_params is None):
        return _business_error("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值"), False
    if not phones or len(signs) != len(phones) or (template_params is not None
                                                    and len(template_params) != len(phones)):
        return _business_error("isv.INVALID_PARAMETERS", "参数异常: 号码、签名与模板参数的个数须一致"), False
    if len(phones) > MAX_BATCH:
        return _business_error("isv.MOBILE_COUNT_OVER_LIMIT", "手机号码数量超过限制"), False
    if not all(isinstance(s, str) and s and (state.aliyun_signs is None or s in state.aliyun_signs) for s in signs):
        return _business_error("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名"), False
    if not template or (state.aliyun_templates is not None and template not in state.aliyun_templates):
        return _business_error("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板"), False
    values = template_params if template_params is not None else [{}] * len(phones)
    if not all(isinstance(v, dict) for v in values):
        return _business_error("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值"), False
    out_id = params.get("OutId")
    if out_id is not None and len(out_id) > 256:
        return _business_error("isv.INVALID_PARAMETERS", "参数异常: OutId"), False
    mode = fault.mode if fault else None
    numbers = [str(p).strip() for p in phones]
    if mode == "invalid_number" or not all(MAINLAND.match(p) or INTERNATIONAL.match(p) for p in numbers):
        return _business_error("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号"), False
    if mode == "system_error":
        return _business_error("isp.SYSTEM_ERROR", "系统错误"), False
    pairs = list(zip(numbers, signs, strict=True))
    if mode == "rate_limit" or not state.aliyun_take_each(pairs, template):
        return _business_error("isv.BUSINESS_LIMIT_CONTROL", f"触发天级流控Permits:{state.aliyun_daily_limit}"), False
    biz_id = f"{state.next_id()}^0"
    now = datetime.now(UTC)
    for (phone, sign), value in zip(pairs, values, strict=True):
        state.record(SandboxMessage(provider="aliyun", to=phone, sign=str(sign), template=template, params=value,
                                    our_id=out_id, provider_id=biz_id, at=now))
    state.batches += 1
    return json({"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": request_id()}), True


_SEND_STATUS = {"accepted": 1, "failed": 2, "delivered": 3}


def query_send_details(state: SandboxState, params: dict[str, str]) -> Response:
    phone, day, biz_id = params.get("PhoneNumber", ""), params.get("SendDate", ""), params.get("BizId")
    try:
        size, page = int(params.get("PageSize", "10")), int(params.get("CurrentPage", "1"))
    except ValueError:
        return _business_error("isv.INVALID_PARAMETERS", "参数异常")
    if not phone or len(day) != 8 or not 1 <= size <= 50 or page < 1:
        return _business_error("isv.INVALID_PARAMETERS", "参数异常")
    rows = [m for m in state.messages_for("aliyun", phone)
            if m.at.astimezone(BEIJING).strftime("%Y%m%d") == day and (not biz_id or m.provider_id == biz_id)]
    rows.sort(key=lambda m: m.at, reverse=True)
    dtos = [{"PhoneNum": m.to, "SendStatus": _SEND_STATUS[m.status],
             "ErrCode": {"accepted": "", "failed": "UNDELIV", "delivered": "DELIVERED"}[m.status],
             "TemplateCode": m.template, "Content": f"【{m.sign}】{orjson.dumps(m.params).decode()}",
             "SendDate": beijing(m.at), "ReceiveDate": beijing(m.reported_at) if m.reported_at else "",
             "OutId": m.our_id or ""}
            for m in rows[(page - 1) * size:page * size]]
    return json({"Code": "OK", "Message": "OK", "RequestId": request_id(), "TotalCount": len(rows),
                 "SmsSendDetailDTOs": {"SmsSendDetailDTO": dtos}})


def endpoint(state: SandboxState):  # type: ignore[no-untyped-def]
    async def aliyun(request: Request) -> Response:
        state.requests["aliyun"] += 1
        body = await request.body()
        action = request.headers.get("x-acs-action", "")
        fault = state.take_fault("aliyun") if action in ("SendSms", "SendBatchSms") else None
        if (failed := await network_fault(fault)) is not None:
            return failed
        pairs = query_pairs(request.scope["query_string"].decode("latin-1"))
        if (refused := verify(state, request, body, pairs)) is not None:
            return refused
        params = _params(request, body, pairs)
        if action == "SendSms":
            response, accepted = send_sms(state, params, fault)
            if accepted:
                await hold(fault)
            return response
        if action == "SendBatchSms":
            response, accepted = send_batch_sms(state, params, fault)
            if accepted:
                await hold(fault)
            return response
        if action == "QuerySendDetails":
            return query_send_details(state, params)
        return _gateway_error(404, "InvalidAction.NotFound", f"Specified api is not found, please check your url "
                              f"and method. Action: {action}")

    return aliyun
