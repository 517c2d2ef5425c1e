"""Request and response bodies of service appointments (预约登记表, DOMAIN.md §4.7, §12.5)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.auth.principal import Principal
from shared.errors import Problem
from shared.pii import mask_address, mask_phone
from shared.validation import IsoDateTime, Plate

Kind = Literal["passive", "proactive"]
Status = Literal["booked", "arrived", "in_workshop", "settled", "closed", "cancelled", "no_show"]
Target = Literal["arrived", "in_workshop", "settled", "closed", "cancelled", "no_show"]
#: Bounds of every date-time an appointment carries (far-off years overflow when converted between zones).
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
FIRST_YEAR, LAST_YEAR = 2000, 2099


def bounded(value: datetime) -> datetime:
    # Checked on the wall-clock year first: converting an extreme value to UTC would overflow.
    if not FIRST_YEAR <= value.year <= LAST_YEAR or not EARLIEST <= value < LATEST:
        raise ValueError("must be between 2000 and 2099")
    return value


Moment = Annotated[IsoDateTime, AfterValidator(bounded)]
Mileage = Annotated[int, Field(ge=0, le=2_000_000, description="Odometer reading in km (公里数).")]


class Pickup(BaseModel):
    """Pick-up at the customer's place (预约上门取车): where, when and who fetches the car."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    address: str = Field(min_length=1, max_length=300, description="Where the car is picked up.")
    at: Moment = Field(description="When the car is picked up, with a time zone.",
                       examples=["2026-03-16T09:00:00+08:00"])
    by: str | None = Field(default=None, min_length=1, max_length=100,
                           description="Who picks the car up (交车人 / driver).")


class AppointmentCreate(BaseModel):
    """预约登记: the customer is found by the plate (or the vehicle id), so customer and vehicle must exist."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    plate: Plate | None = Field(default=None, description="The car's licence plate (车牌号); spaces and dots are "
                                                           "ignored. Give this or `vehicle_id`.")
    vehicle_id: uuid.UUID | None = Field(default=None, description="The vehicle, when the plate is not at hand.")
    slot_start: Moment = Field(description="Arrival slot (预约进站时间): in the future, on the store's slot grid in "
                                           "store-local time and inside its business hours.",
                               examples=["2026-03-16T10:00:00+08:00"])
    content: str = Field(min_length=1, max_length=500, description="What is to be done (预约内容).",
                         examples=["10,000 km maintenance"])
    customer_description: str | None = Field(default=None, max_length=5000,
                                             description="The customer's own words about the fault (客户描述).")
    mileage_km: Mileage | None = Field(default=None, description="Odometer as the customer gave it (公里数).")
    estimate_amount: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=2,
                                            description="Price quoted, in CNY (维修费用估价).", examples=["400.00"])
    promised_ready_at: Moment | None = Field(default=None, description="Provisional ready time (预计交车时间); "
                                                                       "after the slot starts.")
    advisor_id: uuid.UUID | None = Field(default=None, description="The named service advisor (active, of the "
                                                                   "store); default: the customer's advisor.")
    kind: Kind = Field(default="passive", description="passive: the customer called in (被动预约); proactive: the "
                                                      "dealer invited them (主动预约).")
    is_rework: bool = Field(default=False, description="A repeat repair of the last job (返修).")
    pickup: Pickup | None = Field(default=None, description="Pick-up service, when booked.")
    notes: str | None = Field(default=None, max_length=5000, description="Other requests (备注).")


class AppointmentUpdate(BaseModel):
    """Fields to change; leave out what stays. Moving the slot is only possible while booked."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    slot_start: Moment | None = Field(default=None, description="A new arrival slot (checked like a booking).")
    advisor_id: uuid.UUID | None = Field(default=None, description="Another service advisor of the store.")
    content: str | None = Field(default=None, min_length=1, max_length=500, description="预约内容.")
    customer_description: str | None = Field(default=None, max_length=5000, description="客户描述.")
    mileage_km: Mileage | None = None
    estimate_amount: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=2,
                                            description="Price quoted, in CNY.")
    promised_ready_at: Moment | None = Field(default=None, description="Provisional ready time (预计交车时间).")
    kind: Kind | None = Field(default=None, description="passive or proactive.")
    is_rework: bool | None = Field(default=None, description="A repeat repair (返修).")
    pickup: Pickup | None = Field(default=None, description="Pick-up service; null removes it.")
    notes: str | None = Field(default=None, max_length=5000, description="备注.")


class TransitionRequest(BaseModel):
    """Move the appointment on: booked → arrived (转前台) → in_workshop (进厂) → settled (结算) → closed (执行);
    booked → cancelled or no_show."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    to: Target = Field(description="The next status.")
    satisfaction: int | None = Field(default=None, ge=1, le=5,
                                     description="Customer satisfaction 1–5; required (and only allowed) for closed.")
    reason: str | None = Field(default=None, min_length=1, max_length=300,
                               description="Why; required for cancelled, allowed for no_show.")
    mileage_km: Mileage | None = Field(default=None, description="Odometer read at the car; required for "
                                                                 "in_workshop, allowed for arrived.")
    advisor_id: uuid.UUID | None = Field(default=None, description="The service advisor taking the car (arrived, "
                                                                   "in_workshop); check-in needs one on record.")


class AppointmentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    tenant_id: uuid.UUID
    store_id: uuid.UUID
    customer_id: uuid.UUID
    vehicle_id: uuid.UUID
    plate: str | None
    advisor_id: uuid.UUID | None
    kind: Kind
    status: Status
    slot_start: datetime
    slot_end: datetime
    promised_ready_at: datetime | None
    content: str
    customer_description: str | None
    mileage_km: int | None
    estimate_amount: Decimal | None
    is_rework: bool
    pickup: Pickup | None
    satisfaction: int | None = Field(description="1–5, given when closed (执行).")
    cancel_reason: str | None
    notes: str | None
    created_by: uuid.UUID | None
    version: int
    created_at: datetime
    updated_at: datetime


class SlotRead(BaseModel):
    start: datetime = Field(description="Slot start (UTC).")
    end: datetime = Field(description="Slot end (UTC).")
    local_start: str = Field(description="Slot start as store-local wall time, e.g. `2026-03-16T10:00`.")
    booked: int = Field(description="Active appointments (booked, arrived, in workshop) in the slot.")
    free: int = Field(description="Cars the store can still take in the slot.")
    bookable: bool = Field(description="Free and still in the future.")


class SlotDay(BaseModel):
    store_id: uuid.UUID
    day: date = Field(description="The store-local day.")
    timezone: str
    slot_minutes: int
    capacity: int = Field(description="Cars per slot.")
    slots: list[SlotRead] = Field(description="Every slot inside the day's business hours, earliest first; empty "
                                              "when the store is closed that weekday.")


class SlotFullProblem(Problem):
    """409 when the slot is full: the next free slots to offer instead (同日稍后, then the following days)."""

    alternatives: list[SlotRead] | None = Field(default=None, description="Up to 5 free slots after the one asked for.")


def appointment_view(appointment: Any, principal: Principal) -> AppointmentRead:
    """An appointment as the caller may read it: the pick-up address and phone numbers in the free text masked
    for roles (and keys) without personal-data access, as the customer record masks them."""
    body = AppointmentRead.model_validate(appointment)
    if not principal.sees_pii:
        if body.pickup is not None:
            body.pickup = body.pickup.model_copy(update={"address": mask_address(body.pickup.address)})
        for name in ("customer_description", "notes", "content"):
            value = getattr(body, name)
            setattr(body, name, mask_phone(value) if value else value)
    return body
