"""Aliyun SMS (Dysmsapi 2017-05-25): ``SendSms``, ``SendBatchSms``, ``QuerySendDetails`` and the HTTP batch pushes.

Requests are signed with the V3 scheme (ACS3-HMAC-SHA256) and carry the RPC parameters in the query string.
Aliyun's send API is not idempotent and its docs say to check the receipt before resending after a timeout:
a timeout is therefore ``unknown`` and ``lookup`` finds the message by our id, sent as ``OutId``.

``SendBatchSms`` sends one template to up to 100 numbers (each with its own sign and parameters) in one request
with one ``OutId`` and one ``BizId``; its receipts carry that ``BizId``/``OutId`` and the number, which is how a
receipt finds its message (a batch never holds one number twice). A batch's ``OutId`` is ``batch-<uuid>``, never
a bare message id, so a receipt can tell the two apart.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import structlog
from pydantic import SecretStr

from notify_svc.channels._transport import (
    BEIJING, beijing_time, e164, http_status_outcome, mainland_local, new_client, parse_uuid, redact,
    seconds_to_beijing_midnight, transport_failure,
)
from notify_svc.channels.base import InboundReply, Outcome, Outgoing, Receipt, SendResult, is_batch_out_id
from notify_svc.settings import NotifySettings

log = structlog.get_logger("notify.aliyun")

ALGORITHM = "ACS3-HMAC-SHA256"
API_VERSION = "2017-05-25"
#: What Aliyun expects back from a receipt (SmsReport) or reply (SmsUp) push, with HTTP 200.
PUSH_ACK = {"code": 0, "msg": "接收成功"}
PUSH_ACK_BODY = orjson.dumps(PUSH_ACK)

RATE_LIMITED_CODES = frozenset({"isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL", "isv.SMS_OVER_LIMIT",
                                "Throttling.User", "Throttling.Api", "Throttling"})
RETRYABLE_CODES = frozenset({"isp.SYSTEM_ERROR", "isp.GATEWAY_ERROR", "ServiceUnavailable", "InternalError",
                             "SignatureNonceUsed", "InvalidTimeStamp.Expired"})
#: Requests Aliyun refused for good: the number, template, signature, content or account is wrong, or the
#: credentials are. ``isv.AMOUNT_NOT_ENOUGH`` (balance used up) is here too: it needs a person to top up, and
#: failing now lets the message fall back to the next channel instead of burning its retries for hours.
PERMANENT_CODES = frozenset({
    "isv.MOBILE_NUMBER_ILLEGAL", "isv.TEMPLATE_MISSING_PARAMETERS", "isv.SMS_TEMPLATE_ILLEGAL",
    "isv.SMS_SIGNATURE_ILLEGAL", "isv.AMOUNT_NOT_ENOUGH", "isv.BLACK_KEY_CONTROL_LIMIT", "isv.INVALID_PARAMETERS",
    "isv.INVALID_JSON_PARAM", "isv.OUT_OF_SERVICE", "isv.ACCOUNT_NOT_EXISTS", "isv.ACCOUNT_ABNORMAL",
    "isv.PARAM_LENGTH_LIMIT", "isv.MOBILE_COUNT_OVER_LIMIT", "isp.RAM_PERMISSION_DENY",
    "InvalidAccessKeyId.NotFound", "InvalidAccessKeyId.Inactive", "SignatureDoesNotMatch", "IncompleteSignature",
})
_PERMANENT_PREFIXES = ("isv.", "InvalidAccessKeyId", "Forbidden", "Missing", "Invalid")
#: Refusals about a message's own number or content: a batch refused with one of these is sent one by one.
#: (Everything else -- credentials, balance, the shared template or sign, throttling -- would refuse each alike.)
PER_MESSAGE_CODES = frozenset({
    "isv.MOBILE_NUMBER_ILLEGAL", "isv.BUSINESS_LIMIT_CONTROL", "isv.BLACK_KEY_CONTROL_LIMIT",
    "isv.TEMPLATE_MISSING_PARAMETERS", "isv.INVALID_JSON_PARAM", "isv.INVALID_PARAMETERS", "isv.PARAM_LENGTH_LIMIT",
    "isv.MOBILE_COUNT_OVER_LIMIT", "isv.TEMPLATE_PARAMS_ILLEGAL",
})
_FLOW_WINDOWS = (("分钟", 60.0), ("小时", 3600.0), ("天", 86400.0))

PAGE_SIZE = 50
MAX_PAGES = 10
#: Numbers per ``SendBatchSms`` request (Aliyun's limit).
MAX_BATCH = 100


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def percent_encode(value: str) -> str:
    """RFC 3986 encoding of UTF-8 (space as %20, '*' as %2A, '~' kept), as the V3 signature requires."""
    return value if _UNRESERVED.fullmatch(value) else quote(value, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))


def canonical_uri(path: str) -> str:
    return quote(path or "/", safe="/-_.~")


def acs3_sign(*, method: str, host: str, path: str, query: str, body: bytes, action: str, version: str,
              access_key_id: str, access_key_secret: str, date: str, nonce: str) -> dict[str, str]:
    """The signed headers of one request (``Authorization`` included). ``query`` is the canonical query string,
    which is also what gets sent, so the provider canonicalises to the same bytes."""
    headers = {
        "host": host,
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": date,
        "x-acs-signature-nonce": nonce,
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
    }
    names = sorted(headers)
    signed_headers = ";".join(names)
    canonical = "\n".join([
        method.upper(), canonical_uri(path), query, "".join(f"{n}:{headers[n].strip()}\n" for n in names),
        signed_headers, headers["x-acs-content-sha256"],
    ])
    string_to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = hmac.new(access_key_secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = f"{ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers}," \
                               f"Signature={signature}"
    return headers


def classify(code: str, http_status: int = 200) -> Outcome:
    """Aliyun's ``Code`` as a send outcome (business errors come with HTTP 200, gateway errors with 4xx/5xx)."""
    if code == "OK":
        return Outcome.SENT
    if code in RATE_LIMITED_CODES or code.startswith("Throttling"):
        return Outcome.RATE_LIMITED
    if code in RETRYABLE_CODES or code.startswith("isp."):
        return Outcome.RETRYABLE
    if code in PERMANENT_CODES or code.startswith(_PERMANENT_PREFIXES):
        return Outcome.PERMANENT
    return http_status_outcome(http_status) if http_status >= 400 else Outcome.PERMANENT


