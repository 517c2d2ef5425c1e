from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from shared.validation import IsoDate, Plate, Vin, latest_today


class VehicleFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    plate: Plate | None = None
    frame_no: str | None = Field(default=None, max_length=40)
    engine_no: str | None = Field(default=None, max_length=40)
    brand: str | None = Field(default=None, max_length=60, examples=["Volkswagen"])
    model: str | None = Field(default=None, max_length=100, examples=["Passat 330TSI"])
    colour: str | None = Field(default=None, max_length=40)
    interior_colour: str | None = Field(default=None, max_length=40)
    purchase_date: IsoDate | None = None
    purchase_method: Literal["full", "installment"] | None = None
    selling_consultant_id: uuid.UUID | None = None
    mileage_km: int | None = Field(default=None, ge=0, le=2_000_000)
    insurer: str | None = Field(default=None, max_length=60)
    insurance_expiry: IsoDate | None = None
    next_inspection_date: IsoDate | None = None
    warranty_end: IsoDate | None = None

    @field_validator("purchase_date")
    @classmethod
    def _purchase_not_future(cls, v: date | None) -> date | None:
        if v is not None and v > latest_today():
            raise ValueError("cannot be in the future")
        return v


class VehicleCreate(VehicleFields):
    customer_id: uuid.UUID
    vin: Vin
    delivery_date: IsoDate | None = Field(default=None, description="Set when the car is handed over (交车).")

    @field_validator("delivery_date")
    @classmethod
    def _delivery_after_purchase(cls, v: date | None, info: ValidationInfo) -> date | None:
        purchased = info.data.get("purchase_date")
        if v is not None and purchased is not None and v < purchased:
            raise ValueError("is before purchase_date")
        return v


class VehicleUpdate(VehicleFields):
    pass


class DeliveryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delivery_date: IsoDate


class TransferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: uuid.UUID = Field(description="The new owner (a customer of the same store).")
    reason: str | None = Field(default=None, max_length=200, examples=["sold to family member"])


class VehicleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    tenant_id: uuid.UUID
    store_id: uuid.UUID
    customer_id: uuid.UUID
    vin: str
    plate: str | None
    frame_no: str | None
    engine_no: str | None
    brand: str | None
    model: str | None
    colour: str | None
    interior_colour: str | None
    purchase_date: date | None
    delivery_date: date | None
    purchase_method: str | None
    selling_consultant_id: uuid.UUID | None
    mileage_km: int | None
    insurer: str | None
    insurance_expiry: date | None
    next_inspection_date: date | None
    warranty_end: date | None
    version: int
    created_at: datetime


class OwnershipRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    customer_id: uuid.UUID
    started_at: datetime
    ended_at: datetime | None
    reason: str | None
