"""Playbook rules: reading the rules in force, writing new versions and store overrides, and what a change does
to the occurrences the old version planned.

Rule rows are never edited: a change retires the active version and adds the next, and occurrences keep the id
of the version that planned them. Rule writes of one dealer group are serialised (a transaction advisory lock),
so the cross-rule checks (chains, loops) always see the playbook they change.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa

from followup_svc.deps import Ctx
from followup_svc.models import FollowUp, Rule, StoreView
from followup_svc.models.playbook import TENANT_SCOPE
from followup_svc.playbooks import validation
from followup_svc.playbooks.schemas import RuleCreate, RuleDefinition, RuleUpdate
from followup_svc.scheduling import timing
from followup_svc.scheduling.planner import Calendars
from shared.audit import snapshot
from shared.auth import ensure_store
from shared.auth.roles import Role
from shared.db.base import advisory_locks
from shared.errors import BusinessRuleViolation, Duplicate, Forbidden, InvalidField, NotFound
from shared.events.catalog.followup import OccurrenceSkipped
from shared.http.etag import check_if_match

#: Who may write rules at all; store overrides need a manager of that store, group rules a group-level role.
WRITERS = frozenset({Role.SALES_MANAGER, Role.SERVICE_MANAGER, Role.CS_MANAGER, Role.CS_DIRECTOR, Role.ADMIN})
GROUP_WRITERS = frozenset({Role.CS_DIRECTOR, Role.ADMIN})
Pending = Literal["keep", "reschedule", "cancel"]
#: Events of cancelled occurrences go to the outbox in chunks of this many rows per INSERT.
EVENT_CHUNK = 1000


@dataclass
class PendingCounts:
    kept: int = 0
    rescheduled: int = 0
    cancelled: int = 0


def scope_of(store_id: uuid.UUID | None) -> str:
    return str(store_id) if store_id is not None else TENANT_SCOPE


def store_of(scope: str) -> uuid.UUID | None:
    return None if scope == TENANT_SCOPE else uuid.UUID(scope)


async def _store_in_scope(ctx: Ctx, store_id: uuid.UUID) -> None:
    """The store belongs to the caller's group and, unless the caller is group-wide, to the caller's stores."""
    ensure_store(ctx.principal, store_id)
    store = await ctx.session.get(StoreView, store_id)
    if store is None or store.tenant_id != ctx.principal.tenant_id:
        raise NotFound("Store not found.")


def _can_write(ctx: Ctx, scope: str) -> None:
    if scope == TENANT_SCOPE and not ctx.principal.roles & GROUP_WRITERS:
        raise Forbidden("Only the CS director or an admin may change the dealer group's rules; store managers "
                        "override a rule for their store (store_id).")


# --- reading ----------------------------------------------------------------------------------------------


async def list_rules(ctx: Ctx, *, store_id: uuid.UUID | None, include_retired: bool,
                     trigger: str | None) -> list[Rule]:
    """The group's rules in force, or with ``store_id`` the store's effective set (its overrides replace the group
    rule of the same key); ``include_retired`` lists every version of those scopes instead."""
    async with ctx.session.begin():
        scopes = [TENANT_SCOPE]
        if store_id is not None:
            await _store_in_scope(ctx, store_id)
            scopes.append(str(store_id))
        stmt = sa.select(Rule).where(Rule.tenant_id == ctx.principal.tenant_id, Rule.scope.in_(scopes))
        if trigger is not None:
            stmt = stmt.where(Rule.trigger == trigger)
        if not include_retired:
            stmt = stmt.where(Rule.retired_at.is_(None))
        rows = list((await ctx.session.scalars(stmt)).all())
    if not include_retired:
        by_key: dict[str, Rule] = {}
        for rule in rows:
            if rule.key not in by_key or rule.scope != TENANT_SCOPE:
                by_key[rule.key] = rule
        rows = list(by_key.values())
    return sorted(rows, key=lambda r: (r.key, r.scope != TENANT_SCOPE, -r.version))


async def _active(ctx: Ctx, key: str, scope: str, *, lock: bool = False) -> Rule | None:
    stmt = sa.select(Rule).where(Rule.tenant_id == ctx.principal.tenant_id, Rule.scope == scope, Rule.key == key,
                                 Rule.retired_at.is_(None))
    return await ctx.session.scalar(stmt.with_for_update() if lock else stmt)


async def get_rule(ctx: Ctx, key: str, store_id: uuid.UUID | None) -> Rule:
    """The active version in force: the group's, or with ``store_id`` the store's override when it has one."""
    async with ctx.session.begin():
        rule = None
        if store_id is not None:
            await _store_in_scope(ctx, store_id)
            rule = await _active(ctx, key, str(store_id))
        rule = rule or await _active(ctx, key, TENANT_SCOPE)
    if rule is None:
        raise NotFound(f"No rule {key!r}.")
    return rule


async def versions(ctx: Ctx, key: str, store_id: uuid.UUID | None) -> list[Rule]:
    """Every version of the group rule, or of the store's override, newest first."""
    async with ctx.session.begin():
        if store_id is not None:
            await _store_in_scope(ctx, store_id)
        rows = list((await ctx.session.scalars(sa.select(Rule).where(
            Rule.tenant_id == ctx.principal.tenant_id, Rule.scope == scope_of(store_id), Rule.key == key)
            .order_by(Rule.version.desc()))).all())
    if not rows:
        raise NotFound(f"No rule {key!r}" + (" overridden for this store." if store_id else "."))
    return rows


