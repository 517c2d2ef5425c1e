"""Webhook endpoints of integration partners and each delivery to them (signed per Standard Webhooks)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from notify_svc.models import Base
from shared.db.base import TimestampMixin, utcnow
from shared.ids import new_id


class WebhookEndpoint(TimestampMixin, Base):
    __tablename__ = "webhook_endpoint"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    #: The integration key that created (and owns) the endpoint; null for one an admin set up. Only that key,
    #: and the group's admins, see it and its deliveries.
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    store_ids: Mapped[list[str]] = mapped_column(
        comment="Events of these stores only; empty: all stores (a key's endpoint always lists its stores)")
    partner: Mapped[str] = mapped_column(sa.String(100))
    url: Mapped[str] = mapped_column(sa.String(2000))
    event_types: Mapped[list[str]]
    #: ``whsec_<base64>``: never returned by the API after creation, never logged.
    secret: Mapped[str] = mapped_column(sa.String(200))
    #: The secret before the last rotation: it signs too (a second signature) until ``previous_secret_until``.
    previous_secret: Mapped[str | None] = mapped_column(sa.String(200))
    previous_secret_until: Mapped[datetime | None]
    active: Mapped[bool] = mapped_column(default=True)
    #: Attempts failed in a row (none delivered since), and until when the endpoint's deliveries wait: a partner
    #: that is down is tried again after a back-off of its own instead of holding every delivery slot.
    failures: Mapped[int] = mapped_column(default=0, server_default="0")
    cool_until: Mapped[datetime | None]


class WebhookDelivery(TimestampMixin, Base):
    __tablename__ = "webhook_delivery"
    __table_args__ = (
        sa.UniqueConstraint("endpoint_id", "event_id"),
        sa.Index("ix_webhook_delivery_due", "next_attempt_at", postgresql_where=sa.text("status = 'pending'"),
                 sqlite_where=sa.text("status = 'pending'")),
        sa.Index("ix_webhook_delivery_endpoint", "endpoint_id", "created_at"),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("webhook_endpoint.id", ondelete="CASCADE"))
    event_id: Mapped[uuid.UUID]
    event_type: Mapped[str] = mapped_column(sa.String(200))
    payload: Mapped[dict[str, Any]]
    #: ``pending`` (due at ``next_attempt_at``), ``delivered`` or ``failed`` (dead after the retry cap).
    status: Mapped[str] = mapped_column(sa.String(10), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    delivered_at: Mapped[datetime | None]
