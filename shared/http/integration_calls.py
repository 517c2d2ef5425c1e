"""The read side of the integration call audit (``shared.http.call_audit``): each service's own calls.

Calls are recorded in the audit log of the service that served them, and a service reads only its own schema, so
each service exposes the same admin endpoint for its own share (``<prefix>/integration-calls?api_key_id=``);
customer_svc also has ``/api/v1/api-keys/{id}/calls``. The prefix must be one the gateway routes to that service.

No ``from __future__ import annotations``: FastAPI must evaluate the endpoint's annotations where it is defined.
"""

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from shared.auth import CurrentPrincipal, Role, require_roles
from shared.errors import problem_responses
from shared.http.app import runtime_dependency
from shared.http.call_audit import query_calls
from shared.http.pagination import Page, PageParams, page_params


class IntegrationCall(BaseModel):
    id: uuid.UUID = Field(description="Audit entry id (time ordered).")
    at: datetime = Field(description="When the call was made.")
    api_key_id: uuid.UUID = Field(description="The integration key that made it.")
    method: str | None = Field(description="HTTP method.", examples=["POST"])
    route: str | None = Field(description="Route template.", examples=["/api/v1/customers/{customer_id}"])
    path: str | None = Field(description="The path called (no query string).")
    status: int | None = Field(description="HTTP status answered.", examples=[200])
    duration_ms: float | None = Field(description="Time to answer, in milliseconds.")
    client_ip: str | None = Field(description="The peer address the service saw (the gateway, behind one).")
    forwarded_for: str | None = Field(description="`X-Forwarded-For` as received (as reported; not verified).")
    request_id: str | None = Field(description="The request id (`X-Request-ID`), to find the call in the logs.")


def integration_calls_router(service: str, prefix: str) -> APIRouter:
    """``GET <prefix>/integration-calls?api_key_id=`` (admins): one key's calls to ``service``, newest first."""
    get_runtime = runtime_dependency(service)
    router = APIRouter(prefix=prefix, tags=["integration calls"], responses=problem_responses(401, 403, 422),
                       dependencies=[require_roles(Role.ADMIN)])

    @router.get("/integration-calls", response_model=Page[IntegrationCall])
    async def list_integration_calls(
        principal: CurrentPrincipal, runtime: Annotated[Any, Depends(get_runtime)],
        params: Annotated[PageParams, Depends(page_params)],
        api_key_id: Annotated[uuid.UUID, Query(description="The integration key (its id).")],
    ) -> dict:
        """Every call the key made to this service: method, route, status, duration, client address."""
        async with runtime.sessionmaker() as session:
            return await query_calls(session, runtime.call_audit.table, principal.tenant_id, api_key_id, params)

    return router