# --- writing ----------------------------------------------------------------------------------------------


async def _lock_playbook(ctx: Ctx) -> None:
    await advisory_locks(ctx.session, [f"followup.playbook:{ctx.principal.tenant_id}"])


async def _same_trigger_as_group(ctx: Ctx, key: str, rdef: RuleDefinition) -> None:
    group = await _active(ctx, key, TENANT_SCOPE)
    if group is None:
        raise InvalidField("body.key", f"the group has no rule {key!r} to override; create the group rule first")
    if group.trigger != rdef.trigger:
        raise InvalidField("body.definition.trigger",
                           f"an override keeps the group rule's trigger ({group.trigger}); use a new key instead")


def _new_version(ctx: Ctx, scope: str, key: str, version: int, rdef: RuleDefinition, enabled: bool,
                 note: str | None, now: datetime) -> Rule:
    return Rule(tenant_id=ctx.principal.tenant_id, scope=scope, key=key, version=version, trigger=rdef.trigger,
                enabled=enabled, definition=rdef.model_dump(mode="json"), change_note=note,
                created_by=ctx.principal.subject, created_at=now, retired_at=None)


async def create_rule(ctx: Ctx, body: RuleCreate) -> Rule:
    """A new group rule (new key), or version 1 of a store's override of a group rule."""
    scope = scope_of(body.store_id)
    _can_write(ctx, scope)
    async with ctx.session.begin():
        if body.store_id is not None:
            await _store_in_scope(ctx, body.store_id)
        await _lock_playbook(ctx)
        existing = await _active(ctx, body.key, scope)
        if existing is not None:
            where = "this store's override" if body.store_id else "the group's playbook"
            raise Duplicate(f"Rule {body.key!r} already exists in {where}: change it with PUT.",
                            existing_id=existing.id)
        if body.store_id is not None:
            await _same_trigger_as_group(ctx, body.key, body.definition)
        await validation.check_rule(ctx.session, ctx.principal.tenant_id, scope, body.key, body.definition)
        last = await ctx.session.scalar(sa.select(sa.func.max(Rule.version)).where(
            Rule.tenant_id == ctx.principal.tenant_id, Rule.scope == scope, Rule.key == body.key))
        rule = _new_version(ctx, scope, body.key, (last or 0) + 1, body.definition, body.enabled, body.change_note,
                            ctx.runtime.clock.now())
        ctx.session.add(rule)
        await ctx.session.flush()
        ctx.audit.record(ctx.session, ctx.principal, "create", "rule", rule.id, tenant_id=rule.tenant_id,
                         store_id=body.store_id, after=snapshot(rule))
    return rule


