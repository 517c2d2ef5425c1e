from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.validation import IsoDate, Phone, halfwidth, latest_today

Channel = Literal["sms", "wechat", "phone", "email"]
Purpose = Literal["service", "marketing"]
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def check_id_number(value: str | None) -> str | None:
    """Mainland resident ID: 18 characters, ISO 7064 MOD 11-2 check character."""
    if value is None:
        return None
    v = halfwidth(value).strip().upper()  # full-width digits and Ｘ as an input method types them
    if len(v) != 18 or not v.isascii() or not v[:17].isdigit() or not (v[17].isdigit() or v[17] == "X"):
        raise ValueError("an ID number has 17 digits and a check digit or X")
    check = "10X98765432"[sum(int(c) * w for c, w in zip(v[:17], _ID_WEIGHTS)) % 11]
    if v[17] != check:
        raise ValueError("ID number check character does not match")
    return v


class PhoneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: Phone = Field(description="Any common format; stored as E.164 (default region CN).")
    label: str | None = Field(default=None, max_length=20, examples=["mobile"])
    primary: bool = False


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: Channel
    purpose: Purpose
    granted: bool
    source: str = Field(min_length=1, max_length=100, examples=["showroom contact card"])


class CustomerFields(BaseModel):
    """Fields shared by create and update (all optional here; create makes some required)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    contact_person: str | None = Field(default=None, max_length=100)
    id_number: str | None = Field(default=None, max_length=18, description="Resident ID (person) for dedup.")
    gender: Literal["male", "female", "other"] | None = None
    birthday: IsoDate | None = Field(default=None, description="In the calendar named by `birthday_calendar`.")
    birthday_calendar: Literal["solar", "lunar"] | None = None
    wedding_anniversary: IsoDate | None = None
    wechat_openid: str | None = Field(default=None, max_length=64)
    wechat_unionid: str | None = Field(default=None, max_length=64)
    address: str | None = Field(default=None, max_length=500)
    postcode: str | None = Field(default=None, pattern=r"^\d{6}$")
    occupation: str | None = Field(default=None, max_length=100)
    employer: str | None = Field(default=None, max_length=200)
    family: dict[str, Any] | None = Field(default=None, description="Household facts, e.g. {\"size\": 3, \"children\": 1}.")
    hobbies: list[str] | None = Field(default=None, max_length=30)
    preferred_channel: Literal["sms", "wechat", "phone", "qq", "email"] | None = None
    preferred_contact_time: str | None = Field(default=None, max_length=100, examples=["weekday evenings"])
    do_not_call: bool | None = None
    source_code: Literal["S", "T", "B", "R", "K"] | None = Field(
        default=None, description="S walk-in, T call-in, B customer base, R referral, K outbound development.")
    source_detail: str | None = Field(default=None, max_length=100)
    intent_level: Literal["O", "H", "A", "B", "C"] | None = None
    value_class: Literal["key", "general", "maintenance", "ineffective"] | None = None
    vip: bool | None = None
    tags: list[str] | None = Field(default=None, max_length=50)
    notes: str | None = Field(default=None, max_length=5000)
    assigned_sales_id: uuid.UUID | None = None
    assigned_advisor_id: uuid.UUID | None = None

    _id = field_validator("id_number")(check_id_number)

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        out = []
        for t in v:
            t = t.strip()
            if not t or len(t) > 50:
                raise ValueError("tags are 1-50 characters")
            out.append(t)
        return sorted(set(out))

    @field_validator("birthday", "wedding_anniversary")
    @classmethod
    def _past(cls, v: date | None) -> date | None:
        if v is not None and not (date(1900, 1, 1) <= v <= latest_today()):
            raise ValueError("must be between 1900-01-01 and today")
        return v


def _check_phones(phones: list[PhoneIn] | None) -> list[PhoneIn] | None:
    if phones is None:
        return None
    if len({p.number for p in phones}) != len(phones):
        raise ValueError("the same number is listed twice")
    if sum(p.primary for p in phones) > 1:
        raise ValueError("only one phone can be primary")
    return phones


class CustomerCreate(CustomerFields):
    store_id: uuid.UUID = Field(description="The store that owns this relationship.")
    kind: Literal["person", "company"] = "person"
    name: str = Field(min_length=1, max_length=200, examples=["张三"])
    customer_no: str | None = Field(default=None, min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_\-]+$",
                                    description="Keep a DMS number; generated when absent.")
    phones: list[PhoneIn] = Field(min_length=1, max_length=5)
    relationship_type: Literal["prospect", "owner"] = "prospect"
    consents: list[ConsentIn] = Field(default_factory=list, max_length=8)

    _phones = field_validator("phones")(_check_phones)

    @model_validator(mode="after")
    def _lunar(self) -> CustomerCreate:
        if self.birthday_calendar is None:
            self.birthday_calendar = "solar"
        return self


class CustomerUpdate(CustomerFields):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    phones: list[PhoneIn] | None = Field(default=None, min_length=1, max_length=5)
    relationship_type: Literal["prospect", "owner"] | None = Field(
        default=None, description="Losing a prospect goes through `POST /customers/{id}/lost`.")

    _phones = field_validator("phones")(_check_phones)


class LostRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=2, max_length=1000, examples=["Bought a competitor model after price comparison"])
    kind: Literal["defeated", "out_of_control"] = Field(default="defeated",
                                                        description="战败 (bought elsewhere) or 失控 (lost contact).")


class PhoneOut(BaseModel):
    number: str
    label: str | None
    primary: bool


class ConsentOut(BaseModel):
    channel: str
    purpose: str
    granted: bool
    source: str
    recorded_at: datetime


class CustomerRead(BaseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    store_id: uuid.UUID
    customer_no: str
    kind: str
    name: str
    contact_person: str | None
    phones: list[PhoneOut]
    id_number: str | None
    gender: str | None
    birthday: date | None
    birthday_calendar: str
    wedding_anniversary: date | None
    wechat_openid: str | None
    wechat_unionid: str | None
    address: str | None
    postcode: str | None
    occupation: str | None
    employer: str | None
    family: dict[str, Any]
    hobbies: list[str]
    preferred_channel: str | None
    preferred_contact_time: str | None
    do_not_call: bool
    source_code: str | None
    source_detail: str | None
    relationship_type: str
    intent_level: str | None
    value_class: str | None
    vip: bool
    tags: list[str]
    notes: str | None
    assigned_sales_id: uuid.UUID | None
    assigned_advisor_id: uuid.UUID | None
    lost_reason: str | None
    lost_kind: str | None
    lost_at: datetime | None
    merged_into_id: uuid.UUID | None
    consents: list[ConsentOut]
    pii_masked: bool = Field(description="True when your role sees phones, ID number and address masked.")
    version: int
    created_at: datetime
    updated_at: datetime


class TimelineItem(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID = Field(description="The event id.")
    event_type: str = Field(examples=["customer.vehicle.delivered.v1"])
    source: str = Field(description="The service that published it.")
    occurred_at: datetime
    store_id: uuid.UUID | None
    data: dict[str, Any]


class DuplicateRead(BaseModel):
    """A record of the same person in another store. Outside your stores only id, store, keys and date show."""

    id: uuid.UUID
    store_id: uuid.UUID
    matched: list[Literal["phone", "id_number"]] = Field(description="Which identity keys are the same.")
    created_at: datetime
    in_your_stores: bool
    customer_no: str | None = Field(default=None, description="Only for records in your stores.")
    name: str | None = Field(default=None,
                             description="Only for records in your stores; masked without PII permission.")
    phone: str | None = Field(default=None, description="Primary phone, as for `name`.")


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    duplicate_id: uuid.UUID = Field(description="The record folded into this one; it then disappears from searches.")
