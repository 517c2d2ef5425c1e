"""Templates: reading the ones in scope, writing group templates and store overrides, refusing to delete one in
use, and previewing a rendering.

Who sees what: every staff member reads the group-wide templates and those of their stores (group-wide roles:
every store). Who writes: the CS director and admins write group-wide templates; managers write the overrides
of their stores. Every change is audited and announced (``notify.template.changed.v1``) in its transaction.
"""

from __future__ import annotations

import uuid
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from notify_svc.deps import Ctx
from notify_svc.models import Message, StoreView, Template
from notify_svc.stores import ensure_own_store
from notify_svc.templates.defaults import DEFAULT_KEYS
from notify_svc.templates.rendering import (Rendered, TemplateDefinitionError, TemplateVariableError,
                                            check_definition, render)
from notify_svc.templates.schemas import TemplateCreate, TemplateWrite
from shared.audit import snapshot
from shared.auth.roles import Role
from shared.db.base import where_given
from shared.errors import Conflict, Duplicate, Forbidden, InvalidField, NotFound
from shared.events.catalog.notify import TemplateChanged
from shared.http.etag import check_if_match

GROUP_WRITERS = frozenset({Role.CS_DIRECTOR, Role.ADMIN})
#: Messages not yet handed over for good: they will render their template when their time comes.
IN_FLIGHT = ("queued", "held", "sending")
DEFAULT_ZONE = ZoneInfo("Asia/Shanghai")


def _visible(ctx: Ctx) -> sa.Select[tuple[Template]]:
    stmt = sa.select(Template).where(Template.tenant_id == ctx.principal.tenant_id)
    if not ctx.principal.tenant_wide:
        stmt = stmt.where(sa.or_(Template.store_id.is_(None), Template.store_id.in_(ctx.principal.store_ids)))
    return stmt


def _can_write(ctx: Ctx, store_id: uuid.UUID | None) -> None:
    """Group-wide templates need a group-level role; a store's (the router lets managers in) needs its store to
    be the caller's, which the store and visibility checks already enforce (404 otherwise)."""
    if store_id is None and not ctx.principal.roles & GROUP_WRITERS:
        raise Forbidden("Only the CS director or an admin may change the dealer group's templates; store managers "
                        "write an override for their store (store_id).")


async def _keeps_group_purpose(ctx: Ctx, store_id: uuid.UUID | None, key: str, body: TemplateWrite) -> None:
    """A store's copy of a marketing template stays marketing: consent, the marketing window and the opt-out
    text follow the purpose, and a store manager may not lift them by re-labelling the group's greeting."""
    if store_id is None or body.purpose == "marketing":
        return
    group = await ctx.session.scalar(sa.select(Template.id).where(
        Template.tenant_id == ctx.principal.tenant_id, Template.store_id.is_(None), Template.key == key,
        Template.purpose == "marketing").limit(1))
    if group is not None:
        raise InvalidField("body.purpose", "the dealer group's template of this key is marketing; a store's copy "
                                           "stays marketing")


def _check(channel: str, body: TemplateWrite) -> None:
    try:
        check_definition(channel=channel, purpose=body.purpose, body=body.body,
                         variables=[v.model_dump() for v in body.variables],
                         provider_params=body.provider_params_dict())
    except TemplateDefinitionError as exc:
        raise InvalidField(f"body.{exc.field}", exc.message) from None


def _apply(template: Template, body: TemplateWrite) -> None:
    template.purpose = body.purpose
    template.title = body.title
    template.body = body.body
    template.variables = [v.model_dump() for v in body.variables]
    template.sign_name = body.sign_name
    template.provider_codes = dict(body.provider_codes)
    template.provider_params = body.provider_params_dict()
    template.status = body.status


def _announce(ctx: Ctx, template: Template, *, deleted: bool = False) -> None:
    ctx.outbox.append(ctx.session, TemplateChanged(
        template_id=template.id, key=template.key, channel=template.channel, locale=template.locale,
        store_id=template.store_id, purpose=template.purpose, status=template.status, version=template.version,
        deleted=deleted), tenant_id=template.tenant_id, store_id=template.store_id)


# --- reading ---------------------------------------------------------------------------------------------------


async def list_templates(ctx: Ctx, *, key: str | None, channel: str | None, store_id: uuid.UUID | None,
                         locale: str | None, status: str | None) -> list[Template]:
    """The templates in the caller's scope; with ``store_id`` (a store of yours) those that apply there: the
    group-wide ones and that store's overrides. Group-wide first within each key and channel."""
    async with ctx.session.begin():
        stmt = _visible(ctx)
        if store_id is not None:
            await ensure_own_store(ctx.session, ctx.principal, store_id)
            stmt = stmt.where(sa.or_(Template.store_id.is_(None), Template.store_id == store_id))
        stmt = where_given(stmt, (Template.key, key), (Template.channel, channel), (Template.locale, locale),
                           (Template.status, status))
        return list((await ctx.session.scalars(stmt.order_by(
            Template.key, Template.channel, Template.locale, Template.store_id.is_not(None), Template.store_id))).all())


async def _find(ctx: Ctx, template_id: uuid.UUID, *, lock: bool = False) -> Template:
    stmt = _visible(ctx).where(Template.id == template_id)
    template = await ctx.session.scalar(stmt.with_for_update() if lock else stmt)
    if template is None:
        raise NotFound("Template not found.")
    return template


async def get_template(ctx: Ctx, template_id: uuid.UUID) -> Template:
    async with ctx.session.begin():
        return await _find(ctx, template_id)


# --- writing ---------------------------------------------------------------------------------------------------


