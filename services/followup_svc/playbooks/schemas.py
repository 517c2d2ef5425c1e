"""The playbook rule language: trigger, conditions, schedule, action, SLA, priority and purpose.

A rule is validated as a whole when it is saved (bad rules are refused with the field named), so the
scheduler never meets a rule it cannot run.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, time
from typing import Annotated, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema, field_validator,
                      model_validator)

from shared.auth.roles import Role
from shared.events.catalog.followup import DEFAULT_SURVEYS, DEFAULT_TEMPLATES

Trigger = Literal[
    "customer.created",        # a new customer (prospect first contact: 30-min SMS, 24-h intent confirmation)
    "customer.intent",         # prospect cadence while the intent level holds (O/H/A/B/C)
    "customer.birthday",       # yearly, solar or lunar
    "customer.wedding_anniversary",
    "festival",                # yearly per customer on a festival (conditions.festival)
    "vehicle.delivered",       # post-delivery sequence
    "vehicle.date",            # before insurance expiry / annual inspection / warranty end (anchor_field)
    "vehicle.maintenance_due",  # mileage or time, whichever first
    "visit.completed",         # service callbacks, surveys
    "owner.lapsed",            # no visit for N months since the last one (win-back)
    "appointment.booked",      # D-3 parts check, D-1 confirmation
    "rule.fired",              # chained: after another rule's occurrence fired (conditions.after_rule)
    "survey.low_score",        # a low survey score or negative comment: service recovery (conditions.surveys)
    "complaint.closed",        # a complaint closed: post-resolution revisit and re-survey (DOMAIN §10.9)
]
TRIGGERS: tuple[str, ...] = Trigger.__args__  # type: ignore[attr-defined]
#: Triggers whose subject a survey can be about (survey_svc binds an invitation to it); chains inherit theirs.
SURVEY_TRIGGERS = ("visit.completed", "vehicle.delivered", "complaint.closed", "rule.fired")
AnchorField = Literal["insurance_expiry", "next_inspection_date", "warranty_end"]
VisitType = Literal["first_maintenance", "maintenance", "minor_repair", "major_overhaul", "rework"]
Festival = Literal["new_year", "spring_festival", "lantern", "dragon_boat", "qixi", "mid_autumn", "national_day",
                   "double_ninth"]
Channel = Literal["wechat", "sms", "email", "console"]
KEY = re.compile(r"^[a-z][a-z0-9_]{1,59}$")
#: A wall-clock time in the store's zone, written "HH:MM" (JSON Schema's `format: time` would demand an offset).
LocalTime = Annotated[time, BeforeValidator(lambda v: _hhmm(v) if isinstance(v, str) else v),
                      PlainSerializer(lambda t: t.strftime("%H:%M"), return_type=str),
                      WithJsonSchema({"type": "string", "pattern": r"^([01]\d|2[0-3]):[0-5]\d$"})]


def _hhmm(value: str) -> time:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d(:00)?", value):
        raise ValueError("give a local time as HH:MM, e.g. 10:00")
    return time(int(value[:2]), int(value[3:5]))


class Offset(BaseModel):
    """A calendar distance: months are calendar months (the 15th to the 15th)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    months: int = Field(default=0, ge=0, le=120)
    days: int = Field(default=0, ge=0, le=3660)
    hours: int = Field(default=0, ge=0, le=24 * 366)
    minutes: int = Field(default=0, ge=0, le=60 * 24 * 31)

    @property
    def zero(self) -> bool:
        return not (self.months or self.days or self.hours or self.minutes)


class Repeat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    every: Offset = Field(description="Interval between cycles; never zero.")
    count: int = Field(ge=1, le=240, description="How many cycles after the offsets.")

    @field_validator("every")
    @classmethod
    def _not_zero(cls, v: Offset) -> Offset:
        if v.zero:
            raise ValueError("a recurrence needs a non-zero interval")
        return v


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    offsets: list[Offset] = Field(default_factory=lambda: [Offset()], min_length=1, max_length=24,
                                  description="One occurrence per offset from the anchor, in order.")
    direction: Literal["after", "before"] = Field(default="after", description="`before`: ahead of a date anchor.")
    repeat: Repeat | None = Field(default=None, description="Further cycles after the last offset.")
    local_time: LocalTime | None = Field(default=None, examples=["10:00"],
                                         description="Fire at this store-local time of the due day (HH:MM).")
    working_days_only: bool = Field(default=True, description="Tasks: only on working days (Chinese calendar).")
    stale_after: Offset | None = Field(default=None, description="Skip (recorded) when this late.")
    holiday_peak: Literal["allow", "defer", "skip"] = Field(
        default="allow", description="On a public holiday: send anyway, wait for the first day after, or skip.")
    min_gap_days: int = Field(default=0, ge=0, le=60,
                              description="Tasks: defer when the customer was called within this many days.")
    spread_days: int = Field(default=0, ge=0, le=30,
                             description="Spread occurrences over this many extra days (by subject), so a month's "
                                         "callbacks fall evenly on the days of their window (T-15).")

    @model_validator(mode="after")
    def _ordered(self) -> Schedule:
        if self.direction == "before" and self.repeat is not None:
            raise ValueError("repeat: not allowed with direction 'before'")
        return self


class Conditions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    visit_types: list[VisitType] | None = Field(default=None, min_length=1)
    intent_levels: list[Literal["O", "H", "A", "B", "C"]] | None = Field(default=None, min_length=1)
    relationships: list[Literal["prospect", "owner"]] | None = Field(default=None, min_length=1)
    festival: Festival | None = None
    anchor_field: AnchorField | None = None
    after_rule: str | None = Field(default=None, pattern=KEY.pattern)
    sample_percent: int | None = Field(default=None, ge=1, le=100,
                                       description="Only this share of subjects (deterministic by subject id).")
    lapsed_months: int | None = Field(default=None, ge=1, le=120)
    maintenance: MaintenancePlan | None = None
    surveys: list[Annotated[str, Field(pattern=KEY.pattern)]] | None = Field(
        default=None, min_length=1, max_length=20, examples=[["service_satisfaction", "nps"]],
        description="survey.low_score: only answers to these surveys (service and sales surveys go to different "
                    "owners).")


