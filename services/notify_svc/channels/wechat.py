"""WeChat Official Account messages (template messages and one-time subscription notices) and its server pushes.

WeChat has no status query: delivery arrives as a push (``TEMPLATESENDJOBFINISH`` / ``subscribe_msg_sent_event``)
keyed by the ``msgid`` the send returned, so ``lookup`` always answers None. A token WeChat rejects (another
system fetched a new one, or it expired early) is dropped and the call made once more with a fresh one.
"""

from __future__ import annotations

import hashlib
import hmac
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notify_svc.channels._transport import (
    http_status_outcome, new_client, redact, seconds_to_beijing_midnight, transport_failure,
)
from notify_svc.channels.base import Outcome, Outgoing, Receipt, SendResult
from notify_svc.channels.wechat_token import WechatTokenStore
from notify_svc.settings import NotifySettings

log = structlog.get_logger("notify.wechat")

TEMPLATE_PATH = "/cgi-bin/message/template/send"
SUBSCRIBE_PATH = "/cgi-bin/message/subscribe/bizsend"
#: 43004 not following, 43101 user refused / no subscription left, 40003 bad openid, 40037 bad template id,
#: 47003 bad parameter, 45015 outside the reply window, 48001 API not authorised, 40165 bad page path,
#: 41028/41030 bad form id / page, 40013/40164 wrong appid / IP not allow-listed.
PERMANENT_CODES = frozenset({43004, 43101, 40003, 40037, 47003, 45015, 48001, 40165, 41028, 41030, 40013, 40164,
                             45002, 50001, 50002})
#: 45009 the daily API quota (resets at midnight Beijing time), 45011 the per-minute quota, 45047 the per-user
#: downstream message cap.
RATE_LIMITED_CODES = frozenset({45009, 45011, 45047})

MAX_PUSH_BYTES = 64 * 1024


def classify(errcode: int) -> Outcome:
    if errcode == 0:
        return Outcome.SENT
    if errcode in RATE_LIMITED_CODES:
        return Outcome.RATE_LIMITED
    if errcode in PERMANENT_CODES or 40000 <= errcode < 50000:
        return Outcome.PERMANENT
    return Outcome.RETRYABLE  # -1 "system busy", and codes we do not know (refused, so not sent)


def _retry_after(errcode: int) -> float | None:
    return {45009: seconds_to_beijing_midnight(), 45011: 60.0, -1: 1.0}.get(errcode)


class WechatOfficialAccount:
    """The ``wechat`` provider: ``wechat_kind`` "template" (模板消息) or "subscribe" (one-time 订阅通知)."""

    name = "wechat"
    channel = "wechat"

    def __init__(self, settings: NotifySettings, sessionmaker: async_sessionmaker[AsyncSession],
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._base = settings.wechat_api_base.rstrip("/")
        self._client = new_client(settings.provider_timeout_seconds, transport)
        self.tokens = WechatTokenStore(sessionmaker, self._client, settings)

    def __repr__(self) -> str:
        return f"WechatOfficialAccount(api_base={self._base!r}, tokens={self.tokens!r})"

    async def send(self, out: Outgoing) -> SendResult:
        if not out.template_code:
            return SendResult(Outcome.PERMANENT, code="missing_template", detail="WeChat needs a template id")
        data = {name: {"value": value} for name, value in out.fields.items()}
        body: dict[str, Any] = {"touser": out.to, "template_id": out.template_code, "data": data}
        if out.wechat_kind == "template":
            path = TEMPLATE_PATH
            body["client_msg_id"] = str(out.message_id)  # WeChat's de-duplication id for template messages
            if out.url:
                body["url"] = out.url
        elif out.wechat_kind == "subscribe":
            path = SUBSCRIBE_PATH
            if out.url:
                body["page"] = out.url
        else:
            return SendResult(Outcome.PERMANENT, code="unknown_kind", detail=f"wechat_kind {out.wechat_kind!r}")
        result = await self._send(path, orjson.dumps(body))
        if result.outcome is not Outcome.SENT:
            log.info("wechat_send_not_sent", message_id=str(out.message_id), outcome=str(result.outcome),
                     code=result.code)
        return result

    async def _send(self, path: str, body: bytes) -> SendResult:
        async def post(token: str) -> tuple[SendResult, int | None]:
            try:
                response = await self._client.post(f"{self._base}{path}", params={"access_token": token},
                                                   content=body, headers={"content-type": "application/json"})
            except httpx.HTTPError as exc:
                return transport_failure(exc), None
            return _result(response)

        return await self.tokens.call(post)

    async def lookup(self, out: Outgoing, sent_at: datetime) -> Receipt | None:
        return None

    async def aclose(self) -> None:
        await self._client.aclose()


def _result(response: httpx.Response) -> tuple[SendResult, int | None]:
    try:
        data = orjson.loads(response.content)
        errcode = int(data.get("errcode", 0))
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        status = response.status_code
        outcome = http_status_outcome(status) if status >= 300 else Outcome.UNKNOWN
        return SendResult(outcome, code=f"HTTP {status}", detail=redact(response.text[:300])), None
    if response.status_code >= 500 and errcode == 0:
        return SendResult(http_status_outcome(response.status_code), code=f"HTTP {response.status_code}"), None
    outcome = classify(errcode)
    if outcome is Outcome.SENT:
        msgid = data.get("msgid")
        return SendResult(outcome, provider_message_id=str(msgid) if msgid is not None else None, code="0"), 0
    return SendResult(outcome, code=str(errcode), detail=redact(str(data.get("errmsg") or "")),
                      retry_after=_retry_after(errcode)), errcode


# --- server pushes -------------------------------------------------------------------------------------------


def verify_signature(token: str, signature: str, timestamp: str, nonce: str) -> bool:
    """WeChat signs each push (and the URL check) with sha1 of the sorted concatenation of token, timestamp, nonce."""
    expected = hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()
    return hmac.compare_digest(expected, signature.lower())


@dataclass(frozen=True)
class SubscriptionChange:
    """A user's answer for one template: accepting a one-time subscription allows one notice."""

    template_id: str
    accepted: bool


@dataclass(frozen=True)
class WechatPush:
    """One server push. ``kind``: receipt | subscription | follow | unfollow | text | other."""

    kind: str
    openid: str
    account: str  # ToUserName: the Official Account's original id (gh_…)
    event: str | None = None
    at: datetime | None = None
    receipts: tuple[Receipt, ...] = ()
    subscriptions: tuple[SubscriptionChange, ...] = ()
    text: str | None = None  # a text the user sent
    msg_id: str | None = None  # WeChat re-pushes up to three times; MsgId / FromUserName+CreateTime dedupes

    @property
    def receipt(self) -> Receipt | None:
        return self.receipts[0] if self.receipts else None


def _safe_xml(body: bytes) -> ET.Element:
    """Parse a push, refusing what could expand or fetch entities (any DOCTYPE or ENTITY declaration).

    The check runs on the decoded text, which is exactly what the parser reads (a str input makes expat ignore
    any encoding declaration), so no other encoding can smuggle a DOCTYPE past it.
    """
    if len(body) > MAX_PUSH_BYTES:
        raise ValueError("push too large")
    text = body.decode("utf-8")
    upper = text.upper()
    if "<!DOCTYPE" in upper or "<!ENTITY" in upper:
        raise ValueError("DOCTYPE and ENTITY declarations are not accepted")
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"malformed XML: {exc}") from None


