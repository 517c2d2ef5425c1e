"""API shapes of invitations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from survey_svc.surveys.schemas import KEY

Channel = Literal["wechat", "sms", "email", "console"]
InvitationStatus = Literal["open", "answered", "expired", "cancelled"]


class InvitationCreate(BaseModel):
    """Invite a customer by hand (e.g. after a visit the playbooks do not cover, or for an OEM campaign)."""

    model_config = ConfigDict(extra="forbid")
    survey: str = Field(pattern=KEY.pattern, examples=["service_satisfaction"])
    store_id: uuid.UUID
    customer_id: uuid.UUID
    about_type: Literal["visit", "delivery", "complaint"] = Field(
        description="What the survey asks about: a repair order (visit id), a delivery (vehicle id), a complaint.")
    about_id: uuid.UUID
    vehicle_id: uuid.UUID | None = None
    staff_id: uuid.UUID | None = Field(default=None, description="Who is rated (default: the visit's advisor or "
                                                                 "the delivery's consultant).")
    channels: list[Channel] = Field(default_factory=lambda: ["wechat", "sms"], min_length=1, max_length=4)


class InvitationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    store_id: uuid.UUID
    survey_key: str
    survey_version: int
    customer_id: uuid.UUID
    vehicle_id: uuid.UUID | None
    about_type: str
    about_id: uuid.UUID
    staff_id: uuid.UUID | None
    source: str = Field(description="playbook, staff or phone.")
    channels: list[str]
    status: InvitationStatus
    flags: list[str]
    created_at: datetime
    expires_at: datetime
    reminded_at: datetime | None
    opened_at: datetime | None
    answered_at: datetime | None
