"""Membership (会员): tiers per dealer group, memberships per vehicle, and the points ledger."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from customer_svc.models import Base
from shared.db.base import TenantScopedMixin, TimestampMixin, utcnow
from shared.ids import new_id


class MembershipTier(TimestampMixin, Base):
    """普通 / 银卡 / 金卡 and any tier the group adds; shared by every store of the group."""

    __tablename__ = "membership_tier"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    name: Mapped[str] = mapped_column(sa.String(60))
    discount_rate: Mapped[Decimal] = mapped_column(sa.Numeric(4, 3), comment="Price factor, 0.950 = 5% off")
    fee: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2), default=Decimal(0))
    bonus_points: Mapped[int] = mapped_column(default=0)
    active: Mapped[bool] = mapped_column(default=True)
    version: Mapped[int] = mapped_column(default=1)


class Membership(TenantScopedMixin, TimestampMixin, Base):
    __tablename__ = "membership"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "card_no"),
        sa.CheckConstraint("points_balance >= 0", name="points_balance_non_negative"),
        # A vehicle holds at most one membership until it is withdrawn (退会).
        sa.Index("uq_membership_vehicle_current", "vehicle_id", unique=True,
                 postgresql_where=sa.text("status <> 'withdrawn'"), sqlite_where=sa.text("status <> 'withdrawn'")),
    )
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("customer.id"), index=True)
    vehicle_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("vehicle.id"))
    tier_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("membership_tier.id"), index=True)
    card_no: Mapped[str] = mapped_column(sa.String(40))
    status: Mapped[str] = mapped_column(sa.String(20), default="active")
    joined_at: Mapped[date]
    expires_at: Mapped[date]
    fee_paid: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2), default=Decimal(0),
                                              comment="Total membership fees paid (join and upgrades)")
    points_balance: Mapped[int] = mapped_column(default=0)
    version: Mapped[int] = mapped_column(default=1)
    tier: Mapped[MembershipTier] = relationship(lazy="selectin")


class PointsEntry(Base):
    """One line of the points ledger (积分明细); the balance is the sum, kept on the membership."""

    __tablename__ = "points_entry"
    __table_args__ = (sa.Index("ix_points_entry_membership", "membership_id", "id"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID]
    store_id: Mapped[uuid.UUID]
    membership_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("membership.id", ondelete="CASCADE"))
    delta: Mapped[int]
    balance_after: Mapped[int]
    kind: Mapped[str] = mapped_column(sa.String(20), comment="bonus | adjustment")
    reason: Mapped[str] = mapped_column(sa.String(200))
    operator_id: Mapped[uuid.UUID] = mapped_column(comment="The staff member responsible (业务员, R-PERM-07)")
    batch_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    created_by: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
