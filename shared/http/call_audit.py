"""Every call an integration key makes, in the audit log of the service that served it (issue 6).

One ``audit_log`` row per request whose verified principal is an integration: ``actor_kind`` "integration",
``actor_id`` = ``record_id`` = the key id, ``action`` "call", ``record_type`` "api_call", ``after`` = method, route
template, path, status, duration and client address. Query strings are left out (they may carry phone numbers).

Recorded off the request path: the middleware appends to an in-memory buffer per service runtime, and a
background loop of the API process (started by ``create_app``'s lifespan, whether or not it runs workers) inserts
batches. A failed insert keeps the rows and is retried with back-off; requests never wait for or fail on it. The
buffer is bounded: during a long database outage the oldest entries are dropped (counted and logged), so memory
stays flat. What a hard crash (SIGKILL) loses is at most the last ``poll_seconds`` of entries; a normal shutdown
flushes.

Calls refused before a principal exists (no or bad token: 401) are not recorded; a known key refused for its
scopes or stores (403) is, and so is every token exchange naming a known key (``shared.auth.deps.audit_as``),
refused (401: a wrong, rotated-out or revoked secret) or not.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth.deps import _SCOPE_KEY as PRINCIPAL_KEY
from shared.auth.principal import Principal
from shared.db.base import utcnow
from shared.http.pagination import PageParams, make_page, paginate
from shared.ids import new_id
from shared.observability.context import request_id_var
from shared.periodic import Periodic

log = structlog.get_logger("call_audit")
DROPPED = Counter("integration_call_audit_dropped_total",
                  "Integration call audit entries dropped because the buffer was full (database unreachable)",
                  ["service"])

ACTION, RECORD_TYPE, ACTOR_KIND = "call", "api_call", "integration"


def audit_table(metadata: sa.MetaData) -> sa.Table | None:
    """The service's ``audit_log`` table (every service schema has one, see ``shared.audit.audit_model``)."""
    return next((t for t in metadata.tables.values() if t.name == "audit_log"), None)


class CallAudit:
    """The buffer of one service runtime and the loop that writes it."""

    def __init__(self, service: str, engine: AsyncEngine, table: sa.Table | None, *, batch_size: int = 500,
                 max_buffered: int = 20_000, poll_seconds: float = 1.0) -> None:
        self.service = service
        self.engine = engine
        self.table = table
        self.batch_size = batch_size
        self.buffer: deque[dict[str, Any]] = deque()
        self.max_buffered = max_buffered
        self.dropped = 0
        self.loop = Periodic(f"{service}.call_audit", self.flush_batch, poll_seconds, full_batch=batch_size)

    @property
    def enabled(self) -> bool:
        return self.table is not None

    def add(self, principal: Principal, method: str, route: str, path: str, status: int, duration_ms: float,
            client_ip: str | None, forwarded_for: str | None) -> None:
        if self.table is None:
            return
        if len(self.buffer) >= self.max_buffered:
            self.buffer.popleft()
            self.dropped += 1
            DROPPED.labels(self.service).inc()
        self.buffer.append({
            "id": new_id(), "tenant_id": principal.tenant_id, "store_id": None, "actor_id": principal.subject,
            "actor_kind": ACTOR_KIND, "action": ACTION, "record_type": RECORD_TYPE, "record_id": principal.subject,
            "before": None, "request_id": request_id_var.get(), "at": utcnow(),
            "after": {"method": method, "route": route, "path": path[:500], "status": status,
                      "duration_ms": round(duration_ms, 1), "client_ip": client_ip, "forwarded_for": forwarded_for},
        })

    async def flush_batch(self) -> int:
        """Insert up to ``batch_size`` buffered entries; on failure they go back to the front (and it raises)."""
        if self.dropped:
            log.warning("call_audit_dropped", service=self.service, dropped=self.dropped)
            self.dropped = 0
        if not self.buffer or self.table is None:
            return 0
        rows = [self.buffer.popleft() for _ in range(min(self.batch_size, len(self.buffer)))]
        try:
            async with self.engine.begin() as conn:
                await conn.execute(sa.insert(self.table), rows)
        except BaseException:  # incl. cancellation at shutdown: nothing taken off the buffer is lost
            self.buffer.extendleft(reversed(rows))
            raise
        return len(rows)

    async def flush(self) -> int:
        """Write everything buffered now (shutdown, tests). Raises if the database refuses."""
        total = 0
        while self.buffer:
            total += await self.flush_batch()
        return total

    async def final_flush(self) -> None:
        """At shutdown: write what is left; log (never raise) when the database is gone."""
        try:
            await self.flush()
        except Exception:  # noqa: BLE001 - shutdown must go on
            log.exception("call_audit_final_flush_failed", service=self.service, lost=len(self.buffer))


