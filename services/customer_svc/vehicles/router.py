from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from customer_svc.deps import CtxDep, IdempotencyKey, IfMatch
from customer_svc.vehicles import service
from customer_svc.vehicles.schemas import (DeliveryRequest, OwnershipRead, TransferRequest, VehicleCreate,
                                           VehicleRead, VehicleUpdate)
from shared.auth import require_roles
from shared.auth.roles import STAFF
from shared.errors import InvalidField, problem_responses
from shared.http.etag import tagged
from shared.http.pagination import Page, PageParams, make_page, page_params
from shared.validation import normalize_plate, normalize_vin

router = APIRouter(prefix="/api/v1/vehicles", tags=["vehicles"], responses=problem_responses(401, 422))
can_read = require_roles(*STAFF, scope="vehicles:read")
can_write = require_roles(*STAFF, scope="vehicles:write")


@router.post("", status_code=201, response_model=VehicleRead, dependencies=[can_write],
             responses=problem_responses(403, 409))
async def register_vehicle(ctx: CtxDep, body: VehicleCreate, idempotency_key: IdempotencyKey = None) -> Response:
    """Register a vehicle to a customer. The VIN is unique in the dealer group (409 with `existing_id`)."""
    return await ctx.runtime.idempotency.create(ctx.principal, idempotency_key, "POST /vehicles", body,
                                                lambda: service.register_vehicle(ctx, body), VehicleRead, "/api/v1/vehicles")


@router.get("", response_model=Page[VehicleRead], dependencies=[can_read])
async def list_vehicles(ctx: CtxDep, params: Annotated[PageParams, Depends(page_params)],
                        customer_id: uuid.UUID | None = None,
                        plate: Annotated[str | None, Query(max_length=12)] = None,
                        vin: Annotated[str | None, Query(max_length=17)] = None) -> dict:
    """Vehicles of your stores, by owner, plate or VIN."""
    try:
        plate = normalize_plate(plate) if plate else None
    except ValueError as exc:
        raise InvalidField("query.plate", str(exc)) from exc
    try:
        vin = normalize_vin(vin) if vin else None
    except ValueError as exc:
        raise InvalidField("query.vin", str(exc)) from exc
    return make_page(await service.list_vehicles(ctx, params, customer_id, plate, vin), params)


@router.get("/{vehicle_id}", response_model=VehicleRead, dependencies=[can_read], responses=problem_responses(404))
async def get_vehicle(ctx: CtxDep, vehicle_id: uuid.UUID, response: Response):  # type: ignore[no-untyped-def]
    return tagged(response, await service.get_vehicle(ctx, vehicle_id))


@router.patch("/{vehicle_id}", response_model=VehicleRead, dependencies=[can_write],
              responses=problem_responses(404, 412, 428))
async def update_vehicle(ctx: CtxDep, vehicle_id: uuid.UUID, body: VehicleUpdate, response: Response,
                         if_match: IfMatch = None):  # type: ignore[no-untyped-def]
    """Change a vehicle (plate, dates that drive reminders, mileage). Requires `If-Match`."""
    return tagged(response, await service.update_vehicle(ctx, vehicle_id, body, if_match))


@router.post("/{vehicle_id}/delivery", response_model=VehicleRead, dependencies=[can_write],
             responses=problem_responses(404))
async def deliver(ctx: CtxDep, vehicle_id: uuid.UUID, body: DeliveryRequest, response: Response):  # type: ignore[no-untyped-def]
    """Record the handover (交车); repeating it with the same date is harmless."""
    return tagged(response, await service.deliver(ctx, vehicle_id, body))


@router.post("/{vehicle_id}/transfer", response_model=VehicleRead, dependencies=[can_write],
             responses=problem_responses(404))
async def transfer(ctx: CtxDep, vehicle_id: uuid.UUID, body: TransferRequest, response: Response):  # type: ignore[no-untyped-def]
    """Move the vehicle to another customer of the same store; the ownership history keeps the previous owner."""
    return tagged(response, await service.transfer(ctx, vehicle_id, body))


@router.get("/{vehicle_id}/ownership", response_model=list[OwnershipRead], dependencies=[can_read],
            responses=problem_responses(404))
async def ownership(ctx: CtxDep, vehicle_id: uuid.UUID) -> list:
    """Owners over time, oldest first."""
    return await service.ownership(ctx, vehicle_id)
