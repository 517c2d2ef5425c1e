"""followup_svc's own copies of customer_svc data (fed by its events; never read across schemas).

Only what scheduling and routing need: where a customer belongs, who owns them, how and whether they
may be contacted, the dates that anchor reminders and the odometer history that estimates maintenance.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from followup_svc.models import Base
from shared.db.base import JSONType, utcnow
from shared.db.readmodels import StaffViewColumns, StoreViewColumns


class StoreView(StoreViewColumns, Base):
    business_hours: Mapped[dict[str, Any]]


class StaffView(StaffViewColumns, Base):
    pass


class CustomerView(Base):
    __tablename__ = "customer"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    store_id: Mapped[uuid.UUID] = mapped_column(index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    phone: Mapped[str | None] = mapped_column(sa.String(20))
    wechat_openid: Mapped[str | None] = mapped_column(sa.String(64))
    birthday: Mapped[date | None]
    birthday_calendar: Mapped[str] = mapped_column(sa.String(10), default="solar")
    wedding_anniversary: Mapped[date | None]
    relationship: Mapped[str] = mapped_column(sa.String(20))
    intent_level: Mapped[str | None] = mapped_column(sa.String(1))
    value_class: Mapped[str | None] = mapped_column(sa.String(20))
    preferred_channel: Mapped[str | None] = mapped_column(sa.String(20))
    do_not_call: Mapped[bool] = mapped_column(default=False)
    assigned_sales_id: Mapped[uuid.UUID | None]
    assigned_advisor_id: Mapped[uuid.UUID | None]
    tags: Mapped[list[str]] = mapped_column(default=list)
    #: ``{"sms:marketing": false, ...}``: only what customer_svc recorded; a missing key is "not given".
    consents: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lost: Mapped[bool] = mapped_column(default=False)
    merged_into_id: Mapped[uuid.UUID | None]
    last_visit_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def active(self) -> bool:
        return not self.lost and self.merged_into_id is None


class VehicleView(Base):
    __tablename__ = "vehicle"
    __table_args__ = (sa.Index("ix_vehicle_tenant_plate", "tenant_id", "plate"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    store_id: Mapped[uuid.UUID] = mapped_column(index=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(index=True)
    vin: Mapped[str] = mapped_column(sa.String(17))
    plate: Mapped[str | None] = mapped_column(sa.String(12))
    brand: Mapped[str | None] = mapped_column(sa.String(60))
    model: Mapped[str | None] = mapped_column(sa.String(100))
    selling_consultant_id: Mapped[uuid.UUID | None]
    delivery_date: Mapped[date | None]
    insurance_expiry: Mapped[date | None]
    next_inspection_date: Mapped[date | None]
    warranty_end: Mapped[date | None]
    #: ``[["2026-03-01", 1200], ...]`` oldest first: the odometer history that estimates the next maintenance.
    mileage_readings: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    maintenance_count: Mapped[int] = mapped_column(default=0)
    last_maintenance_at: Mapped[datetime | None]
    last_maintenance_km: Mapped[int | None]
    last_visit_at: Mapped[datetime | None]
    declined_items: Mapped[list[str]] = mapped_column(default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
