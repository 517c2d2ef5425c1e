"""Complaints API (DOMAIN §10): intake from any channel, the case log, its actions, and the lists managers watch.

Every route is store-scoped: a case of another store answers 404. Actions answer the case with its new ETag.
`If-Match` (as in followup_svc and customer_svc): required on the actions that change what the case says or
decide on what was read (428 without, 412 when stale); checked when sent on status and escalate; notes take none.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from survey_svc.complaints import schemas as s
from survey_svc.complaints import service
from survey_svc.deps import Ctx, CtxDep, IdempotencyKey, IfMatch
from shared.auth import require_roles
from shared.auth.roles import MANAGERS, STAFF
from shared.errors import problem_responses
from shared.http.etag import tagged
from shared.http.pagination import Page, PageParams, make_page, page_params

router = APIRouter(prefix="/api/v1/complaints", tags=["complaints"], responses=problem_responses(401, 403, 422))
staff_only = require_roles(*STAFF)
managers_only = require_roles(*MANAGERS)
approvers_only = require_roles(*service.APPROVERS)
#: Actions requiring If-Match, and those checking it when sent.
ACTION = problem_responses(404, 409, 412, 428)
TRANSITION = problem_responses(404, 409, 412)


def _read(ctx: Ctx, c, response: Response) -> s.ComplaintRead:  # type: ignore[no-untyped-def]
    return tagged(response, service.view(c, ctx.principal, ctx.runtime.clock()))


@router.post("", status_code=201, response_model=s.ComplaintRead, dependencies=[staff_only],
             responses=problem_responses(404, 409))
async def create_complaint(ctx: CtxDep, body: s.ComplaintCreate, idempotency_key: IdempotencyKey = None) -> Response:
    """Take a complaint in from any channel; you become its owner (首问负责制). Severity is computed from the
    category, nature, safety, the money asked for and the customer's complaints of the last 12 months (a given
    severity can only raise it); the SLA deadlines follow from it. With `response_id` the case is bound to that
    survey answer (one complaint per response: 409 with `existing_id`). A safety case goes to the service
    manager at once. Honours `Idempotency-Key`."""
    return await ctx.runtime.idempotency.create(
        ctx.principal, idempotency_key, "POST /complaints", body,
        lambda: service.create(ctx, body, idempotency_key), s.ComplaintRead, "/api/v1/complaints",
        view=lambda c: service.view(c, ctx.principal, ctx.runtime.clock()))


@router.get("", response_model=Page[s.ComplaintRead], dependencies=[staff_only], responses=problem_responses(404))
async def list_complaints(
        ctx: CtxDep, params: Annotated[PageParams, Depends(page_params)],
        store_id: uuid.UUID | None = None,
        status: Annotated[list[s.Status] | None, Query(max_length=4, description="Repeatable.")] = None,
        severity: s.Severity | None = None, kind: s.Kind | None = None,
        owner_id: Annotated[uuid.UUID | None, Query(description="Whose cases (yours: your id).")] = None,
        customer_id: uuid.UUID | None = None,
        goodwill_status: Annotated[s.GoodwillStatus | None, Query(
            description="`pending`: goodwill requests waiting for a manager.")] = None,
        overdue: Annotated[bool | None, Query(description="true: first response, resolution or (once resolved) "
                                                          "closing past due.")] = None,
) -> dict:
    """Complaints of your stores, newest first."""
    f = service.ListFilter(store_id=store_id, statuses=list(status) if status else None, severity=severity,
                           kind=kind, owner_id=owner_id, customer_id=customer_id, goodwill_status=goodwill_status,
                           overdue=overdue)
    rows = await service.list_complaints(ctx, params, f)
    now = ctx.runtime.clock()
    return make_page(rows, params, lambda c: service.view(c, ctx.principal, now))


@router.get("/{complaint_id}", response_model=s.ComplaintDetail, dependencies=[staff_only],
            responses=problem_responses(404))
async def get_complaint(ctx: CtxDep, complaint_id: uuid.UUID, response: Response) -> s.ComplaintDetail:
    """A complaint with its log (oldest first) and its ETag."""
    return tagged(response, await service.detail(ctx, complaint_id))


@router.post("/{complaint_id}/respond", response_model=s.ComplaintRead, dependencies=[staff_only],
             responses=ACTION)
async def respond(ctx: CtxDep, complaint_id: uuid.UUID, body: s.RespondWrite, response: Response,
                  if_match: IfMatch = None) -> s.ComplaintRead:
    """Owner or manager: record a contact with the customer; the first one is the first response (SLA).
    Requires `If-Match`."""
    return _read(ctx, await service.respond(ctx, complaint_id, body, if_match), response)


@router.post("/{complaint_id}/notes", response_model=s.ComplaintRead, dependencies=[staff_only],
             responses=problem_responses(404, 409))
async def add_note(ctx: CtxDep, complaint_id: uuid.UUID, body: s.NoteWrite, response: Response) -> s.ComplaintRead:
    """Anyone of the store: add to the case log (情况跟踪). Only `investigation` changes the case (and its ETag),
    and only its owner or a manager sets it (403)."""
    return _read(ctx, await service.add_note(ctx, complaint_id, body), response)


@router.post("/{complaint_id}/transfer", response_model=s.ComplaintRead, dependencies=[staff_only],
             responses=ACTION)
async def transfer(ctx: CtxDep, complaint_id: uuid.UUID, body: s.TransferWrite, response: Response,
                   if_match: IfMatch = None) -> s.ComplaintRead:
    """Owner or manager: hand the case to another active staff member of its store, with a reason (logged).
    Requires `If-Match`."""
    return _read(ctx, await service.transfer(ctx, complaint_id, body, if_match), response)


@router.post("/{complaint_id}/status", response_model=s.ComplaintRead, dependencies=[staff_only],
             responses=TRANSITION)
async def set_status(ctx: CtxDep, complaint_id: uuid.UUID, body: s.StatusWrite, response: Response,
                     if_match: IfMatch = None) -> s.ComplaintRead:
    """Owner or manager: On-going, In process or Hold. A hold pauses the SLA watch; leaving it moves every open
    deadline on by the time held. Closing is `…/close`. `If-Match` is checked when sent."""
    return _read(ctx, await service.set_status(ctx, complaint_id, body, if_match), response)


@router.post("/{complaint_id}/severity", response_model=s.ComplaintRead, dependencies=[staff_only],
             responses=ACTION)
async def raise_severity(ctx: CtxDep, complaint_id: uuid.UUID, body: s.SeverityWrite, response: Response,
                         if_match: IfMatch = None) -> s.ComplaintRead:
    """Owner or manager: raise the severity (never lower); deadlines shorten to its SLA from intake plus the time
    held. Requires `If-Match`."""
    return _read(ctx, await service.raise_severity(ctx, complaint_id, body, if_match), response)


@router.post("/{complaint_id}/remedies", response_model=s.ComplaintRead, dependencies=[staff_only],
             responses=ACTION)
async def offer_remedies(ctx: CtxDep, complaint_id: uuid.UUID, body: s.RemediesWrite, response: Response,
                         if_match: IfMatch = None) -> s.ComplaintRead:
    """Owner or manager: the solution packages offered to the customer (方案一/二/三), replacing an earlier offer.
    Requires `If-Match`."""
    return _read(ctx, await service.offer_remedies(ctx, complaint_id, body, if_match), response)


@router.post("/{complaint_id}/goodwill", response_model=s.ComplaintRead, dependencies=[staff_only],
             responses=ACTION)
async def request_goodwill(ctx: CtxDep, complaint_id: uuid.UUID, body: s.GoodwillWrite, response: Response,
                           if_match: IfMatch = None) -> s.ComplaintRead:
    """Owner or manager: ask for goodwill. Within the group's limit it is granted; above it the case becomes
    major and `goodwill_status` is `pending` until a manager decides. Requires `If-Match`."""
    return _read(ctx, await service.request_goodwill(ctx, complaint_id, body, if_match), response)


@router.post("/{complaint_id}/goodwill/approve", response_model=s.ComplaintRead, dependencies=[approvers_only],
             responses=ACTION)
async def approve_goodwill(ctx: CtxDep, complaint_id: uuid.UUID, body: s.DecisionWrite, response: Response,
                           if_match: IfMatch = None) -> s.ComplaintRead:
    """Service manager, CS manager, director or admin (not the requester): approve the pending goodwill.
    Requires `If-Match` (you approve the amount you read)."""
    return _read(ctx, await service.decide_goodwill(ctx, complaint_id, True, body.note, if_match), response)


@router.post("/{complaint_id}/goodwill/reject", response_model=s.ComplaintRead, dependencies=[approvers_only],
             responses=ACTION)
async def reject_goodwill(ctx: CtxDep, complaint_id: uuid.UUID, body: s.RejectWrite, response: Response,
                          if_match: IfMatch = None) -> s.ComplaintRead:
    """Service manager, CS manager, director or admin (not the requester): reject the pending goodwill.
    Requires `If-Match`."""
    return _read(ctx, await service.decide_goodwill(ctx, complaint_id, False, body.reason, if_match), response)


@router.post("/{complaint_id}/resolve", response_model=s.ComplaintRead, dependencies=[staff_only],
             responses=ACTION)
async def resolve(ctx: CtxDep, complaint_id: uuid.UUID, body: s.ResolveWrite, response: Response,
                  if_match: IfMatch = None) -> s.ComplaintRead:
    """Owner or manager: the remedy the customer chose was carried out. Naming an offered package (its label)
    resolves with that package's goodwill (another `goodwill_amount`: 422). 409 while goodwill approval is pending,
    or for goodwill above the limit not approved. The SLA watch then waits for the closing: by the resolution
    deadline, or 48 hours after the resolution if that is later. Requires `If-Match`."""
    return _read(ctx, await service.resolve(ctx, complaint_id, body, if_match), response)


@router.post("/{complaint_id}/close", response_model=s.ComplaintRead, dependencies=[managers_only],
             responses=ACTION)
async def close(ctx: CtxDep, complaint_id: uuid.UUID, body: s.CloseWrite, response: Response,
                if_match: IfMatch = None) -> s.ComplaintRead:
    """Managers (the sign-off, R-PERM-06): close a resolved case with root cause, action taken and the
    customer's feedback on the result and the speed. Requires `If-Match`."""
    return _read(ctx, await service.close(ctx, complaint_id, body, if_match), response)


@router.post("/{complaint_id}/escalate", response_model=s.ComplaintRead, dependencies=[staff_only],
             responses=TRANSITION)
async def escalate(ctx: CtxDep, complaint_id: uuid.UUID, body: s.EscalateWrite, response: Response,
                   if_match: IfMatch = None) -> s.ComplaintRead:
    """Anyone of the store: report the case up the chain now (default one level; `to_level` 2 reaches the sales
    manager for sales cases, else the service manager; a level nobody active holds is passed on to the next).
    `If-Match` is checked when sent."""
    return _read(ctx, await service.escalate_now(ctx, complaint_id, body, if_match), response)
