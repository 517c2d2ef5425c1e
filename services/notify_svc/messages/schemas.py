"""API shapes of messages, their trail, bulk jobs and the contact policy."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from shared.validation import IsoDateTime


Channel = Literal["wechat", "sms", "console"]
Purpose = Literal["service", "marketing"]
Status = Literal["queued", "held", "sending", "sent", "delivered", "failed", "suppressed"]


class TrailEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    at: datetime = Field(description="When it happened (UTC).")
    status: str = Field(description="The status it led to.")
    reason: str | None = Field(description="The rule or provider outcome behind it.")
    explanation: str | None = Field(default=None, description="The reason in plain words.")
    channel: str | None = Field(description="Channel concerned.")
    provider: str | None = Field(description="Provider concerned.")
    code: str | None = Field(description="The provider's own code (e.g. isv.BUSINESS_LIMIT_CONTROL).")
    detail: str | None = Field(description="More about it (held until when, which channels were skipped...).")


class MessageRead(BaseModel):
    id: uuid.UUID = Field(description="Message id (also the OutId / SessionContext given to SMS providers).")
    store_id: uuid.UUID = Field(description="Store the message is sent for.")
    customer_id: uuid.UUID | None = Field(description="Recipient customer (None for staff notices).")
    staff_id: uuid.UUID | None = Field(description="Recipient staff member (escalation notices).")
    vehicle_id: uuid.UUID | None = Field(description="Vehicle the message is about, if any.")
    source: str = Field(description="Who asked: followup, survey, bulk, escalation.")
    idempotency_key: str = Field(description="The requester's key (a follow-up occurrence key...).")
    rule_key: str | None = Field(description="Playbook rule that asked for it.")
    template: str = Field(description="Template key.")
    purpose: Purpose = Field(description="service or marketing (consent and quiet hours differ).")
    channels: list[str] = Field(description="Channels in preference order.")
    channel: str | None = Field(description="Channel used (or tried last).")
    provider: str | None = Field(description="Provider used.")
    recipient: str | None = Field(description="Masked address it went to (138****5678).")
    status: Status = Field(description="queued, held, sending, sent, delivered, failed or suppressed.")
    reason: str | None = Field(description="Rule behind the current status (consent, quiet_hours, ...).")
    explanation: str | None = Field(description="The reason in plain words.")
    detail: str | None = Field(description="More about the reason.")
    body: str | None = Field(description="Text as rendered for the channel (only for roles that see personal data).")
    requested_at: datetime = Field(description="When the request arrived.")
    not_before: datetime = Field(description="Earliest send time the requester asked for.")
    expires_at: datetime | None = Field(description="Not sent after this.")
    next_attempt_at: datetime | None = Field(description="When it is looked at again (held / awaiting receipt).")
    attempts: int = Field(description="Provider attempts so far.")
    provider_message_id: str | None = Field(description="The provider's id (BizId, SerialNo, msgid).")
    sent_at: datetime | None = Field(description="When a provider accepted it.")
    delivered_at: datetime | None = Field(description="When the receipt confirmed delivery.")
    replayable: bool = Field(description="Whether staff may send it again (POST .../replay).")


class MessageDetail(MessageRead):
    trail: list[TrailEntry] = Field(description="Every decision, attempt and receipt, in the order they happened.")


class WhyReport(BaseModel):
    customer_id: uuid.UUID | None = Field(description="The customer asked about.")
    idempotency_key: str | None = Field(description="The follow-up occurrence asked about.")
    counts: dict[str, int] = Field(description="Touches by status.")
    touches: list[MessageDetail] = Field(description="Every message requested for them, newest first, each with "
                                                     "what happened and why.")


class BulkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    store_id: uuid.UUID = Field(description="Store sending (one of yours).")
    template: str = Field(min_length=1, max_length=60, pattern=r"^[a-z][a-z0-9_]*$", description="Template key.",
                          examples=["birthday_greeting"])
    purpose: Purpose = Field(default="service", description="service or marketing.")
    channels: list[Channel] = Field(default=["wechat", "sms"], min_length=1, max_length=3,
                                    description="Channels in preference order.")
    customer_ids: list[uuid.UUID] | None = Field(default=None, max_length=20000,
                                                 description="Explicit recipients (customers of the store).")
    birthday_from: date | None = Field(default=None, description="With birthday_to: customers of the store whose "
                                       "birthday (month and day) falls in this range, e.g. the coming week.")
    birthday_to: date | None = Field(default=None, description="End of the birthday range (inclusive).")
    variables: dict[str, Any] = Field(default={}, description="Values every message shares (names and store are "
                                                              "filled in per recipient).")
    not_before: IsoDateTime | None = Field(default=None, description="Send from this time on (default: now); "
                                           "with its UTC offset.")
    expires_at: IsoDateTime | None = Field(default=None, description="Give up after this time (with its UTC offset).")

    @field_validator("channels")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("channels must not repeat")
        return value


class BulkRead(BaseModel):
    id: uuid.UUID = Field(description="Job id.")
    store_id: uuid.UUID = Field(description="Store sending.")
    template: str = Field(description="Template key.")
    purpose: Purpose = Field(description="service or marketing.")
    channels: list[str] = Field(description="Channels in preference order.")
    total: int = Field(description="Recipients in the job.")
    progress: dict[str, int] = Field(description="Recipients by message status.")
    done: bool = Field(description="True when every message reached a final status.")
    created_at: datetime = Field(description="When the job was created.")


class PolicyFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quiet_start: str = Field(default="21:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
                             description="Start of quiet hours, store-local HH:MM.")
    quiet_end: str = Field(default="08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
                           description="End of quiet hours, store-local HH:MM.")
    marketing_start: str = Field(default="09:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
                                 description="Marketing allowed from (store-local HH:MM).")
    marketing_end: str = Field(default="20:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
                               description="Marketing allowed until (store-local HH:MM; Aliyun forbids 20:00–08:00).")
    marketing_quiet: Literal["defer", "drop"] = Field(default="defer",
                                                      description="Marketing outside its window: defer or drop.")
    marketing_on_holidays: StrictBool = Field(default=False, description="Allow marketing on statutory holidays.")
    daily_cap: StrictInt = Field(default=3, ge=1, le=20, description="Messages per person per local day.")
    template_daily_cap: StrictInt = Field(default=10, ge=1, le=50,
                                    description="Same template per person per 24 h (Aliyun's limit, 50, is the top).")
    weekly_marketing_budget: StrictInt = Field(default=2, ge=0, le=21,
                                         description="Marketing messages per person per 7 days, whole dealer group.")
    weekly_service_budget: StrictInt = Field(default=10, ge=1, le=50,
                                       description="Service messages per person per 7 days, whole dealer group.")
    opt_out_text: str = Field(default="拒收请回复R", min_length=2, max_length=40,
                              description="Opt-out text marketing SMS carry.")


def _minutes(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


#: Quiet hours cover at least this night (store-local minutes), and marketing stays inside Aliyun's day (promotional
#: SMS are forbidden 20:00-08:00): a policy cannot switch them off.
NIGHT = (_minutes("22:00"), _minutes("07:00"))
MARKETING_DAY = (_minutes("08:00"), _minutes("20:00"))


class PolicyBody(PolicyFields):
    """A policy as written: its windows are checked, defaults included (stored ones are read as they are)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    @field_validator("quiet_end")
    @classmethod
    def _covers_the_night(cls, end: str, info: Any) -> str:
        start = info.data.get("quiet_start")
        if start is not None:
            quiet = (_minutes(end) - _minutes(start)) % 1440  # quiet hours may run past midnight
            night = (NIGHT[1] - NIGHT[0]) % 1440
            if (NIGHT[0] - _minutes(start)) % 1440 + night > quiet:  # the night does not fit in it
                raise ValueError("quiet hours (quiet_start to quiet_end) must cover at least 22:00-07:00")
        return end

    @field_validator("marketing_start", "marketing_end")
    @classmethod
    def _in_the_marketing_day(cls, value: str, info: Any) -> str:
        if not MARKETING_DAY[0] <= _minutes(value) <= MARKETING_DAY[1]:
            raise ValueError("marketing may only be sent between 08:00 and 20:00 (Aliyun forbids promotional SMS "
                             "20:00-08:00)")
        start = info.data.get("marketing_start")
        if info.field_name == "marketing_end" and start is not None and _minutes(value) <= _minutes(start):
            raise ValueError("must be after marketing_start")
        return value


class PolicyRead(PolicyFields):
    scope: Literal["default", "group", "store"] = Field(description="Where these values come from.")
    store_id: uuid.UUID | None = Field(description="The store asked about, if any.")