async def _writable(ctx: Ctx, key: str, store_id: uuid.UUID | None, if_match: str | None) -> Rule:
    """The active version addressed by (key, store), locked, after the scope, role and If-Match checks."""
    scope = scope_of(store_id)
    if store_id is not None:
        await _store_in_scope(ctx, store_id)
    _can_write(ctx, scope)
    await _lock_playbook(ctx)
    rule = await _active(ctx, key, scope, lock=True)
    if rule is None:
        raise NotFound(f"No rule {key!r}" + (" overridden for this store (create the override with POST)."
                                             if store_id else "."))
    check_if_match(if_match, rule.version)
    return rule


async def update_rule(ctx: Ctx, key: str, store_id: uuid.UUID | None, body: RuleUpdate,
                      if_match: str | None) -> tuple[Rule, PendingCounts]:
    """Retire the active version, add the next, and apply ``body.pending`` to what the old version planned."""
    now = ctx.runtime.clock.now()
    async with ctx.session.begin():
        old = await _writable(ctx, key, store_id, if_match)
        rdef = body.definition
        if rdef.trigger != old.trigger:
            if body.pending == "reschedule":
                raise InvalidField("body.pending", f"the trigger changes ({old.trigger} -> {rdef.trigger}): pending "
                                                   "occurrences cannot be moved to it; keep or cancel them")
            if store_id is not None:
                await _same_trigger_as_group(ctx, key, rdef)
            else:
                await _no_overrides_with_other_trigger(ctx, key, rdef.trigger)
        await validation.check_rule(ctx.session, ctx.principal.tenant_id, old.scope, key, rdef)
        before = snapshot(old)
        old.retired_at = now
        new = _new_version(ctx, old.scope, key, old.version + 1, rdef, body.enabled, body.change_note, now)
        ctx.session.add(new)
        await ctx.session.flush()
        counts = await apply_pending(ctx, old, new, rdef, body.pending, now)
        ctx.audit.record(ctx.session, ctx.principal, "retire", "rule", old.id, tenant_id=old.tenant_id,
                         store_id=store_id, before=before, after=snapshot(old))
        ctx.audit.record(ctx.session, ctx.principal, "create", "rule", new.id, tenant_id=new.tenant_id,
                         store_id=store_id, after={**snapshot(new), "pending": body.pending,
                                                   "pending_counts": vars(counts)})
    return new, counts


async def _no_overrides_with_other_trigger(ctx: Ctx, key: str, trigger: str) -> None:
    found = await ctx.session.scalar(sa.select(sa.func.count()).select_from(Rule).where(
        Rule.tenant_id == ctx.principal.tenant_id, Rule.scope != TENANT_SCOPE, Rule.key == key,
        Rule.retired_at.is_(None), Rule.trigger != trigger))
    if found:
        raise InvalidField("body.definition.trigger", f"{found} store override(s) of {key!r} keep the current "
                                                      "trigger; delete them before changing it")


async def retire_override(ctx: Ctx, key: str, store_id: uuid.UUID | None, if_match: str | None,
                          pending: Pending) -> tuple[Rule, PendingCounts]:
    """Retire a store's override (the group rule applies there again); ``pending`` says what becomes of what the
    override planned: kept as planned, moved to the group rule's schedule, or cancelled."""
    if store_id is None:
        async with ctx.session.begin():
            if await _active(ctx, key, TENANT_SCOPE) is None:
                raise NotFound(f"No rule {key!r}.")
        raise BusinessRuleViolation(f"Group rules are never deleted (occurrences and reports refer to them): disable "
                                    f"{key!r} with PUT and enabled=false, or pass store_id to remove a store's "
                                    "override.")
    now = ctx.runtime.clock.now()
    async with ctx.session.begin():
        old = await _writable(ctx, key, store_id, if_match)
        before = snapshot(old)
        old.retired_at = now
        await ctx.session.flush()
        group = await _active(ctx, key, TENANT_SCOPE)
        counts = PendingCounts()
        if group is not None:
            group_def = None
            if pending == "reschedule" and group.enabled:
                try:
                    group_def = RuleDefinition.model_validate(group.definition)
                except ValueError as exc:
                    raise InvalidField("query.pending", f"the group rule {key!r} no longer validates; keep or "
                                                        "cancel the override's pending occurrences") from exc
            counts = await apply_pending(ctx, old, group, group_def, pending, now,
                                         change=f"override of rule {key} removed")
        ctx.audit.record(ctx.session, ctx.principal, "retire", "rule", old.id, tenant_id=old.tenant_id,
                         store_id=store_id, before=before,
                         after={**snapshot(old), "pending": pending, "pending_counts": vars(counts)})
    return old, counts


