"""Vehicles, their mileage readings and ownership history."""

from __future__ import annotations

import uuid
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from customer_svc.models import Base
from shared.db.base import TenantScopedMixin, TimestampMixin, utcnow
from shared.ids import new_id


class Vehicle(TenantScopedMixin, TimestampMixin, Base):
    __tablename__ = "vehicle"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "vin"),
        sa.Index("ix_vehicle_tenant_plate", "tenant_id", "plate"),
    )
    #: Not indexed alone: the unique (tenant_id, vin) leads with it.
    tenant_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid())
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("customer.id"), index=True)
    vin: Mapped[str] = mapped_column(sa.String(17))
    plate: Mapped[str | None] = mapped_column(sa.String(12))
    frame_no: Mapped[str | None] = mapped_column(sa.String(40))
    engine_no: Mapped[str | None] = mapped_column(sa.String(40))
    brand: Mapped[str | None] = mapped_column(sa.String(60))
    model: Mapped[str | None] = mapped_column(sa.String(100))
    colour: Mapped[str | None] = mapped_column(sa.String(40))
    interior_colour: Mapped[str | None] = mapped_column(sa.String(40))
    purchase_date: Mapped[date | None]
    delivery_date: Mapped[date | None]
    purchase_method: Mapped[str | None] = mapped_column(sa.String(20))
    selling_consultant_id: Mapped[uuid.UUID | None]
    mileage_km: Mapped[int | None]
    insurer: Mapped[str | None] = mapped_column(sa.String(60))
    insurance_expiry: Mapped[date | None]
    next_inspection_date: Mapped[date | None]
    warranty_end: Mapped[date | None]
    version: Mapped[int] = mapped_column(default=1)


class MileageReading(Base):
    __tablename__ = "mileage_reading"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    vehicle_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("vehicle.id", ondelete="CASCADE"), index=True)
    km: Mapped[int]
    read_at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(sa.String(40))


class VehicleOwnership(Base):
    """One row per owner period; a transfer closes the current row and opens a new one."""

    __tablename__ = "vehicle_ownership"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    vehicle_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("vehicle.id", ondelete="CASCADE"), index=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(index=True)
    store_id: Mapped[uuid.UUID]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(sa.String(200))
