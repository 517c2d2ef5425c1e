"""Events published by survey_svc (commands to notify_svc first; survey and complaint facts follow)."""

from __future__ import annotations

from shared.events.catalog.followup import MessageRequested
from shared.events.envelope import event_type


@event_type("survey.message.requested.v1", subject="request_id")
class SurveyMessageRequested(MessageRequested):
    """Command to notify_svc: send a survey invitation or reminder (same shape as follow-up message requests;
    ``idempotency_key`` is the invitation's key, ``variables`` carry the answer link)."""
