"""Request and response bodies of the tasks API (callback outcomes: DOMAIN.md §4.10 and §8)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from shared.auth.roles import Role
from shared.validation import IsoDate, IsoDateTime

TaskStatus = Literal["open", "in_progress", "done", "failed", "cancelled"]
TaskKind = Literal["call", "visit", "letter", "review"]
Reached = Literal["reached", "not_reached", "refused", "wrong_number"]
Satisfaction = Literal["satisfied", "not_fully_satisfied", "dissatisfied"]
IssueCategory = Literal["none", "repair_quality", "service_attitude", "waiting", "price", "parts_price",
                        "vehicle_performance", "other"]
CommentType = Literal["praise", "criticism", "grievance", "complaint", "suggestion", "none"]
FollowOn = Literal["none", "callback", "rework", "complaint", "appointment", "referral_lead"]

#: Instants outside these bounds are refused (older tasks are not imported; far-off years overflow in UTC).
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)
_ISO_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def in_range(value: datetime) -> datetime:
    if not EARLIEST <= value < LATEST:
        raise ValueError("must be between 2000 and 2100")
    return value


def day_in_range(value: date) -> date:
    if not FIRST_DAY <= value <= LAST_DAY:
        raise ValueError("must be between 2000-01-01 and 2099-12-31")
    return value


Reason = Field(min_length=1, max_length=500, description="Why (kept in the audit log and the event).")


class TaskCreate(BaseModel):
    """An ad-hoc task a staff member adds by hand (not from a playbook rule)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    customer_id: uuid.UUID = Field(description="A customer of your stores; the task belongs to the customer's store.")
    vehicle_id: uuid.UUID | None = Field(default=None, description="One of the customer's vehicles, if about a car.")
    kind: TaskKind = Field(default="call", description="Call, visit, letter or review.")
    title: str = Field(min_length=1, max_length=200, examples=["回访:上次保养后车辆情况"])
    instructions: str | None = Field(default=None, max_length=2000, description="What to cover.")
    due_at: IsoDateTime = Field(description="When to do it, with a time zone; not in the past.",
                                examples=["2026-03-16T10:00:00+08:00"])
    sla_hours: int = Field(default=48, ge=1, le=24 * 60, description="Hours after `due_at` to finish it (the SLA).")
    priority: int = Field(default=3, ge=1, le=5, description="1 highest.")
    assignee_id: uuid.UUID | None = Field(
        default=None, description="An active staff member of the store with `role` (or a manager); "
                                   "null: the team queue of `role`.")
    role: Role = Field(description="The team the task belongs to (its queue, and who may claim it).")

    @field_validator("due_at")
    @classmethod
    def _due_bounds(cls, v: datetime) -> datetime:
        return in_range(v)

    @field_validator("role")
    @classmethod
    def _staff_role(cls, v: Role) -> Role:
        if v is Role.INTEGRATION:
            raise ValueError("tasks go to staff roles")
        return v


