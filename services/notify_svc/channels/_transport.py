"""What the HTTP adapters share: one client per adapter, the send-outcome of a transport failure, China time,
phone formats and log hygiene.

The central rule is about duplicates: a request that may have reached the provider (read timeout, connection
dropped while waiting for the answer, a gateway timeout) is ``unknown``, never ``retryable``, because the
providers' send APIs are not idempotent and a blind resend can text the customer twice.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from notify_svc.channels.aiohttp_transport import AiohttpTransport
from notify_svc.channels.base import Outcome, SendResult
from shared.pii import mask_phone

#: Aliyun and Tencent report times (and count "days") in Beijing time.
BEIJING = ZoneInfo("Asia/Shanghai")
_MAINLAND = re.compile(r"^(?:\+?86)?(1[3-9]\d{9})$")
_SECRET_IN_URL = re.compile(r"((?:secret|access_token|appsecret)=)[^&\s\"']+", re.IGNORECASE)
_QUERY = re.compile(r"\?[^\s\"']*")


#: Idle connections are dropped before a typical server's keep-alive (uvicorn: 5 s) ends: a request written on a
#: connection the server is closing fails with no answer, which counts as "unknown".
KEEPALIVE_SECONDS = 4.0


def new_client(timeout: float, transport: httpx.AsyncBaseTransport | None = None,
               max_connections: int = 128) -> httpx.AsyncClient:
    """One client per adapter. httpx never retries a request by itself (only a failed connect, and only when a
    transport is built with ``retries``), which is what a non-idempotent send API needs. Proxy variables are not
    read: providers are called directly."""
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=False,
                             transport=transport or AiohttpTransport(max_connections, KEEPALIVE_SECONDS))


def transport_failure(exc: httpx.HTTPError) -> SendResult:
    """The outcome of a request that got no HTTP answer.

    Nothing was sent when the connection could not be made (refused, DNS, connect timeout, no pooled connection
    free) or when writing the request failed (the provider cannot act on a request it did not fully receive):
    retryable. Once the request is written, a read timeout or a dropped connection leaves the provider's action
    unknown.
    """
    name = type(exc).__name__
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteError,
                        httpx.WriteTimeout, httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
        return SendResult(Outcome.RETRYABLE, code=name, detail=redact(str(exc)))
    return SendResult(Outcome.UNKNOWN, code=name, detail=redact(str(exc)) or "no answer from the provider")


def http_status_outcome(status: int) -> Outcome:
    """An HTTP status without a provider code we recognise. A 504 comes from a gateway that gave up waiting
    for the provider, which may still have sent the message: unknown. Other 5xx: the provider failed."""
    if status == 504:
        return Outcome.UNKNOWN
    if status == 429:
        return Outcome.RATE_LIMITED
    if status >= 500:
        return Outcome.RETRYABLE
    return Outcome.PERMANENT


def redact(text: str, limit: int = 300) -> str:
    """Provider text kept on the message trail: credentials in URLs removed, phone numbers masked, length capped."""
    return mask_phone(_SECRET_IN_URL.sub(r"\1***", text))[:limit]


def mainland_local(phone: str) -> str:
    """+8613900012345 -> 13900012345 (Aliyun's form for mainland numbers); other E.164 numbers lose the '+'."""
    m = _MAINLAND.match(phone.replace(" ", ""))
    return m.group(1) if m else phone.lstrip("+")


def e164(phone: str, nationcode: str | None = None) -> str:
    """A phone number as a provider reported it in E.164: Tencent gives the country code apart (``nationcode``),
    Aliyun gives mainland numbers bare and others with their country code but no '+'."""
    phone = phone.strip().replace(" ", "")
    if phone.startswith("+"):
        return phone
    if nationcode:
        return f"+{nationcode}{phone}"
    m = _MAINLAND.match(phone)
    return f"+86{m.group(1)}" if m else f"+{phone}"


def beijing_time(text: str | None) -> datetime | None:
    """'2026-01-02 10:11:12' (Beijing time, as both SMS providers write it) as an aware datetime."""
    if not text:
        return None
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    except ValueError:
        return None


def seconds_to_beijing_midnight(now: datetime | None = None) -> float:
    """Daily quotas (Tencent per-number, WeChat API) reset at midnight Beijing time."""
    now = (now or datetime.now(UTC)).astimezone(BEIJING)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max((midnight - now).total_seconds(), 1.0)


def parse_uuid(value: object) -> uuid.UUID | None:
    """Our message id echoed back by a provider (OutId, SessionContext, ext), when it is one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        return None


class _RedactHttpxUrls(logging.Filter):
    """httpx logs every request URL at INFO. Ours carry personal data (Aliyun's RPC query has the phone number
    and template parameters) and credentials (WeChat's ``secret`` and ``access_token`` must be query
    parameters), so the query string of an httpx request line is dropped before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(_QUERY.sub("?…", str(a)) if isinstance(a, httpx.URL) else a for a in record.args)
        elif "?" in str(record.msg):
            record.msg = _QUERY.sub("?…", str(record.msg))
        return True


def _install_log_filter() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactHttpxUrls) for f in logger.filters):
        logger.addFilter(_RedactHttpxUrls())


_install_log_filter()
