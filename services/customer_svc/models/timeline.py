"""The customer timeline: one row per event about a customer, from any service."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from customer_svc.models import Base


class TimelineEntry(Base):
    __tablename__ = "timeline_entry"
    __table_args__ = (sa.Index("ix_timeline_entry_customer", "tenant_id", "customer_id", "occurred_at"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, comment="The event id")
    tenant_id: Mapped[uuid.UUID]
    store_id: Mapped[uuid.UUID | None]
    customer_id: Mapped[uuid.UUID]
    event_type: Mapped[str] = mapped_column(sa.String(200))
    source: Mapped[str] = mapped_column(sa.String(60))
    occurred_at: Mapped[datetime]
    data: Mapped[dict[str, Any]]