def _retry_after(code: str, message: str) -> float | None:
    if code == "isv.BUSINESS_LIMIT_CONTROL":  # "触发分钟级流控Permits:1", "触发天级流控Permits:10"
        return next((seconds for word, seconds in _FLOW_WINDOWS if word in message), 60.0)
    if code == "isv.DAY_LIMIT_CONTROL":
        return seconds_to_beijing_midnight()
    if code.startswith("Throttling"):
        return 1.0
    return None


class AliyunSms:
    """The ``sms`` provider on Aliyun. One HTTP client per adapter; credentials never leave the signature."""

    name = "aliyun"
    channel = "sms"
    max_batch = MAX_BATCH

    def __init__(self, *, endpoint: str, access_key_id: str, access_key_secret: SecretStr, timeout: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._url = httpx.URL(endpoint)
        self._path = self._url.path or "/"
        self._host = self._url.netloc.decode("ascii")
        self._key_id = access_key_id
        self._secret = access_key_secret
        self._client = new_client(timeout, transport)

    @classmethod
    def from_settings(cls, settings: NotifySettings, transport: httpx.AsyncBaseTransport | None = None) -> AliyunSms:
        if not (settings.aliyun_access_key_id and settings.aliyun_access_key_secret):
            raise ValueError("Aliyun SMS needs NOTIFY_ALIYUN_ACCESS_KEY_ID and NOTIFY_ALIYUN_ACCESS_KEY_SECRET")
        return cls(endpoint=settings.aliyun_endpoint, access_key_id=settings.aliyun_access_key_id,
                   access_key_secret=settings.aliyun_access_key_secret,
                   timeout=settings.provider_timeout_seconds, transport=transport)

    def __repr__(self) -> str:
        return f"AliyunSms(endpoint={str(self._url)!r}, access_key_id={self._key_id[:4]!r}…)"

    async def _call(self, action: str, params: Mapping[str, str]) -> httpx.Response:
        """RPC parameters travel as a form body (signed through its hash): the URL stays short, which also spares
        the client re-parsing a long percent-encoded query on every send."""
        body = canonical_query(params).encode("ascii")
        headers = acs3_sign(
            method="POST", host=self._host, path=self._path, query="", body=body, action=action,
            version=API_VERSION, access_key_id=self._key_id, access_key_secret=self._secret.get_secret_value(),
            date=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), nonce=uuid.uuid4().hex,
        )
        headers["content-type"] = "application/x-www-form-urlencoded"
        return await self._client.post(self._url, headers=headers, content=body)

    async def send(self, out: Outgoing) -> SendResult:
        if not (out.sign_name and out.template_code):
            return SendResult(Outcome.PERMANENT, code="missing_template",
                              detail="Aliyun needs SignName and TemplateCode")
        params = {"PhoneNumbers": mainland_local(out.to), "SignName": out.sign_name,
                  "TemplateCode": out.template_code, "OutId": str(out.message_id)}
        if out.params:
            params["TemplateParam"] = orjson.dumps(out.params).decode()
        return await self._send("SendSms", params, "aliyun_send_not_sent", message_id=str(out.message_id))

    async def send_batch(self, outs: list[Outgoing], out_id: str) -> SendResult:
        """``SendBatchSms``: one template code, a sign and parameters per number, one ``OutId`` for the batch.
        Aliyun takes or refuses the request as a whole (one bad number refuses it all), so the one answer is
        every message's answer; the caller sends a refused batch's messages one by one."""
        first = outs[0]
        if not (first.template_code and all(o.sign_name for o in outs)):
            return SendResult(Outcome.PERMANENT, code="missing_template",
                              detail="Aliyun needs SignName and TemplateCode")
        params = {"PhoneNumberJson": orjson.dumps([mainland_local(o.to) for o in outs]).decode(),
                  "SignNameJson": orjson.dumps([o.sign_name for o in outs]).decode(),
                  "TemplateCode": first.template_code,
                  "TemplateParamJson": orjson.dumps([o.params or {} for o in outs]).decode(),
                  "OutId": out_id}
        return await self._send("SendBatchSms", params, "aliyun_batch_not_sent", out_id=out_id, size=len(outs))

    async def _send(self, action: str, params: dict[str, str], not_sent: str, **context: object) -> SendResult:
        """One send request and its outcome (a transport failure is "unknown", never a blind retry); an outcome
        other than sent is logged under ``not_sent`` with ``context``."""
        try:
            response = await self._call(action, params)
        except httpx.HTTPError as exc:
            result = transport_failure(exc)
        else:
            result = self._result(response)
        if result.outcome is not Outcome.SENT:
            log.info(not_sent, outcome=str(result.outcome), code=result.code, **context)
        return result

    def refusal_may_concern_some(self, result: SendResult) -> bool:
        return result.outcome in (Outcome.PERMANENT, Outcome.RATE_LIMITED) and result.code in PER_MESSAGE_CODES

    @staticmethod
    def _result(response: httpx.Response) -> SendResult:
        try:
            data = orjson.loads(response.content)
            code = str(data["Code"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            status = response.status_code
            outcome = http_status_outcome(status) if status >= 300 else Outcome.UNKNOWN
            return SendResult(outcome, code=f"HTTP {status}", detail=redact(response.text[:300]))
        message = str(data.get("Message") or "")
        outcome = classify(code, response.status_code)
        if outcome is Outcome.SENT:
            return SendResult(outcome, provider_message_id=data.get("BizId"), code=code)
        return SendResult(outcome, code=code, detail=redact(message), retry_after=_retry_after(code, message))

    async def lookup(self, out: Outgoing, sent_at: datetime) -> Receipt | None:
        """QuerySendDetails by number and day (Beijing), the row found by ``OutId``: the message id, or the batch's
        ``OutId`` when it went in one (a refused batch's messages went on alone: either may have been sent).
        Status 1 (waiting for the carrier) and a message Aliyun does not list yet are both "nothing known"."""
        wanted = str(out.message_id)
        ours = {wanted, out.batch_out_id} if out.batch_out_id else {wanted}
        days = sorted({(sent_at + timedelta(seconds=s)).astimezone(BEIJING).strftime("%Y%m%d") for s in (0, 120)})
        for day in days:
            for page in range(1, MAX_PAGES + 1):
                params = {"PhoneNumber": mainland_local(out.to), "SendDate": day, "PageSize": str(PAGE_SIZE),
                          "CurrentPage": str(page)}
                try:
                    response = await self._call("QuerySendDetails", params)
                    data = orjson.loads(response.content)
                except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
                    log.warning("aliyun_lookup_failed", message_id=wanted, error=type(exc).__name__)
                    return None
                if data.get("Code") != "OK":
                    log.warning("aliyun_lookup_refused", message_id=wanted, code=data.get("Code"))
                    return None
                rows = (data.get("SmsSendDetailDTOs") or {}).get("SmsSendDetailDTO") or []
                for row in rows:
                    if row.get("OutId") in ours:
                        return _row_receipt(row, out.message_id)
                if not rows or page * PAGE_SIZE >= int(data.get("TotalCount") or 0):
                    break
        return None

    async def aclose(self) -> None:
        await self._client.aclose()


def _row_receipt(row: Mapping[str, Any], message_id: uuid.UUID) -> Receipt | None:
    status = int(row.get("SendStatus") or 0)
    if status not in (2, 3):
        return None
    return Receipt(provider="aliyun", delivered=status == 3, message_id=message_id, code=row.get("ErrCode"),
                   at=beijing_time(row.get("ReceiveDate")) or beijing_time(row.get("SendDate")))


def _items(body: bytes) -> list[dict[str, Any]]:
    """A push body: a JSON array of objects (a lone object is taken as one). Raises ValueError when not JSON."""
    data = orjson.loads(body)
    items = data if isinstance(data, list) else [data]
    return [item for item in items if isinstance(item, dict)]


def _truthy(value: object) -> bool:
    return value is True or str(value).lower() == "true"


def parse_receipts(body: bytes) -> list[Receipt]:
    """An SmsReport HTTP batch push. Aliyun may push the same report more than once: callers deduplicate."""
    return [
        Receipt(provider="aliyun", delivered=_truthy(item.get("success")), message_id=parse_uuid(item.get("out_id")),
                provider_message_id=item.get("biz_id") or None, code=item.get("err_code"),
                detail=item.get("err_msg"), at=beijing_time(item.get("report_time")),
                to=e164(str(item["phone_number"])) if item.get("phone_number") else None,
                batch_out_id=item["out_id"] if is_batch_out_id(item.get("out_id")) else None)
        for item in _items(body)
    ]


_BRACKETS = re.compile(r"^【(.*)】$")


def parse_replies(body: bytes) -> list[InboundReply]:
    """An SmsUp push (texts customers sent back, e.g. "TD")."""
    replies = []
    for item in _items(body):
        phone = str(item.get("phone_number") or "")
        if not phone:
            continue
        sign = item.get("sign_name")
        sign = _BRACKETS.sub(r"\1", sign) if isinstance(sign, str) else None
        replies.append(InboundReply(provider="aliyun", phone=e164(phone), content=str(item.get("content") or ""),
                                    sign_name=sign, at=beijing_time(item.get("send_time"))))
    return replies