def _text(node: ET.Element, tag: str) -> str | None:
    child = node.find(tag)
    return child.text.strip() if child is not None and child.text is not None else None


def parse_push(xml: bytes) -> WechatPush:
    """A plaintext push (the account's message encryption set to plaintext or compatible mode).

    Raises ValueError for anything that is not a well-formed, DOCTYPE-free push.
    """
    root = _safe_xml(xml)
    openid = _text(root, "FromUserName") or ""
    account = _text(root, "ToUserName") or ""
    created = _text(root, "CreateTime")
    at = datetime.fromtimestamp(int(created), UTC) if created and created.isdigit() else None
    msg_type = (_text(root, "MsgType") or "").lower()
    common = {"openid": openid, "account": account, "at": at}
    if msg_type == "text":
        return WechatPush(kind="text", text=_text(root, "Content") or "", msg_id=_text(root, "MsgId"), **common)
    if msg_type != "event":
        return WechatPush(kind="other", msg_id=_text(root, "MsgId"), **common)
    event = _text(root, "Event") or ""
    if event == "TEMPLATESENDJOBFINISH":
        status = _text(root, "Status") or ""
        receipt = Receipt(provider="wechat", delivered=status == "success",
                          provider_message_id=_text(root, "MsgID") or _text(root, "MsgId"), code=status, at=at)
        return WechatPush(kind="receipt", event=event, receipts=(receipt,), **common)
    if event == "subscribe_msg_sent_event":
        receipts = tuple(
            Receipt(provider="wechat", delivered=_text(item, "ErrorCode") == "0",
                    provider_message_id=_text(item, "MsgID"),
                    code=_text(item, "ErrorStatus") or _text(item, "ErrorCode"), at=at)
            for item in root.iterfind("SubscribeMsgSentEvent/List"))
        return WechatPush(kind="receipt", event=event, receipts=receipts, **common)
    if event in ("subscribe_msg_popup_event", "subscribe_msg_change_event"):
        container = "SubscribeMsgPopupEvent" if event == "subscribe_msg_popup_event" else "SubscribeMsgChangeEvent"
        changes = tuple(
            SubscriptionChange(template_id=_text(item, "TemplateId") or "",
                               accepted=_text(item, "SubscribeStatusString") == "accept")
            for item in root.iterfind(f"{container}/List") if _text(item, "TemplateId"))
        return WechatPush(kind="subscription", event=event, subscriptions=changes, **common)
    if event == "unsubscribe":
        return WechatPush(kind="unfollow", event=event, **common)
    if event == "subscribe":
        return WechatPush(kind="follow", event=event, **common)
    return WechatPush(kind="other", event=event, **common)
