"""Responses for staff: read them, record one answered by phone, and review flagged ones."""

from __future__ import annotations

import uuid
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from survey_svc.deps import CtxDep, IdempotencyKey
from survey_svc.invitations.service import (InviteRequest, SubjectUnknown, SurveyUnknown, check_subject,
                                            existing_for_subject, invite)
from survey_svc.models import Invitation, Response
from survey_svc.policy import rules_for
from survey_svc.privacy import mask_response
from survey_svc.responses import schemas as s
from survey_svc.responses.service import NotAnswerable, Submission, submit
from survey_svc.surveys.answers import AnswerErrors
from shared.auth import Principal, ensure_store, require_roles, scoped
from shared.auth.roles import STAFF, Role
from shared.auth.scoping import get_scoped
from shared.db.base import where_given
from shared.errors import Conflict, InvalidField, InvalidFields, problem_responses
from shared.http.pagination import Page, PageParams, make_page, page_params, paginate
from shared.ids import new_id
from shared.validation import IsoDateTime

router = APIRouter(prefix="/api/v1/surveys/responses", tags=["survey responses"],
                   responses=problem_responses(401, 403, 422))
staff_only = require_roles(*STAFF)
reviewers = require_roles(Role.CS_MANAGER, Role.CS_DIRECTOR, Role.ADMIN)


def answer_errors(exc: AnswerErrors) -> InvalidFields:
    return InvalidFields({f"body.answers.{k}": v for k, v in exc.errors.items()})


def view(resp: Response, principal: Principal) -> s.ResponseRead:
    """An answer as the caller may read it: phone numbers in its comment and text answers masked unless the
    caller sees personal data."""
    body = s.ResponseRead.model_validate(resp)
    if not principal.sees_pii:
        mask_response(body)
    return body


@router.get("", response_model=Page[s.ResponseRead], dependencies=[staff_only])
async def list_responses(
        ctx: CtxDep, params: Annotated[PageParams, Depends(page_params)],
        store_id: uuid.UUID | None = None, customer_id: uuid.UUID | None = None,
        staff_id: Annotated[uuid.UUID | None, Query(description="The advisor or consultant rated.")] = None,
        survey: Annotated[str | None, Query(max_length=60)] = None,
        low_score: bool | None = None,
        review_status: Annotated[str | None, Query(pattern="^(none|pending|accepted|rejected)$")] = None,
        answered_from: IsoDateTime | None = None, answered_to: IsoDateTime | None = None) -> dict:
    """Responses of your stores, newest first."""
    if store_id is not None:
        ensure_store(ctx.principal, store_id)
    stmt = where_given(scoped(sa.select(Response), Response, ctx.principal),
                       (Response.store_id, store_id), (Response.customer_id, customer_id),
                       (Response.staff_id, staff_id), (Response.survey_key, survey),
                       (Response.low_score, low_score), (Response.review_status, review_status))
    if answered_from is not None:
        stmt = stmt.where(Response.answered_at >= answered_from)
    if answered_to is not None:
        stmt = stmt.where(Response.answered_at < answered_to)
    rows = (await ctx.session.scalars(paginate(stmt, Response.id, params))).all()
    return make_page([view(r, ctx.principal) for r in rows], params)


@router.get("/{response_id}", response_model=s.ResponseRead, dependencies=[staff_only],
            responses=problem_responses(404))
async def get_response(ctx: CtxDep, response_id: uuid.UUID) -> s.ResponseRead:
    return view(await get_scoped(ctx.session, Response, ctx.principal, response_id, "Response"), ctx.principal)


@router.post("", status_code=201, response_model=s.ResponseRead, dependencies=[staff_only],
             responses=problem_responses(404, 409))
async def record_phone_response(ctx: CtxDep, body: s.PhoneResponse,
                                idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Record a survey the customer answered by phone during a callback (channel `phone`, you as the recorder):
    on their open invitation, or about a visit / delivery / complaint of theirs none was sent for. Validated and
    scored like a web answer; taken down by the staff member it rates, it waits for review. 409 when the
    invitation is answered, expired or cancelled (one answer per invitation). Honours `Idempotency-Key`."""

    async def created() -> tuple[dict, dict[str, str]]:
        resp = await _record(ctx, body)
        return view(resp, ctx.principal).model_dump(mode="json"), {"Location": f"{router.prefix}/{resp.id}"}

    return await ctx.runtime.idempotency.run(ctx.principal, idempotency_key, "POST /surveys/responses",
                                             body.model_dump(mode="json"), created)


async def _record(ctx: CtxDep, body: s.PhoneResponse) -> Response:
    now = ctx.runtime.clock()
    if body.invitation_id is not None:
        inv = await get_scoped(ctx.session, Invitation, ctx.principal, body.invitation_id, "Invitation",
                               for_update=True)
    else:
        assert body.store_id and body.customer_id and body.about_type and body.about_id and body.survey
        if not ctx.principal.can_access_store(body.store_id):
            raise InvalidField("body.store_id", "no such store of yours")
        req = InviteRequest(
            tenant_id=ctx.principal.tenant_id, store_id=body.store_id, idempotency_key=f"phone:{new_id()}",
            survey_key=body.survey, customer_id=body.customer_id, about_type=body.about_type,
            about_id=body.about_id, channels=[], not_before=now, source="phone", created_by=ctx.principal.subject)
        try:
            await check_subject(ctx.session, req)
        except SubjectUnknown as exc:
            raise InvalidField(exc.field, exc.message) from None
        existing = await existing_for_subject(ctx.session, req)
        if existing is not None:
            raise Conflict("This survey about this subject already has an invitation: answer on it.",
                           existing_id=existing.id)
        try:
            inv = await invite(ctx.session, ctx.outbox, ctx.runtime.settings,
                               await rules_for(ctx.session, ctx.principal.tenant_id), req, now)
        except SurveyUnknown:
            raise InvalidField("body.survey", "no such survey in your dealer group") from None
        if inv is None:
            raise Conflict("This survey about this subject already has an invitation.")
    try:
        resp = await submit(ctx.session, ctx.outbox, inv, Submission(
            answers=body.answers, channel="phone", recorded_by=ctx.principal.subject), now)
    except NotAnswerable as exc:
        raise Conflict(f"The invitation is {exc.state}.") from None
    except AnswerErrors as exc:
        raise answer_errors(exc) from None
    ctx.audit.record(ctx.session, ctx.principal, "response.phone", "response", resp.id, tenant_id=resp.tenant_id,
                     store_id=resp.store_id, after={"invitation_id": str(inv.id)})
    await ctx.session.commit()
    return resp


@router.post("/{response_id}/review", response_model=s.ResponseRead, dependencies=[reviewers],
             responses=problem_responses(404, 409))
async def review_response(ctx: CtxDep, response_id: uuid.UUID, body: s.Review) -> s.ResponseRead:
    """Decide on a flagged answer (CS manager, director, admin): accepted answers count in reports, rejected ones
    do not. 409 when the answer was not flagged or is already decided."""
    resp = await get_scoped(ctx.session, Response, ctx.principal, response_id, "Response", for_update=True)
    if resp.review_status != "pending":
        raise Conflict(f"The response is not waiting for review ({resp.review_status}).")
    resp.review_status, resp.review_note = body.decision, body.note
    resp.reviewed_by, resp.reviewed_at = ctx.principal.subject, ctx.runtime.clock()
    ctx.audit.record(ctx.session, ctx.principal, "response.review", "response", resp.id, tenant_id=resp.tenant_id,
                     store_id=resp.store_id, after={"review_status": body.decision})
    await ctx.session.commit()
    return view(resp, ctx.principal)
