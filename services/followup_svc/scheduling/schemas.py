"""Planned touches (follow-up occurrences) as the API shows them, the hand corrections, and the test clock."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.validation import IsoDateTime, Trimmed

State = Literal["scheduled", "fired", "skipped", "cancelled", "failed"]
#: The test clock may run at most this far ahead of real time.
MAX_OFFSET_SECONDS = 5 * 366 * 24 * 3600.0
Reason = Annotated[str, Trimmed, Field(min_length=1, max_length=250, description="Why (kept on the occurrence).")]


class FollowUpRead(BaseModel):
    """One planned touch and what became of it."""

    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    store_id: uuid.UUID
    rule_id: uuid.UUID = Field(description="The rule version that planned it (and that fires it).")
    rule_key: str
    rule_version: int
    rule_name: str | None = Field(description="The name in that rule version.")
    rule_scope: str = Field(description="`*`: the group's rule; else the store whose override planned it.")
    occurrence_key: str = Field(description="Rule × subject × series × step: unique, the idempotency key of what "
                                            "it sends.")
    subject_type: str = Field(description="customer, vehicle, visit or appointment.")
    subject_id: uuid.UUID
    customer_id: uuid.UUID | None
    vehicle_id: uuid.UUID | None
    anchor_at: datetime = Field(description="The instant its offsets count from.")
    step: int = Field(description="Which offset (0-based) or recurrence cycle of the rule.")
    due_at: datetime
    state: State = Field(description="scheduled (waiting), fired (its task or message was created), skipped (not "
                                     "done on purpose), cancelled (no longer wanted), failed (gave up).")
    reason: str | None = Field(description="Why it was skipped, cancelled, failed, deferred or rescheduled.")
    attempts: int = Field(description="Failed firing attempts so far.")
    last_error: str | None
    fired_at: datetime | None
    task_id: uuid.UUID | None = Field(description="The task it created, for task rules.")
    purpose: Literal["service", "marketing"]
    created_at: datetime
    updated_at: datetime


class FollowUpCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason


class FollowUpReschedule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    due_at: IsoDateTime = Field(description="New due time, with its time zone; in the future (service clock).")
    reason: Reason


class TestClockRead(BaseModel):
    __test__ = False
    enabled: bool = Field(description="False in production; the endpoints then answer 404.")
    now: datetime = Field(description="The service's current time (real time plus the offset).")
    offset_seconds: float = Field(description="How far the clock runs ahead of real time.")


class TestClockSet(BaseModel):
    """Exactly one of `offset_seconds` (set) and `advance_seconds` (move by)."""

    __test__ = False
    model_config = ConfigDict(extra="forbid")
    offset_seconds: float | None = Field(default=None, ge=0, le=MAX_OFFSET_SECONDS, allow_inf_nan=False,
                                         description="Run this many seconds ahead of real time (0: real time).")
    advance_seconds: float | None = Field(default=None, ge=-MAX_OFFSET_SECONDS, le=MAX_OFFSET_SECONDS,
                                          allow_inf_nan=False,
                                          description="Move the clock by this many seconds (negative: back, never "
                                                      "before real time).")

    @model_validator(mode="after")
    def _one(self) -> TestClockSet:
        if (self.offset_seconds is None) == (self.advance_seconds is None):
            raise ValueError("give exactly one of offset_seconds and advance_seconds")
        return self