async def create_template(ctx: Ctx, body: TemplateCreate) -> Template:
    """A group-wide template, or a store's override of a key; 409 when that (store, key, channel, locale) exists."""
    _can_write(ctx, body.store_id)
    _check(body.channel, body)
    async with ctx.session.begin():
        if body.store_id is not None:
            await ensure_own_store(ctx.session, ctx.principal, body.store_id)
        await _keeps_group_purpose(ctx, body.store_id, body.key, body)
        store = Template.store_id.is_(None) if body.store_id is None else Template.store_id == body.store_id
        existing = await ctx.session.scalar(sa.select(Template.id).where(
            Template.tenant_id == ctx.principal.tenant_id, store, Template.key == body.key,
            Template.channel == body.channel, Template.locale == body.locale))
        if existing is not None:
            where = "this store" if body.store_id else "the dealer group"
            raise Duplicate(f"{where.capitalize()} already has template {body.key!r} for {body.channel} "
                            f"({body.locale}): change it with PUT.", existing_id=existing)
        template = Template(tenant_id=ctx.principal.tenant_id, store_id=body.store_id, key=body.key,
                            channel=body.channel, locale=body.locale, version=1)
        _apply(template, body)
        ctx.session.add(template)
        await ctx.session.flush()
        ctx.audit.record(ctx.session, ctx.principal, "create", "template", template.id,
                         tenant_id=template.tenant_id, store_id=template.store_id, after=snapshot(template))
        _announce(ctx, template)
    return template


async def update_template(ctx: Ctx, template_id: uuid.UUID, body: TemplateWrite, if_match: str | None) -> Template:
    """Replace the editable part (requires ``If-Match``); the version goes up, so renderers pick up the change."""
    async with ctx.session.begin():
        template = await _find(ctx, template_id, lock=True)
        _can_write(ctx, template.store_id)
        check_if_match(if_match, template.version)
        _check(template.channel, body)
        await _keeps_group_purpose(ctx, template.store_id, template.key, body)
        before = snapshot(template)
        _apply(template, body)
        template.version += 1
        await ctx.session.flush()
        ctx.audit.record(ctx.session, ctx.principal, "update", "template", template.id,
                         tenant_id=template.tenant_id, store_id=template.store_id, before=before,
                         after=snapshot(template))
        _announce(ctx, template)
    return template


async def delete_template(ctx: Ctx, template_id: uuid.UUID, if_match: str | None) -> None:
    """Delete a template nobody needs (requires ``If-Match``); 409 while it is in use (see :func:`_ensure_unused`)."""
    async with ctx.session.begin():
        template = await _find(ctx, template_id, lock=True)
        _can_write(ctx, template.store_id)
        check_if_match(if_match, template.version)
        await _ensure_unused(ctx, template)
        before = snapshot(template)
        await ctx.session.delete(template)
        await ctx.session.flush()
        ctx.audit.record(ctx.session, ctx.principal, "delete", "template", template.id,
                         tenant_id=template.tenant_id, store_id=template.store_id, before=before)
        _announce(ctx, template, deleted=True)


async def _ensure_unused(ctx: Ctx, template: Template) -> None:
    """A template is in use when deleting it leaves a store with no template of its key for its channel while
    the playbooks name the key (a default key) or a message waiting to be sent (queued, held, sending) does.
    A store override is never in use while the group-wide template it overrides exists (the store falls back
    to it); a group-wide template serves every store without an override of its own."""
    same = (Template.tenant_id == template.tenant_id, Template.key == template.key,
            Template.channel == template.channel, Template.locale == template.locale, Template.id != template.id)
    if template.store_id is not None:
        fallback = await ctx.session.scalar(sa.select(Template.id).where(*same, Template.store_id.is_(None)))
        if fallback is not None:
            return
    what = f"template {template.key!r} for {template.channel}"
    if template.key in DEFAULT_KEYS:
        scope = "this store has no group-wide template to fall back to" if template.store_id else \
            "every store without its own override would be left without it"
        raise Conflict(f"The {what} is in use: the playbooks, surveys or escalations send it and {scope}. "
                       "Change it, or set its status to disabled, instead.")
    covered: set[uuid.UUID] = set()
    if template.store_id is None:
        covered = set((await ctx.session.scalars(sa.select(Template.store_id).where(
            *same, Template.store_id.is_not(None)))).all())
    stmt = sa.select(Message.store_id, Message.channels).where(
        Message.tenant_id == template.tenant_id, Message.template_key == template.key,
        Message.status.in_(IN_FLIGHT)).distinct()
    if template.store_id is not None:
        stmt = stmt.where(Message.store_id == template.store_id)
    for store_id, channels in (await ctx.session.execute(stmt)).all():
        if store_id not in covered and template.channel in (channels or []):
            raise Conflict(f"The {what} is in use: messages waiting to be sent (queued, held or sending) use it "
                           "and no other template of the key would be left for them.")


# --- previewing ------------------------------------------------------------------------------------------------


async def preview(ctx: Ctx, template_id: uuid.UUID, variables: dict[str, Any]) -> tuple[Template, Rendered]:
    """The template rendered as the dispatcher would (date-times in the store's zone; group-wide: Shanghai);
    422 naming the variable a sender would get wrong."""
    async with ctx.session.begin():
        template = await _find(ctx, template_id)
        zone = DEFAULT_ZONE
        if template.store_id is not None:
            store = await ctx.session.get(StoreView, template.store_id)
            zone = ZoneInfo(store.timezone) if store is not None else DEFAULT_ZONE
    try:
        return template, render(template, variables, tz=zone)
    except TemplateVariableError as exc:
        raise InvalidField(f"body.variables.{exc.field}", exc.message) from None
