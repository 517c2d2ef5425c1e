"""Message history, "why wasn't this customer contacted?", replay, bulk sends and the contact policy."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from notify_svc.deps import CtxDep, IdempotencyKey
from notify_svc.messages import service
from notify_svc.messages.schemas import (BulkCreate, BulkRead, MessageDetail, MessageRead, PolicyBody, PolicyRead,
                                         Status, WhyReport)
from shared.auth import require_roles
from shared.auth.roles import MANAGERS, STAFF, Role
from shared.errors import problem_responses
from shared.http.pagination import Page, PageParams, page_params

router = APIRouter(tags=["messages"], responses=problem_responses(401, 422))
can_read = require_roles(*STAFF)
can_replay = require_roles(*MANAGERS, Role.CS_AGENT)
can_bulk = require_roles(*MANAGERS)
StoreQuery = Annotated[uuid.UUID | None, Query(description="A store of yours (default: the group-wide policy).")]


@router.get("/api/v1/messages", response_model=Page[MessageRead], dependencies=[can_read])
async def list_messages(
        ctx: CtxDep, params: Annotated[PageParams, Depends(page_params)],
        customer_id: Annotated[uuid.UUID | None, Query(description="One customer's message history.")] = None,
        status: Annotated[Status | None, Query(description="Only messages in this status.")] = None,
        source: Annotated[str | None, Query(max_length=20, description="followup, survey, bulk, escalation.")] = None,
        template: Annotated[str | None, Query(max_length=60, description="Template key.")] = None,
        store_id: Annotated[uuid.UUID | None, Query(description="Only this store's messages.")] = None,
) -> dict[str, Any]:
    """Messages of your stores, newest first: a customer's history with `customer_id`."""
    return await service.list_messages(ctx, params, customer_id=customer_id, status=status, source=source,
                                       template=template, store_id=store_id)


@router.get("/api/v1/messages/why", response_model=WhyReport, dependencies=[can_read])
async def why(ctx: CtxDep,
              customer_id: Annotated[uuid.UUID | None, Query(description="The customer asked about.")] = None,
              idempotency_key: Annotated[str | None, Query(max_length=200, description="One follow-up occurrence "
                                                           "(its occurrence key).")] = None,
              limit: Annotated[int, Query(ge=1, le=200, description="Most recent touches to show.")] = 50,
              ) -> dict[str, Any]:
    """"Why wasn't this customer contacted?": every message requested for the customer (or one follow-up
    occurrence) with its status, the rule that held, suppressed or failed it (consent off, quiet hours, budget,
    template not approved, quota, provider failure, dead-lettered...) in plain words, its full trail, and whether
    it can be replayed. Touches the playbook planned but never asked to send are on `GET /api/v1/followups`."""
    return await service.why(ctx, customer_id, idempotency_key, limit)


@router.get("/api/v1/messages/{message_id}", response_model=MessageDetail, dependencies=[can_read],
            responses=problem_responses(404))
async def get_message(ctx: CtxDep, message_id: uuid.UUID) -> dict[str, Any]:
    """One message with its trail: every decision, attempt and receipt."""
    return await service.get_message(ctx, message_id)


@router.post("/api/v1/messages/{message_id}/replay", response_model=MessageDetail, dependencies=[can_replay],
             responses=problem_responses(403, 404, 409))
async def replay(ctx: CtxDep, message_id: uuid.UUID) -> dict[str, Any]:
    """Send again a message that failed or was held back for a reason that may have gone away (provider failure,
    dead-lettered, unknown outcome, template not approved...). The whole policy is checked again: consent, quiet
    hours and budgets still apply. Repeating the call while the message is on its way changes nothing;
    409 for outcomes a replay cannot change (no consent, expired, caps)."""
    return await service.replay(ctx, message_id)


@router.post("/api/v1/messages/bulk", status_code=201, response_model=BulkRead, dependencies=[can_bulk],
             responses=problem_responses(403, 404, 409))
async def create_bulk(ctx: CtxDep, body: BulkCreate, idempotency_key: IdempotencyKey = None) -> Response:
    """One bulk send as a job (e.g. the birthday list of a date range, DOMAIN §12.6): one message per recipient,
    each checked against consent, quiet hours and caps like any other. Honours `Idempotency-Key`."""

    async def created() -> tuple[dict[str, Any], dict[str, str]]:
        job = await service.create_bulk(ctx, body)
        return BulkRead.model_validate(job).model_dump(mode="json"), {"Location": f"/api/v1/messages/bulk/{job['id']}"}

    return await ctx.runtime.idempotency.run(ctx.principal, idempotency_key, "POST /messages/bulk",
                                             body.model_dump(mode="json"), created)


@router.get("/api/v1/messages/bulk/{job_id}", response_model=BulkRead, dependencies=[can_read],
            responses=problem_responses(404))
async def bulk_status(ctx: CtxDep, job_id: uuid.UUID) -> dict[str, Any]:
    """A bulk job's progress: recipients by message status."""
    return await service.bulk_status(ctx, job_id)


@router.get("/api/v1/messages/bulk/{job_id}/recipients", response_model=Page[MessageRead], dependencies=[can_read],
            responses=problem_responses(404))
async def bulk_recipients(ctx: CtxDep, job_id: uuid.UUID,
                          params: Annotated[PageParams, Depends(page_params)]) -> dict[str, Any]:
    """Per-recipient results of a bulk job."""
    return await service.bulk_recipients(ctx, job_id, params)


@router.get("/api/v1/notify/policy", response_model=PolicyRead, dependencies=[can_read],
            responses=problem_responses(404))
async def get_policy(ctx: CtxDep, store_id: StoreQuery = None) -> dict[str, Any]:
    """The contact policy in force: quiet hours, marketing window, caps and the group-wide budget (a store's
    override, else the group's, else the defaults; `scope` says which)."""
    return await service.get_policy(ctx, store_id)


@router.put("/api/v1/notify/policy", response_model=PolicyRead, dependencies=[can_bulk],
            responses=problem_responses(403, 404))
async def put_policy(ctx: CtxDep, body: PolicyBody, store_id: StoreQuery = None) -> dict[str, Any]:
    """Set the group's contact policy (CS director, admin) or, with `store_id`, a store's override (its service or
    CS manager). Applies to every message decided from now on, including those already held."""
    return await service.put_policy(ctx, store_id, body)
