"""Service visits: settled repair orders (from reception or a DMS), append-only like the repair archive."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from customer_svc.models import Base
from shared.db.base import JSONType, TenantScopedMixin, TimestampMixin


class ServiceVisit(TenantScopedMixin, TimestampMixin, Base):
    __tablename__ = "service_visit"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "external_id"),
        sa.Index("ix_service_visit_tenant_vehicle", "tenant_id", "vehicle_id"),
        sa.Index("ix_service_visit_tenant_customer", "tenant_id", "customer_id"),
        sa.Index("ix_service_visit_tenant_completed", "tenant_id", "completed_at"),
    )
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("customer.id"))
    vehicle_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("vehicle.id"))
    external_id: Mapped[str | None] = mapped_column(sa.String(64), comment="DMS repair-order id, unique per tenant")
    visit_type: Mapped[str] = mapped_column(sa.String(20))
    ro_number: Mapped[str | None] = mapped_column(sa.String(40))
    mileage_km: Mapped[int | None]
    advisor_id: Mapped[uuid.UUID | None]
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    symptoms: Mapped[str | None] = mapped_column(sa.Text())
    completed_at: Mapped[datetime]
    created_by: Mapped[uuid.UUID | None]
