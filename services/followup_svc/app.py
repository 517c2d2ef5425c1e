"""followup_svc application: runtime (with the scheduler and the SLA watch), routers, and the app served by
``python -m followup_svc api``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI

from followup_svc.appointments.router import router as appointments_router
from followup_svc.clock import Clock
from followup_svc.consumers import subscriptions
from followup_svc.exports.router import router as exports_router
from followup_svc.models import Base, TestClock, messaging
from followup_svc.playbooks.router import router as playbooks_router
from followup_svc.reports.router import router as reports_router
from followup_svc.scheduling.router import router as schedule_router
from followup_svc.scheduling.scheduler import Scheduler
from followup_svc.settings import FollowupSettings
from followup_svc.tasks.escalation import Escalator
from followup_svc.tasks.router import router as tasks_router
from shared.http.app import create_app
from shared.http.integration_calls import integration_calls_router
from shared.messaging.memory import InProcessBus
from shared.periodic import Periodic
from shared.runtime import ServiceRuntime

MIGRATIONS = Path(__file__).parent / "migrations"
settings_class = FollowupSettings
ROUTERS: list[APIRouter] = [integration_calls_router("followup_svc", "/api/v1/followups"),
                            tasks_router, appointments_router, exports_router, schedule_router, playbooks_router,
                            reports_router]
TITLE = "Aftercare follow-up service"
DESCRIPTION = ("Playbooks, the follow-up scheduler, tasks with SLAs and escalation, service appointments and "
               "follow-up reports.")


class FollowupRuntime(ServiceRuntime):
    """Adds the clock, the scheduler and the SLA watch to the worker."""

    settings: FollowupSettings

    def __init__(self, settings: FollowupSettings, bus: InProcessBus | None = None) -> None:
        self.clock = Clock(settings.test_clock)
        super().__init__(settings, Base, messaging, MIGRATIONS, subscriptions, bus)
        self.scheduler = Scheduler(self.sessionmaker, self.outbox, self.clock, settings.scheduler_batch_size,
                                   settings.scheduler_max_attempts, settings.daily_task_cap)
        self.escalator = Escalator(self.sessionmaker, self.outbox, self.clock)
        self.scheduler_loop = Periodic("scheduler", self._scheduler_turn, settings.scheduler_poll_seconds,
                                       settings.scheduler_batch_size)
        self.escalation_loop = Periodic("escalation", self._escalation_turn, settings.escalation_poll_seconds,
                                        self.escalator.batch_size)
        self.loops = [self.scheduler_loop, self.escalation_loop]

    async def _scheduler_turn(self) -> int:
        await self.clock.load(self.engine, TestClock.__table__)
        return await self.scheduler.fire_due()

    async def _escalation_turn(self) -> int:
        await self.clock.load(self.engine, TestClock.__table__)
        return await self.escalator.run_once()


def build_runtime(settings: FollowupSettings | None = None, bus: InProcessBus | None = None) -> FollowupRuntime:
    return FollowupRuntime(settings or FollowupSettings(), bus)


def create_service_app(runtime: ServiceRuntime | None = None, run_workers: bool = False) -> FastAPI:
    runtime = runtime or build_runtime()
    return create_app(title=TITLE, description=DESCRIPTION, runtimes=[runtime], routers=ROUTERS,
                      run_workers=run_workers, cors_origins=runtime.settings.cors_origins)
