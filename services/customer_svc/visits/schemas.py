from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.db.base import utcnow
from shared.validation import IsoDateTime

VisitType = Literal["first_maintenance", "maintenance", "minor_repair", "major_overhaul", "rework"]
#: Clocks of reception PCs and DMS servers drift; a completion this far ahead of ours is still accepted.
CLOCK_SKEW = timedelta(minutes=5)
#: Bounds of completion times: older repair orders are not imported, and far-off years overflow in UTC.
EARLIEST, LATEST = datetime(1990, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


class VisitItem(BaseModel):
    """One line of the repair order: a job (维修项目, labour) or a material (维修用料, part)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    code: str | None = Field(default=None, min_length=1, max_length=40, examples=["OIL-CHG"])
    name: str = Field(min_length=1, max_length=200, examples=["Engine oil change"])
    kind: Literal["labour", "part"]
    quantity: Decimal = Field(default=Decimal(1), gt=0, max_digits=10, decimal_places=2,
                              description="Hours for labour, units for parts.")
    amount: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=2,
                                   description="Line total in CNY.", examples=["380.00"])
    declined: bool = Field(default=False, description="Recommended but declined by the customer this time "
                                                      "(reminded at the next maintenance).")


class VisitCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    vehicle_id: uuid.UUID = Field(description="A vehicle of your stores; the visit takes its owner and store.")
    visit_type: VisitType
    external_id: str | None = Field(
        default=None, min_length=1, max_length=64, examples=["DMS-RO-2026-000123"],
        description="The DMS repair-order id. Posting it again returns the recorded visit (200), not a duplicate.")
    ro_number: str | None = Field(default=None, min_length=1, max_length=40, examples=["RO20260315001"])
    mileage_km: int | None = Field(default=None, ge=0, le=2_000_000,
                                   description="Odometer at check-in; not below the vehicle's last reading.")
    advisor_id: uuid.UUID | None = Field(default=None, description="The service advisor (active staff).")
    items: list[VisitItem] = Field(default_factory=list, max_length=200)
    symptoms: str | None = Field(default=None, max_length=5000, description="Symptoms reported (故障现象).")
    completed_at: IsoDateTime = Field(description="Settlement time, with a time zone; not in the future.",
                                      examples=["2026-03-15T16:30:00+08:00"])

    @field_validator("completed_at")
    @classmethod
    def _aware_and_past(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("give a time zone, e.g. 2026-03-15T16:30:00+08:00")
        if v > utcnow() + CLOCK_SKEW:
            raise ValueError("cannot be in the future")
        if v < EARLIEST:
            raise ValueError("must be after 1990-01-01")
        return v


class VisitRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    tenant_id: uuid.UUID
    store_id: uuid.UUID
    customer_id: uuid.UUID
    vehicle_id: uuid.UUID
    visit_type: str
    external_id: str | None
    ro_number: str | None
    mileage_km: int | None
    advisor_id: uuid.UUID | None
    items: list[VisitItem]
    symptoms: str | None
    completed_at: datetime
    created_at: datetime
