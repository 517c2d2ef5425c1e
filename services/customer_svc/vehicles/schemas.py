from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.validation import Plate, Vin


class VehicleFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    plate: Plate | None = None
    frame_no: str | None = Field(default=None, max_length=40)
    engine_no: str | None = Field(default=None, max_length=40)
    brand: str | None = Field(default=None, max_length=60, examples=["Volkswagen"])
    model: str | None = Field(default=None, max_length=100, examples=["Passat 330TSI"])
    colour: str | None = Field(default=None, max_length=40)
    interior_colour: str | None = Field(default=None, max_length=40)
    purchase_date: date | None = None
    purchase_method: Literal["full", "installment"] | None = None
    selling_consultant_id: uuid.UUID | None = None
    mileage_km: int | None = Field(default=None, ge=0, le=2_000_000)
    insurer: str | None = Field(default=None, max_length=60)
    insurance_expiry: date | None = None
    next_inspection_date: date | None = None
    warranty_end: date | None = None

    @model_validator(mode="after")
    def _dates(self) -> VehicleFields:
        if self.purchase_date and self.purchase_date > date.today():
            raise ValueError("purchase_date cannot be in the future")
        return self


class VehicleCreate(VehicleFields):
    customer_id: uuid.UUID
    vin: Vin
    delivery_date: date | None = Field(default=None, description="Set when the car is handed over (交车).")

    @model_validator(mode="after")
    def _delivery(self) -> VehicleCreate:
        if self.delivery_date and self.purchase_date and self.delivery_date < self.purchase_date:
            raise ValueError("delivery_date is before purchase_date")
        return self


class VehicleUpdate(VehicleFields):
    pass


class DeliveryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delivery_date: date


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
