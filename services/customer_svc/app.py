"""customer_svc application: runtime, routers, and the app served by ``python -m customer_svc api``."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from fastapi import APIRouter, FastAPI

from customer_svc.audit.router import router as audit_router
from customer_svc.auth.router import keys_router, router as auth_router
from customer_svc.consumers import subscriptions
from customer_svc.customers.router import router as customers_router
from customer_svc.imports.jobs import ImportRunner
from customer_svc.imports.router import imports_router, upserts_router
from customer_svc.membership.router import router as memberships_router, tiers_router
from customer_svc.models import Base, messaging
from customer_svc.settings import CustomerSettings
from customer_svc.staff.router import router as staff_router
from customer_svc.stores.router import router as stores_router
from customer_svc.vehicles.router import router as vehicles_router
from customer_svc.visits.router import router as visits_router
from shared.auth.tokens import TokenIssuer, load_or_create_dev_keys, read_key
from shared.http.app import create_app
from shared.messaging.memory import InProcessBus
from shared.periodic import Periodic
from shared.runtime import ServiceRuntime

MIGRATIONS = Path(__file__).parent / "migrations"
settings_class = CustomerSettings
#: Most-used first: routes are matched in order (the prefixes do not overlap, so order changes nothing else).
ROUTERS: list[APIRouter] = [customers_router, vehicles_router, visits_router, memberships_router, auth_router,
                            stores_router, staff_router, keys_router, tiers_router, audit_router, imports_router,
                            upserts_router]
TITLE = "Aftercare customer service"
DESCRIPTION = "Basic data: stores, staff and logins, customers, vehicles, visits, membership, audit."


class CustomerRuntime(ServiceRuntime):
    """customer_svc also signs tokens (the only service holding the private key)."""

    settings: CustomerSettings

    def __init__(self, settings: CustomerSettings, bus: InProcessBus | None = None) -> None:
        super().__init__(settings, Base, messaging, MIGRATIONS, subscriptions, bus)
        if settings.jwt_private_key:
            private = read_key(settings.jwt_private_key)
        elif settings.environment == "prod":
            raise RuntimeError("CUSTOMER_JWT_PRIVATE_KEY is required in production")
        else:
            private = load_or_create_dev_keys(settings.var_dir)[0]
        self.issuer = TokenIssuer(private, settings.jwt_issuer, settings.jwt_audience,
                                  timedelta(minutes=settings.access_token_minutes))
        self.imports = ImportRunner(self.sessionmaker, self.outbox, settings)
        # One job per step, however long its file: the lease (renewed per batch) is what guards it, not a timeout.
        self.import_loop = Periodic("imports", self.imports.run_once, settings.import_poll_seconds, full_batch=1,
                                    timeout=24 * 3600)
        self.imports.progress = self.import_loop.touch  # alive while its batches commit, however long the file
        self.loops = [self.import_loop]

    def start_workers(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        self.imports.stop = stop  # a stopping worker hands its import job back between batches
        return super().start_workers(stop)

    def import_runner_wakeup(self) -> None:
        """A job was queued: an import worker in this process starts now instead of at its next poll."""
        self.import_loop.nudge()


def build_runtime(settings: CustomerSettings | None = None, bus: InProcessBus | None = None) -> CustomerRuntime:
    return CustomerRuntime(settings or CustomerSettings(), bus)


def create_service_app(runtime: ServiceRuntime | None = None, run_workers: bool = False) -> FastAPI:
    runtime = runtime or build_runtime()
    return create_app(title=TITLE, description=DESCRIPTION, runtimes=[runtime], routers=ROUTERS,
                      run_workers=run_workers, cors_origins=runtime.settings.cors_origins)
