from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from customer_svc.deps import CtxDep, IdempotencyKey, IfMatch
from customer_svc.membership import service
from customer_svc.membership.schemas import (MembershipCreate, MembershipRead, MembershipUpdate, PointsAdjust,
                                             PointsBatch, PointsEntryRead, Status, TierCreate, TierRead, TierUpdate)
from shared.auth import require_roles
from shared.auth.roles import MANAGERS, STAFF
from shared.errors import problem_responses
from shared.http.etag import tagged
from shared.http.pagination import Page, PageParams, make_page, page_params

tiers_router = APIRouter(prefix="/api/v1/membership-tiers", tags=["membership"], responses=problem_responses(401, 422))
router = APIRouter(prefix="/api/v1/memberships", tags=["membership"], responses=problem_responses(401, 422))
staff = require_roles(*STAFF)
managers = require_roles(*MANAGERS)


@tiers_router.post("", status_code=201, response_model=TierRead, dependencies=[managers],
                   responses=problem_responses(403, 409))
async def create_tier(ctx: CtxDep, body: TierCreate, idempotency_key: IdempotencyKey = None) -> Response:
    """Add a membership tier (类别) for the whole dealer group, with its discount, fee and bonus points (managers)."""
    return await ctx.runtime.idempotency.create(ctx.principal, idempotency_key, "POST /membership-tiers", body,
                                                lambda: service.create_tier(ctx, body), TierRead, "/api/v1/membership-tiers")


@tiers_router.get("", response_model=list[TierRead], dependencies=[staff])
async def list_tiers(ctx: CtxDep) -> list:
    """The dealer group's tiers, cheapest first."""
    return await service.list_tiers(ctx)


@tiers_router.get("/{tier_id}", response_model=TierRead, dependencies=[staff], responses=problem_responses(404))
async def get_tier(ctx: CtxDep, tier_id: uuid.UUID, response: Response):  # type: ignore[no-untyped-def]
    return tagged(response, await service.get_tier(ctx, tier_id))


@tiers_router.patch("/{tier_id}", response_model=TierRead, dependencies=[managers],
                    responses=problem_responses(403, 404, 409, 412, 428))
async def update_tier(ctx: CtxDep, tier_id: uuid.UUID, body: TierUpdate, response: Response,
                      if_match: IfMatch = None):  # type: ignore[no-untyped-def]
    """Rename a tier, change its discount, fee or bonus, or retire it (managers). Requires `If-Match`."""
    return tagged(response, await service.update_tier(ctx, tier_id, body, if_match))


@router.post("", status_code=201, response_model=MembershipRead, dependencies=[staff],
             responses=problem_responses(403, 409))
async def join(ctx: CtxDep, body: MembershipCreate, idempotency_key: IdempotencyKey = None) -> Response:
    """Join (入会) with a new card for a registered vehicle; its owner becomes the member. Paying the tier's fee in
    full credits its bonus points. Honours `Idempotency-Key`."""
    return await ctx.runtime.idempotency.create(ctx.principal, idempotency_key, "POST /memberships", body,
                                                lambda: service.join(ctx, body), MembershipRead, "/api/v1/memberships")


@router.get("", response_model=Page[MembershipRead], dependencies=[staff])
async def list_memberships(ctx: CtxDep, params: Annotated[PageParams, Depends(page_params)],
                           customer_id: uuid.UUID | None = None, vehicle_id: uuid.UUID | None = None,
                           card_no: Annotated[str | None, Query(max_length=40)] = None,
                           status: Status | None = None) -> dict:
    """Memberships of your stores by member, vehicle, card number or status; newest first."""
    rows = await service.list_memberships(ctx, params, customer_id=customer_id, vehicle_id=vehicle_id,
                                          card_no=card_no, status=status)
    return make_page(rows, params)


@router.post("/points/batch", status_code=201, response_model=list[PointsEntryRead], dependencies=[staff],
             responses=problem_responses(403))
async def adjust_points_batch(ctx: CtxDep, body: PointsBatch, idempotency_key: IdempotencyKey = None) -> Response:
    """Batch adjustment (调整): every entry is applied, in order, or none is. A missing membership or a balance
    that would go negative answers 422 naming the entry. Honours `Idempotency-Key`."""

    async def create():  # type: ignore[no-untyped-def]
        entries = await service.adjust_points_batch(ctx, body)
        return [PointsEntryRead.model_validate(e).model_dump(mode="json") for e in entries], {}

    return await ctx.runtime.idempotency.run(ctx.principal, idempotency_key, "POST /memberships/points/batch",
                                             body.model_dump(mode="json"), create)


@router.get("/{membership_id}", response_model=MembershipRead, dependencies=[staff],
            responses=problem_responses(404))
async def get_membership(ctx: CtxDep, membership_id: uuid.UUID, response: Response):  # type: ignore[no-untyped-def]
    return tagged(response, await service.get_membership(ctx, membership_id))


@router.patch("/{membership_id}", response_model=MembershipRead, dependencies=[staff],
              responses=problem_responses(403, 404, 412, 428))
async def update_membership(ctx: CtxDep, membership_id: uuid.UUID, body: MembershipUpdate, response: Response,
                            if_match: IfMatch = None):  # type: ignore[no-untyped-def]
    """Upgrade the tier, renew (`expires_at`) or set the status (active, expired, frozen, withdrawn).
    Requires `If-Match`."""
    return tagged(response, await service.update_membership(ctx, membership_id, body, if_match))


@router.delete("/{membership_id}", status_code=204, response_class=Response, dependencies=[managers],
               responses=problem_responses(403, 404, 412))
async def delete_membership(ctx: CtxDep, membership_id: uuid.UUID, if_match: IfMatch = None) -> Response:
    """Delete a withdrawn (退会) membership (managers); any other status answers 422. The audit log keeps it."""
    await service.delete_membership(ctx, membership_id, if_match)
    return Response(status_code=204)


@router.post("/{membership_id}/points", status_code=201, response_model=PointsEntryRead, dependencies=[staff],
             responses=problem_responses(403, 404))
async def adjust_points(ctx: CtxDep, membership_id: uuid.UUID, body: PointsAdjust,
                        idempotency_key: IdempotencyKey = None) -> Response:
    """Add or take off points with the reason and the responsible staff member (业务员). Honours `Idempotency-Key`."""

    async def create():  # type: ignore[no-untyped-def]
        entry = await service.adjust_points(ctx, membership_id, body)
        return PointsEntryRead.model_validate(entry).model_dump(mode="json"), {}

    return await ctx.runtime.idempotency.run(ctx.principal, idempotency_key,
                                             f"POST /memberships/{membership_id}/points", body.model_dump(mode="json"),
                                             create)


@router.get("/{membership_id}/points", response_model=Page[PointsEntryRead], dependencies=[staff],
            responses=problem_responses(404))
async def points_ledger(ctx: CtxDep, membership_id: uuid.UUID,
                        params: Annotated[PageParams, Depends(page_params)]) -> dict:
    """The points ledger (积分明细), newest first."""
    return make_page(await service.ledger(ctx, membership_id, params), params)
