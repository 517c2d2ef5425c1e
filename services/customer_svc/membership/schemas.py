from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.validation import IsoDate

Status = Literal["active", "expired", "frozen", "withdrawn"]
DiscountRate = Annotated[Decimal, Field(gt=0, le=1, max_digits=4, decimal_places=3, examples=["0.95"],
                                        description="Price factor: 0.95 means 5% off, 1 means no discount.")]
Day = Annotated[IsoDate, Field(ge=date(1990, 1, 1), le=date(2100, 12, 31))]
Money = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2, examples=["1000.00"], description="CNY.")]


def _non_zero(v: int) -> int:
    if v == 0:
        raise ValueError("must not be zero")
    return v


Delta = Annotated[int, Field(ge=-1_000_000, le=1_000_000, examples=[200, -50],
                             description="Points to add (positive) or take off (negative)."), AfterValidator(_non_zero)]
Reason = Annotated[str, Field(min_length=1, max_length=200, examples=["Spent ¥2,000 on a major service"])]
OperatorId = Annotated[uuid.UUID, Field(description="The staff member responsible (业务员, required: R-PERM-07).")]


class TierCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str = Field(min_length=1, max_length=60, examples=["金卡会员"])
    discount_rate: DiscountRate
    fee: Money = Decimal(0)
    bonus_points: int = Field(default=0, ge=0, le=10_000_000, description="Credited when the fee is paid in full.",
                              examples=[300])


class TierUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str | None = Field(default=None, min_length=1, max_length=60)
    discount_rate: DiscountRate | None = None
    fee: Money | None = None
    bonus_points: int | None = Field(default=None, ge=0, le=10_000_000)
    active: bool | None = Field(default=None, description="false: no new members or upgrades into this tier.")


class TierRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    discount_rate: Decimal
    fee: Decimal
    bonus_points: int
    active: bool
    version: int
    created_at: datetime


class TierSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    discount_rate: Decimal


class MembershipCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    card_no: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_\-]+$", examples=["VIP20260001"],
                         description="The new card number (会员卡号), unique in the dealer group.")
    vehicle_id: uuid.UUID = Field(description="A registered vehicle of your stores; the member is its owner.")
    tier_id: uuid.UUID
    joined_at: Day | None = Field(default=None, description="Default: today in the store's time zone.")
    expires_at: Day | None = Field(default=None, description="Default: one year after joined_at.")
    fee_paid: Money | None = Field(default=None, description="Default: the tier's fee.")


class MembershipUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tier_id: uuid.UUID | None = Field(default=None, description="Upgrade (or change) the tier.")
    fee_paid: Money | None = Field(default=None, description="With tier_id: the fee paid (default: the new tier's).")
    status: Status | None = Field(default=None, description="正常 active / 过期 expired / 冻结 frozen / 退会 withdrawn.")
    expires_at: Day | None = Field(default=None, description="Renew: the new expiry date.")


class MembershipRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    tenant_id: uuid.UUID
    store_id: uuid.UUID
    customer_id: uuid.UUID
    vehicle_id: uuid.UUID
    card_no: str
    tier: TierSummary
    status: Status
    joined_at: date
    expires_at: date
    fee_paid: Decimal
    points_balance: int
    version: int
    created_at: datetime


class PointsAdjust(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    delta: Delta
    reason: Reason
    operator_id: OperatorId


class BatchEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    membership_id: uuid.UUID
    delta: Delta


class PointsBatch(BaseModel):
    """Several adjustments committed together (确定) or not at all."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    operator_id: OperatorId
    reason: Reason
    entries: list[BatchEntry] = Field(min_length=1, max_length=500)


class PointsEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    membership_id: uuid.UUID
    delta: int
    balance_after: int
    kind: Literal["bonus", "adjustment"]
    reason: str
    operator_id: uuid.UUID
    batch_id: uuid.UUID | None
    created_at: datetime
