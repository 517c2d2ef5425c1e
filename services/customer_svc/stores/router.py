from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from customer_svc.deps import CtxDep, IdempotencyKey, IfMatch
from customer_svc.stores import service
from customer_svc.stores.schemas import StoreCreate, StoreRead, StoreUpdate
from shared.auth import Role, require_roles
from shared.errors import problem_responses
from shared.http.etag import tagged

router = APIRouter(prefix="/api/v1/stores", tags=["stores"], responses=problem_responses(401, 422))


@router.post("", status_code=201, response_model=StoreRead, dependencies=[require_roles(Role.ADMIN)],
             responses=problem_responses(403, 409))
async def create_store(ctx: CtxDep, body: StoreCreate, idempotency_key: IdempotencyKey = None) -> Response:
    """Create a store of the caller's dealer group (admins)."""
    return await ctx.runtime.idempotency.create(ctx.principal, idempotency_key, "POST /stores", body,
                                                lambda: service.create_store(ctx, body), StoreRead, "/api/v1/stores")


@router.get("", response_model=list[StoreRead])
async def list_stores(ctx: CtxDep) -> list:
    """Stores the caller works in (all stores of the group for group-wide roles)."""
    return await service.list_stores(ctx)


@router.get("/{store_id}", response_model=StoreRead, responses=problem_responses(404))
async def get_store(ctx: CtxDep, store_id: uuid.UUID, response: Response):  # type: ignore[no-untyped-def]
    return tagged(response, await service.get_store(ctx, store_id))


@router.patch("/{store_id}", response_model=StoreRead, dependencies=[require_roles(Role.ADMIN)],
              responses=problem_responses(403, 404, 412, 428))
async def update_store(ctx: CtxDep, store_id: uuid.UUID, body: StoreUpdate, response: Response,
                       if_match: IfMatch = None):  # type: ignore[no-untyped-def]
    """Change a store (admins). Requires `If-Match` with the ETag you read."""
    return tagged(response, await service.update_store(ctx, store_id, body, if_match))
