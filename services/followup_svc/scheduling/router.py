from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from followup_svc.deps import CtxDep, RuntimeDep
from followup_svc.scheduling import service
from followup_svc.scheduling.schemas import (FollowUpCancel, FollowUpRead, FollowUpReschedule, State, TestClockRead,
                                             TestClockSet)
from shared.auth import require_roles
from shared.auth.roles import MANAGERS, STAFF, Role
from shared.errors import InvalidField, NotFound, problem_responses
from shared.http.pagination import Page, PageParams, page_params
from shared.validation import IsoDateTime

router = APIRouter(tags=["schedule"], responses=problem_responses(401, 422))
can_read = require_roles(*STAFF)
can_correct = require_roles(*MANAGERS)
EARLIEST, LATEST = datetime(1990, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


async def _test_clock_enabled(runtime: RuntimeDep) -> None:
    """The test-clock routes exist only where the test clock is enabled (never in production)."""
    if not runtime.settings.test_clock:  # type: ignore[attr-defined]
        raise NotFound("Not found.")


@router.get("/api/v1/followups", response_model=Page[FollowUpRead], dependencies=[can_read])
async def list_followups(
        ctx: CtxDep, params: Annotated[PageParams, Depends(page_params)],
        customer_id: Annotated[uuid.UUID | None, Query(description="Touches of this customer.")] = None,
        vehicle_id: Annotated[uuid.UUID | None, Query(description="Touches about this vehicle.")] = None,
        subject_id: Annotated[uuid.UUID | None, Query(description="Touches of one subject (visit, appointment...).")]
        = None,
        state: Annotated[State | None, Query(description="Only in this state.")] = None,
        due_from: Annotated[IsoDateTime | None, Query(alias="from", description="Due at or after (ISO 8601).")] = None,
        due_to: Annotated[IsoDateTime | None, Query(alias="to", description="Due before (exclusive).")] = None,
) -> dict[str, Any]:
    """Every planned touch of your stores, newest due first: why a customer was (or was not) contacted. Each says
    which rule version planned it, its state (scheduled, fired, skipped, cancelled, failed), the reason, when it was
    due and fired, and the task it created."""
    for name, value in (("from", due_from), ("to", due_to)):
        if value is not None and not EARLIEST <= value <= LATEST:
            raise InvalidField(f"query.{name}", "must be between 1990 and 2100")
    if due_from and due_to and due_to <= due_from:
        raise InvalidField("query.to", "must be after from")
    items, cursor = await service.list_followups(ctx, params, customer_id=customer_id, vehicle_id=vehicle_id,
                                                 subject_id=subject_id, state=state, due_from=due_from, due_to=due_to)
    return {"items": items, "next_cursor": cursor}


@router.get("/api/v1/followups/{followup_id}", response_model=FollowUpRead, dependencies=[can_read],
            responses=problem_responses(404))
async def get_followup(ctx: CtxDep, followup_id: uuid.UUID) -> dict[str, Any]:
    """One planned touch of your stores and what became of it."""
    return await service.get_followup(ctx, followup_id)


@router.post("/api/v1/followups/{followup_id}/cancel", response_model=FollowUpRead, dependencies=[can_correct],
             responses=problem_responses(403, 404, 409))
async def cancel_followup(ctx: CtxDep, followup_id: uuid.UUID, body: FollowUpCancel) -> dict[str, Any]:
    """Cancel a planned touch by hand (managers), with the reason. Only scheduled ones: anything else answers 409
    with its state, so a repeated request changes nothing."""
    return await service.cancel(ctx, followup_id, body.reason)


@router.post("/api/v1/followups/{followup_id}/reschedule", response_model=FollowUpRead, dependencies=[can_correct],
             responses=problem_responses(403, 404, 409))
async def reschedule_followup(ctx: CtxDep, followup_id: uuid.UUID, body: FollowUpReschedule) -> dict[str, Any]:
    """Move a planned touch to another time (managers): `due_at` in the future, at most 5 years ahead, with the
    reason. Only scheduled ones (409 otherwise); repeating it sets the same time again."""
    return await service.reschedule(ctx, followup_id, body)


@router.get("/api/v1/test-clock", response_model=TestClockRead,
            dependencies=[Depends(_test_clock_enabled), require_roles(Role.ADMIN)], responses=problem_responses(404))
async def read_test_clock(runtime: RuntimeDep) -> dict[str, Any]:
    """The service clock (admins; demos and tests only: 404 where the test clock is disabled)."""
    return await service.read_clock(runtime)


@router.put("/api/v1/test-clock", response_model=TestClockRead,
            dependencies=[Depends(_test_clock_enabled), require_roles(Role.ADMIN)], responses=problem_responses(404))
async def set_test_clock(ctx: CtxDep, body: TestClockSet) -> dict[str, Any]:
    """Set (`offset_seconds`) or move (`advance_seconds`) the service clock ahead of real time, for every process
    of the service, and wake the scheduler and the SLA watch (admins; 404 where the test clock is disabled).
    Setting an offset is repeat-safe; advancing is not (each call moves the clock again)."""
    return await service.set_clock(ctx, body)
