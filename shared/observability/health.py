"""``/healthz`` (the process is alive), ``/readyz`` (the database answers; the broker is reported), ``/metrics``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from shared.observability.metrics import exposition

Check = Callable[[], Awaitable[None]]
#: Each readiness check's time limit: the probes allow 3-4 s for the whole answer.
CHECK_SECONDS = 2.5


async def _outcome(check: Check) -> str:
    try:
        await asyncio.wait_for(check(), timeout=CHECK_SECONDS)
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return f"down: {type(exc).__name__}"


def health_router(checks: dict[str, Check], informational: dict[str, Check] | None = None) -> APIRouter:
    """``checks`` decide readiness; ``informational`` ones are reported but do not take the process out of service
    (an API writes events to its outbox, so a broker outage must not stop it from serving)."""
    informational = informational or {}
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: database and broker reachable",
                responses={503: {"description": "A dependency is down"}})
    async def readyz() -> JSONResponse:
        # All at once, each within CHECK_SECONDS: one after the other, a black-holed broker (informational) would
        # use up the probe's timeout (4 s) and take a healthy API out of service.
        named = {**checks, **informational}
        outcomes = await asyncio.gather(*(_outcome(check) for check in named.values()))
        results = dict(zip(named, outcomes))
        ok = all(results[name] == "ok" for name in checks)
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": results}, status_code=200 if ok else 503)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    return router
