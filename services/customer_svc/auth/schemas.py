from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: str = Field(min_length=1, max_length=60, description="Dealer group code.", examples=["demo"])
    employee_no: str = Field(min_length=1, max_length=40, examples=["admin"])
    password: str = Field(min_length=1, max_length=128)


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: str = Field(min_length=20, max_length=200)


class TokenPair(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str | None = Field(default=None, description="Rotates on every use; revoked on deactivation.")


class ClientCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: str = Field(min_length=20, max_length=200, description="The integration key, `ak_<prefix>.<secret>`.")


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, examples=["OEM sales feed"])
    scopes: list[str] = Field(min_length=1, max_length=20, examples=[["customers:write", "customers:read"]])
    store_ids: list[uuid.UUID] = Field(min_length=1, max_length=200)


class ApiKeyUpdate(BaseModel):
    """Fields left out stay as they are. Takes effect at the key's next token exchange."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200, examples=["OEM sales feed"])
    scopes: list[str] | None = Field(default=None, min_length=1, max_length=20, examples=[["customers:read"]],
                                     description="Replaces the key's scopes.")
    store_ids: list[uuid.UUID] | None = Field(default=None, min_length=1, max_length=200,
                                              description="Replaces the key's stores.")


class ApiKeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_hours: int = Field(default=24, ge=0, le=168, examples=[24],
                               description="How long the secret being replaced keeps working (0: stops now).")


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    prefix: str = Field(description="Public part of the key (`ak_...`); stays the same across rotations.")
    scopes: list[str]
    store_ids: list[uuid.UUID]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="Last token exchange with any of the key's secrets "
                                                      "(recorded at most once a minute per secret).")
    rotated_at: datetime | None = Field(description="When the current secret was issued by a rotation.")
    previous_valid_until: datetime | None = Field(
        description="Until when the secret replaced by the last rotation is (or was) accepted; null when none is.")
    current_last_used_at: datetime | None = Field(description="Last exchange with the current secret.")
    previous_last_used_at: datetime | None = Field(
        description="Last exchange with the previous secret: still recent means the partner has not switched yet.")
    version: int = Field(description="Send `W/\"<version>\"` as If-Match to change the key.")


class ApiKeyCreated(ApiKeyRead):
    api_key: str = Field(description="Shown once; only its hash is stored.")


class Me(BaseModel):
    subject: uuid.UUID
    tenant_id: uuid.UUID
    store_ids: list[uuid.UUID]
    roles: list[str]
    scopes: list[str]
    kind: str
