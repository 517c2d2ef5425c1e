"""Customers (persons and companies), their phones, tags and consents."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from customer_svc.models import Base
from shared.db.base import TenantScopedMixin, TimestampMixin


class Customer(TenantScopedMixin, TimestampMixin, Base):
    __tablename__ = "customer"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "customer_no"),
        sa.UniqueConstraint("tenant_id", "external_id"),
        sa.Index("ix_customer_tenant_birthday_md", "tenant_id", "birthday_md"),
        # Columns most customers leave empty are indexed where set only: every lookup gives a value, and a bulk
        # import does not pay an index entry per NULL.
        *(sa.Index(name, *columns, postgresql_where=sa.text(f"{columns[-1]} IS NOT NULL"),
                   sqlite_where=sa.text(f"{columns[-1]} IS NOT NULL"))
          for name, columns in (("ix_customer_tenant_id_number", ("tenant_id", "id_number")),
                                ("ix_customer_merged_into_id", ("merged_into_id",)),
                                ("ix_customer_assigned_sales_id", ("assigned_sales_id",)),
                                ("ix_customer_assigned_advisor_id", ("assigned_advisor_id",)))),
    )
    #: Not indexed alone: the unique (tenant_id, customer_no) and (tenant_id, external_id) lead with it.
    tenant_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid())
    customer_no: Mapped[str] = mapped_column(sa.String(40))
    external_id: Mapped[str | None] = mapped_column(
        sa.String(64), comment="The source system's customer id (OEM / DMS), unique per dealer group")
    kind: Mapped[str] = mapped_column(sa.String(10), default="person")
    #: Searched by substring (``LIKE '%q%'``), which no b-tree serves: not indexed.
    name: Mapped[str] = mapped_column(sa.String(200))
    contact_person: Mapped[str | None] = mapped_column(sa.String(100))
    id_number: Mapped[str | None] = mapped_column(sa.String(40))
    gender: Mapped[str | None] = mapped_column(sa.String(10))
    birthday: Mapped[date | None]
    birthday_calendar: Mapped[str] = mapped_column(sa.String(10), default="solar")
    birthday_md: Mapped[int | None] = mapped_column(comment="Solar month*100+day of the birthday, for range search")
    wedding_anniversary: Mapped[date | None]
    wechat_openid: Mapped[str | None] = mapped_column(sa.String(64))
    wechat_unionid: Mapped[str | None] = mapped_column(sa.String(64))
    address: Mapped[str | None] = mapped_column(sa.String(500))
    postcode: Mapped[str | None] = mapped_column(sa.String(10))
    occupation: Mapped[str | None] = mapped_column(sa.String(100))
    employer: Mapped[str | None] = mapped_column(sa.String(200))
    family: Mapped[dict[str, Any]] = mapped_column(default=dict)
    hobbies: Mapped[list[str]] = mapped_column(default=list)
    preferred_channel: Mapped[str | None] = mapped_column(sa.String(20))
    preferred_contact_time: Mapped[str | None] = mapped_column(sa.String(100))
    do_not_call: Mapped[bool] = mapped_column(default=False)
    source_code: Mapped[str | None] = mapped_column(sa.String(1))
    source_detail: Mapped[str | None] = mapped_column(sa.String(100))
    relationship_type: Mapped[str] = mapped_column(sa.String(20), default="prospect")
    intent_level: Mapped[str | None] = mapped_column(sa.String(1))
    value_class: Mapped[str | None] = mapped_column(sa.String(20))
    vip: Mapped[bool] = mapped_column(default=False)
    notes: Mapped[str | None] = mapped_column(sa.Text())
    assigned_sales_id: Mapped[uuid.UUID | None]
    assigned_advisor_id: Mapped[uuid.UUID | None]
    lost_reason: Mapped[str | None] = mapped_column(sa.Text())
    lost_kind: Mapped[str | None] = mapped_column(sa.String(20))
    lost_at: Mapped[datetime | None]
    lost_confirmed_by: Mapped[uuid.UUID | None]
    merged_into_id: Mapped[uuid.UUID | None]
    created_by: Mapped[uuid.UUID | None]
    version: Mapped[int] = mapped_column(default=1)

    phones: Mapped[list[CustomerPhone]] = relationship(lazy="selectin", cascade="all, delete-orphan",
                                                       order_by="CustomerPhone.position")
    tag_rows: Mapped[list[CustomerTag]] = relationship(lazy="selectin", cascade="all, delete-orphan")
    consents: Mapped[list[Consent]] = relationship(lazy="selectin", cascade="all, delete-orphan")

    @property
    def tags(self) -> list[str]:
        return sorted(t.tag for t in self.tag_rows)

    @property
    def primary_phone(self) -> str | None:
        return next((p.e164 for p in self.phones if p.is_primary), None)


class CustomerPhone(Base):
    __tablename__ = "customer_phone"
    __table_args__ = (sa.Index("ix_customer_phone_tenant_e164", "tenant_id", "e164"),)
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("customer.id", ondelete="CASCADE"), primary_key=True)
    e164: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    tenant_id: Mapped[uuid.UUID]
    store_id: Mapped[uuid.UUID]
    label: Mapped[str | None] = mapped_column(sa.String(20))
    is_primary: Mapped[bool] = mapped_column(default=False)
    position: Mapped[int] = mapped_column(default=0)


class CustomerTag(Base):
    __tablename__ = "customer_tag"
    __table_args__ = (sa.Index("ix_customer_tag_tenant_tag", "tenant_id", "tag"),)
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("customer.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    tenant_id: Mapped[uuid.UUID]


class Consent(Base):
    """Current consent per channel and purpose; every change is also an event and an audit entry."""

    __tablename__ = "consent"
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("customer.id", ondelete="CASCADE"), primary_key=True)
    channel: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    purpose: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    granted: Mapped[bool]
    source: Mapped[str] = mapped_column(sa.String(100))
    recorded_at: Mapped[datetime]
    recorded_by: Mapped[uuid.UUID | None]
