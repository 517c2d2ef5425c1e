"""Fake Tencent Cloud SMS (2021-01-11): ``SendSms`` and ``PullSmsSendStatusByPhoneNumber``, TC3 signatures checked.

Everything answers HTTP 200 with ``{"Response": …}``; request-level failures are ``Response.Error``, per-number
ones are in ``SendStatusSet``. The per-number limits are Tencent's defaults: the same content to one number once
per 30 s, and a daily cap per number (Beijing calendar day; configurable, as in the console).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from notify_svc.sandbox._http import hold, json, network_fault, request_id
from notify_svc.sandbox.state import Fault, SandboxMessage, SandboxState

ALGORITHM = "TC3-HMAC-SHA256"
MAINLAND = re.compile(r"^(?:\+?86)?(1[3-9]\d{9})$")
INTERNATIONAL = re.compile(r"^\+(?!86)[1-9]\d{6,14}$")
BAD_SIGNATURE = "The provided credentials could not be validated. Please check your signature is correct."


def _error(code: str, message: str) -> Response:
    return json({"Response": {"Error": {"Code": code, "Message": message}, "RequestId": request_id()}})


def string_to_sign(method: str, path: str, query: str, headers: dict[str, str], signed: list[str], body: bytes,
                   timestamp: str, scope: str) -> str:
    canonical = "\n".join([
        method, path or "/", query, "".join(f"{name}:{headers.get(name, '').strip().lower()}\n" for name in signed),
        ";".join(signed), hashlib.sha256(body).hexdigest(),
    ])
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"


def signature(secret_key: str, date: str, service: str, to_sign: str) -> str:
    key = hmac.new(f"TC3{secret_key}".encode(), date.encode(), hashlib.sha256).digest()
    key = hmac.new(key, service.encode(), hashlib.sha256).digest()
    key = hmac.new(key, b"tc3_request", hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def verify(state: SandboxState, request: Request, body: bytes) -> Response | None:
    headers = {k.lower(): v for k, v in request.headers.items()}
    auth = headers.get("authorization", "")
    if not auth.startswith(ALGORITHM + " "):
        return _error("AuthFailure.SignatureFailure", BAD_SIGNATURE)
    try:
        fields = dict(part.strip().split("=", 1) for part in auth[len(ALGORITHM) + 1:].split(","))
        secret_id, date, service, terminator = fields["Credential"].split("/")
        signed, given = fields["SignedHeaders"].split(";"), fields["Signature"]
        timestamp = int(headers.get("x-tc-timestamp", ""))
    except (KeyError, ValueError):
        return _error("AuthFailure.SignatureFailure", BAD_SIGNATURE)
    secret_key = state.tencent_keys.get(secret_id)
    if secret_key is None:
        return _error("AuthFailure.SecretIdNotFound", "The SecretId is not found, please ensure that your SecretId "
                      "is correct.")
    if abs(time.time() - timestamp) > 300:
        return _error("AuthFailure.SignatureExpire", "Signature expired. Timestamp and server time cannot differ by "
                      "more than five minutes.")
    if (date != datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d") or service != "sms"
            or terminator != "tc3_request" or not {"content-type", "host"} <= set(signed)):
        return _error("AuthFailure.SignatureFailure", BAD_SIGNATURE)
    to_sign = string_to_sign(request.method, request.scope["path"], request.scope["query_string"].decode("latin-1"),
                             headers, signed, body, str(timestamp), f"{date}/{service}/tc3_request")
    if not hmac.compare_digest(signature(secret_key, date, service, to_sign), given):
        return _error("AuthFailure.SignatureFailure", BAD_SIGNATURE)
    if headers.get("x-tc-version") != "2021-01-11":
        return _error("NoSuchVersion", "The requested version does not exist.")
    return None


def _status(phone: str, code: str, message: str, context: str, serial: str = "") -> dict[str, Any]:
    return {"SerialNo": serial, "PhoneNumber": phone, "Fee": 1 if code == "Ok" else 0, "SessionContext": context,
            "Code": code, "Message": message, "IsoCode": "CN" if phone.startswith("+86") else ""}


def send_sms(state: SandboxState, payload: dict[str, Any], fault: Fault | None) -> tuple[Response, bool]:
    phones = payload.get("PhoneNumberSet")
    app_id, sign, template = payload.get("SmsSdkAppId"), payload.get("SignName"), payload.get("TemplateId")
    params = payload.get("TemplateParamSet") or []
    context = str(payload.get("SessionContext") or "")
    if not isinstance(phones, list) or not phones or not app_id or not template:
        return _error("MissingParameter", "The request is missing a required parameter."), False
    if len(phones) > 200:
        return _error("LimitExceeded.PhoneNumberCountLimit", "单次提交号码数超过200个"), False
    if state.tencent_app_ids is not None and app_id not in state.tencent_app_ids:
        return _error("InvalidParameterValue.SdkAppIdNotExist", "SdkAppId不存在"), False
    if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
        return _error("InvalidParameterValue.TemplateParameterFormatError", "验证码模板参数格式错误"), False
    if not sign:
        return _error("FailedOperation.SignatureIncorrectOrUnapproved", "签名未审批或格式错误"), False
    mode = fault.mode if fault else None
    if mode == "system_error":
        return _error("InternalError.OtherError", "其他错误"), False
    statuses, accepted = [], False
    now = datetime.now(UTC)
    for raw in phones:
        m = MAINLAND.match(str(raw))
        phone = f"+86{m.group(1)}" if m else str(raw)
        if mode == "invalid_number" or not (m or INTERNATIONAL.match(phone)):
            statuses.append(_status(str(raw), "InvalidParameterValue.IncorrectPhoneNumber", "手机号格式错误", context))
            continue
        limit = "LimitExceeded.PhoneNumberDailyLimit" if mode == "rate_limit" else state.tencent_take(
            phone, str(template), tuple(params))
        if limit:
            statuses.append(_status(phone, limit, "单个手机号下发短信条数超过设定的上限", context))
            continue
        serial = f"2433:{state.next_id()}"
        state.record(SandboxMessage(provider="tencent", to=phone, sign=sign, template=str(template), params=params,
                                    our_id=context or None, provider_id=serial, at=now))
        statuses.append(_status(phone, "Ok", "send success", context, serial))
        accepted = True
    return json({"Response": {"SendStatusSet": statuses, "RequestId": request_id()}}), accepted


def pull_status(state: SandboxState, payload: dict[str, Any]) -> Response:
    try:
        begin, offset, limit = int(payload["BeginTime"]), int(payload.get("Offset", 0)), int(payload["Limit"])
        end = int(payload.get("EndTime") or time.time())
        phone, app_id = str(payload["PhoneNumber"]), payload["SmsSdkAppId"]
    except (KeyError, TypeError, ValueError):
        return _error("MissingParameter", "The request is missing a required parameter.")
    if not 0 < limit <= 100 or not app_id:
        return _error("InvalidParameterValue", "Limit must be 1..100")
    m = MAINLAND.match(phone)
    phone = f"+86{m.group(1)}" if m else phone
    rows = [msg for msg in state.messages_for("tencent", phone)
            if msg.reported_at is not None and begin <= msg.at.timestamp() <= end]
    items = [{"UserReceiveTime": int(msg.reported_at.timestamp()) if msg.reported_at else None,
              "CountryCode": "86", "SubscriberNumber": msg.to[3:], "PhoneNumber": msg.to, "SerialNo": msg.provider_id,
              "ReportStatus": "SUCCESS" if msg.status == "delivered" else "FAIL",
              "Description": "DELIVRD" if msg.status == "delivered" else "UNDELIV", "SessionContext": msg.our_id or ""}
             for msg in rows[offset:offset + limit]]
    return json({"Response": {"PullSmsSendStatusSet": items, "RequestId": request_id()}})


def endpoint(state: SandboxState):  # type: ignore[no-untyped-def]
    async def tencent(request: Request) -> Response:
        state.requests["tencent"] += 1
        body = await request.body()
        action = request.headers.get("x-tc-action", "")
        fault = state.take_fault("tencent") if action == "SendSms" else None
        if (failed := await network_fault(fault)) is not None:
            return failed
        if (refused := verify(state, request, body)) is not None:
            return refused
        try:
            payload = orjson.loads(body)
            if not isinstance(payload, dict):
                raise ValueError
        except ValueError:
            return _error("FailedOperation.FailResolvePacket", "请求包解析失败")
        if action == "SendSms":
            response, accepted = send_sms(state, payload, fault)
            if accepted:
                await hold(fault)
            return response
        if action == "PullSmsSendStatusByPhoneNumber":
            return pull_status(state, payload)
        return _error("InvalidAction", f"The action {action!r} does not exist.")

    return tencent
