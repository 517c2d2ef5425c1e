"""Events published by survey_svc: commands to notify_svc, then survey and complaint facts.

Surveys: invited → answered (→ low score, which followup_svc turns into a service-recovery task).
Complaints (DOMAIN §10): opened → escalated (SLA breached) → resolved (the customer chose a remedy and it was
carried out) → closed (root cause, manager's sign-off, the customer's feedback; followup_svc plans the revisit
and the re-survey).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from shared.events.catalog.followup import MessageRequested
from shared.events.envelope import EventData, event_type

AboutType = Literal["visit", "delivery", "complaint", "task"]
NpsClass = Literal["promoter", "passive", "detractor"]
Severity = Literal["low", "medium", "high", "critical"]
ComplaintStatus = Literal["ongoing", "in_process", "hold", "closed"]
Feedback = Literal["satisfied", "basically_satisfied", "dissatisfied"]


@event_type("survey.message.requested.v1", subject="request_id")
class SurveyMessageRequested(MessageRequested):
    """Command to notify_svc: send a survey invitation or reminder (same shape as follow-up message requests;
    ``idempotency_key`` is the invitation's key, ``variables`` carry the answer link)."""


class SurveyFacts(EventData):
    invitation_id: uuid.UUID
    survey: str = Field(description="Survey template key, e.g. service_satisfaction.")
    survey_version: int
    customer_id: uuid.UUID
    vehicle_id: uuid.UUID | None = None
    about_type: AboutType
    about_id: uuid.UUID
    staff_id: uuid.UUID | None = Field(default=None, description="The advisor or consultant the survey rates.")


@event_type("survey.invitation.sent.v1", subject="invitation_id")
class SurveyInvited(SurveyFacts):
    """An invitation with its answer link was created and handed to notify_svc."""

    expires_at: datetime
    channels: list[str]


@event_type("survey.response.answered.v1", subject="response_id")
class SurveyAnswered(SurveyFacts):
    """The customer answered (on the public page, or by phone to a staff member)."""

    response_id: uuid.UUID
    channel: Literal["web", "phone"]
    satisfaction_index: float | None = Field(default=None, description="0–100 over the scored questions.")
    nps_score: int | None = Field(default=None, ge=0, le=10)
    nps_class: NpsClass | None = None
    low_score: bool
    flagged: bool = Field(default=False, description="Held for integrity review (see `flags` on the response).")
    answered_at: datetime


@event_type("survey.response.low_score.v1", subject="response_id")
class SurveyLowScore(SurveyFacts):
    """An answer at or below the group's thresholds, or a negative comment: followup_svc opens a
    service-recovery task (owner and SLA from its playbook)."""

    response_id: uuid.UUID
    satisfaction_index: float | None = None
    nps_score: int | None = None
    reasons: list[str] = Field(description="Which answers tripped the thresholds, e.g. `q1: 25`, `comment`.")
    comment: str | None = Field(default=None, max_length=500)
    answered_at: datetime


class ComplaintFacts(EventData):
    complaint_id: uuid.UUID
    number: str = Field(description="The store's case number, e.g. C202611-0007.")
    customer_id: uuid.UUID | None = None
    vehicle_id: uuid.UUID | None = None
    channel: str
    category: str
    severity: Severity
    nature: str
    kind: Literal["grumble", "complaint", "major"] = Field(description="抱怨, 投诉 or 重大投诉 (DOMAIN §10.1).")
    status: ComplaintStatus
    owner_id: uuid.UUID | None = Field(default=None, description="First-contact owner (首问负责制) until transferred.")


@event_type("survey.complaint.opened.v1", subject="complaint_id")
class ComplaintOpened(ComplaintFacts):
    """A complaint was taken in (any channel, any staff member, or from a survey answer)."""

    opened_at: datetime
    first_response_due: datetime
    resolution_due: datetime


@event_type("survey.complaint.escalated.v1", subject="complaint_id")
class ComplaintEscalated(ComplaintFacts):
    """A complaint breached its SLA (or was escalated by hand) and went up the chain of DOMAIN §10.8."""

    level: int
    to_roles: list[str]
    notify_staff_ids: list[uuid.UUID]
    reason: str
    title: str


@event_type("survey.complaint.resolved.v1", subject="complaint_id")
class ComplaintResolved(ComplaintFacts):
    """A remedy the customer chose was carried out; the case waits for root cause, sign-off and feedback."""

    remedy: str
    goodwill_amount: float = 0
    resolved_at: datetime


@event_type("survey.complaint.closed.v1", subject="complaint_id")
class ComplaintClosed(ComplaintFacts):
    """Closed with root cause, action taken, the manager's sign-off and the customer's feedback; followup_svc
    schedules the post-resolution revisit and the re-survey."""

    closed_at: datetime
    feedback_result: Feedback
    feedback_speed: Feedback
    signed_off_by: uuid.UUID
