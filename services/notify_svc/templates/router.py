"""HTTP routes of the template API: reading, writing, deleting and previewing message templates."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from notify_svc.deps import CtxDep, IdempotencyKey, IfMatch
from notify_svc.models import Template
from notify_svc.templates import service
from notify_svc.templates.rendering import sms_length
from notify_svc.templates.schemas import (KEY_PATTERN, Channel, PreviewRead, PreviewRequest, Status, TemplateCreate,
                                          TemplateRead, TemplateUpdate)
from shared.auth import require_roles
from shared.auth.roles import MANAGERS, STAFF
from shared.errors import problem_responses
from shared.http.etag import etag_for, tagged

PREFIX = "/api/v1/templates"
router = APIRouter(prefix=PREFIX, tags=["templates"], responses=problem_responses(401, 422))
can_read = require_roles(*STAFF)
can_write = require_roles(*MANAGERS)


@router.get("", response_model=list[TemplateRead], dependencies=[can_read], responses=problem_responses(403, 404))
async def list_templates(
        ctx: CtxDep,
        key: Annotated[str | None, Query(pattern=KEY_PATTERN, description="Only this key.")] = None,
        channel: Annotated[Channel | None, Query(description="Only this channel.")] = None,
        store_id: Annotated[uuid.UUID | None, Query(description="A store of yours: the templates that apply there "
                                                                "(group-wide ones and its overrides).")] = None,
        locale: Annotated[str | None, Query(max_length=10, description="Only this locale, e.g. zh-CN.")] = None,
        status: Annotated[Status | None, Query(description="Only templates in this status.")] = None,
) -> list[Template]:
    """The dealer group's templates and those of your stores (group-wide roles: every store's), by key and
    channel, the group-wide template before the stores' overrides. Any staff member may read them."""
    return await service.list_templates(ctx, key=key, channel=channel, store_id=store_id, locale=locale,
                                        status=status)


@router.get("/{template_id}", response_model=TemplateRead, dependencies=[can_read],
            responses=problem_responses(403, 404))
async def get_template(ctx: CtxDep, template_id: uuid.UUID, response: Response) -> Template:
    """One template (ETag = its version)."""
    return tagged(response, await service.get_template(ctx, template_id))


@router.post("", status_code=201, response_model=TemplateRead, dependencies=[can_write],
             responses=problem_responses(403, 404, 409))
async def create_template(ctx: CtxDep, body: TemplateCreate, idempotency_key: IdempotencyKey = None) -> Response:
    """Add a group-wide template (CS director, admin), or with `store_id` a store's override of a key (a manager
    of that store); in a store the override is used instead of the group-wide template. 409 when the store (or
    the group) already has the key for that channel and locale. Checked: every placeholder is a plain declared
    variable, variable types are known, SMS variables fit the provider's 35 characters, a marketing SMS carries an
    opt-out phrase (拒收请回复R, 回T退订 ...), and the Tencent order and WeChat fields name declared variables.
    Honours `Idempotency-Key`."""

    async def created() -> tuple[dict[str, Any], dict[str, str]]:
        template = await service.create_template(ctx, body)
        return (TemplateRead.model_validate(template).model_dump(mode="json"),
                {"ETag": etag_for(template.version), "Location": f"{PREFIX}/{template.id}"})

    return await ctx.runtime.idempotency.run(ctx.principal, idempotency_key, "POST /templates",
                                             body.model_dump(mode="json"), created)


@router.put("/{template_id}", response_model=TemplateRead, dependencies=[can_write],
            responses=problem_responses(403, 404, 412, 428))
async def update_template(ctx: CtxDep, template_id: uuid.UUID, body: TemplateUpdate, response: Response,
                          if_match: IfMatch = None) -> Template:
    """Replace a template's text, variables, provider codes and status (same checks as creating). Requires
    `If-Match`; the version goes up, and messages rendered from now on use the new text."""
    return tagged(response, await service.update_template(ctx, template_id, body, if_match))


@router.delete("/{template_id}", status_code=204, response_class=Response, dependencies=[can_write],
               responses=problem_responses(403, 404, 409, 412, 428))
async def delete_template(ctx: CtxDep, template_id: uuid.UUID, if_match: IfMatch = None) -> Response:
    """Delete a template (requires `If-Match`). 409 while it is in use: a key the playbooks, surveys or
    escalations send (unless a store override falls back to the group's template), or one that messages waiting
    to be sent need with no other template left for them. Disable a template instead with PUT `status`."""
    await service.delete_template(ctx, template_id, if_match)
    return Response(status_code=204)


@router.post("/{template_id}/preview", response_model=PreviewRead, dependencies=[can_read],
             responses=problem_responses(403, 404))
async def preview_template(ctx: CtxDep, template_id: uuid.UUID, body: PreviewRequest) -> PreviewRead:
    """Render the template with sample variables exactly as a message would be: the text, the provider
    parameters and the length. 422 names the variable that is missing, of the wrong type or too long
    (`body.variables.<name>`). Changes nothing."""
    template, rendered = await service.preview(ctx, template_id, body.variables)
    chars, parts = sms_length(rendered.text, rendered.sign_name if template.channel == "sms" else None)
    return PreviewRead(text=rendered.text, params=rendered.params, ordered_params=rendered.ordered_params,
                       fields=rendered.fields, provider_codes=dict(rendered.codes), sign_name=rendered.sign_name,
                       characters=chars, sms_parts=parts if template.channel == "sms" else 1)
