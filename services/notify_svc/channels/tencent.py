"""Tencent Cloud SMS (API 2021-01-11): ``SendSms``, ``PullSmsSendStatusByPhoneNumber`` and the callbacks.

Requests are JSON POSTs signed with TC3-HMAC-SHA256. Tencent answers HTTP 200 for almost everything: request-
level failures come as ``Response.Error`` and per-number failures as ``Response.SendStatusSet[i].Code``; both
map through ``classify``. Our message id travels as ``SessionContext`` and is echoed in status pulls (and as
``ext`` in status callbacks), which is how ``lookup`` finds a message whose send timed out.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import structlog
from pydantic import SecretStr

from notify_svc.channels._transport import (
    beijing_time, e164, http_status_outcome, new_client, parse_uuid, redact, seconds_to_beijing_midnight,
    transport_failure,
)
from notify_svc.channels.base import InboundReply, Outcome, Outgoing, Receipt, SendResult
from notify_svc.settings import NotifySettings

log = structlog.get_logger("notify.tencent")

ALGORITHM = "TC3-HMAC-SHA256"
API_VERSION = "2021-01-11"
SERVICE = "sms"
CONTENT_TYPE = "application/json; charset=utf-8"
#: What Tencent expects back from a status or reply callback.
PUSH_ACK = {"result": 0, "errmsg": "OK"}
PUSH_ACK_BODY = orjson.dumps(PUSH_ACK)

#: One request for too many numbers is our bug, not a rate: it would fail the same way later.
PERMANENT_CODES = frozenset({
    "InvalidParameterValue.IncorrectPhoneNumber", "FailedOperation.TemplateIncorrectOrUnapproved",
    "FailedOperation.SignatureIncorrectOrUnapproved", "FailedOperation.PhoneNumberInBlacklist",
    "FailedOperation.InsufficientBalanceInSmsPackage", "FailedOperation.ContainSensitiveWord",
    "LimitExceeded.PhoneNumberCountLimit", "RequestSizeLimitExceeded",
})
_PERMANENT_PREFIXES = ("AuthFailure", "FailedOperation", "InvalidParameter", "MissingParameter", "UnknownParameter",
                       "UnauthorizedOperation", "UnsupportedOperation", "InvalidAction", "NoSuchVersion",
                       "UnsupportedRegion", "UnsupportedProtocol")
_RATE_PREFIXES = ("LimitExceeded.", "RequestLimitExceeded")
RETRYABLE_CODES = frozenset({"ResourceUnavailable", "ServiceUnavailable", "ResourceInsufficient"})
_RETRY_AFTER = {"LimitExceeded.PhoneNumberThirtySecondLimit": 30.0, "LimitExceeded.PhoneNumberOneHourLimit": 3600.0,
                "LimitExceeded.DeliveryFrequencyLimit": 30.0}

PAGE_LIMIT = 100
MAX_PAGES = 10


def tc3_sign(*, method: str, host: str, path: str, query: str, body: bytes, action: str, version: str, region: str,
             timestamp: int, secret_id: str, secret_key: str, service: str = SERVICE,
             content_type: str = CONTENT_TYPE,
             signed_names: Sequence[str] = ("content-type", "host", "x-tc-action")) -> dict[str, str]:
    """The headers of one signed request (``Authorization`` included)."""
    headers = {"content-type": content_type, "host": host, "x-tc-action": action, "x-tc-version": version,
               "x-tc-timestamp": str(timestamp), "x-tc-region": region}
    names = sorted(signed_names)
    signed_headers = ";".join(names)
    canonical = "\n".join([
        method.upper(), path or "/", query, "".join(f"{n}:{headers[n].strip().lower()}\n" for n in names),
        signed_headers, hashlib.sha256(body).hexdigest(),
    ])
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = f"{ALGORITHM}\n{timestamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = _hmac(f"TC3{secret_key}".encode(), date)
    key = _hmac(_hmac(key, service), "tc3_request")
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders={signed_headers}, "
                                f"Signature={signature}")
    return headers


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def classify(code: str) -> Outcome:
    if code == "Ok":
        return Outcome.SENT
    if code in PERMANENT_CODES:
        return Outcome.PERMANENT
    if code.startswith(_RATE_PREFIXES):
        return Outcome.RATE_LIMITED
    if code.startswith("InternalError") or code in RETRYABLE_CODES:
        return Outcome.RETRYABLE
    if code.startswith(_PERMANENT_PREFIXES):
        return Outcome.PERMANENT
    return Outcome.RETRYABLE  # refused (not sent) for a reason we do not know: retries are bounded


def _retry_after(code: str) -> float | None:
    if code in _RETRY_AFTER:
        return _RETRY_AFTER[code]
    if "DailyLimit" in code:
        return seconds_to_beijing_midnight()
    if code.startswith("RequestLimitExceeded"):
        return 1.0
    return None


class TencentSms:
    """The ``sms`` provider on Tencent Cloud. One HTTP client per adapter; the key only enters the signature."""

    name = "tencent"
    channel = "sms"

    def __init__(self, *, endpoint: str, secret_id: str, secret_key: SecretStr, sdk_app_id: str,
                 region: str = "ap-guangzhou", timeout: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._url = httpx.URL(endpoint)
        self._path = self._url.path or "/"
        self._host = self._url.netloc.decode("ascii")
        self._secret_id = secret_id
        self._secret_key = secret_key
        self._app_id = sdk_app_id
        self._region = region
        self._client = new_client(timeout, transport)

    @classmethod
    def from_settings(cls, settings: NotifySettings,
                      transport: httpx.AsyncBaseTransport | None = None) -> TencentSms:
        if not (settings.tencent_secret_id and settings.tencent_secret_key and settings.tencent_sdk_app_id):
            raise ValueError("Tencent SMS needs NOTIFY_TENCENT_SECRET_ID, _SECRET_KEY and _SDK_APP_ID")
        return cls(endpoint=settings.tencent_endpoint, secret_id=settings.tencent_secret_id,
                   secret_key=settings.tencent_secret_key, sdk_app_id=settings.tencent_sdk_app_id,
                   region=settings.tencent_region, timeout=settings.provider_timeout_seconds, transport=transport)

    def __repr__(self) -> str:
        return f"TencentSms(endpoint={str(self._url)!r}, secret_id={self._secret_id[:4]!r}…, app={self._app_id!r})"

    async def _call(self, action: str, payload: Mapping[str, Any]) -> httpx.Response:
        body = orjson.dumps(payload)
        headers = tc3_sign(method="POST", host=self._host, path=self._path, query="", body=body, action=action,
                           version=API_VERSION, region=self._region, timestamp=int(time.time()),
                           secret_id=self._secret_id, secret_key=self._secret_key.get_secret_value())
        return await self._client.post(self._url, headers=headers, content=body)

    async def send(self, out: Outgoing) -> SendResult:
        if not (out.sign_name and out.template_code):
            return SendResult(Outcome.PERMANENT, code="missing_template",
                              detail="Tencent needs SignName and TemplateId")
        payload = {"PhoneNumberSet": [e164(out.to, None)], "SmsSdkAppId": self._app_id, "SignName": out.sign_name,
                   "TemplateId": out.template_code, "TemplateParamSet": list(out.ordered_params),
                   "SessionContext": str(out.message_id)}
        try:
            response = await self._call("SendSms", payload)
        except httpx.HTTPError as exc:
            result = transport_failure(exc)
        else:
            result = _result(response)
        if result.outcome is not Outcome.SENT:
            log.info("tencent_send_not_sent", message_id=str(out.message_id), outcome=str(result.outcome),
                     code=result.code)
        return result

    async def lookup(self, out: Outgoing, sent_at: datetime) -> Receipt | None:
        """The number's pulled statuses since the send, the row found by ``SessionContext`` (our id). Tencent lists
        only reported messages (and only with status pulling enabled in the console): no row means None."""
        wanted = str(out.message_id)
        begin = int(sent_at.timestamp()) - 60
        for page in range(MAX_PAGES):
            payload = {"BeginTime": begin, "EndTime": int(time.time()) + 60, "Offset": page * PAGE_LIMIT,
                       "Limit": PAGE_LIMIT, "PhoneNumber": e164(out.to, None), "SmsSdkAppId": self._app_id}
            try:
                response = await self._call("PullSmsSendStatusByPhoneNumber", payload)
                data = orjson.loads(response.content)["Response"]
            except (httpx.HTTPError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
                log.warning("tencent_lookup_failed", message_id=wanted, error=type(exc).__name__)
                return None
            if "Error" in data:
                log.warning("tencent_lookup_refused", message_id=wanted, code=data["Error"].get("Code"))
                return None
            rows = data.get("PullSmsSendStatusSet") or []
            for row in rows:
                if row.get("SessionContext") == wanted:
                    received = row.get("UserReceiveTime")
                    return Receipt(provider="tencent", delivered=row.get("ReportStatus") == "SUCCESS",
                                   message_id=out.message_id, provider_message_id=row.get("SerialNo"),
                                   code=row.get("Description"),
                                   at=datetime.fromtimestamp(received, UTC) if received else None)
            if len(rows) < PAGE_LIMIT:
                return None
        return None

    async def aclose(self) -> None:
        await self._client.aclose()


def _result(response: httpx.Response) -> SendResult:
    try:
        data = orjson.loads(response.content)["Response"]
        error = data.get("Error")
        status = error or (data.get("SendStatusSet") or [None])[0]
        code = str(status["Code"])
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        http = response.status_code
        outcome = http_status_outcome(http) if http >= 300 else Outcome.UNKNOWN
        return SendResult(outcome, code=f"HTTP {http}", detail=redact(response.text[:300]))
    outcome = classify(code)
    if outcome is Outcome.SENT:
        return SendResult(outcome, provider_message_id=status.get("SerialNo"), code=code)
    return SendResult(outcome, code=code, detail=redact(str(status.get("Message") or "")),
                      retry_after=_retry_after(code))


def _items(body: bytes) -> list[dict[str, Any]]:
    data = orjson.loads(body)
    items = data if isinstance(data, list) else [data]
    return [item for item in items if isinstance(item, dict)]


def _session_context(ext: object) -> object:
    """``ext`` echoes the send's SessionContext; older callbacks nest it in an object."""
    if isinstance(ext, dict):
        return ext.get("SessionContext") or ext.get("session_context") or ext.get("ext")
    return ext


def parse_receipts(body: bytes) -> list[Receipt]:
    """A status callback (up to 100 reports per push, re-pushed twice on failure: callers deduplicate)."""
    return [
        Receipt(provider="tencent", delivered=item.get("report_status") == "SUCCESS",
                message_id=parse_uuid(_session_context(item.get("ext"))), provider_message_id=item.get("sid") or None,
                code=item.get("errmsg"), detail=item.get("description"),
                at=beijing_time(item.get("user_receive_time")))
        for item in _items(body)
    ]


def parse_replies(body: bytes) -> list[InboundReply]:
    """A reply callback (one object per push; an array is accepted too)."""
    replies = []
    for item in _items(body):
        mobile = str(item.get("mobile") or "")
        if not mobile:
            continue
        try:
            at: datetime | None = datetime.fromtimestamp(int(item["time"]), UTC)
        except (KeyError, TypeError, ValueError, OverflowError):
            at = None
        replies.append(InboundReply(provider="tencent", phone=e164(mobile, str(item.get("nationcode") or "86")),
                                    content=str(item.get("text") or ""), sign_name=item.get("sign") or None, at=at))
    return replies
