"""What every provider adapter takes and returns.

The dispatcher renders a message into an ``Outgoing`` (the provider's template code and parameters, and
the plain text for channels that send text), calls ``Provider.send`` and maps the ``SendResult`` onto the
message: ``sent`` (accepted, waiting for the receipt), ``retryable`` / ``rate_limited`` (retried with
back-off), ``permanent`` (failed; the next channel may be tried) or ``unknown`` (e.g. a timeout: the
provider may have sent it, so it is never re-sent blindly; the receipt or ``lookup`` decides).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    SENT = "sent"
    RETRYABLE = "retryable"
    RATE_LIMITED = "rate_limited"
    PERMANENT = "permanent"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Outgoing:
    message_id: uuid.UUID
    channel: str  # sms | wechat | console
    to: str  # E.164 phone (sms), openid (wechat)
    text: str  # the rendered body: what the customer reads
    template_code: str | None = None  # the provider's template id (Aliyun SMS_xxx, Tencent numeric, WeChat id)
    sign_name: str | None = None
    params: dict[str, str] = field(default_factory=dict)  # Aliyun TemplateParam (by name)
    ordered_params: list[str] = field(default_factory=list)  # Tencent TemplateParamSet (by position)
    fields: dict[str, str] = field(default_factory=dict)  # WeChat data fields ({"thing1": "..."})
    url: str | None = None  # WeChat: the page the message opens
    wechat_kind: str = "template"  # WeChat: "template" (模板消息) or "subscribe" (one-time 订阅通知)


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    provider_message_id: str | None = None
    code: str | None = None  # the provider's own code, kept on the message trail
    detail: str | None = None
    retry_after: float | None = None  # seconds, when the provider says


@dataclass(frozen=True)
class Receipt:
    """A delivery report (pushed by the provider or fetched by ``lookup``)."""

    provider: str
    delivered: bool
    message_id: uuid.UUID | None = None  # our id, echoed back (Aliyun OutId, Tencent SessionContext/ext)
    provider_message_id: str | None = None
    code: str | None = None
    detail: str | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class InboundReply:
    """A text the recipient sent back (an SMS reply, e.g. "TD")."""

    provider: str
    phone: str  # E.164
    content: str
    sign_name: str | None = None
    at: datetime | None = None


class Provider(Protocol):
    name: str  # aliyun | tencent | wechat | console
    channel: str  # sms | wechat | console

    async def send(self, out: Outgoing) -> SendResult: ...

    async def lookup(self, out: Outgoing, sent_at: datetime) -> Receipt | None:
        """The provider's status query for one message whose outcome is unknown; None while it knows nothing."""
        ...

    async def aclose(self) -> None: ...
