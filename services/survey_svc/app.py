"""survey_svc application: runtime (reminders, the complaint SLA watch), routers, and the app served by
``python -m survey_svc api``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from fastapi import APIRouter, FastAPI

from survey_svc.complaints.escalation import SlaWatch
from survey_svc.complaints.router import router as complaints_router
from survey_svc.consumers import subscriptions
from survey_svc.exports.router import router as exports_router
from survey_svc.invitations.router import router as invitations_router
from survey_svc.invitations.service import Reminders
from survey_svc.models import Base, messaging
from survey_svc.public.router import router as public_router
from survey_svc.reports.router import router as reports_router
from survey_svc.responses.router import router as responses_router
from survey_svc.settings import SurveySettings
from survey_svc.surveys.router import router as surveys_router
from shared.db.base import utcnow
from shared.http.app import create_app
from shared.http.integration_calls import integration_calls_router
from shared.messaging.memory import InProcessBus
from shared.periodic import Periodic
from shared.runtime import ServiceRuntime

MIGRATIONS = Path(__file__).parent / "migrations"
settings_class = SurveySettings
# reports and exports first: their fixed paths (/api/v1/complaints/reports) must win over an id path of the same
# prefix.
ROUTERS: list[APIRouter] = [integration_calls_router("survey_svc", "/api/v1/surveys"), reports_router, exports_router,
                             surveys_router, invitations_router, responses_router, public_router, complaints_router]
TITLE = "Aftercare survey service"
DESCRIPTION = ("The voice of the customer: satisfaction surveys (versioned templates, invitations with expiring "
               "links, the public answer page, scores and low-score alerts), complaints from intake through "
               "escalation to closure, and the satisfaction and complaint reports.")


class SurveyRuntime(ServiceRuntime):
    """Adds the reminder loop and the complaint SLA watch to the worker. ``clock`` is "now" for every
    time-dependent decision (tests move it)."""

    settings: SurveySettings

    def __init__(self, settings: SurveySettings, bus: InProcessBus | None = None) -> None:
        super().__init__(settings, Base, messaging, MIGRATIONS, subscriptions, bus)
        self.clock: Callable[[], datetime] = utcnow
        self.reminders = Reminders(self.sessionmaker, self.outbox, settings, lambda: self.clock())
        self.sla_watch = SlaWatch(self.sessionmaker, self.outbox, lambda: self.clock())
        self.loops = [Periodic("reminders", self.reminders.run_once, settings.reminder_poll_seconds,
                               self.reminders.batch),
                      Periodic("complaint_sla", self.sla_watch.run_once, settings.sla_poll_seconds,
                               self.sla_watch.batch)]


def build_runtime(settings: SurveySettings | None = None, bus: InProcessBus | None = None) -> SurveyRuntime:
    return SurveyRuntime(settings or SurveySettings(), bus)


def create_service_app(runtime: ServiceRuntime | None = None, run_workers: bool = False) -> FastAPI:
    runtime = runtime or build_runtime()
    return create_app(title=TITLE, description=DESCRIPTION, runtimes=[runtime], routers=ROUTERS,
                      run_workers=run_workers, cors_origins=runtime.settings.cors_origins)
