"""API shapes of responses."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from survey_svc.surveys.schemas import KEY

Answers = dict[str, Any]
ANSWERS_DOC = ("Answers by question id: a rating or single choice gives the option's `value`, NPS a whole number "
               "0–10, multiple choice a list of values, free text a string.")


class PublicAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answers: Answers = Field(description=ANSWERS_DOC, examples=[{"q1": "satisfied", "q6": "yes"}],
                             max_length=60)


class PhoneResponse(BaseModel):
    """A survey answered by phone during a callback: on an open invitation, or (none sent) about a visit,
    delivery or complaint directly."""

    model_config = ConfigDict(extra="forbid")
    invitation_id: uuid.UUID | None = None
    survey: str | None = Field(default=None, pattern=KEY.pattern)
    store_id: uuid.UUID | None = None
    customer_id: uuid.UUID | None = None
    about_type: Literal["visit", "delivery", "complaint"] | None = None
    about_id: uuid.UUID | None = None
    answers: Answers = Field(description=ANSWERS_DOC, max_length=60)

    @model_validator(mode="after")
    def _target(self) -> PhoneResponse:
        direct = (self.survey, self.store_id, self.customer_id, self.about_type, self.about_id)
        if self.invitation_id is None and any(v is None for v in direct):
            raise ValueError("give invitation_id, or survey, store_id, customer_id, about_type and about_id")
        if self.invitation_id is not None and any(v is not None for v in direct):
            raise ValueError("with invitation_id, the survey and subject come from the invitation")
        return self


class Review(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["accepted", "rejected"] = Field(description="rejected: the answer is not counted in reports.")
    note: str = Field(min_length=1, max_length=500)


class ResponseRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    store_id: uuid.UUID
    invitation_id: uuid.UUID
    survey_key: str
    survey_version: int
    customer_id: uuid.UUID
    vehicle_id: uuid.UUID | None
    about_type: str
    about_id: uuid.UUID
    staff_id: uuid.UUID | None
    channel: str
    recorded_by: uuid.UUID | None
    answers: Answers
    item_scores: dict[str, float]
    satisfaction_index: float | None
    overall_score: float | None
    nps_score: int | None
    nps_class: str | None
    low_score: bool
    low_reasons: list[str]
    comment: str | None
    flags: list[str]
    review_status: str
    reviewed_by: uuid.UUID | None
    reviewed_at: datetime | None
    review_note: str | None
    answered_at: datetime
