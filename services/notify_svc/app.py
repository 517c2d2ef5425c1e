"""notify_svc application: runtime (providers, the dispatcher, webhook deliveries), routers, and the app served
by ``python -m notify_svc api``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI

from notify_svc.callbacks.router import router as callbacks_router
from notify_svc.channels.registry import build_providers
from notify_svc.consumers import subscriptions
from notify_svc.dispatch.dispatcher import Dispatcher
from notify_svc.messages.router import router as messages_router
from notify_svc.models import Base, messaging
from notify_svc.settings import NotifySettings
from notify_svc.templates.router import router as templates_router
from notify_svc.webhooks.delivery import BATCH_SIZE as WEBHOOK_BATCH, WebhookDeliverer
from notify_svc.webhooks.router import router as webhooks_router
from shared.http.app import create_app
from shared.http.integration_calls import integration_calls_router
from shared.messaging.memory import InProcessBus
from shared.periodic import Periodic
from shared.runtime import ServiceRuntime

MIGRATIONS = Path(__file__).parent / "migrations"
settings_class = NotifySettings
ROUTERS: list[APIRouter] = [integration_calls_router("notify_svc", "/api/v1/notify"), messages_router, templates_router,
                            webhooks_router, callbacks_router]
TITLE = "Aftercare notification service"
DESCRIPTION = ("Every message the platform sends (SMS, WeChat, webhooks): templates, consent, quiet hours, caps and "
               "budgets checked before each send, delivery tracking with provider receipts, and why a customer was "
               "not contacted.")


class NotifyRuntime(ServiceRuntime):
    """Adds the providers, the dispatcher and the webhook deliverer to the worker."""

    settings: NotifySettings

    def __init__(self, settings: NotifySettings, bus: InProcessBus | None = None) -> None:
        super().__init__(settings, Base, messaging, MIGRATIONS, subscriptions, bus)
        self.providers = build_providers(settings, self.sessionmaker)
        self.dispatcher = Dispatcher(self.sessionmaker, self.outbox, self.providers, settings)
        self.webhooks = WebhookDeliverer(self.sessionmaker, settings)
        self.dispatch_loops = [Periodic(f"dispatcher{i}", self.dispatcher.run_once, settings.dispatcher_poll_seconds,
                                        settings.dispatcher_batch_size) for i in range(max(settings.dispatcher_loops, 1))]
        self.webhook_loop = Periodic("webhooks", self.webhooks.step, settings.webhook_poll_seconds,
                                     WEBHOOK_BATCH)
        self.webhooks.wake = self.webhook_loop.nudge
        self.loops = [*self.dispatch_loops, self.webhook_loop]

    def nudge_dispatcher(self) -> None:
        """Look at due messages now (after an API call queued some) rather than at the next poll."""
        for loop in self.dispatch_loops:
            loop.nudge()

    async def dispose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
        await self.webhooks.aclose()
        await super().dispose()


def build_runtime(settings: NotifySettings | None = None, bus: InProcessBus | None = None) -> NotifyRuntime:
    return NotifyRuntime(settings or NotifySettings(), bus)


def create_service_app(runtime: ServiceRuntime | None = None, run_workers: bool = False) -> FastAPI:
    runtime = runtime or build_runtime()
    return create_app(title=TITLE, description=DESCRIPTION, runtimes=[runtime], routers=ROUTERS,
                      run_workers=run_workers, cors_origins=runtime.settings.cors_origins)
