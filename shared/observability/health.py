"""``/healthz`` (the process is alive), ``/readyz`` (the database answers; the broker is reported), ``/metrics``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from shared.observability.metrics import exposition

Check = Callable[[], Awaitable[None]]


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
        results: dict[str, str] = {}
        for name, check in {**checks, **informational}.items():
            try:
                await asyncio.wait_for(check(), timeout=3)
                results[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - any failure means not ready
                results[name] = f"down: {type(exc).__name__}"
        ok = all(results[name] == "ok" for name in checks)
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": results}, status_code=200 if ok else 503)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    return router
