"""Planned touches: what was planned for a customer or vehicle and what became of it, hand corrections
(cancel, reschedule) of pending ones, and the test clock."""

from __future__ import annotations

import base64
import binascii
import struct
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from followup_svc.deps import Ctx
from followup_svc.models import FollowUp, Rule, TestClock
from followup_svc.scheduling import triggers
from followup_svc.scheduling.planner import Planner
from followup_svc.scheduling.schemas import MAX_OFFSET_SECONDS, FollowUpReschedule, TestClockSet
from shared.audit import snapshot
from shared.auth import scoped
from shared.db.base import where_given
from shared.errors import Conflict, InvalidField, NotFound
from shared.events.catalog.followup import OccurrenceSkipped
from shared.http.pagination import PageParams

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_COLUMNS = sa.inspect(FollowUp).column_attrs
#: A hand-rescheduled touch may move at most this far ahead.
MAX_AHEAD = timedelta(days=5 * 366)


# --- cursor over (due_at desc, id desc) ----------------------------------------------------------------------


def encode_cursor(due_at: datetime, row_id: uuid.UUID) -> str:
    micros = (due_at - _EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(struct.pack(">q", micros) + row_id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if len(raw) != 24:
            raise ValueError("length")
        (micros,) = struct.unpack(">q", raw[:8])
        return _EPOCH + timedelta(microseconds=micros), uuid.UUID(bytes=raw[8:])
    except (ValueError, binascii.Error, OverflowError) as exc:
        raise InvalidField("query.cursor", "not a cursor returned by this API") from exc


def view(row: FollowUp, rule: Rule) -> dict[str, Any]:
    """The occurrence with its rule version's key, version, name and scope (the name read as stored)."""
    name = (rule.definition or {}).get("name")
    return {**{c.key: getattr(row, c.key) for c in _COLUMNS}, "rule_version": rule.version, "rule_scope": rule.scope,
            "rule_name": name if isinstance(name, str) else None}


# --- reading -------------------------------------------------------------------------------------------------


async def list_followups(ctx: Ctx, params: PageParams, *, customer_id: uuid.UUID | None,
                         vehicle_id: uuid.UUID | None, subject_id: uuid.UUID | None, state: str | None,
                         due_from: datetime | None, due_to: datetime | None) -> tuple[list[dict[str, Any]], str | None]:
    """Occurrences of the caller's stores, newest due first; ``due_to`` is exclusive. Returns the page and the
    cursor of the next one."""
    stmt = scoped(sa.select(FollowUp, Rule).join(Rule, Rule.id == FollowUp.rule_id), FollowUp, ctx.principal)
    stmt = where_given(stmt, (FollowUp.customer_id, customer_id), (FollowUp.vehicle_id, vehicle_id),
                       (FollowUp.subject_id, subject_id), (FollowUp.state, state))
    if due_from is not None:
        stmt = stmt.where(FollowUp.due_at >= due_from)
    if due_to is not None:
        stmt = stmt.where(FollowUp.due_at < due_to)
    if params.cursor:
        at, last_id = decode_cursor(params.cursor)
        stmt = stmt.where(sa.or_(FollowUp.due_at < at, sa.and_(FollowUp.due_at == at, FollowUp.id < last_id)))
    stmt = stmt.order_by(FollowUp.due_at.desc(), FollowUp.id.desc()).limit(params.limit + 1)
    async with ctx.session.begin():
        rows = (await ctx.session.execute(stmt)).all()
    more = len(rows) > params.limit
    rows = rows[: params.limit]
    cursor = encode_cursor(rows[-1][0].due_at, rows[-1][0].id) if more and rows else None
    return [view(f, r) for f, r in rows], cursor


async def _one(ctx: Ctx, followup_id: uuid.UUID, *, lock: bool = False) -> tuple[FollowUp, Rule]:
    stmt = scoped(sa.select(FollowUp), FollowUp, ctx.principal).where(FollowUp.id == followup_id)
    row = await ctx.session.scalar(stmt.with_for_update() if lock else stmt)
    if row is None:
        raise NotFound("Follow-up not found.")
    rule = await ctx.session.get(Rule, row.rule_id)
    assert rule is not None  # a foreign key
    return row, rule


async def get_followup(ctx: Ctx, followup_id: uuid.UUID) -> dict[str, Any]:
    async with ctx.session.begin():
        row, rule = await _one(ctx, followup_id)
    return view(row, rule)


# --- hand corrections --------------------------------------------------------------------------------------


def _pending(row: FollowUp) -> None:
    if row.state != "scheduled":
        raise Conflict(f"Only planned (scheduled) follow-ups can change; this one is {row.state}"
                       + (f": {row.reason}" if row.reason else "."))


async def cancel(ctx: Ctx, followup_id: uuid.UUID, reason: str) -> dict[str, Any]:
    now = ctx.runtime.clock.now()
    async with ctx.session.begin():
        row, rule = await _one(ctx, followup_id, lock=True)
        _pending(row)
        before = snapshot(row)
        row.state, row.reason, row.updated_at = "cancelled", f"cancelled by staff: {reason}"[:300], now
        await ctx.session.flush()
        await triggers.continue_series(Planner(ctx.session, now), [row])  # this cycle only, not the series
        ctx.audit.record(ctx.session, ctx.principal, "cancel", "followup", row.id, tenant_id=row.tenant_id,
                         store_id=row.store_id, before=before, after=snapshot(row))
        ctx.outbox.append(ctx.session, OccurrenceSkipped(
            followup_id=row.id, occurrence_key=row.occurrence_key, rule_key=row.rule_key,
            customer_id=row.customer_id, state="cancelled", reason=row.reason, due_at=row.due_at),
            tenant_id=row.tenant_id, store_id=row.store_id)
    return view(row, rule)


async def reschedule(ctx: Ctx, followup_id: uuid.UUID, body: FollowUpReschedule) -> dict[str, Any]:
    now = ctx.runtime.clock.now()
    if body.due_at <= now:
        raise InvalidField("body.due_at", f"must be in the future (now is {now.isoformat()})")
    if body.due_at > now + MAX_AHEAD:
        raise InvalidField("body.due_at", "at most 5 years ahead")
    async with ctx.session.begin():
        row, rule = await _one(ctx, followup_id, lock=True)
        _pending(row)
        before = snapshot(row)
        row.due_at, row.reason, row.updated_at = body.due_at, f"rescheduled by staff: {body.reason}"[:300], now
        row.attempts, row.last_error = 0, None
        await ctx.session.flush()
        ctx.audit.record(ctx.session, ctx.principal, "reschedule", "followup", row.id, tenant_id=row.tenant_id,
                         store_id=row.store_id, before=before, after=snapshot(row))
    ctx.runtime.scheduler_loop.nudge()
    return view(row, rule)


# --- the test clock ------------------------------------------------------------------------------------------


def clock_state(ctx_runtime: Any) -> dict[str, Any]:
    clock = ctx_runtime.clock
    return {"enabled": clock.enabled, "now": clock.now(), "offset_seconds": clock.offset.total_seconds()}


async def read_clock(runtime: Any) -> dict[str, Any]:
    await runtime.clock.load(runtime.engine, TestClock.__table__)
    return clock_state(runtime)


async def set_clock(ctx: Ctx, body: TestClockSet) -> dict[str, Any]:
    """Set or move the offset (stored, so every process of the service follows), then wake the workers."""
    runtime = ctx.runtime
    await runtime.clock.load(runtime.engine, TestClock.__table__)
    before = runtime.clock.offset.total_seconds()
    if body.offset_seconds is not None:
        offset = body.offset_seconds
    else:
        offset = before + (body.advance_seconds or 0)
        if not 0 <= offset <= MAX_OFFSET_SECONDS:
            raise InvalidField("body.advance_seconds", f"the clock would be {offset:.0f} s ahead of real time; it "
                                                       f"stays between 0 and {MAX_OFFSET_SECONDS:.0f}")
    await runtime.clock.set(runtime.engine, TestClock.__table__, timedelta(seconds=offset))
    async with ctx.session.begin():
        ctx.audit.record(ctx.session, ctx.principal, "set", "test_clock", uuid.UUID(int=1),
                         tenant_id=ctx.principal.tenant_id, store_id=None, before={"offset_seconds": before},
                         after={"offset_seconds": offset})
    runtime.scheduler_loop.nudge()
    runtime.escalation_loop.nudge()
    return clock_state(runtime)
