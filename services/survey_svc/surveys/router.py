"""Survey templates (versioned: a change is a new version; answers keep theirs) and the group's survey and
complaint policy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Path, Response

from survey_svc.deps import CtxDep, IfMatch
from survey_svc.models import SurveyPolicy, SurveyTemplate
from survey_svc.policy import PolicyRead, PolicyWrite, rules_for
from survey_svc.surveys.schemas import KEY, TemplateCreate, TemplateRead, TemplateWrite
from survey_svc.surveys.store import add_version, current, ensure_default_surveys
from shared.auth import require_roles
from shared.auth.roles import STAFF, Role
from shared.errors import Duplicate, NotFound, problem_responses
from shared.db.base import utcnow
from shared.http.etag import check_if_match, tagged

router = APIRouter(prefix="/api/v1/surveys", tags=["surveys"], responses=problem_responses(401, 403, 422))
can_read = require_roles(*STAFF)
#: Surveys and thresholds are the dealer group's quality instruments (DOMAIN §3.1 quality tier).
can_write = require_roles(Role.CS_MANAGER, Role.CS_DIRECTOR, Role.ADMIN)
KeyPath = Annotated[str, Path(pattern=KEY.pattern, description="Survey key, e.g. service_satisfaction.")]


@router.get("/templates", response_model=list[TemplateRead], dependencies=[can_read])
async def list_templates(ctx: CtxDep) -> list[SurveyTemplate]:
    """The version in force of every survey of the dealer group."""
    await ensure_default_surveys(ctx.session, ctx.principal.tenant_id)
    await ctx.session.commit()
    rows = (await ctx.session.scalars(sa.select(SurveyTemplate).where(
        SurveyTemplate.tenant_id == ctx.principal.tenant_id, SurveyTemplate.retired_at.is_(None))
        .order_by(SurveyTemplate.key))).all()
    return list(rows)


@router.get("/templates/{key}", response_model=TemplateRead, dependencies=[can_read],
            responses=problem_responses(404))
async def get_template(ctx: CtxDep, key: KeyPath, response: Response) -> SurveyTemplate:
    """The version in force of one survey; its ETag is what a new version's `If-Match` names."""
    found = await current(ctx.session, ctx.principal.tenant_id, key)
    if found is None:
        raise NotFound("Survey not found.")
    return tagged(response, found)


@router.get("/templates/{key}/versions", response_model=list[TemplateRead], dependencies=[can_read],
            responses=problem_responses(404))
async def list_versions(ctx: CtxDep, key: KeyPath) -> list[SurveyTemplate]:
    """Every version of a survey, newest first (answers name the version they answered)."""
    rows = (await ctx.session.scalars(sa.select(SurveyTemplate).where(
        SurveyTemplate.tenant_id == ctx.principal.tenant_id, SurveyTemplate.key == key)
        .order_by(SurveyTemplate.version.desc()))).all()
    if not rows:
        raise NotFound("Survey not found.")
    return list(rows)


@router.post("/templates", status_code=201, response_model=TemplateRead, dependencies=[can_write],
             responses=problem_responses(409))
async def create_template(ctx: CtxDep, body: TemplateCreate) -> SurveyTemplate:
    """A new survey (version 1). 409 when the key exists: change it with `PUT /templates/{key}`."""
    exists = await ctx.session.scalar(sa.select(SurveyTemplate.id).where(
        SurveyTemplate.tenant_id == ctx.principal.tenant_id, SurveyTemplate.key == body.key).limit(1))
    if exists is not None:
        raise Duplicate("A survey with this key exists; PUT a new version.", existing_id=exists)
    return await _save(ctx, body.key, body)


@router.put("/templates/{key}", response_model=TemplateRead, dependencies=[can_write],
            responses=problem_responses(404, 412, 428))
async def new_version(ctx: CtxDep, key: KeyPath, body: TemplateWrite, response: Response,
                      if_match: IfMatch = None) -> SurveyTemplate:
    """A new version of a survey: new invitations ask it; open invitations and stored answers keep theirs.
    `If-Match` names the version it was edited from (428 without it, 412 when another version came since)."""
    if await current(ctx.session, ctx.principal.tenant_id, key) is None:
        raise NotFound("Survey not found.")
    return tagged(response, await _save(ctx, key, body, lambda latest: check_if_match(if_match, latest)))


async def _save(ctx: CtxDep, key: str, body: TemplateWrite,
                check: Callable[[int], None] | None = None) -> SurveyTemplate:
    row = await add_version(ctx.session, ctx.principal.tenant_id, key, body.name, body.definition, body.change_note,
                            ctx.principal.subject, utcnow(), check)
    ctx.audit.record(ctx.session, ctx.principal, "survey.version", "survey_template", row.id,
                     tenant_id=row.tenant_id, store_id=None, before=None,
                     after={"key": key, "version": row.version})
    await ctx.session.commit()
    return row


@router.get("/policy", response_model=PolicyRead, dependencies=[can_read])
async def get_policy(ctx: CtxDep, response: Response) -> PolicyRead:
    """Low-score thresholds, invitation lifetime and reminder, complaint SLAs per severity, the goodwill limit
    and the integrity checks of your dealer group (defaults where never set)."""
    row = await ctx.session.get(SurveyPolicy, ctx.principal.tenant_id)
    return tagged(response, PolicyRead(rules=await rules_for(ctx.session, ctx.principal.tenant_id),
                                       version=row.version if row else 0))


@router.put("/policy", response_model=PolicyRead, dependencies=[require_roles(Role.CS_DIRECTOR, Role.ADMIN)],
            responses=problem_responses(412, 428))
async def put_policy(ctx: CtxDep, body: PolicyWrite, response: Response, if_match: IfMatch = None) -> PolicyRead:
    """Replace the group's rules (CS director, admin). Applies to answers and complaints from now on.
    `If-Match` names the version read (428 without it, 412 when it changed since: re-read and merge)."""
    row = await ctx.session.get(SurveyPolicy, ctx.principal.tenant_id, with_for_update=True)
    check_if_match(if_match, row.version if row else 0)
    before = dict(row.rules) if row else None
    if row is None:
        row = SurveyPolicy(tenant_id=ctx.principal.tenant_id, rules={}, version=0)
        ctx.session.add(row)
    row.rules = body.rules.model_dump(mode="json")
    row.version += 1
    row.updated_by = ctx.principal.subject
    ctx.audit.record(ctx.session, ctx.principal, "survey.policy", "survey_policy", ctx.principal.tenant_id,
                     tenant_id=ctx.principal.tenant_id, store_id=None, before=before, after=row.rules)
    await ctx.session.commit()
    return tagged(response, PolicyRead(rules=body.rules, version=row.version))