class OutcomeWrite(BaseModel):
    """The result of a callback (回访记录, DOMAIN §4.10): reached or not, satisfaction, issues, what follows."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reached: Reached = Field(description="`not_reached` retries (up to 3 attempts); `refused` and `wrong_number` "
                                         "end the task as failed; `reached` ends it as done.")
    satisfaction: Satisfaction | None = Field(default=None, validate_default=True,
                                              description="Required when reached, else left out.")
    issue_categories: list[IssueCategory] = Field(
        default_factory=list, max_length=8, description="What was not right (`none`: no issues, on its own).")
    comment_type: CommentType = Field(default="none", description="The customer's comment: 表扬/批评/抱怨/投诉/建议.")
    summary: str | None = Field(default=None, max_length=2000, description="回访摘要, the customer's words.")
    rework_needed: bool = Field(default=False, description="返修: the car must come back.")
    willing_to_refer: bool | None = Field(default=None, description="Would recommend us to friends (null: not asked).")
    follow_on: FollowOn = Field(default="none", description="What happens next.")
    preferred_next_contact: str | None = Field(
        default=None, min_length=1, max_length=200, examples=["2026-03-20T15:00:00+08:00", "周末下午"],
        description="When the customer wants to be contacted: an ISO date-time with a time zone, or free text.")
    call_rating: int | None = Field(default=None, ge=0, le=10, description="The customer's rating of the call, 0-10.")
    serviced_elsewhere_on: IsoDate | None = Field(
        default=None, description="The customer had the maintenance done elsewhere on this day: the vehicle's "
                                  "maintenance cycle moves on (needs a task about a vehicle).")

    @field_validator("issue_categories")
    @classmethod
    def _issues(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("each category at most once")
        if "none" in v and len(v) > 1:
            raise ValueError("'none' cannot be combined with other categories")
        return v

    @field_validator("preferred_next_contact")
    @classmethod
    def _next_contact(cls, v: str | None) -> str | None:
        if v is None or not _ISO_INSTANT.match(v):
            return v
        try:
            at = datetime.fromisoformat(v)
        except ValueError:
            raise ValueError("looks like a date-time but is not ISO 8601 (2026-03-20T15:00:00+08:00)") from None
        if at.tzinfo is None:
            raise ValueError("give a time zone, e.g. 2026-03-20T15:00:00+08:00")
        return in_range(at).isoformat()

    @field_validator("serviced_elsewhere_on")
    @classmethod
    def _serviced_bounds(cls, v: date | None) -> date | None:
        return day_in_range(v) if v is not None else v

    @field_validator("satisfaction")
    @classmethod
    def _satisfaction_when_reached(cls, v: str | None, info: ValidationInfo) -> str | None:
        reached = info.data.get("reached")
        if reached == "reached" and v is None:
            raise ValueError("required when the customer was reached")
        if reached is not None and reached != "reached" and v is not None:
            raise ValueError("only when the customer was reached")
        return v


class NoteWrite(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    text: str = Field(min_length=1, max_length=2000, description="The note (append-only).")


class RescheduleWrite(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    due_at: IsoDateTime = Field(description="The new due time, with a time zone; not in the past. The SLA moves "
                                            "by the same amount.", examples=["2026-03-17T10:00:00+08:00"])
    reason: str = Reason

    @field_validator("due_at")
    @classmethod
    def _due_bounds(cls, v: datetime) -> datetime:
        return in_range(v)


class ReassignWrite(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    assignee_id: uuid.UUID | None = Field(
        description="An active staff member of the task's store with the task's role, or a manager; "
                    "null: back to the team queue.")
    reason: str = Reason


class BulkReassignWrite(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    from_staff_id: uuid.UUID = Field(description="Whose open tasks move (e.g. a leaver).")
    to_staff_id: uuid.UUID | None = Field(
        description="Who takes them (must be able to take every one: store and role, or a manager); "
                    "null: back to the team queues.")
    store_id: uuid.UUID | None = Field(default=None, description="Only this store's tasks (default: all yours).")
    reason: str = Reason

    @field_validator("to_staff_id")
    @classmethod
    def _different(cls, v: uuid.UUID | None, info: ValidationInfo) -> uuid.UUID | None:
        if v is not None and v == info.data.get("from_staff_id"):
            raise ValueError("must differ from from_staff_id")
        return v


class CancelWrite(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: str = Reason


class NoteRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    task_id: uuid.UUID
    author_id: uuid.UUID | None
    body: str
    created_at: datetime


class TaskRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    tenant_id: uuid.UUID
    store_id: uuid.UUID
    occurrence_key: str = Field(description="`<rule>:<subject>:...` for planned tasks, `manual:<id>` for ad-hoc ones.")
    followup_id: uuid.UUID | None = Field(description="The planned occurrence that created it.")
    rule_key: str | None
    customer_id: uuid.UUID | None
    vehicle_id: uuid.UUID | None
    kind: str
    title: str
    instructions: str | None
    role: str = Field(description="The team (queue) the task belongs to.")
    assignee_id: uuid.UUID | None = Field(description="null: waiting in the team queue of `role`.")
    status: TaskStatus
    priority: int = Field(description="1 highest.")
    due_at: datetime
    sla_due_at: datetime
    attempt: int = Field(description="Call attempts so far (not reached: retried, at most 3).")
    escalation_level: int = Field(description="0: none, 1: supervisors, 2: service quality.")
    escalate_at: datetime | None = Field(description="When the SLA watch looks at it next; null once finished.")
    overdue: bool = Field(description="Still open past its SLA.")
    overdue_at: datetime | None
    escalated_at: datetime | None
    outcome: dict[str, Any] | None = Field(description="The recorded outcome, with every attempt in `attempts`.")
    completed_at: datetime | None
    completed_by: uuid.UUID | None
    context: dict[str, Any]
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    version: int


class TaskDetail(TaskRead):
    notes: list[NoteRead] = Field(description="Oldest first.")


class MyTasks(BaseModel):
    day: date = Field(description="The store-local day.")
    items: list[TaskRead] = Field(description="Open and in-progress tasks due by the end of the day (earlier ones "
                                              "included), by priority then due time.")
    overdue: int = Field(description="How many of them are past their SLA.")


class CalendarItem(BaseModel):
    type: Literal["task", "planned"] = Field(description="`task`: exists; `planned`: a rule will create it.")
    id: uuid.UUID = Field(description="The task id, or the planned occurrence's id.")
    store_id: uuid.UUID
    rule_key: str | None
    title: str
    kind: str
    role: str
    assignee_id: uuid.UUID | None = Field(description="For planned ones: who it would go to today (null: the queue).")
    status: str = Field(description="Task status, or `scheduled` for planned ones.")
    priority: int
    due_at: datetime
    customer_id: uuid.UUID | None
    vehicle_id: uuid.UUID | None


class CalendarDay(BaseModel):
    day: date
    open: int = Field(description="Open or in-progress tasks due this day.")
    closed: int = Field(description="Done, failed or cancelled tasks due this day.")
    planned: int = Field(description="Task occurrences planned for this day, not created yet.")
    items: list[CalendarItem]


class Calendar(BaseModel):
    start: date = Field(description="First day (`from`).")
    end: date = Field(description="Last day (`to`), inclusive.")
    assignee_id: uuid.UUID | None = Field(description="Whose calendar; null: the whole team of your stores.")
    days: list[CalendarDay] = Field(description="Only days with something on them.")


class BulkReassignResult(BaseModel):
    moved: int = Field(description="Tasks moved (0 when run again: nothing left to move).")
    task_ids: list[uuid.UUID]


class PersonLoad(BaseModel):
    staff_id: uuid.UUID
    name: str | None
    roles: list[str]
    due: int = Field(description="Open tasks due that day.")
    carried_over: int = Field(description="Open tasks due before that day, still not done.")
    cap: int
    over_cap: bool


class QueueLoad(BaseModel):
    role: str
    unassigned: int = Field(description="Open tasks waiting in the team queue.")
    due: int = Field(description="Of those, due by the end of the day.")


class Workload(BaseModel):
    day: date
    store_id: uuid.UUID
    cap: int = Field(description="Daily cap per person (T-15).")
    people: list[PersonLoad]
    queues: list[QueueLoad]
