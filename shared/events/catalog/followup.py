"""Events published by followup_svc: tasks for people, commands for notify_svc and survey_svc, appointments.

A follow-up occurrence has one ``occurrence_key`` (rule × subject × cycle, e.g.
``maintenance_reminder:vehicle:<id>:2``). It is the idempotency key of every command the occurrence
sends and the key of the task it creates, so one reminder stays one reminder end to end.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import Field

from shared.events.envelope import EventData, event_type

TaskStatus = Literal["open", "in_progress", "done", "failed", "cancelled"]
Purpose = Literal["service", "marketing"]


class TaskFacts(EventData):
    task_id: uuid.UUID
    occurrence_key: str
    rule_key: str | None = None
    customer_id: uuid.UUID | None = None
    vehicle_id: uuid.UUID | None = None
    kind: Literal["call", "visit", "letter", "review"]
    title: str
    role: str
    assignee_id: uuid.UUID | None = Field(default=None, description="None: in the team queue of `role`.")
    priority: int
    due_at: datetime
    sla_due_at: datetime


@event_type("followup.task.created.v1", subject="task_id")
class TaskCreated(TaskFacts):
    """A follow-up task was created for a person (or a team queue)."""


@event_type("followup.task.completed.v1", subject="task_id")
class TaskCompleted(EventData):
    """A task reached an end state (done, failed or cancelled) with its outcome."""

    task_id: uuid.UUID
    occurrence_key: str
    rule_key: str | None = None
    customer_id: uuid.UUID | None = None
    vehicle_id: uuid.UUID | None = None
    status: Literal["done", "failed", "cancelled"]
    outcome: dict[str, Any] = {}
    completed_by: uuid.UUID | None = None
    completed_at: datetime
    on_time: bool


@event_type("followup.task.reassigned.v1", subject="task_id")
class TaskReassigned(EventData):
    """A task moved to another person or back to a team queue."""

    task_id: uuid.UUID
    from_id: uuid.UUID | None
    to_id: uuid.UUID | None
    reason: str


@event_type("followup.task.overdue.v1", subject="task_id")
class TaskOverdue(EventData):
    """A task passed its SLA without being finished."""

    task_id: uuid.UUID
    assignee_id: uuid.UUID | None
    role: str
    sla_due_at: datetime


@event_type("followup.task.escalated.v1", subject="task_id")
class TaskEscalated(EventData):
    """An overdue task went up the chain (executor → supervisor → quality control, DOMAIN §3.1)."""

    task_id: uuid.UUID
    level: int = Field(description="1: the supervisor tier, 2: the service-quality tier.")
    to_roles: list[str]
    notify_staff_ids: list[uuid.UUID] = Field(description="Who is told (active staff of those roles in the store).")
    reason: str
    title: str | None = Field(default=None, description="The task's title, for the notice staff receive.")
    customer_id: uuid.UUID | None = None


@event_type("followup.message.requested.v1", subject="request_id")
class MessageRequested(EventData):
    """Command to notify_svc: send one message to a customer (consent, quiet hours and caps are checked there)."""

    request_id: uuid.UUID
    idempotency_key: str = Field(description="The occurrence key: the same occurrence never sends twice.")
    customer_id: uuid.UUID
    vehicle_id: uuid.UUID | None = None
    rule_key: str
    template: str
    channels: list[Literal["wechat", "sms", "email", "console"]] = Field(description="In order of preference.")
    purpose: Purpose
    variables: dict[str, Any] = {}
    not_before: datetime
    expires_at: datetime | None = Field(default=None, description="Do not send after this (stale).")
    avoid_holidays: bool = Field(default=False, description="Marketing the rule keeps away from holiday peaks: "
                                 "a message deferred into one waits until it is over.")


@event_type("followup.survey.requested.v1", subject="request_id")
class SurveyRequested(EventData):
    """Command to survey_svc: invite the customer to a survey about one visit or delivery."""

    request_id: uuid.UUID
    idempotency_key: str
    customer_id: uuid.UUID
    vehicle_id: uuid.UUID | None = None
    rule_key: str
    survey: str = Field(description="Survey template key, e.g. service_satisfaction.")
    about_type: Literal["visit", "delivery", "complaint", "task"]
    about_id: uuid.UUID
    staff_id: uuid.UUID | None = Field(default=None, description="The advisor or consultant the survey rates.")
    channels: list[Literal["wechat", "sms", "email", "console"]]
    not_before: datetime
    expires_at: datetime | None = None


@event_type("followup.occurrence.skipped.v1", subject="followup_id")
class OccurrenceSkipped(EventData):
    """A planned touch was not carried out (stale, opted out, lost customer, rule changed...), with the reason."""

    followup_id: uuid.UUID
    occurrence_key: str
    rule_key: str
    customer_id: uuid.UUID | None = None
    state: Literal["skipped", "cancelled", "failed"]
    reason: str
    due_at: datetime


AppointmentStatus = Literal["booked", "arrived", "in_workshop", "settled", "closed", "cancelled", "no_show"]


class AppointmentFacts(EventData):
    appointment_id: uuid.UUID
    customer_id: uuid.UUID
    vehicle_id: uuid.UUID
    plate: str | None = None
    advisor_id: uuid.UUID | None = None
    slot_start: datetime
    slot_end: datetime
    status: AppointmentStatus
    kind: Literal["passive", "proactive"]


@event_type("followup.appointment.booked.v1", subject="appointment_id")
class AppointmentBooked(AppointmentFacts):
    """A service appointment was booked (预约登记)."""


@event_type("followup.appointment.changed.v1", subject="appointment_id")
class AppointmentChanged(AppointmentFacts):
    """An appointment moved slot or status (arrived, in workshop, settled, closed, cancelled, no-show)."""

    change: str
    satisfaction: int | None = Field(default=None, description="1–5 rating given when closed (执行).")
    service_date: date | None = None


#: Message templates every tenant starts with (notify_svc seeds them; rules may name only known templates).
DEFAULT_TEMPLATES = frozenset({
    "showroom_thanks", "visit_recap", "purchase_thanks", "first_maintenance_notice", "monthly_care",
    "maintenance_reminder", "insurance_renewal", "annual_inspection", "warranty_expiry", "birthday_greeting",
    "wedding_anniversary", "festival_greeting", "appointment_reminder", "win_back", "service_thanks",
})
#: Survey templates survey_svc seeds for every tenant.
DEFAULT_SURVEYS = frozenset({"service_satisfaction", "sales_satisfaction", "nps", "complaint_satisfaction"})
