from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from customer_svc.deps import CtxDep, IdempotencyKey, IfMatch
from customer_svc.staff import service
from customer_svc.staff.schemas import StaffCreate, StaffRead, StaffUpdate
from shared.auth import Role, require_roles
from shared.auth.roles import STAFF
from shared.errors import problem_responses
from shared.http.etag import tagged
from shared.http.pagination import Page, PageParams, page_params

router = APIRouter(prefix="/api/v1/staff", tags=["staff"], responses=problem_responses(401, 422))


@router.post("", status_code=201, response_model=StaffRead, dependencies=[require_roles(Role.ADMIN)],
             responses=problem_responses(403, 409))
async def create_staff(ctx: CtxDep, body: StaffCreate, idempotency_key: IdempotencyKey = None) -> Response:
    """Create a staff account with roles and stores (admins)."""
    return await ctx.runtime.idempotency.create(ctx.principal, idempotency_key, "POST /staff", body,
                                                lambda: service.create_staff(ctx, body), StaffRead, "/api/v1/staff",
                                                secret=frozenset({"password"}))


@router.get("", response_model=Page[StaffRead], dependencies=[require_roles(*STAFF)])
async def search_staff(
    ctx: CtxDep, params: Annotated[PageParams, Depends(page_params)],
    q: Annotated[str | None, Query(max_length=100, description="Employee number (exact) or part of the name.")] = None,
    department: Annotated[str | None, Query(max_length=60)] = None,
    store_id: uuid.UUID | None = None,
    active: bool | None = None,
) -> dict:
    """Search staff of the caller's stores by number or name; filter by department, store, active."""
    return await service.search_staff(ctx, params, q, department, store_id, active)


@router.get("/{staff_id}", response_model=StaffRead, dependencies=[require_roles(*STAFF)],
            responses=problem_responses(404))
async def get_staff(ctx: CtxDep, staff_id: uuid.UUID, response: Response):  # type: ignore[no-untyped-def]
    return tagged(response, await service.get_staff(ctx, staff_id))


@router.patch("/{staff_id}", response_model=StaffRead, dependencies=[require_roles(Role.ADMIN)],
              responses=problem_responses(403, 404, 412, 428))
async def update_staff(ctx: CtxDep, staff_id: uuid.UUID, body: StaffUpdate, response: Response,
                       if_match: IfMatch = None):  # type: ignore[no-untyped-def]
    """Change a staff account (admins); `active: false` revokes its refresh tokens at once."""
    return tagged(response, await service.update_staff(ctx, staff_id, body, if_match))