class MaintenancePlan(BaseModel):
    """Mileage or time, whichever comes first (DOMAIN §17.1); defaults from the seeds (首保 2,500 km, 2nd 7,500)."""

    model_config = ConfigDict(extra="forbid")
    first_km: int = Field(default=2500, ge=100, le=100_000)
    first_months: int = Field(default=3, ge=1, le=24)
    second_km: int = Field(default=7500, ge=100, le=200_000)
    interval_km: int = Field(default=10_000, ge=1000, le=100_000)
    interval_months: int = Field(default=12, ge=1, le=36)
    remind_before_days: int = Field(default=14, ge=0, le=90)

    @model_validator(mode="after")
    def _increasing(self) -> MaintenancePlan:
        if self.second_km <= self.first_km:
            raise ValueError("second_km must be above first_km")
        return self


Conditions.model_rebuild()


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["task", "message", "survey"]
    task_kind: Literal["call", "visit", "letter"] = "call"
    title: str | None = Field(default=None, min_length=1, max_length=200)
    instructions: str | None = Field(default=None, max_length=2000)
    assignee: Literal["sales_consultant", "service_advisor", "role"] = Field(
        default="role", description="The customer's own consultant / advisor (else the role's queue), or the queue.")
    role: Role = Field(default=Role.CS_AGENT, description="Team queue, and fallback when the owner is missing.")
    template: str | None = Field(default=None, max_length=60)
    channels: list[Channel] = Field(default_factory=lambda: ["wechat", "sms"], min_length=1, max_length=4)
    survey: str | None = Field(default=None, max_length=60)

    @model_validator(mode="after")
    def _complete(self) -> Action:
        if self.kind == "task" and not self.title:
            raise ValueError("title: a task needs a title")
        if self.kind == "message":
            if not self.template:
                raise ValueError("template: a message needs a template")
            if self.template not in DEFAULT_TEMPLATES:
                raise ValueError(f"template: unknown template {self.template!r}")
        if self.kind == "survey":
            if not self.survey:
                raise ValueError("survey: a survey action names the survey")
            if self.survey not in DEFAULT_SURVEYS:
                raise ValueError(f"survey: unknown survey {self.survey!r}")
        if self.role is Role.INTEGRATION:
            raise ValueError("role: tasks go to staff roles")
        return self


class RuleDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, examples=["提车3小时关怀电话"])
    trigger: Trigger
    conditions: Conditions = Field(default_factory=Conditions)
    schedule: Schedule = Field(default_factory=Schedule)
    action: Action
    sla_hours: int = Field(default=48, ge=1, le=24 * 60, description="Tasks: time to finish after due.")
    priority: int = Field(default=3, ge=1, le=5, description="1 highest.")
    purpose: Literal["service", "marketing"] = "service"

    @model_validator(mode="after")
    def _consistent(self) -> RuleDefinition:
        c = self.conditions
        needs = {"festival": "festival", "vehicle.date": "anchor_field", "rule.fired": "after_rule",
                 "owner.lapsed": "lapsed_months", "vehicle.maintenance_due": "maintenance"}
        if self.trigger in needs and getattr(c, needs[self.trigger]) is None:
            raise ValueError(f"conditions.{needs[self.trigger]}: required for trigger {self.trigger}")
        for name, field in needs.items():
            if self.trigger != name and getattr(c, field) is not None:
                raise ValueError(f"conditions.{field}: only for trigger {name}")
        if c.visit_types is not None and self.trigger != "visit.completed":
            raise ValueError("conditions.visit_types: only for trigger visit.completed")
        if c.surveys is not None and self.trigger != "survey.low_score":
            raise ValueError("conditions.surveys: only for trigger survey.low_score")
        if self.schedule.direction == "before" and self.trigger not in ("vehicle.date", "appointment.booked"):
            raise ValueError("schedule.direction: 'before' needs a date anchor (vehicle.date, appointment.booked)")
        if self.action.kind == "survey" and self.trigger not in SURVEY_TRIGGERS:
            raise ValueError("action.survey: surveys are about a visit, a delivery or a closed complaint")
        return self


class RuleWrite(BaseModel):
    """Create a rule (new key) or a store override, or a new version of an existing rule."""

    model_config = ConfigDict(extra="forbid")
    definition: RuleDefinition
    enabled: bool = True
    change_note: str | None = Field(default=None, max_length=500)


class RuleCreate(RuleWrite):
    key: str = Field(pattern=KEY.pattern, examples=["post_delivery_call_3h"])
    store_id: uuid.UUID | None = Field(default=None, description="Set: an override for this store only.")


class RuleUpdate(RuleWrite):
    pending: Literal["keep", "reschedule", "cancel"] = Field(
        description="What happens to occurrences the old version planned and that have not fired: keep them as "
                    "planned by the old version, move them to the new schedule, or cancel them (reason recorded).")


class RuleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    key: str
    version: int
    scope: str = Field(description="`*` for the dealer group, else the store id it overrides for.")
    trigger: str
    enabled: bool
    definition: RuleDefinition
    change_note: str | None
    created_by: uuid.UUID | None
    created_at: datetime
    retired_at: datetime | None


class RuleChangeResult(RuleRead):
    pending_kept: int = 0
    pending_rescheduled: int = 0
    pending_cancelled: int = 0
