"""Pure-ASGI middleware: request/correlation ids in, ``X-Request-ID`` out, Prometheus timings per route."""

from __future__ import annotations

import json
import time
import uuid

import structlog

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.observability.context import correlation_id_var, request_id_var, traceparent_var

log = structlog.get_logger("http")
KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
REQUESTS = Counter("http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds", "HTTP request latency", ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return v.decode("latin-1")[:200]
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _header(scope, b"x-request-id") or uuid.uuid4().hex
        tokens = (
            request_id_var.set(rid),
            correlation_id_var.set(_header(scope, b"x-correlation-id") or rid),
            traceparent_var.set(_header(scope, b"traceparent")),
        )
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_wrapper(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception:  # noqa: BLE001 - the last line of defence: log it, answer a bare 500 problem
            log.exception("unhandled_error", path=scope.get("path"))
            if not started:
                body = json.dumps({
                    "type": "https://aftercare.dev/problems/internal-error", "title": "Internal server error",
                    "status": 500, "code": "internal_error", "instance": scope.get("path"), "request_id": rid,
                    "detail": "The error was logged with this request id.",
                }).encode()
                await send_wrapper({"type": "http.response.start", "status": 500, "headers": [
                    (b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]})
                await send_wrapper({"type": "http.response.body", "body": body})
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            # Label values come from a closed set: a client inventing methods must not grow the metrics for ever.
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            LATENCY.labels(self.service, method, path).observe(time.perf_counter() - start)
            REQUESTS.labels(self.service, method, path, str(status)).inc()
            for var, token in zip((request_id_var, correlation_id_var, traceparent_var), tokens):
                var.reset(token)