def _service_of(dependant: Any) -> str | None:
    """The service whose runtime a route depends on (``runtime_dependency`` marks its function)."""
    for dep in dependant.dependencies:
        name = getattr(dep.call, "aftercare_service", None) or _service_of(dep)
        if name:
            return name
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return v.decode("latin-1")[:200]
    return None


class CallAuditMiddleware:
    """Pure ASGI: after each request, hand an integration's call to the serving service's ``CallAudit``.

    In the embedded app several services share one app; the serving one is found from the route (its runtime
    dependency, else the package its endpoint lives in), once per route.
    """

    def __init__(self, app: ASGIApp, audits: dict[str, CallAudit]) -> None:
        self.app = app
        self.audits = audits
        self.single = next(iter(audits.values())) if len(audits) == 1 else None
        self.by_route: dict[int, CallAudit | None] = {}

    def audit_for(self, route: Any) -> CallAudit | None:
        if self.single is not None:
            return self.single
        key = id(route)
        if key not in self.by_route:
            name = _service_of(route.dependant) if hasattr(route, "dependant") else None
            if name is None:
                name = getattr(getattr(route, "endpoint", None), "__module__", "").partition(".")[0]
            self.by_route[key] = self.audits.get(name) or next(iter(self.audits.values()), None)
        return self.by_route[key]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            principal = scope.get(PRINCIPAL_KEY)
            if principal is not None and principal.kind == "integration":
                self.record(scope, principal, status, (time.perf_counter() - start) * 1000)

    def record(self, scope: Scope, principal: Principal, status: int, duration_ms: float) -> None:
        try:
            route = scope.get("route")
            audit = self.audit_for(route)
            if audit is None:
                return
            client = scope.get("client")
            audit.add(principal, scope["method"], getattr(route, "path", "unmatched"), scope.get("path", ""),
                      status, duration_ms, client[0] if client else None, _header(scope, b"x-forwarded-for"))
        except Exception:  # noqa: BLE001 - auditing must never break a request
            log.exception("call_audit_record_failed")


async def query_calls(session: AsyncSession, table: sa.Table, tenant_id: uuid.UUID, api_key_id: uuid.UUID,
                      params: PageParams) -> dict[str, Any]:
    """One key's recorded calls in this service, newest first (cursor pagination over the UUIDv7 ids)."""
    stmt = sa.select(table).where(table.c.tenant_id == tenant_id, table.c.actor_id == api_key_id,
                                  table.c.record_type == RECORD_TYPE, table.c.action == ACTION)
    rows = list((await session.execute(paginate(stmt, table.c.id, params))).all())
    return make_page(rows, params, call_view)


def call_view(row: Any) -> dict[str, Any]:
    after = row.after or {}
    return {"id": row.id, "at": row.at, "api_key_id": row.actor_id, "request_id": row.request_id,
            **{k: after.get(k) for k in ("method", "route", "path", "status", "duration_ms", "client_ip",
                                         "forwarded_for")}}


def audits_of(runtimes: Iterable[Any]) -> dict[str, CallAudit]:
    return {rt.name: rt.call_audit for rt in runtimes if getattr(rt, "call_audit", None) is not None}
