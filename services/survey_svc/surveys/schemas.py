"""The survey language: questions (rating scale, NPS, single and multiple choice, free text), conditional
follow-ups, and the API shapes of templates. A definition is validated as a whole when saved."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KEY = re.compile(r"^[a-z][a-z0-9_]{1,59}$")
QID = r"^[a-z][a-z0-9_]{0,29}$"
#: A response's own columns in exports, beside one per question: a new survey's question may not take their names.
RESPONSE_FIELDS = ("response_id", "invitation_id", "store_code", "store_id", "survey", "survey_version",
                   "answered_at_local", "channel", "about_type", "about_id", "customer_id", "vehicle_id", "staff_id",
                   "satisfaction_index", "overall_score", "nps_score", "nps_class", "low_score", "flags",
                   "review_status")
QuestionType = Literal["rating", "nps", "single", "multiple", "text"]


class Option(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_\-]+$",
                       description="What is stored (stable across wording changes).")
    label: str = Field(min_length=1, max_length=100, examples=["非常满意"])
    score: float | None = Field(strict=True, default=None, ge=0, le=100,
                                description="Rating questions: the option's 0–100 score (e.g. 100/75/50/25/0).")


class ShowIf(BaseModel):
    """Ask this question only when an earlier one was answered so: a score at or below ``max_score`` (a low
    score asks why), or one of ``values``."""

    model_config = ConfigDict(extra="forbid")
    question: str = Field(pattern=QID)
    max_score: float | None = Field(strict=True, default=None, ge=0, le=100)
    values: list[str] | None = Field(default=None, min_length=1, max_length=20)

    @model_validator(mode="after")
    def _one(self) -> ShowIf:
        if (self.max_score is None) == (self.values is None):
            raise ValueError("show_if: give either max_score or values")
        return self


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=QID, examples=["q1"])
    type: QuestionType
    text: str = Field(min_length=1, max_length=500)
    required: bool = True
    options: list[Option] | None = Field(default=None, max_length=20)
    #: Rating questions count into the 0–100 satisfaction index unless ``scored`` is false.
    scored: bool = True
    min_choices: int = Field(strict=True, default=1, ge=0, le=20)
    max_choices: int | None = Field(strict=True, default=None, ge=1, le=20)
    max_length: int = Field(strict=True, default=1000, ge=1, le=4000, description="Text answers.")
    show_if: ShowIf | None = None

    @model_validator(mode="after")
    def _shape(self) -> Question:
        needs_options = self.type in ("rating", "single", "multiple")
        if needs_options and not self.options:
            raise ValueError(f"options: a {self.type} question needs options")
        if not needs_options and self.options:
            raise ValueError(f"options: a {self.type} question has none")
        if self.options:
            values = [o.value for o in self.options]
            if len(set(values)) != len(values):
                raise ValueError("options: values must be unique")
        if self.type == "rating" and any(o.score is None for o in self.options or []):
            raise ValueError("options: every option of a rating question needs its score")
        if self.max_choices is not None and self.type != "multiple":
            raise ValueError("max_choices: only for multiple-choice questions")
        if self.type == "multiple":
            most = min(self.max_choices or len(self.options or []), len(self.options or []))
            if self.min_choices > most:
                raise ValueError("min_choices: more than can be chosen (max_choices, number of options)")
        return self

    def option(self, value: str) -> Option | None:
        return next((o for o in self.options or [] if o.value == value), None)


class SurveyDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200, examples=["维修满意度调查"])
    intro: str | None = Field(default=None, max_length=1000)
    thanks: str = Field(default="感谢您的宝贵意见!", max_length=500)
    questions: list[Question] = Field(min_length=1, max_length=40)

    @model_validator(mode="after")
    def _consistent(self) -> SurveyDefinition:
        seen: dict[str, Question] = {}
        for q in self.questions:
            if q.id in seen:
                raise ValueError(f"questions: id {q.id!r} is used twice")
            if q.show_if is not None:
                earlier = seen.get(q.show_if.question)
                if earlier is None:
                    raise ValueError(f"questions.{q.id}.show_if: refers to {q.show_if.question!r}, which is not an "
                                     "earlier question")
                if q.show_if.max_score is not None and earlier.type not in ("rating", "nps"):
                    raise ValueError(f"questions.{q.id}.show_if: max_score needs a rating or NPS question")
                if q.show_if.values is not None and not all(earlier.option(v) for v in q.show_if.values):
                    raise ValueError(f"questions.{q.id}.show_if: values must be options of {earlier.id!r}")
            seen[q.id] = q
        if sum(1 for q in self.questions if q.type == "nps") > 1:
            raise ValueError("questions: at most one NPS question")
        return self

    def question(self, qid: str) -> Question | None:
        return next((q for q in self.questions if q.id == qid), None)


class TemplateWrite(BaseModel):
    """A new version of a survey (or its first)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    definition: SurveyDefinition
    change_note: str | None = Field(default=None, max_length=500)

    @field_validator("definition")
    @classmethod
    def _ids_free(cls, definition: SurveyDefinition) -> SurveyDefinition:
        """Checked on writes only: versions saved before the rule still read."""
        taken = [q.id for q in definition.questions if q.id in RESPONSE_FIELDS]
        if taken:
            raise ValueError(f"questions: id {taken[0]!r} names a column of the response export; choose another")
        return definition


class TemplateCreate(TemplateWrite):
    key: str = Field(pattern=KEY.pattern, examples=["service_satisfaction"])


class TemplateRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    key: str
    version: int
    name: str
    definition: SurveyDefinition
    change_note: str | None
    created_by: uuid.UUID | None
    created_at: datetime
    retired_at: datetime | None
