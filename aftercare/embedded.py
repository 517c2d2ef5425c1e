"""Embedded mode: every service's API on one port under the gateway's paths, all workers in-process,
SQLite under ``var/``, events over the in-process bus, a seeded demo dealer group."""

from __future__ import annotations

import os

from fastapi import FastAPI

from aftercare.services import ServiceEntry, services
from customer_svc.bootstrap import DEMO_PASSWORD, seed_demo
from shared.http.app import create_app
from shared.messaging.memory import InProcessBus
from shared.settings import ServiceSettings


def public_base_url() -> str:
    """This server's own address (``HOST`` / ``PORT`` as ``python -m aftercare run`` sets them): survey answer links
    must open here, since in embedded mode no gateway stands in front."""
    host = os.environ.get("HOST", "127.0.0.1")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{os.environ.get('PORT', '8000')}"


def embedded_settings(entry: ServiceEntry) -> ServiceSettings:
    """A service's settings from the environment as usual; a service with public links (survey_svc) points them at
    this server unless its ``<PREFIX>PUBLIC_BASE_URL`` is set."""
    settings: ServiceSettings = entry.app.settings_class()
    if "public_base_url" in type(settings).model_fields and "public_base_url" not in settings.model_fields_set:
        settings = entry.app.settings_class(public_base_url=public_base_url())
    return settings


def create_embedded_app() -> FastAPI:
    bus = InProcessBus()
    entries = services()
    runtimes = [e.app.build_runtime(embedded_settings(e), bus=bus) for e in entries]
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
        survey, notify = app.state.runtimes.get("survey_svc"), app.state.runtimes.get("notify_svc")
        links = ""
        if survey is not None and notify is not None:
            links = (f"Messages to customers are written to {(notify.settings.var_dir / 'messages.jsonl').resolve()};\n"
                     f"the survey links in them open here: {survey.settings.answer_link('<token>')}\n")
        print(
            f"\nAftercare is running on http://127.0.0.1:{port}  (API docs: http://127.0.0.1:{port}/docs)\n"
            f"Demo dealer group 'demo', one user per role (employee_no = role name, e.g. admin, cs_agent,\n"
            f"sales_manager), password '{DEMO_PASSWORD}'. Log in with:\n"
            f"  curl -s -X POST http://127.0.0.1:{port}/api/v1/auth/login -H 'Content-Type: application/json' \\\n"
            f"       -d '{{\"tenant\":\"demo\",\"employee_no\":\"admin\",\"password\":\"{DEMO_PASSWORD}\"}}'\n"
            f"{links}",
            flush=True,
        )

    app.state.startup_hooks.append(seed_and_greet)
    return app
