"""Messages: one row per message to one recipient, from request to receipt, with its trail of what happened.

Statuses: ``queued`` (waiting for its time), ``held`` (a policy said "later": quiet hours, cap, budget, rate
limit; ``next_attempt_at`` says when), ``sending`` (handed to a provider; when the outcome is unknown it stays
here until the receipt or a status query says), ``sent`` (accepted by the provider), ``delivered``, ``failed``
(permanent, or dead-lettered after the retry cap) and ``suppressed`` (a policy said "never": no consent,
opted out, expired...). ``reason`` names the rule behind the last decision.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from notify_svc.models import Base
from shared.db.base import TimestampMixin, utcnow
from shared.ids import new_id

STATUSES = ("queued", "held", "sending", "sent", "delivered", "failed", "suppressed")
WAITING = ("queued", "held")
FINAL = ("delivered", "failed", "suppressed")


class Message(TimestampMixin, Base):
    __tablename__ = "message"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "idempotency_key"),
        # The dispatcher's claim reads only this index: its cost follows the due rows.
        sa.Index("ix_message_due", "next_attempt_at",
                 postgresql_where=sa.text("status IN ('queued', 'held', 'sending')"),
                 sqlite_where=sa.text("status IN ('queued', 'held', 'sending')")),
        sa.Index("ix_message_customer", "tenant_id", "customer_id", "created_at"),
        # Caps and budgets count by recipient across the stores of a group.
        sa.Index("ix_message_recipient", "tenant_id", "recipient_key", "sent_at",
                 postgresql_where=sa.text("sent_at IS NOT NULL"), sqlite_where=sa.text("sent_at IS NOT NULL")),
        sa.Index("ix_message_provider_id", "provider", "provider_message_id"),
        sa.Index("ix_message_bulk", "bulk_job_id", postgresql_where=sa.text("bulk_job_id IS NOT NULL"),
                 sqlite_where=sa.text("bulk_job_id IS NOT NULL")),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid())
    store_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid())
    idempotency_key: Mapped[str] = mapped_column(sa.String(200))
    request_id: Mapped[uuid.UUID | None]
    source: Mapped[str] = mapped_column(sa.String(20), comment="followup, survey, bulk, escalation, staff")
    customer_id: Mapped[uuid.UUID | None]
    staff_id: Mapped[uuid.UUID | None] = mapped_column(comment="Set for notices to staff (escalations)")
    vehicle_id: Mapped[uuid.UUID | None]
    rule_key: Mapped[str | None] = mapped_column(sa.String(60))
    template_key: Mapped[str] = mapped_column(sa.String(60))
    purpose: Mapped[str] = mapped_column(sa.String(10))
    channels: Mapped[list[str]] = mapped_column(comment="Preference order; fallback walks it")
    channel: Mapped[str | None] = mapped_column(sa.String(10), comment="The channel tried last")
    failed_channels: Mapped[list[str]] = mapped_column(default=list, comment="Channels that failed for good: "
                                                       "the fallback skips them")
    provider: Mapped[str | None] = mapped_column(sa.String(10))
    #: Who it went to, masked (``138****5678``), and a stable key of the address for caps (``sms:+86...``
    #: hashed): numbers are not stored in clear beside the message.
    recipient_masked: Mapped[str | None] = mapped_column(sa.String(40))
    recipient_key: Mapped[str | None] = mapped_column(sa.String(64))
    variables: Mapped[dict[str, Any]] = mapped_column(default=dict)
    body: Mapped[str | None] = mapped_column(sa.Text(), comment="What was rendered for the channel used")
    status: Mapped[str] = mapped_column(sa.String(10), default="queued")
    reason: Mapped[str | None] = mapped_column(sa.String(40))
    detail: Mapped[str | None] = mapped_column(sa.String(500))
    not_before: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    avoid_holidays: Mapped[bool] = mapped_column(default=False)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    provider_message_id: Mapped[str | None] = mapped_column(sa.String(100))
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    bulk_job_id: Mapped[uuid.UUID | None]


class MessageEvent(Base):
    """The trail of one message: every decision, attempt and receipt, with the rule or provider code."""

    __tablename__ = "message_event"
    __table_args__ = (sa.Index("ix_message_event_message", "message_id", "at"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    message_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("message.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(sa.String(10))
    reason: Mapped[str | None] = mapped_column(sa.String(40))
    channel: Mapped[str | None] = mapped_column(sa.String(10))
    provider: Mapped[str | None] = mapped_column(sa.String(10))
    code: Mapped[str | None] = mapped_column(sa.String(80), comment="Provider code (isv.BUSINESS_LIMIT_CONTROL...)")
    detail: Mapped[str | None] = mapped_column(sa.String(500))


class BulkJob(TimestampMixin, Base):
    """One bulk send (e.g. the birthday list of a date range): its selection, progress and per-recipient rows."""

    __tablename__ = "bulk_job"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    store_id: Mapped[uuid.UUID] = mapped_column(index=True)
    template_key: Mapped[str] = mapped_column(sa.String(60))
    purpose: Mapped[str] = mapped_column(sa.String(10))
    channels: Mapped[list[str]]
    variables: Mapped[dict[str, Any]] = mapped_column(default=dict)
    customer_ids: Mapped[list[str]]
    not_before: Mapped[datetime] = mapped_column(default=utcnow)
    total: Mapped[int] = mapped_column(default=0)
    created_by: Mapped[uuid.UUID | None]
