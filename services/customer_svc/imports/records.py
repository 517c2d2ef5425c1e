"""The records an OEM or DMS sends, one schema per kind, shared by bulk files and REST upserts.

Field names are the API's (and a file's English headers); :mod:`customer_svc.imports.columns` maps Chinese headers
onto them. Absent or empty values never erase what is stored: an upsert changes only what a record says.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator, model_validator

from customer_svc.customers.schemas import check_id_number
from customer_svc.imports.values import (GENDERS, KINDS, RELATIONSHIPS, VISIT_TYPES, blank_to_none, flexible_date,
                                         flexible_datetime, mapped)
from customer_svc.visits.schemas import VisitType
from shared.validation import latest_today, normalize_phone, normalize_plate, normalize_vin

Kind = Literal["customers", "deliveries", "visits"]


def _opt(fn: Callable[[str], str]) -> Callable[[Any], str | None]:
    """Run ``fn`` on present values only (empty cells are None); numbers (a phone in a JSON number) as text."""

    def check(value: Any) -> str | None:
        if blank_to_none(value) is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise ValueError("give text")
        return fn(value.strip())

    return check


def opt_str(max_length: int, pattern: str | None = None) -> Any:
    """An optional text of at most ``max_length`` characters; an empty cell is absent."""
    return Annotated[Annotated[str, StringConstraints(max_length=max_length, pattern=pattern)] | None,
                     BeforeValidator(blank_to_none)]


_EXCEL_FLOAT = re.compile(r"^\d+\.0+$")
_EXCEL_EXPONENT = re.compile(r"^\d(?:\.\d+)?[eE]\+?\d+$")


def _spreadsheet_phone(value: str) -> str:
    """A phone number as a spreadsheet may have written it: ``13800138000.0`` is the number; ``1.38E+10`` has lost
    its digits, which the uploader needs told."""
    if _EXCEL_FLOAT.match(value):
        value = value[:value.index(".")]
    elif _EXCEL_EXPONENT.match(value):
        raise ValueError("the spreadsheet wrote this number in scientific notation, losing digits: format the "
                         "column as text and export it again")
    return normalize_phone(value)


def _whole_number(value: Any) -> Any:
    """A JSON number that is whole (``13800138000.0``) as its integer."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Day = Annotated[date | None, BeforeValidator(flexible_date)]
Phone = Annotated[str | None, BeforeValidator(_opt(_spreadsheet_phone)), BeforeValidator(_whole_number)]
Vin = Annotated[str, BeforeValidator(normalize_vin)]
OptVin = Annotated[str | None, BeforeValidator(_opt(normalize_vin))]
Plate = Annotated[str | None, BeforeValidator(_opt(normalize_plate))]
Km = Annotated[Annotated[int, Field(ge=0, le=2_000_000)] | None, BeforeValidator(blank_to_none)]
ExternalId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\s]+$")]
Text36 = opt_str(36)
Text40 = opt_str(40)
Text60 = opt_str(60)
Text64 = opt_str(64)
Text100 = opt_str(100)
Text500 = opt_str(500)
Text5000 = opt_str(5000)
CustomerNo = opt_str(40, r"^[A-Za-z0-9_\-]+$")
EmployeeNo = Text40


class Located(BaseModel):
    """Where a record belongs: a store of the caller's (by code or id), and optionally the dealer group's code,
    which must be the caller's own (a file meant for another group is refused row by row)."""

    #: Numbers where text is expected (a DMS's numeric ids in JSON Lines) are read as their text.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, coerce_numbers_to_str=True)
    dealer_group: Text60 = Field(default=None, description="Dealer group code; must be yours.")
    store_code: Text40 = Field(default=None, description="The store's code (or give `store_id`).")
    store_id: Text36 = None


class VehicleFields(BaseModel):
    plate: Plate = None
    brand: Text60 = None
    model: Text100 = None
    colour: Text40 = None
    purchase_date: Day = None
    delivery_date: Day = Field(default=None, description="The handover (交车); history if long past.")
    mileage_km: Km = None
    insurance_expiry: Day = None
    next_inspection_date: Day = None
    warranty_end: Day = None

    @model_validator(mode="after")
    def _dates(self) -> VehicleFields:
        today = latest_today()
        for name in ("purchase_date", "delivery_date"):
            value = getattr(self, name)
            if value is not None and not (date(1990, 1, 1) <= value <= today):
                raise ValueError(f"{name}: must be between 1990-01-01 and today")
        if self.purchase_date and self.delivery_date and self.delivery_date < self.purchase_date:
            raise ValueError("delivery_date: is before the purchase date")
        return self


