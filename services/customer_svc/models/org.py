"""Dealer groups (tenants), stores, staff and their credentials."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from customer_svc.models import Base
from shared.db.base import TimestampMixin
from shared.ids import new_id


class Tenant(TimestampMixin, Base):
    __tablename__ = "tenant"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(sa.String(60), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))


class Store(TimestampMixin, Base):
    __tablename__ = "store"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "code"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    code: Mapped[str] = mapped_column(sa.String(40))
    name: Mapped[str] = mapped_column(sa.String(200))
    timezone: Mapped[str] = mapped_column(sa.String(64), default="Asia/Shanghai")
    business_hours: Mapped[dict[str, Any]]
    address: Mapped[str | None] = mapped_column(sa.String(500))
    phone: Mapped[str | None] = mapped_column(sa.String(32))
    active: Mapped[bool] = mapped_column(default=True)
    version: Mapped[int] = mapped_column(default=1)

    @property
    def store_id(self) -> uuid.UUID:
        return self.id


class StaffStore(Base):
    __tablename__ = "staff_store"
    staff_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("staff.id", ondelete="CASCADE"), primary_key=True)
    store_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("store.id"), primary_key=True, index=True)


class Staff(TimestampMixin, Base):
    __tablename__ = "staff"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "employee_no"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    employee_no: Mapped[str] = mapped_column(sa.String(40))
    name: Mapped[str] = mapped_column(sa.String(100), index=True)
    gender: Mapped[str | None] = mapped_column(sa.String(10))
    department: Mapped[str | None] = mapped_column(sa.String(60), index=True)
    education: Mapped[str | None] = mapped_column(sa.String(60))
    phone: Mapped[str | None] = mapped_column(sa.String(32))
    roles: Mapped[list[str]]
    active: Mapped[bool] = mapped_column(default=True)
    password_hash: Mapped[str | None] = mapped_column(sa.String(200))
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(default=1)
    stores: Mapped[list[StaffStore]] = relationship(lazy="selectin", cascade="all, delete-orphan")

    @property
    def store_ids(self) -> list[uuid.UUID]:
        return sorted(s.store_id for s in self.stores)


class RefreshToken(Base):
    __tablename__ = "refresh_token"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    staff_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class ApiKey(TimestampMixin, Base):
    """Integration keys (OEM / DMS): stored as a SHA-256 of the secret, exchanged for short-lived tokens.

    Rotation keeps the id and prefix and, for an overlap, two secrets: the current one (``key_hash``) and the
    previous one (``previous_key_hash``, accepted until ``previous_valid_until``). ``last_used_at`` is the last
    exchange with either; the per-secret times show whether the partner has switched.
    """

    __tablename__ = "api_key"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    prefix: Mapped[str] = mapped_column(sa.String(20), unique=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64))
    scopes: Mapped[list[str]]
    store_ids: Mapped[list[str]]
    created_by: Mapped[uuid.UUID]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    previous_key_hash: Mapped[str | None] = mapped_column(sa.String(64))
    previous_valid_until: Mapped[datetime | None]
    rotated_at: Mapped[datetime | None]
    current_last_used_at: Mapped[datetime | None]
    previous_last_used_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(default=1)

    def previous_active(self, now: datetime) -> bool:
        return (self.previous_key_hash is not None and self.previous_valid_until is not None
                and self.previous_valid_until > now)
