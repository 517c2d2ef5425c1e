"""Embedded mode: every service's API on one port under the gateway's paths, all workers in-process,
SQLite under ``var/``, events over the in-process bus, a seeded demo dealer group."""

from __future__ import annotations

import os

from fastapi import FastAPI

from aftercare.services import services
from customer_svc.bootstrap import DEMO_PASSWORD, seed_demo
from shared.http.app import create_app
from shared.messaging.memory import InProcessBus


def create_embedded_app() -> FastAPI:
    bus = InProcessBus()
    entries = services()
    runtimes = [e.app.build_runtime(bus=bus) for e in entries]
    routers = [r for e in entries for r in e.app.ROUTERS]
    app = create_app(
        title="Aftercare (embedded)",
        description="All services in one process. In production each service runs alone behind the nginx gateway "
                    "under the same paths.",
        runtimes=runtimes, routers=routers, run_workers=True, prepare=True,
        cors_origins=runtimes[0].settings.cors_origins,
    )
    customer = app.state.runtimes["customer_svc"]

    async def seed_and_greet() -> None:
        await seed_demo(customer.sessionmaker, customer.outbox)
        port = os.environ.get("PORT", "8000")
        print(
            f"\nAftercare is running on http://127.0.0.1:{port}  (API docs: http://127.0.0.1:{port}/docs)\n"
            f"Demo dealer group 'demo', one user per role (employee_no = role name, e.g. admin, cs_agent,\n"
            f"sales_manager), password '{DEMO_PASSWORD}'. Log in with:\n"
            f"  curl -s -X POST http://127.0.0.1:{port}/api/v1/auth/login -H 'Content-Type: application/json' \\\n"
            f"       -d '{{\"tenant\":\"demo\",\"employee_no\":\"admin\",\"password\":\"{DEMO_PASSWORD}\"}}'\n",
            flush=True,
        )

    app.state.startup_hooks.append(seed_and_greet)
    return app
