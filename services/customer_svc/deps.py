"""FastAPI dependencies of customer_svc: its runtime, a session, and the per-request context."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from customer_svc.models import AuditEntry
from shared.audit import AuditLog
from shared.auth import CurrentPrincipal, Principal
from shared.http.app import runtime_dependency
from shared.runtime import ServiceRuntime

SERVICE = "customer_svc"
get_runtime = runtime_dependency(SERVICE)


def get_runtime_of(request: Request) -> ServiceRuntime:
    """The runtime without a dependency node (for the hottest routes)."""
    return request.app.state.runtimes[SERVICE]

RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]
audit_log = AuditLog(AuditEntry)


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    async with runtime.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


@dataclass
class Ctx:
    """What a service method needs: the session (it owns the transaction), the caller, outbox and audit."""

    session: AsyncSession
    principal: Principal
    runtime: ServiceRuntime

    @property
    def outbox(self):  # type: ignore[no-untyped-def]
        return self.runtime.outbox

    @property
    def audit(self) -> AuditLog:
        return audit_log


async def get_ctx(session: SessionDep, principal: CurrentPrincipal, runtime: RuntimeDep) -> Ctx:
    return Ctx(session, principal, runtime)


CtxDep = Annotated[Ctx, Depends(get_ctx)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200,
                                              description="Repeat-safe creation: a retry with the same key returns the first response.")]
IfMatch = Annotated[str | None, Header(alias="If-Match", max_length=200, description="The ETag you read.")]
