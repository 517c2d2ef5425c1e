"""The FastAPI app factory every service (and the embedded all-in-one app) uses."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware

from shared.auth.deps import document_bearer_auth
from shared.errors import PROBLEM_JSON, Problem, install_error_handlers
from shared.events.asyncapi import asyncapi_document
from shared.http.call_audit import CallAuditMiddleware, audits_of
from shared.http.nul_guard import NulGuardMiddleware
from shared.observability.health import health_router
from shared.observability.middleware import RequestContextMiddleware
from shared.periodic import drain

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime


#: Young-generation collections every 20k allocations instead of 700: request handling allocates many
#: short-lived objects, and the default runs a collection every few requests.
GC_THRESHOLDS = (20_000, 20, 20)
#: At shutdown, how long the process's loops may take to finish their step (after uvicorn's own request drain, within
#: the pod's 30 s grace period).
LIFESPAN_DRAIN_SECONDS = 10.0


def runtime_dependency(service: str):  # type: ignore[no-untyped-def]
    """``Depends`` target returning the named service's runtime from whichever app serves the request."""

    async def get(request: Request) -> ServiceRuntime:
        return request.app.state.runtimes[service]

    get.aftercare_service = service  # type: ignore[attr-defined]  # tells the call audit which service serves a route
    return get


def create_app(*, title: str, description: str, runtimes: Sequence[ServiceRuntime], routers: Sequence[APIRouter],
               run_workers: bool, prepare: bool = False, cors_origins: Sequence[str] = ()) -> FastAPI:
    """One app serving ``routers``; with ``run_workers`` it also runs each runtime's relay and consumers."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        if prepare:
            for rt in runtimes:
                await rt.prepare()
        for hook in app.state.startup_hooks:
            await hook()
        # The integration call audit is written by the API process itself (production API processes run no workers).
        tasks.extend(asyncio.create_task(a.loop.run(stop), name=a.loop.name) for a in audits.values())
        if run_workers:
            for rt in runtimes:
                tasks.extend(rt.start_workers(stop))
        # Everything built at start-up (models, routes, schemas) lives for the whole process: keep it out of the
        # collector's generations, so full collections stay short (they showed up as p99 stalls under load).
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            yield
        finally:
            # The loops finish the step under way (a relay batch, a scheduler turn in embedded mode) before the rest
            # is cancelled; uvicorn has already let the requests under way finish.
            await drain(tasks, stop, LIFESPAN_DRAIN_SECONDS)
            for audit in audits.values():
                await audit.final_flush()
            for rt in runtimes:
                await rt.dispose()

    # FastAPI's native OpenTelemetry (off unless AFTERCARE_OTEL=true): metrics are Prometheus' here, and trace context
    # travels in traceparent headers; checking for a configured provider on every request costs the hot path.
    otel = any(rt.settings.otel for rt in runtimes)
    app = FastAPI(title=title, description=description, version="1.0.0", lifespan=lifespan,
                  telemetry={"tracing": otel, "metrics": otel, "logs": otel})
    app.state.runtimes = {rt.name: rt for rt in runtimes}
    app.state.token_verifier = runtimes[0].verifier
    app.state.startup_hooks = []
    install_error_handlers(app)
    audits = audits_of(runtimes)
    if audits:
        app.add_middleware(CallAuditMiddleware, audits=audits)
    app.add_middleware(NulGuardMiddleware)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["ETag", "Location", "X-Request-ID"])
    app.add_middleware(RequestContextMiddleware, service=",".join(rt.name for rt in runtimes))

    document_bearer_auth(app, routers)
    for router in routers:
        app.include_router(router)

    async def db_checks() -> None:
        for rt in runtimes:
            await rt.check_database()

    async def broker_checks() -> None:
        for rt in runtimes:
            await rt.check_broker()

    # Operations endpoints last: routes are matched in order, and the API's are the busy ones.
    app.include_router(health_router({"database": db_checks}, informational={"broker": broker_checks}))

    @app.get("/asyncapi.json", tags=["operations"], summary="AsyncAPI document of every event type")
    async def asyncapi() -> dict:
        return asyncapi_document(runtimes[0].settings.exchange)

    document_common_errors(app)
    return app


def document_common_errors(app: FastAPI) -> None:
    """Problems every operation of a kind can answer, documented once for all services:

    - 400 where a request body is taken: the body could not be read at all (not UTF-8, say); a body that is read
      but invalid is a 422 naming its fields;
    - 403 where a bearer token is required: the caller is authenticated but its roles or scopes do not allow it.
    """
    generate = app.openapi

    def problem(description: str) -> dict:
        return {"description": description,
                "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}

    def openapi() -> dict:
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        if "Problem" not in components:
            definition = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(definition.pop("$defs", {}))
            components["Problem"] = definition
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                if not isinstance(operation, dict):
                    continue
                responses = operation.setdefault("responses", {})
                if "requestBody" in operation:
                    responses.setdefault("400", problem("The body could not be read"))
                if operation.get("security"):
                    responses.setdefault("403", problem("Not allowed"))
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
