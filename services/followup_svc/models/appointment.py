"""Service appointments (预约登记): booked → arrived → in workshop → settled → closed, or cancelled / no-show."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from followup_svc.models import Base
from shared.db.base import TenantScopedMixin, TimestampMixin

ACTIVE_STATES = ("booked", "arrived", "in_workshop")


class Appointment(TenantScopedMixin, TimestampMixin, Base):
    __tablename__ = "appointment"
    __table_args__ = (
        sa.Index("ix_appointment_slot", "tenant_id", "store_id", "slot_start"),
        sa.Index("ix_appointment_vehicle", "tenant_id", "vehicle_id"),
    )
    customer_id: Mapped[uuid.UUID]
    vehicle_id: Mapped[uuid.UUID]
    plate: Mapped[str | None] = mapped_column(sa.String(12))
    advisor_id: Mapped[uuid.UUID | None]
    kind: Mapped[str] = mapped_column(sa.String(10), default="passive")
    status: Mapped[str] = mapped_column(sa.String(12), default="booked")
    slot_start: Mapped[datetime]
    slot_end: Mapped[datetime]
    promised_ready_at: Mapped[datetime | None]
    content: Mapped[str] = mapped_column(sa.String(500))
    customer_description: Mapped[str | None] = mapped_column(sa.Text())
    mileage_km: Mapped[int | None]
    estimate_amount: Mapped[Decimal | None] = mapped_column(sa.Numeric(12, 2))
    is_rework: Mapped[bool] = mapped_column(default=False)
    pickup: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    satisfaction: Mapped[int | None]
    cancel_reason: Mapped[str | None] = mapped_column(sa.String(300))
    notes: Mapped[str | None] = mapped_column(sa.Text())
    created_by: Mapped[uuid.UUID | None]
    version: Mapped[int] = mapped_column(default=1)
