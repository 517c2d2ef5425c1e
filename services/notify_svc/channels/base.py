"""What every provider adapter takes and returns.

The dispatcher renders a message into an ``Outgoing`` (the provider's template code and parameters, and
the plain text for channels that send text), calls ``Provider.send`` and maps the ``SendResult`` onto the
message: ``sent`` (accepted, waiting for the receipt), ``retryable`` / ``rate_limited`` (retried with
back-off), ``permanent`` (failed; the next channel may be tried) or ``unknown`` (e.g. a timeout: the
provider may have sent it, so it is never re-sent blindly; the receipt or ``lookup`` decides).

A provider that can send one template to many numbers in one request (Aliyun ``SendBatchSms``) also implements
``BatchProvider``: the dispatcher groups non-urgent sends for it, and the one ``SendResult`` of a batch applies to
each of its messages.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from shared.ids import new_id

#: A batch request's ``OutId`` starts with this: never a bare message id, so receipts and lookups tell them apart.
BATCH_PREFIX = "batch-"


def new_batch_out_id() -> str:
    return f"{BATCH_PREFIX}{new_id().hex}"


def is_batch_out_id(value: object) -> bool:
    return isinstance(value, str) and value.startswith(BATCH_PREFIX)


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
    #: The ``OutId`` of the batch request this message went in (None: its own request, ``OutId`` = message id).
    batch_out_id: str | None = None


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
    #: The number the receipt is about (E.164): with ``provider_message_id`` it names a message of a batch send,
    #: where the echoed id is the batch's, not the message's.
    to: str | None = None
    #: The ``OutId`` echoed back when it was a batch's (a message of a timed-out batch has no provider id yet).
    batch_out_id: str | None = None


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


class BatchProvider(Provider, Protocol):
    """A provider that takes up to ``max_batch`` messages of one template and sign in one request."""

    max_batch: int

    async def send_batch(self, outs: list[Outgoing], out_id: str) -> SendResult:
        """One request for all of ``outs`` (same template code and sign, distinct numbers), tagged ``out_id``:
        its outcome is every message's outcome (the provider takes or refuses the batch as a whole)."""
        ...

    def refusal_may_concern_some(self, result: SendResult) -> bool:
        """Whether a batch refused with ``result`` may have been refused for some of its messages only (one
        invalid number, one number over its flow control): then each is worth a request of its own. Not for
        refusals that would refuse each of them alike (credentials, balance, the template, throttling)."""
        ...
