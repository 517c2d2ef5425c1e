from __future__ import annotations

import re
import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.validation import Phone, TimeZone

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
DEFAULT_HOURS = {d: ["08:30", "18:00"] for d in DAYS}


def _check_hours(value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
    if value is None:
        return value
    for day, span in value.items():
        if day not in DAYS:
            raise ValueError(f"unknown day {day!r}; use {', '.join(DAYS)}")
        if len(span) != 2 or not all(isinstance(t, str) and _HHMM.match(t) for t in span) or span[0] >= span[1]:
            raise ValueError(f"{day}: give [\"HH:MM\", \"HH:MM\"] with opening before closing")
    return value


class StoreCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_\-]+$", examples=["SZ-01"])
    name: str = Field(min_length=1, max_length=200, examples=["深圳福田4S店"])
    timezone: TimeZone = "Asia/Shanghai"
    business_hours: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_HOURS),
                                                 description="Opening hours per weekday in store-local time; a missing day is closed.")
    address: str | None = Field(default=None, max_length=500)
    phone: Phone | None = None

    _hours = field_validator("business_hours")(_check_hours)


class StoreUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: TimeZone | None = None
    business_hours: dict[str, list[str]] | None = None
    address: str | None = Field(default=None, max_length=500)
    phone: Phone | None = None
    active: bool | None = None

    _hours = field_validator("business_hours")(_check_hours)


class StoreRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    tenant_id: uuid.UUID
    code: str
    name: str
    timezone: str
    business_hours: dict[str, list[str]]
    address: str | None
    phone: str | None
    active: bool
    version: int
    created_at: datetime