class CustomerRecord(Located, VehicleFields):
    """A customer, with the vehicle they bought (optional) and its delivery (optional): the OEM's sales feed."""

    external_id: ExternalId = Field(description="The customer's id in the source system; the upsert key.")
    name: str = Field(min_length=1, max_length=200)
    phone: Phone = Field(description="Mobile number, any common format.")
    phone2: Phone = None
    kind: Annotated[Literal["person", "company"] | None, BeforeValidator(mapped(KINDS))] = None
    gender: Annotated[Literal["male", "female", "other"] | None, BeforeValidator(mapped(GENDERS))] = None
    birthday: Day = None
    id_number: Annotated[str | None, BeforeValidator(_opt(check_id_number))] = None
    address: Text500 = None
    wechat_openid: Text64 = None
    customer_no: CustomerNo = None
    relationship: Annotated[Literal["prospect", "owner"] | None, BeforeValidator(mapped(RELATIONSHIPS))] = None
    sales_consultant_no: EmployeeNo = Field(default=None, description="Employee number of the selling consultant.")
    since: Day = Field(default=None, description="When the customer was first recorded in the source system.")
    vin: OptVin = Field(default=None, description="The vehicle's VIN; the vehicle columns need it.")

    @field_validator("phone")
    @classmethod
    def _required(cls, v: str | None) -> str:
        if v is None:
            raise ValueError("a phone number is required")
        return v

    @field_validator("birthday", "since")
    @classmethod
    def _past(cls, v: date | None) -> date | None:
        if v is not None and not (date(1900, 1, 1) <= v <= latest_today()):
            raise ValueError("must be between 1900-01-01 and today")
        return v

    @model_validator(mode="after")
    def _vehicle_needs_vin(self) -> CustomerRecord:
        if self.vin is None:
            given = [n for n in VehicleFields.model_fields if getattr(self, n) is not None]
            if given:
                raise ValueError(f"vin: is required with vehicle columns ({', '.join(given)})")
        return self


class DeliveryFields(Located):
    """A handover (交车): its date, and who sold the car."""

    delivery_date: Annotated[date, BeforeValidator(flexible_date)]
    sales_consultant_no: EmployeeNo = None

    @field_validator("delivery_date")
    @classmethod
    def _past(cls, v: date) -> date:
        if not (date(1990, 1, 1) <= v <= latest_today()):
            raise ValueError("must be between 1990-01-01 and today")
        return v


class DeliveryRecord(DeliveryFields):
    """A handover of a vehicle already on file, by VIN."""

    vin: Vin


class VisitRecord(Located):
    """A settled repair order from the DMS, by its id there; the vehicle by VIN."""

    external_id: ExternalId = Field(description="The DMS repair-order id; the upsert key.")
    vin: Vin
    visit_type: Annotated[VisitType, BeforeValidator(mapped(VISIT_TYPES))]
    completed_at: Annotated[datetime, BeforeValidator(flexible_datetime)] = Field(
        description="Settlement time; without a zone it is the store's local time.")
    ro_number: Text40 = None
    mileage_km: Km = None
    advisor_no: EmployeeNo = Field(default=None, description="Employee number of the service advisor.")
    symptoms: Text5000 = None


RECORDS: dict[str, type[Located]] = {"customers": CustomerRecord, "deliveries": DeliveryRecord,
                                      "visits": VisitRecord}


class RowResult(BaseModel):
    """What happened to one record (a file row or a REST upsert)."""

    row: int = Field(description="The record's line in the file (header = 1); 1 for a REST upsert.")
    status: Literal["accepted", "updated", "unchanged", "rejected"]
    key: str | None = Field(default=None, description="The record's external id or VIN.")
    customer_id: uuid.UUID | None = None
    vehicle_id: uuid.UUID | None = None
    visit_id: uuid.UUID | None = None
    field: str | None = Field(default=None, description="The field a rejection is about.")
    reason: str | None = None
