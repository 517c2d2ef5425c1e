"""Invitations: list and read (staff of the store), invite by hand, cancel an open one."""

from __future__ import annotations

import uuid
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from survey_svc.deps import CtxDep, IdempotencyKey
from survey_svc.invitations import schemas as s
from survey_svc.invitations.service import (InviteRequest, SubjectUnknown, SurveyUnknown, check_subject,
                                            existing_for_subject, invite)
from survey_svc.models import Invitation
from survey_svc.policy import rules_for
from survey_svc.responses.service import state_of
from shared.auth import ensure_store, require_roles, scoped
from shared.auth.roles import STAFF
from shared.auth.scoping import get_scoped
from shared.db.base import where_given
from shared.errors import Conflict, Forbidden, InvalidField, problem_responses
from shared.http.pagination import Page, PageParams, make_page, page_params, paginate
from shared.ids import new_id

router = APIRouter(prefix="/api/v1/surveys/invitations", tags=["survey invitations"],
                   responses=problem_responses(401, 403, 422))
staff_only = require_roles(*STAFF)


def _read(inv: Invitation, now) -> s.InvitationRead:  # type: ignore[no-untyped-def]
    body = s.InvitationRead.model_validate(inv)
    body.status = state_of(inv, now)  # type: ignore[assignment]
    return body


@router.get("", response_model=Page[s.InvitationRead], dependencies=[staff_only])
async def list_invitations(
        ctx: CtxDep, params: Annotated[PageParams, Depends(page_params)],
        store_id: uuid.UUID | None = None, customer_id: uuid.UUID | None = None,
        about_id: Annotated[uuid.UUID | None, Query(description="A visit, vehicle (delivery) or complaint id.")] = None,
        survey: Annotated[str | None, Query(max_length=60)] = None,
        status: s.InvitationStatus | None = None) -> dict:
    """Invitations of your stores, newest first."""
    if store_id is not None:
        ensure_store(ctx.principal, store_id)
    now = ctx.runtime.clock()
    stmt = where_given(scoped(sa.select(Invitation), Invitation, ctx.principal),
                       (Invitation.store_id, store_id), (Invitation.customer_id, customer_id),
                       (Invitation.about_id, about_id), (Invitation.survey_key, survey))
    if status == "expired":
        stmt = stmt.where(sa.or_(Invitation.status == "expired",
                                 sa.and_(Invitation.status == "open", Invitation.expires_at <= now)))
    elif status == "open":
        stmt = stmt.where(Invitation.status == "open", Invitation.expires_at > now)
    elif status is not None:
        stmt = stmt.where(Invitation.status == status)
    rows = (await ctx.session.scalars(paginate(stmt, Invitation.id, params))).all()
    return make_page(list(rows), params, lambda i: _read(i, now))


@router.get("/{invitation_id}", response_model=s.InvitationRead, dependencies=[staff_only],
            responses=problem_responses(404))
async def get_invitation(ctx: CtxDep, invitation_id: uuid.UUID) -> s.InvitationRead:
    inv = await get_scoped(ctx.session, Invitation, ctx.principal, invitation_id, "Invitation")
    return _read(inv, ctx.runtime.clock())


@router.post("", status_code=201, response_model=s.InvitationRead, dependencies=[staff_only],
             responses=problem_responses(404, 409))
async def create_invitation(ctx: CtxDep, body: s.InvitationCreate,
                            idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Invite a customer to a survey about a visit, delivery (vehicle id) or complaint of theirs in that store;
    the link goes out through notify_svc. 409 when that survey about that subject already has an open or
    answered invitation (one rating per repair order). Honours `Idempotency-Key`."""

    async def created() -> tuple[dict, dict[str, str]]:
        inv = await _create(ctx, body)
        return _read(inv, ctx.runtime.clock()).model_dump(mode="json"), {"Location": f"{router.prefix}/{inv.id}"}

    return await ctx.runtime.idempotency.run(ctx.principal, idempotency_key, "POST /surveys/invitations",
                                             body.model_dump(mode="json"), created)


async def _create(ctx: CtxDep, body: s.InvitationCreate) -> Invitation:
    if not ctx.principal.can_access_store(body.store_id):
        raise InvalidField("body.store_id", "no such store of yours")
    req = InviteRequest(
        tenant_id=ctx.principal.tenant_id, store_id=body.store_id, idempotency_key=f"staff:{new_id()}",
        survey_key=body.survey, customer_id=body.customer_id, vehicle_id=body.vehicle_id,
        about_type=body.about_type, about_id=body.about_id, staff_id=body.staff_id, channels=list(body.channels),
        not_before=ctx.runtime.clock(), source="staff", created_by=ctx.principal.subject)
    try:
        await check_subject(ctx.session, req)
    except SubjectUnknown as exc:
        raise InvalidField(exc.field, exc.message) from None
    existing = await existing_for_subject(ctx.session, req)
    if existing is not None:
        raise Conflict("This survey about this subject already has an invitation.", existing_id=existing.id)
    try:
        inv = await invite(ctx.session, ctx.outbox, ctx.runtime.settings,
                           await rules_for(ctx.session, ctx.principal.tenant_id), req, ctx.runtime.clock())
    except SurveyUnknown:
        raise InvalidField("body.survey", "no such survey in your dealer group") from None
    if inv is None:
        raise Conflict("This survey about this subject already has an invitation.")
    ctx.audit.record(ctx.session, ctx.principal, "invitation.create", "invitation", inv.id,
                     tenant_id=inv.tenant_id, store_id=inv.store_id, after={"survey": inv.survey_key})
    await ctx.session.commit()
    return inv


@router.post("/{invitation_id}/cancel", response_model=s.InvitationRead, dependencies=[staff_only],
             responses=problem_responses(403, 404, 409))
async def cancel_invitation(ctx: CtxDep, invitation_id: uuid.UUID) -> s.InvitationRead:
    """Withdraw an open invitation (its link then shows a friendly "no longer open" page). Not by the staff member
    it rates (403): a survey about one's own work is withdrawn by a colleague or a manager, on the record."""
    inv = await get_scoped(ctx.session, Invitation, ctx.principal, invitation_id, "Invitation", for_update=True)
    if inv.staff_id is not None and inv.staff_id == ctx.principal.subject:
        raise Forbidden("This survey rates your own work: a colleague or a manager may withdraw it.")
    now = ctx.runtime.clock()
    if state_of(inv, now) != "open":
        raise Conflict(f"The invitation is {state_of(inv, now)}.")
    inv.status, inv.remind_at = "cancelled", None
    ctx.audit.record(ctx.session, ctx.principal, "invitation.cancel", "invitation", inv.id,
                     tenant_id=inv.tenant_id, store_id=inv.store_id, after={"status": "cancelled"})
    await ctx.session.commit()
    return _read(inv, now)
