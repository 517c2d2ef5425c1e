from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from customer_svc.deps import CtxDep, IdempotencyKey
from customer_svc.visits import service
from customer_svc.visits.schemas import EARLIEST, LATEST, VisitCreate, VisitRead, VisitType
from shared.auth import require_roles
from shared.auth.roles import STAFF
from shared.errors import InvalidField, problem_responses
from shared.http.pagination import Page, PageParams, make_page, page_params
from shared.validation import IsoDateTime

router = APIRouter(prefix="/api/v1/visits", tags=["visits"], responses=problem_responses(401, 422))
can_read = require_roles(*STAFF, scope="visits:read")
can_write = require_roles(*service.WRITERS, scope="visits:write")


def _location(visit_id: uuid.UUID) -> dict[str, str]:
    return {"Location": f"/api/v1/visits/{visit_id}"}


@router.post("", status_code=201, response_model=VisitRead, dependencies=[can_write],
             responses={200: {"model": VisitRead, "description": "This `external_id` was already recorded: the visit."},
                        **problem_responses(403, 409)})
async def record_visit(ctx: CtxDep, body: VisitCreate, idempotency_key: IdempotencyKey = None) -> Response:
    """Record a settled repair order for a vehicle of your stores (service advisors, managers, DMS integrations
    with scope `visits:write`). The mileage moves the vehicle's odometer. Honours `Idempotency-Key`; a repeated
    `external_id` answers 200 with the visit already recorded."""

    async def create():  # type: ignore[no-untyped-def]
        visit = await service.record_visit(ctx, body)
        return VisitRead.model_validate(visit).model_dump(mode="json"), _location(visit.id)

    try:
        return await ctx.runtime.idempotency.run(ctx.principal, idempotency_key, "POST /visits",
                                                 body.model_dump(mode="json"), create)
    except service.AlreadyRecorded as found:
        return JSONResponse(VisitRead.model_validate(found.visit).model_dump(mode="json"), status_code=200,
                            headers=_location(found.visit.id))


@router.get("", response_model=Page[VisitRead], dependencies=[can_read])
async def list_visits(ctx: CtxDep, params: Annotated[PageParams, Depends(page_params)],
                      vehicle_id: uuid.UUID | None = None, customer_id: uuid.UUID | None = None,
                      completed_from: IsoDateTime | None = None, completed_to: IsoDateTime | None = None,
                      visit_type: VisitType | None = None) -> dict:
    """Visits of your stores (the vehicle's 入厂履历), newest first; `completed_to` is exclusive."""
    for name, value in (("completed_from", completed_from), ("completed_to", completed_to)):
        if value is not None and not EARLIEST <= value <= LATEST:
            raise InvalidField(f"query.{name}", "must be between 1990 and 2100")
    if completed_from and completed_to and completed_to <= completed_from:
        raise InvalidField("query.completed_to", "must be after completed_from")
    rows = await service.list_visits(ctx, params, vehicle_id=vehicle_id, customer_id=customer_id,
                                     completed_from=completed_from, completed_to=completed_to, visit_type=visit_type)
    return make_page(rows, params)


@router.get("/{visit_id}", response_model=VisitRead, dependencies=[can_read], responses=problem_responses(404))
async def get_visit(ctx: CtxDep, visit_id: uuid.UUID):  # type: ignore[no-untyped-def]
    return await service.get_visit(ctx, visit_id)