# --- what a change does to pending occurrences -------------------------------------------------------------


async def apply_pending(ctx: Ctx, old: Rule, new: Rule, new_def: RuleDefinition | None, policy: Pending,
                        now: datetime, change: str | None = None) -> PendingCounts:
    """``keep``: the old version's occurrences stay planned by it; ``cancel``: cancelled with the reason;
    ``reschedule``: due times recomputed from their anchors with the new definition and moved to the new version
    (steps it no longer has are cancelled; a disabled new version cancels them all). Fired, skipped, cancelled and
    failed occurrences are history and never change. Works in set-wise statements: a group rule may have planned
    occurrences for every car of the group."""
    change = change or f"rule {old.key} changed to v{new.version}"
    pending = (FollowUp.rule_id == old.id, FollowUp.state == "scheduled")
    counts = PendingCounts()
    if policy == "keep":
        counts.kept = await ctx.session.scalar(sa.select(sa.func.count()).select_from(FollowUp).where(*pending)) or 0
        return counts
    if policy == "cancel" or not new.enabled or new_def is None:
        why = "pending cancelled" if policy == "cancel" else f"rule disabled in v{new.version}, pending cancelled"
        counts.cancelled = await _cancel(ctx, pending, f"{change}: {why}", now)
        return counts
    steps = timing.total_steps(new_def.schedule)
    counts.cancelled = await _cancel(ctx, (*pending, FollowUp.step >= steps),
                                     f"{change}: v{new.version} has no such step (it plans {steps})", now)
    rows = (await ctx.session.execute(sa.select(FollowUp.id, FollowUp.anchor_at, FollowUp.step, FollowUp.store_id,
                                                FollowUp.subject_id)
                                      .where(*pending).with_for_update())).all()
    calendars = Calendars(ctx.session)
    changes = [{"id": row.id, "due_at": timing.due_time(new_def, row.anchor_at, row.step,
                                                          await calendars.get(row.store_id), row.subject_id),
                "rule_id": new.id, "purpose": new_def.purpose, "reason": f"{change}: rescheduled"[:300],
                "updated_at": now} for row in rows]
    if changes:
        await ctx.session.execute(sa.update(FollowUp), changes)
    counts.rescheduled = len(changes)
    return counts


async def _cancel(ctx: Ctx, where: tuple, reason: str, now: datetime) -> int:
    """Cancel the pending occurrences matching ``where`` and tell the other services (occurrence.skipped)."""
    reason = reason[:300]
    done = (await ctx.session.execute(
        sa.update(FollowUp).where(*where).values(state="cancelled", reason=reason, updated_at=now)
        .returning(FollowUp.id, FollowUp.occurrence_key, FollowUp.rule_key, FollowUp.customer_id, FollowUp.due_at,
                   FollowUp.tenant_id, FollowUp.store_id),
        execution_options={"synchronize_session": False})).all()
    events = [(OccurrenceSkipped(followup_id=r.id, occurrence_key=r.occurrence_key, rule_key=r.rule_key,
                                 customer_id=r.customer_id, state="cancelled", reason=reason, due_at=r.due_at),
               r.tenant_id, r.store_id) for r in done]
    for start in range(0, len(events), EVENT_CHUNK):
        await ctx.outbox.append_many(ctx.session, events[start:start + EVENT_CHUNK])
    return len(done)
