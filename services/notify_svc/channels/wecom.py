"""WeCom (企业微信) app messages: work notices to staff (escalations) from the group's self-built app.

A notice is a ``text`` message to one member (``touser`` = the staff member's WeCom userid, which by the groups'
convention is their employee number). WeCom has no template for app messages, so the provider code a template
carries is not needed, and no delivery receipt or status query: an accepted send stays ``sent`` and ``lookup``
answers None, so a timeout stays ``unknown`` like every other provider's (never re-sent blindly). WeCom's
duplicate check (``enable_duplicate_check``) drops a second identical request within half an hour, which covers
a replay of such a notice; it compares the whole request, not an id of ours, so it is no reason to resend.

WeCom drops (without an error) app messages beyond 30 a minute and 1,000 an hour to one member; the caps and
budgets checked before each send keep staff notices far below that.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notify_svc.channels._transport import http_status_outcome, new_client, redact, transport_failure
from notify_svc.channels.base import Outcome, Outgoing, Receipt, SendResult
from notify_svc.channels.wechat_token import TOKEN_REJECTED, WecomTokenStore
from notify_svc.settings import NotifySettings

log = structlog.get_logger("notify.wecom")

SEND_PATH = "/cgi-bin/message/send"
#: Seconds WeCom's duplicate check remembers a request (its default, and at most 4 hours).
DUPLICATE_CHECK_SECONDS = 1800
#: WeCom takes at most 2,048 bytes of text content.
MAX_CONTENT_BYTES = 2048
#: 81013 user unknown or outside the app's visible range (``invaliduser`` names it), 40003 bad userid,
#: 60011 no privilege for the member, 60020 the caller's IP is not allow-listed, 40056 / 301002 bad agent id or
#: no right to the app, 48002 API forbidden, 44004 empty content, 45002 content too long, 40008 bad msgtype,
#: 40013 bad corp id, 82001 every recipient empty. None of these fixes itself: the notice goes by the next channel.
PERMANENT_CODES = frozenset({81013, 40003, 60011, 60020, 40056, 301002, 48002, 44004, 45002, 40008, 40013, 82001})
#: 45009 the API's call frequency, 45033 concurrent calls / the per-member message frequency.
RATE_LIMITED_CODES = frozenset({45009, 45033})
#: -1 system busy, 6000 a data version conflict ("try again later").
RETRYABLE_CODES = frozenset({-1, 6000})


def classify(errcode: int) -> Outcome:
    """A positive code WeCom documents describes the request or the app's configuration, so one not listed above
    is permanent too: the staff member is then told by SMS at once rather than after hours of retries."""
    if errcode == 0:
        return Outcome.SENT
    if errcode in RATE_LIMITED_CODES:
        return Outcome.RATE_LIMITED
    if errcode in RETRYABLE_CODES or errcode < 0:
        return Outcome.RETRYABLE
    return Outcome.PERMANENT


def _retry_after(errcode: int) -> float | None:
    return {45009: 60.0, 45033: 60.0, -1: 1.0}.get(errcode)


class WecomApp:
    """The ``wecom`` provider: text app messages from agent ``wecom_agent_id`` to one member each."""

    name = "wecom"
    channel = "wecom"

    def __init__(self, settings: NotifySettings, sessionmaker: async_sessionmaker[AsyncSession],
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        if settings.wecom_agent_id is None:
            raise ValueError("WeCom app messages need NOTIFY_WECOM_AGENT_ID")
        self._base = settings.wecom_api_base.rstrip("/")
        self._agent_id = settings.wecom_agent_id
        self._client = new_client(settings.provider_timeout_seconds, transport)
        self.tokens = WecomTokenStore(sessionmaker, self._client, settings)

    def __repr__(self) -> str:
        return f"WecomApp(api_base={self._base!r}, agent_id={self._agent_id}, tokens={self.tokens!r})"

    async def send(self, out: Outgoing) -> SendResult:
        if not out.to:
            return SendResult(Outcome.PERMANENT, code="missing_userid", detail="no WeCom userid")
        if not out.text.strip():
            return SendResult(Outcome.PERMANENT, code="empty_text", detail="nothing to send")
        if len(out.text.encode()) > MAX_CONTENT_BYTES:
            return SendResult(Outcome.PERMANENT, code="text_too_long",
                              detail=f"WeCom takes at most {MAX_CONTENT_BYTES} bytes of text")
        body = orjson.dumps({"touser": out.to, "msgtype": "text", "agentid": self._agent_id,
                             "text": {"content": out.text}, "safe": 0, "enable_duplicate_check": 1,
                             "duplicate_check_interval": DUPLICATE_CHECK_SECONDS})

        async def post(token: str) -> tuple[SendResult, int | None]:
            try:
                response = await self._client.post(f"{self._base}{SEND_PATH}", params={"access_token": token},
                                                   content=body, headers={"content-type": "application/json"})
            except httpx.HTTPError as exc:
                return transport_failure(exc), None
            return _result(response, out.to)

        result = await self.tokens.call(post)
        if result.outcome is not Outcome.SENT:
            log.info("wecom_send_not_sent", message_id=str(out.message_id), outcome=str(result.outcome),
                     code=result.code)
        return result

    async def lookup(self, out: Outgoing, sent_at: datetime) -> Receipt | None:
        return None

    async def aclose(self) -> None:
        await self._client.aclose()


def _result(response: httpx.Response, touser: str) -> tuple[SendResult, int | None]:
    try:
        data: Any = orjson.loads(response.content)
        errcode = int(data.get("errcode", 0))
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        status = response.status_code
        outcome = http_status_outcome(status) if status >= 300 else Outcome.UNKNOWN
        return SendResult(outcome, code=f"HTTP {status}", detail=redact(response.text[:300])), None
    if response.status_code >= 500 and errcode == 0:
        return SendResult(http_status_outcome(response.status_code), code=f"HTTP {response.status_code}"), None
    outcome = classify(errcode)
    errmsg = redact(str(data.get("errmsg") or ""))
    if outcome is Outcome.SENT:
        # One recipient: WeCom answers 81013 when it is invalid, but a partial failure names it in ``invaliduser``
        # (lower-cased) with errcode 0, and then nothing reached them.
        invalid = {u for u in str(data.get("invaliduser") or "").lower().split("|") if u}
        if touser.lower() in invalid:
            return SendResult(Outcome.PERMANENT, code="invaliduser", detail="WeCom does not know this userid"), 0
        msgid = data.get("msgid")
        return SendResult(outcome, provider_message_id=str(msgid) if msgid else None, code="0"), 0
    if outcome is Outcome.PERMANENT and errcode not in PERMANENT_CODES | TOKEN_REJECTED:
        log.warning("wecom_unlisted_errcode", errcode=errcode, errmsg=errmsg[:120])
    return SendResult(outcome, code=str(errcode), detail=errmsg, retry_after=_retry_after(errcode)), errcode
