"""FastAPI dependencies every service builds the same way: its runtime, a session, and the request context.

No ``from __future__ import annotations`` here: the nested dependency functions need their annotations
evaluated where they are defined (FastAPI cannot resolve closure names from strings).
"""


from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from shared.audit import AuditLog
from shared.auth import CurrentPrincipal, Principal
from shared.http.app import runtime_dependency
from shared.messaging.outbox import Outbox
from shared.runtime import ServiceRuntime

R = TypeVar("R", bound=ServiceRuntime)

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200,
                                              description="Repeat-safe creation: a retry with the same key returns the first response.")]
IfMatch = Annotated[str | None, Header(alias="If-Match", max_length=200, description="The ETag you read.")]


@dataclass
class Ctx(Generic[R]):
    """What a service method needs: the session (it owns the transaction), the caller, outbox and audit."""

    session: AsyncSession
    principal: Principal
    runtime: R
    audit: AuditLog

    @property
    def outbox(self) -> Outbox:
        return self.runtime.outbox


class ServiceDeps:
    """The dependency functions and ``Annotated`` aliases of one service (``deps.CtxDep`` in route signatures)."""

    def __init__(self, service: str, audit: AuditLog) -> None:
        self.service = service
        get_runtime = runtime_dependency(service)

        async def get_session(runtime: Annotated[ServiceRuntime, Depends(get_runtime)]) -> AsyncIterator[AsyncSession]:
            async with runtime.sessionmaker() as session:
                yield session

        async def get_ctx(session: Annotated[AsyncSession, Depends(get_session)], principal: CurrentPrincipal,
                          runtime: Annotated[ServiceRuntime, Depends(get_runtime)]) -> Ctx[Any]:
            return Ctx(session, principal, runtime, audit)

        self.get_runtime = get_runtime
        self.RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]
        self.SessionDep = Annotated[AsyncSession, Depends(get_session)]
        self.CtxDep = Annotated[Ctx[Any], Depends(get_ctx)]

    def runtime_of(self, request: Request) -> Any:
        """The runtime without a dependency node (for the hottest routes)."""
        return request.app.state.runtimes[self.service]
