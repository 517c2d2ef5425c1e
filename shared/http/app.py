"""The FastAPI app factory every service (and the embedded all-in-one app) uses."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware

from shared.errors import install_error_handlers
from shared.events.asyncapi import asyncapi_document
from shared.observability.health import health_router
from shared.observability.middleware import RequestContextMiddleware

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime


def runtime_dependency(service: str):  # type: ignore[no-untyped-def]
    """``Depends`` target returning the named service's runtime from whichever app serves the request."""

    def get(request: Request) -> ServiceRuntime:
        return request.app.state.runtimes[service]

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
        if run_workers:
            for rt in runtimes:
                tasks.extend(rt.start_workers(stop))
        try:
            yield
        finally:
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for rt in runtimes:
                await rt.dispose()

    app = FastAPI(title=title, description=description, version="1.0.0", lifespan=lifespan)
    app.state.runtimes = {rt.name: rt for rt in runtimes}
    app.state.token_verifier = runtimes[0].verifier
    app.state.startup_hooks = []
    install_error_handlers(app)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["ETag", "Location", "X-Request-ID"])
    app.add_middleware(RequestContextMiddleware, service=",".join(rt.name for rt in runtimes))

    async def db_checks() -> None:
        for rt in runtimes:
            await rt.check_database()

    async def broker_checks() -> None:
        for rt in runtimes:
            await rt.check_broker()

    app.include_router(health_router({"database": db_checks, "broker": broker_checks}))

    @app.get("/asyncapi.json", tags=["operations"], summary="AsyncAPI document of every event type")
    async def asyncapi() -> dict:
        return asyncapi_document(runtimes[0].settings.exchange)

    for router in routers:
        app.include_router(router)
    return app
