from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from followup_svc.appointments import service
from followup_svc.appointments.schemas import (FIRST_YEAR, LAST_YEAR, AppointmentCreate, AppointmentRead,
                                               AppointmentUpdate, SlotDay, SlotFullProblem, SlotRead, Status,
                                               TransitionRequest, appointment_view, bounded)
from followup_svc.deps import CtxDep, IdempotencyKey, IfMatch
from shared.auth import require_roles
from shared.auth.roles import STAFF
from shared.errors import PROBLEM_BASE, PROBLEM_JSON, InvalidField, problem_responses
from shared.http.etag import tagged
from shared.http.pagination import Page, PageParams, make_page, page_params
from shared.observability.context import request_id_var
from shared.validation import IsoDate, IsoDateTime, normalize_plate

router = APIRouter(prefix="/api/v1/appointments", tags=["appointments"], responses=problem_responses(401, 403, 422))
can_read = require_roles(*STAFF, scope="appointments:read")
can_write = require_roles(*service.WRITERS, scope="appointments:write")
SLOT_FULL = {409: {"model": SlotFullProblem, "content": {PROBLEM_JSON: {}},
                   "description": "Slot full (`alternatives` lists the next free slots), the vehicle already has an "
                                  "active appointment (`existing_id`), or the change is not allowed now."}}


def _slot_full(request: Request, exc: service.SlotFull) -> JSONResponse:
    body = SlotFullProblem(
        type=PROBLEM_BASE + "slot-full", title=exc.title, status=409, detail=exc.detail, instance=request.url.path,
        code=exc.code, request_id=request_id_var.get(),
        alternatives=[SlotRead.model_validate(s, from_attributes=True) for s in exc.alternatives],
    ).model_dump(exclude_none=True, mode="json")
    return JSONResponse(body, status_code=409, media_type=PROBLEM_JSON)


async def _offering_alternatives(request: Request, call: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await call()
    except service.SlotFull as exc:
        return _slot_full(request, exc)


def _check_day(day: date | None, name: str = "day") -> None:
    if day is not None and not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise InvalidField(f"query.{name}", "must be between 2000 and 2099")


@router.post("", status_code=201, response_model=AppointmentRead, dependencies=[can_write],
             responses={**problem_responses(409), **SLOT_FULL})
async def book_appointment(ctx: CtxDep, request: Request, body: AppointmentCreate,
                           idempotency_key: IdempotencyKey = None) -> Response:
    """Book a service appointment (预约登记) for a car of your stores, found by its plate: the customer and the
    vehicle must already exist (422 on `body.plate` otherwise). The slot is checked against the store's slot grid,
    business hours and workshop capacity; a full slot answers 409 with the next free `alternatives`. One active
    appointment per vehicle (409 with `existing_id`). Plans the D-3 parts check and the D-1 confirmation call for
    the advisor. Honours `Idempotency-Key`."""
    return await _offering_alternatives(request, lambda: ctx.runtime.idempotency.create(
        ctx.principal, idempotency_key, "POST /appointments", body, lambda: service.book(ctx, body),
        AppointmentRead, "/api/v1/appointments", view=lambda a: appointment_view(a, ctx.principal)))


@router.get("/slots", response_model=SlotDay, dependencies=[can_read], responses=problem_responses(404))
async def get_slots(ctx: CtxDep, store_id: uuid.UUID,
                    day: Annotated[IsoDate, Query(description="The store-local day, e.g. 2026-03-16.")]) -> dict:
    """Free capacity per slot of one store-local day of a store (every slot inside its business hours)."""
    _check_day(day)
    return await service.slot_day(ctx, store_id, day)


@router.get("", response_model=Page[AppointmentRead], dependencies=[can_read], responses=problem_responses(404))
async def list_appointments(
        ctx: CtxDep, params: Annotated[PageParams, Depends(page_params)], store_id: uuid.UUID | None = None,
        day: Annotated[IsoDate | None, Query(description="Slots on this store-local day (needs `store_id`).")] = None,
        slot_from: Annotated[IsoDateTime | None, Query(alias="from", description="Slots starting at or after.")] = None,
        slot_to: Annotated[IsoDateTime | None, Query(alias="to", description="Slots starting before.")] = None,
        status: Status | None = None, plate: Annotated[str | None, Query(max_length=12)] = None,
        advisor_id: uuid.UUID | None = None, vehicle_id: uuid.UUID | None = None,
        customer_id: uuid.UUID | None = None) -> dict:
    """Appointments of your stores (预约管理), newest booking first; filter by store and day, slot range, status,
    plate or advisor."""
    _check_day(day)
    for name, value in (("from", slot_from), ("to", slot_to)):
        if value is not None:
            try:
                bounded(value)
            except ValueError as exc:
                raise InvalidField(f"query.{name}", str(exc)) from None
    if slot_from and slot_to and slot_to <= slot_from:
        raise InvalidField("query.to", "must be after `from`")
    try:
        plate = normalize_plate(plate) if plate else None
    except ValueError as exc:
        raise InvalidField("query.plate", str(exc)) from exc
    rows = await service.list_appointments(ctx, params, store_id=store_id, day=day, slot_from=slot_from,
                                           slot_to=slot_to, status=status, plate=plate, advisor_id=advisor_id,
                                           vehicle_id=vehicle_id, customer_id=customer_id)
    return make_page([appointment_view(a, ctx.principal) for a in rows], params)


@router.get("/{appointment_id}", response_model=AppointmentRead, dependencies=[can_read],
            responses=problem_responses(404))
async def get_appointment(ctx: CtxDep, appointment_id: uuid.UUID, response: Response):  # type: ignore[no-untyped-def]
    """One appointment, with its ETag."""
    return tagged(response, appointment_view(await service.get_appointment(ctx, appointment_id), ctx.principal))


@router.patch("/{appointment_id}", response_model=AppointmentRead, dependencies=[can_write],
              responses={**problem_responses(404, 412, 428), **SLOT_FULL})
async def update_appointment(ctx: CtxDep, request: Request, appointment_id: uuid.UUID, body: AppointmentUpdate,
                             response: Response, if_match: IfMatch = None):  # type: ignore[no-untyped-def]
    """Change an active appointment: move the slot (only while booked; checked like a booking, 409 with
    `alternatives` when full; the D-3/D-1 follow-ups move with it), the advisor, content or notes.
    Requires `If-Match`."""
    async def change():  # type: ignore[no-untyped-def]
        return tagged(response, appointment_view(await service.update(ctx, appointment_id, body, if_match),
                                                 ctx.principal))
    return await _offering_alternatives(request, change)


@router.post("/{appointment_id}/transition", response_model=AppointmentRead, dependencies=[can_write],
             responses={**problem_responses(404, 409, 412, 428)})
async def transition_appointment(ctx: CtxDep, appointment_id: uuid.UUID, body: TransitionRequest,
                                 response: Response, if_match: IfMatch = None):  # type: ignore[no-untyped-def]
    """Reception workflow: booked → arrived (转前台) → in_workshop (进厂: needs `mileage_km` and an advisor) →
    settled (结算) → closed (执行, needs `satisfaction`); booked → cancelled (needs `reason`) or no_show (from the
    slot's start). Leaving booked cancels the pending D-3/D-1 follow-ups. Requires `If-Match`; asking for the
    current status changes nothing."""
    return tagged(response, appointment_view(await service.transition(ctx, appointment_id, body, if_match),
                                             ctx.principal))
