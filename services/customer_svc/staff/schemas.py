from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.auth.roles import Role
from shared.validation import Phone


class StaffCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    employee_no: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_\-]+$", examples=["S1001"])
    name: str = Field(min_length=1, max_length=100, examples=["王晓明"])
    gender: str | None = Field(default=None, pattern="^(male|female|other)$")
    department: str | None = Field(default=None, max_length=60, examples=["sales"])
    education: str | None = Field(default=None, max_length=60)
    phone: Phone | None = None
    roles: list[Role] = Field(min_length=1, max_length=10)
    store_ids: list[uuid.UUID] = Field(min_length=1, max_length=200)
    password: str = Field(min_length=10, max_length=128, description="Initial password (at least 10 characters).")


class StaffUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=100)
    gender: str | None = Field(default=None, pattern="^(male|female|other)$")
    department: str | None = Field(default=None, max_length=60)
    education: str | None = Field(default=None, max_length=60)
    phone: Phone | None = None
    roles: list[Role] | None = Field(default=None, min_length=1, max_length=10)
    store_ids: list[uuid.UUID] | None = Field(default=None, min_length=1, max_length=200)
    active: bool | None = Field(default=None, description="false deactivates the account and revokes its sessions.")
    password: str | None = Field(default=None, min_length=10, max_length=128)


class StaffRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    tenant_id: uuid.UUID
    employee_no: str
    name: str
    gender: str | None
    department: str | None
    education: str | None
    roles: list[str]
    store_ids: list[uuid.UUID]
    active: bool
    version: int
    created_at: datetime
