"""Reading messages (history, detail, "why"), replaying them, bulk jobs and the contact policy."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import sqlalchemy as sa

from notify_svc.messages.intake import Request, accept
from notify_svc.messages.reasons import REPLAYABLE, explain
from notify_svc.messages.schemas import BulkCreate, PolicyBody
from notify_svc.models import BulkJob, CustomerView, Message, MessageEvent, Policy
from notify_svc.policy.config import PolicyConfig
from shared.auth.roles import Role
from notify_svc.stores import ensure_own_store
from shared.auth.scoping import get_scoped, scoped
from shared.db.base import utcnow
from shared.errors import Conflict, Forbidden, InvalidField
from shared.http.pagination import PageParams, make_page, paginate
from shared.http.service_deps import Ctx

MAX_BULK = 20_000
FINAL = ("delivered", "failed", "suppressed")


def to_read(message: Message, sees_pii: bool) -> dict[str, Any]:
    return dict(id=message.id, store_id=message.store_id, customer_id=message.customer_id, staff_id=message.staff_id,
                vehicle_id=message.vehicle_id, source=message.source, idempotency_key=message.idempotency_key,
                rule_key=message.rule_key, template=message.template_key, purpose=message.purpose,
                channels=message.channels, channel=message.channel, provider=message.provider,
                recipient=message.recipient_masked, status=message.status, reason=message.reason,
                explanation=explain(message.reason), detail=message.detail,
                body=message.body if sees_pii else None, requested_at=message.created_at,
                not_before=message.not_before, expires_at=message.expires_at,
                next_attempt_at=message.next_attempt_at, attempts=message.attempts,
                provider_message_id=message.provider_message_id, sent_at=message.sent_at,
                delivered_at=message.delivered_at,
                replayable=message.status in ("failed", "suppressed") and message.reason in REPLAYABLE)


def _trail(entries: list[MessageEvent]) -> list[dict[str, Any]]:
    return [dict(at=e.at, status=e.status, reason=e.reason, explanation=explain(e.reason), channel=e.channel,
                 provider=e.provider, code=e.code, detail=e.detail) for e in entries]


async def _with_trails(ctx: Ctx[Any], messages: list[Message]) -> list[dict[str, Any]]:
    ids = [m.id for m in messages]
    trails: dict[uuid.UUID, list[MessageEvent]] = {i: [] for i in ids}
    if ids:
        for entry in await ctx.session.scalars(sa.select(MessageEvent).where(MessageEvent.message_id.in_(ids))
                                               .order_by(MessageEvent.id)):
            trails[entry.message_id].append(entry)
    pii = ctx.principal.sees_pii
    return [{**to_read(m, pii), "trail": _trail(trails[m.id])} for m in messages]


async def list_messages(ctx: Ctx[Any], params: PageParams, **filters: Any) -> dict[str, Any]:
    stmt = scoped(sa.select(Message), Message, ctx.principal)
    for name, value in filters.items():
        if value is not None:
            column = Message.template_key if name == "template" else getattr(Message, name)
            stmt = stmt.where(column == value)
    rows = list((await ctx.session.scalars(paginate(stmt, Message.id, params))).all())
    pii = ctx.principal.sees_pii
    return make_page(rows, params, lambda m: to_read(m, pii))


async def get_message(ctx: Ctx[Any], message_id: uuid.UUID) -> dict[str, Any]:
    message = await get_scoped(ctx.session, Message, ctx.principal, message_id, "Message")
    return (await _with_trails(ctx, [message]))[0]


async def why(ctx: Ctx[Any], customer_id: uuid.UUID | None, idempotency_key: str | None,
              limit: int) -> dict[str, Any]:
    if customer_id is None and idempotency_key is None:
        raise InvalidField("query.customer_id", "give customer_id or idempotency_key")
    stmt = scoped(sa.select(Message), Message, ctx.principal)
    if customer_id is not None:
        stmt = stmt.where(Message.customer_id == customer_id)
    if idempotency_key is not None:
        stmt = stmt.where(Message.idempotency_key == idempotency_key)
    messages = list((await ctx.session.scalars(stmt.order_by(Message.id.desc()).limit(limit))).all())
    counts: dict[str, int] = {}
    for m in messages:
        counts[m.status] = counts.get(m.status, 0) + 1
    return dict(customer_id=customer_id, idempotency_key=idempotency_key, counts=counts,
                touches=await _with_trails(ctx, messages))


async def replay(ctx: Ctx[Any], message_id: uuid.UUID) -> dict[str, Any]:
    """Send again what failed for a reason that may have gone away; the policy is checked again in full (a replay
    never overrides consent, quiet hours or budgets). A message already on its way is returned unchanged."""
    async with ctx.session.begin():
        message = await get_scoped(ctx.session, Message, ctx.principal, message_id, "Message", for_update=True)
        if message.status in ("queued", "held", "sending") and message.reason != "awaiting_receipt":
            return (await _with_trails(ctx, [message]))[0]
        if message.status not in ("failed", "suppressed") or message.reason not in REPLAYABLE:
            raise Conflict(f"A message {message.status} for {message.reason or 'no reason'} cannot be replayed.")
        now = utcnow()
        message.status, message.reason, message.detail = "queued", "replayed", None
        message.attempts, message.failed_channels, message.next_attempt_at = 0, [], now
        message.sent_at = None
        ctx.session.add(MessageEvent(message_id=message.id, at=now, status="queued", reason="replayed",
                                     detail=f"by {ctx.principal.subject}"))
        ctx.audit.record(ctx.session, ctx.principal, "replay", "message", message.id, tenant_id=message.tenant_id,
                         store_id=message.store_id)
    ctx.runtime.nudge_dispatcher()
    return (await _with_trails(ctx, [message]))[0]


# --- bulk sends ---------------------------------------------------------------------------------------------


async def create_bulk(ctx: Ctx[Any], body: BulkCreate) -> dict[str, Any]:
    if (body.customer_ids is None) == (body.birthday_from is None):
        raise InvalidField("body.customer_ids", "give customer_ids or birthday_from/birthday_to (one of them)")
    async with ctx.session.begin():
        await ensure_own_store(ctx.session, ctx.principal, body.store_id)
        recipients = await _select_recipients(ctx, body)
        if len(recipients) > MAX_BULK:
            raise InvalidField("body.birthday_to", f"{len(recipients)} recipients: at most {MAX_BULK} per job")
        now = utcnow()
        job = BulkJob(tenant_id=ctx.principal.tenant_id, store_id=body.store_id, template_key=body.template,
                      purpose=body.purpose, channels=list(body.channels), variables=body.variables,
                      customer_ids=[str(c) for c in recipients], not_before=body.not_before or now,
                      total=len(recipients), created_by=ctx.principal.subject)
        ctx.session.add(job)
        await ctx.session.flush()
        await accept(ctx.session, [Request(
            tenant_id=job.tenant_id, store_id=job.store_id, idempotency_key=f"bulk:{job.id}:{customer_id}",
            source="bulk", template_key=job.template_key, purpose=job.purpose, channels=job.channels,
            customer_id=customer_id, variables=body.variables, not_before=job.not_before,
            expires_at=body.expires_at, bulk_job_id=job.id) for customer_id in recipients], now)
        ctx.audit.record(ctx.session, ctx.principal, "create", "bulk_job", job.id, tenant_id=job.tenant_id,
                         store_id=job.store_id, after={"total": job.total, "template": job.template_key})
    ctx.runtime.nudge_dispatcher()
    return await bulk_status(ctx, job.id)


async def _select_recipients(ctx: Ctx[Any], body: BulkCreate) -> list[uuid.UUID]:
    base = sa.select(CustomerView.id, CustomerView.birthday).where(
        CustomerView.tenant_id == ctx.principal.tenant_id, CustomerView.store_id == body.store_id,
        CustomerView.status == "active")
    if body.customer_ids is not None:
        wanted = list(dict.fromkeys(body.customer_ids))
        found = {r.id for r in await ctx.session.execute(base.where(CustomerView.id.in_(wanted)))}
        missing = [str(c) for c in wanted if c not in found]
        if missing:
            raise InvalidField("body.customer_ids", f"not customers of this store: {', '.join(missing[:5])}")
        return wanted
    start, end = body.birthday_from, body.birthday_to or body.birthday_from
    assert start is not None and end is not None
    if (end - start).days > 366 or end < start:
        raise InvalidField("body.birthday_to", "must be on or after birthday_from, within a year")
    rows = await ctx.session.execute(base.where(CustomerView.birthday.is_not(None)).order_by(CustomerView.id))
    return [r.id for r in rows if _in_range(r.birthday, start, end)]


def _in_range(birthday: date, start: date, end: date) -> bool:
    """Month-day of ``birthday`` within [start, end], which may cross new year (Dec 28 – Jan 3)."""
    md, a, b = (birthday.month, birthday.day), (start.month, start.day), (end.month, end.day)
    if (end - start).days >= 365:
        return True
    return a <= md <= b if a <= b else md >= a or md <= b


async def bulk_status(ctx: Ctx[Any], job_id: uuid.UUID) -> dict[str, Any]:
    job = await get_scoped(ctx.session, BulkJob, ctx.principal, job_id, "Bulk job")
    rows = await ctx.session.execute(sa.select(Message.status, sa.func.count()).where(Message.bulk_job_id == job.id)
                                     .group_by(Message.status))
    progress = {status: n for status, n in rows}
    done = sum(n for s, n in progress.items() if s in FINAL) == job.total
    return dict(id=job.id, store_id=job.store_id, template=job.template_key, purpose=job.purpose,
                channels=job.channels, total=job.total, progress=progress, done=done, created_at=job.created_at)


async def bulk_recipients(ctx: Ctx[Any], job_id: uuid.UUID, params: PageParams) -> dict[str, Any]:
    job = await get_scoped(ctx.session, BulkJob, ctx.principal, job_id, "Bulk job")
    rows = list((await ctx.session.scalars(paginate(sa.select(Message).where(Message.bulk_job_id == job.id),
                                                    Message.id, params))).all())
    pii = ctx.principal.sees_pii
    return make_page(rows, params, lambda m: to_read(m, pii))


# --- contact policy -----------------------------------------------------------------------------------------

POLICY_FIELDS = tuple(PolicyBody.model_fields)


async def get_policy(ctx: Ctx[Any], store_id: uuid.UUID | None) -> dict[str, Any]:
    if store_id is not None:
        await ensure_own_store(ctx.session, ctx.principal, store_id)
    rows = {r.store_id: r for r in await ctx.session.scalars(
        sa.select(Policy).where(Policy.tenant_id == ctx.principal.tenant_id,
                                sa.or_(Policy.store_id.is_(None), Policy.store_id == store_id)))}
    row = rows.get(store_id) if store_id is not None else None
    scope = "store" if row is not None else "group" if rows.get(None) is not None else "default"
    row = row or rows.get(None)
    config = PolicyConfig.of(row)
    values = {f: getattr(config, f) for f in POLICY_FIELDS}
    for f in ("quiet_start", "quiet_end", "marketing_start", "marketing_end"):
        values[f] = values[f].strftime("%H:%M")
    return {**values, "scope": scope, "store_id": store_id}


async def put_policy(ctx: Ctx[Any], store_id: uuid.UUID | None, body: PolicyBody) -> dict[str, Any]:
    """Group-wide values: admin and CS director. A store's override: also that store's managers. Idempotent."""
    if store_id is None and not ctx.principal.tenant_wide:
        raise Forbidden("Only the CS director or an admin sets the group's contact policy.")
    if store_id is not None and not ctx.principal.has_any(Role.SERVICE_MANAGER, Role.CS_MANAGER, Role.CS_DIRECTOR,
                                                           Role.ADMIN):
        raise Forbidden("Only a service or CS manager of the store sets its contact policy.")
    async with ctx.session.begin():
        if store_id is not None:
            await ensure_own_store(ctx.session, ctx.principal, store_id)
        row = await ctx.session.scalar(sa.select(Policy).where(Policy.tenant_id == ctx.principal.tenant_id,
                                                               Policy.store_id.is_(None) if store_id is None
                                                               else Policy.store_id == store_id).with_for_update())
        if row is None:
            row = Policy(tenant_id=ctx.principal.tenant_id, store_id=store_id)
            ctx.session.add(row)
        for name, value in body.model_dump().items():
            setattr(row, name, value)
        await ctx.session.flush()
        ctx.audit.record(ctx.session, ctx.principal, "update", "notify_policy", row.id,
                         tenant_id=row.tenant_id, store_id=store_id, after=body.model_dump())
    return await get_policy(ctx, store_id)
