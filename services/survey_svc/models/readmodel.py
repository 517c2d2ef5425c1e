"""survey_svc's own copies of customer_svc data (fed by its events; never read across schemas).

Who a survey asks and rates, what it is about (the repair order or the delivery), and what integrity checks need:
the customer's phone (one phone answering for many customers) and when it last changed (contacts entered by
staff just before a survey).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from survey_svc.models import Base
from shared.db.base import utcnow
from shared.db.readmodels import StaffViewColumns, StoreViewColumns


class StoreView(StoreViewColumns, Base):
    pass


class StaffView(StaffViewColumns, Base):
    pass


class CustomerView(Base):
    __tablename__ = "customer"
    __table_args__ = (sa.Index("ix_customer_phone", "tenant_id", "phone"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    store_id: Mapped[uuid.UUID] = mapped_column(index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    phone: Mapped[str | None] = mapped_column(sa.String(20), comment="E.164")
    #: When the contact phone last changed (None: as first recorded). A survey right after it is flagged.
    phone_changed_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(sa.String(10), default="active")
    merged_into: Mapped[uuid.UUID | None]
    snapshot_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class VisitView(Base):
    """Repair orders (settled visits) and deliveries: what invitations are bound to, and the "number sent
    based on repair records" of the satisfaction report (DOMAIN §9.3)."""

    __tablename__ = "visit"
    __table_args__ = (sa.Index("ix_visit_store_time", "tenant_id", "store_id", "completed_at"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, comment="visit id, or the vehicle id for a delivery")
    kind: Mapped[str] = mapped_column(sa.String(10), primary_key=True, comment="visit | delivery")
    tenant_id: Mapped[uuid.UUID]
    store_id: Mapped[uuid.UUID]
    customer_id: Mapped[uuid.UUID]
    vehicle_id: Mapped[uuid.UUID | None]
    visit_type: Mapped[str | None] = mapped_column(sa.String(20))
    ro_number: Mapped[str | None] = mapped_column(sa.String(40))
    staff_id: Mapped[uuid.UUID | None] = mapped_column(comment="advisor of the visit, consultant of the sale")
    completed_at: Mapped[datetime]
    delivery_date: Mapped[date | None]
