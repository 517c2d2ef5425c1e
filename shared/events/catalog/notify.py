"""Events published by notify_svc: what became of each message, and consent revoked by the recipient."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from shared.events.envelope import EventData, event_type


class MessageFacts(EventData):
    message_id: uuid.UUID
    idempotency_key: str = Field(description="The requester's key (a follow-up occurrence key, a survey invitation).")
    request_id: uuid.UUID | None = None
    source: str = Field(description="Who asked: followup, survey, bulk, escalation, staff.")
    customer_id: uuid.UUID | None = None
    staff_id: uuid.UUID | None = None
    rule_key: str | None = None
    template: str
    purpose: Literal["service", "marketing"]
    channel: str | None = None
    provider: str | None = None


@event_type("notify.message.sent.v1", subject="message_id")
class MessageSent(MessageFacts):
    """A provider accepted the message (delivery is reported later)."""

    sent_at: datetime


@event_type("notify.message.delivered.v1", subject="message_id")
class MessageDelivered(MessageFacts):
    """The provider's receipt says the message reached the recipient."""

    delivered_at: datetime


@event_type("notify.message.failed.v1", subject="message_id")
class MessageFailed(MessageFacts):
    """The message could not be delivered on any channel (permanent error, retries exhausted, receipt failed)."""

    reason: str
    code: str | None = None


@event_type("notify.message.suppressed.v1", subject="message_id")
class MessageSuppressed(MessageFacts):
    """A policy stopped the message for good (no consent, opted out, expired...); ``reason`` names it."""

    reason: str


@event_type("notify.consent.revoked.v1", subject="customer_id")
class ConsentRevoked(EventData):
    """The customer opted out (e.g. replied "TD" to an SMS): customer_svc records it on the customer."""

    customer_id: uuid.UUID
    channel: Literal["sms", "wechat"]
    purpose: Literal["service", "marketing"]
    source: str = Field(description="sms_reply, wechat_unfollow ...")
    content: str | None = Field(default=None, description="The reply text that revoked it.")
    recorded_at: datetime


@event_type("notify.template.changed.v1", subject="template_id")
class TemplateChanged(EventData):
    """A dealer group's message template was created, changed or deleted (followup_svc learns which templates a
    group has, so rules may name the group's own templates)."""

    template_id: uuid.UUID
    key: str = Field(description="The template key rules and senders name, e.g. maintenance_reminder.")
    channel: str = Field(description="sms, wechat, wecom or console.")
    locale: str = Field(description="e.g. zh-CN.")
    store_id: uuid.UUID | None = Field(default=None, description="The store it overrides for; None: group-wide.")
    purpose: Literal["service", "marketing"]
    status: Literal["draft", "approved", "disabled"]
    version: int
    deleted: bool = Field(default=False, description="True: the template no longer exists.")
