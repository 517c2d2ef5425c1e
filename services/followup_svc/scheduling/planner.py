"""Planning: turning triggers into follow-up occurrences, idempotently.

Every occurrence has the key ``<rule>:<subject type>:<subject id>:<series>:<step>``. The series names
one run of a rule for a subject (a delivery date, an anchor instant, an anniversary date); the step is
the offset or recurrence cycle. Inserting an existing key changes nothing, so redelivered or replayed
events never double a plan. Plans derived from state (dates, intent level, mileage) are *reconciled*:
the wanted occurrences are upserted (rescheduled when still pending) and pending ones no longer wanted
are cancelled with the reason.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from followup_svc.models import FollowUp, Rule, StoreView
from followup_svc.models.playbook import TENANT_SCOPE
from followup_svc.playbooks.schemas import RuleDefinition
from followup_svc.scheduling import timing
from shared.calendar import StoreCalendar
from shared.db.base import dialect_insert
from shared.ids import new_id

log = structlog.get_logger("planner")


@dataclass(frozen=True)
class Subject:
    """What an occurrence is about, and whose it is."""

    type: str  # customer | vehicle | visit | appointment
    id: uuid.UUID
    tenant_id: uuid.UUID
    store_id: uuid.UUID
    customer_id: uuid.UUID | None
    vehicle_id: uuid.UUID | None = None
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Want:
    """One wanted occurrence: which step of which series, counted from which anchor (or at a given time:
    recurrence cycles count from the previous cycle, see ``triggers.after_fire``)."""

    series: str
    step: int
    anchor: datetime
    due: datetime | None = None

#: Reasons staff write on occurrences (scheduling/service.py): re-planning does not move or revive those rows
#: (it still cancels them when their reason is gone, e.g. the date they were about changed).
MANUAL_PREFIXES = ("cancelled by staff", "rescheduled by staff")


def occurrence_key(rule_key: str, subject: Subject, series: str, step: int) -> str:
    return f"{rule_key}:{subject.type}:{subject.id}:{series}:{step}"


def calendar_of(store: StoreView | None) -> StoreCalendar:
    """The store's calendar (time zone, opening hours); the platform default for a store not yet known."""
    return StoreCalendar(store.timezone, store.business_hours) if store is not None else StoreCalendar()


def _not_manual(reason: Any) -> Any:
    return reason.is_(None) | sa.and_(*(sa.not_(reason.startswith(p)) for p in MANUAL_PREFIXES))


class Calendars:
    """Store calendars for the session's transaction (stores change rarely; read once per store and batch)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.cache: dict[uuid.UUID, StoreCalendar] = {}

    async def get(self, store_id: uuid.UUID) -> StoreCalendar:
        if store_id not in self.cache:
            self.cache[store_id] = calendar_of(await self.session.get(StoreView, store_id))
        return self.cache[store_id]


_definitions: dict[uuid.UUID, RuleDefinition] = {}


def definition_of(rule: Rule) -> RuleDefinition:
    """Rule versions never change once written, so their parsed definitions are cached by row id."""
    found = _definitions.get(rule.id)
    if found is None:
        found = _definitions[rule.id] = RuleDefinition.model_validate(rule.definition)
    return found


async def active_rules(session: AsyncSession, tenant_id: uuid.UUID, store_id: uuid.UUID,
                       trigger: str) -> list[tuple[Rule, RuleDefinition]]:
    """The rules in force for a store: the group's, each replaced by the store's override of the same key."""
    rows = (await session.scalars(sa.select(Rule).where(
        Rule.tenant_id == tenant_id, Rule.trigger == trigger, Rule.retired_at.is_(None),
        Rule.scope.in_((TENANT_SCOPE, str(store_id)))))).all()
    by_key: dict[str, Rule] = {}
    for rule in rows:
        if rule.key not in by_key or rule.scope != TENANT_SCOPE:
            by_key[rule.key] = rule
    found = []
    for rule in by_key.values():
        if not rule.enabled:
            continue
        try:
            found.append((rule, definition_of(rule)))
        except ValueError as exc:  # a stored rule the code no longer accepts: plan the others, say so loudly
            log.error("rule_invalid_skipped", rule_id=str(rule.id), key=rule.key, error=str(exc)[:300])
    return found


class Planner:
    def __init__(self, session: AsyncSession, now: datetime, deferred: bool = False) -> None:
        """``deferred``: plain inserts are collected and written by :meth:`flush` in one statement (the scheduler
        plans hundreds of next cycles per batch); reschedules always run at once."""
        self.session = session
        self.now = now
        self.deferred = deferred
        self._pending: list[dict[str, Any]] = []
        self.calendars = Calendars(session)
        self._rules: dict[tuple[uuid.UUID, uuid.UUID, str], list[tuple[Rule, RuleDefinition]]] = {}

    async def rules(self, subject: Subject, trigger: str) -> list[tuple[Rule, RuleDefinition]]:
        """Rules in force, read once per (tenant, store, trigger) in this transaction."""
        key = (subject.tenant_id, subject.store_id, trigger)
        if key not in self._rules:
            self._rules[key] = await active_rules(self.session, subject.tenant_id, subject.store_id, trigger)
        return self._rules[key]

    async def insert(self, rule: Rule, rdef: RuleDefinition, subject: Subject, wants: list[Want], *,
                     reschedule: bool = False) -> list[str]:
        """Insert the wanted occurrences; existing keys are left alone, or with ``reschedule`` moved to the new
        due time (pending ones) and revived (cancelled ones). Occurrences already stale are recorded as skipped."""
        if not wants:
            return []
        calendar = await self.calendars.get(subject.store_id)
        rows = []
        for want in wants:
            due = want.due or timing.due_time(rdef, want.anchor, want.step, calendar, subject.id)
            stale = self._stale(rdef, due)
            rows.append(dict(
                id=new_id(), tenant_id=subject.tenant_id, store_id=subject.store_id, rule_id=rule.id,
                rule_key=rule.key, occurrence_key=occurrence_key(rule.key, subject, want.series, want.step),
                subject_type=subject.type, subject_id=subject.id, customer_id=subject.customer_id,
                vehicle_id=subject.vehicle_id, anchor_at=want.anchor, step=want.step, due_at=due,
                state="skipped" if stale else "scheduled",
                reason="stale when planned: its time had passed (history)" if stale else None,
                attempts=0, purpose=rdef.purpose, context={**subject.context, "series": want.series},
                created_at=self.now, updated_at=self.now))
        if reschedule:
            await self.session.execute(self._upsert(), rows)
        elif self.deferred:
            self._pending.extend(rows)
        else:
            await self.session.execute(self._insert(), rows)
        return [r["occurrence_key"] for r in rows]

    async def flush(self) -> None:
        """Write the inserts collected in deferred mode (one statement; repeated keys change nothing)."""
        if self._pending:
            rows, self._pending = self._pending, []
            await self.session.execute(self._insert(), rows)

    def _insert(self) -> Any:
        table = FollowUp.__table__
        return dialect_insert(self.session)(table).on_conflict_do_nothing(
            index_elements=[table.c.tenant_id, table.c.occurrence_key])

    def _upsert(self) -> Any:
        """Insert, or move a pending occurrence to its new time (and owner), or revive a cancelled one."""
        table = FollowUp.__table__
        stmt = dialect_insert(self.session)(table)
        return stmt.on_conflict_do_update(
            index_elements=[table.c.tenant_id, table.c.occurrence_key],
            set_={"due_at": stmt.excluded.due_at, "anchor_at": stmt.excluded.anchor_at,
                  "customer_id": stmt.excluded.customer_id, "store_id": stmt.excluded.store_id,
                  "rule_id": stmt.excluded.rule_id, "context": stmt.excluded.context, "state": "scheduled",
                  "reason": None, "updated_at": stmt.excluded.updated_at},
            # No IN (...) here: expanding parameters cannot be used with a many-rows execute.
            where=((table.c.state == "scheduled") | (table.c.state == "cancelled")) & (stmt.excluded.state == "scheduled")
            & _not_manual(table.c.reason))

    async def plan(self, trigger: str, subject: Subject, anchor: datetime, series: str,
                   matches: Any = None) -> int:
        """Event-driven planning: every fixed offset, plus the first recurrence cycle (later ones chain from it
        as each fires). Of history (an imported delivery), the first cycle is recorded stale and the first cycle
        still ahead is planned too, so the series goes on from today instead of ending unfired (and nothing of
        the past is sent late)."""
        planned = 0
        for rule, rdef in await self.rules(subject, trigger):
            if matches is not None and not matches(rdef):
                continue
            offsets = len(rdef.schedule.offsets)
            wants = [Want(series, s, anchor) for s in range(offsets + (1 if rdef.schedule.repeat else 0))]
            if rdef.schedule.repeat is not None:
                calendar = await self.calendars.get(subject.store_id)
                first = timing.due_time(rdef, anchor, offsets, calendar, subject.id)
                live = self.live_cycle(rdef, calendar, offsets, first, ahead=True)
                if live is not None and live[0] != offsets and self._stale(rdef, first):
                    wants.append(Want(series, live[0], anchor, live[1]))
            planned += len(await self.insert(rule, rdef, subject, wants))
        return planned

    def _stale(self, rdef: RuleDefinition, due: datetime) -> bool:
        limit = timing.stale_limit(rdef, due)
        return limit is not None and limit < self.now

    def live_cycle(self, rdef: RuleDefinition, calendar: StoreCalendar, step: int, due: datetime,
                   ahead: bool = False) -> tuple[int, datetime] | None:
        """The first recurrence cycle from (``step``, ``due``) on that is not stale yet (``ahead``: not due yet),
        each counted from the one before; None when the series ends first."""
        while True:
            if (due >= self.now) if ahead else not self._stale(rdef, due):
                return step, due
            step += 1
            if step >= timing.total_steps(rdef.schedule):
                return None
            due = timing.cycle_due(rdef, due, calendar)

    async def reconcile(self, rule: Rule, rdef: RuleDefinition, subject: Subject, wants: list[Want],
                        reason: str) -> None:
        """Make the pending occurrences of (rule, subject) exactly ``wants``; cancel the rest with ``reason``."""
        keys = await self.insert(rule, rdef, subject, wants, reschedule=True)
        stmt = (sa.update(FollowUp)
                .where(FollowUp.tenant_id == subject.tenant_id, FollowUp.subject_id == subject.id,
                       FollowUp.rule_key == rule.key, FollowUp.state == "scheduled")
                .values(state="cancelled", reason=reason, updated_at=self.now))
        if keys:
            stmt = stmt.where(FollowUp.occurrence_key.not_in(keys))
        await self.session.execute(stmt, execution_options={"synchronize_session": False})

    async def last_done(self, rule_key: str, subject: Subject) -> datetime | None:
        """When this rule last fired (or was skipped) for the subject: yearly plans continue after it."""
        return await self.session.scalar(sa.select(sa.func.max(FollowUp.due_at)).where(
            FollowUp.tenant_id == subject.tenant_id, FollowUp.subject_id == subject.id, FollowUp.rule_key == rule_key,
            FollowUp.state.in_(("fired", "skipped"))))

    async def pending_series(self, rule_key: str, subject: Subject) -> bool:
        found = await self.session.scalar(sa.select(FollowUp.id).where(
            FollowUp.tenant_id == subject.tenant_id, FollowUp.subject_id == subject.id,
            FollowUp.rule_key == rule_key, FollowUp.state == "scheduled").limit(1))
        return found is not None

    async def cancel(self, tenant_id: uuid.UUID, reason: str, *, customer_id: uuid.UUID | None = None,
                     vehicle_id: uuid.UUID | None = None, subject_id: uuid.UUID | None = None,
                     rule_keys: list[str] | None = None, purpose: str | None = None,
                     triggers: list[str] | None = None, subject_type: str | None = None) -> int:
        """Cancel pending occurrences matching every filter given; the reason is kept on each row."""
        stmt = sa.update(FollowUp).where(FollowUp.tenant_id == tenant_id, FollowUp.state == "scheduled")
        for column, value in ((FollowUp.customer_id, customer_id), (FollowUp.vehicle_id, vehicle_id),
                              (FollowUp.subject_id, subject_id), (FollowUp.purpose, purpose),
                              (FollowUp.subject_type, subject_type)):
            if value is not None:
                stmt = stmt.where(column == value)
        if rule_keys is not None:
            stmt = stmt.where(FollowUp.rule_key.in_(rule_keys))
        if triggers is not None:
            stmt = stmt.where(FollowUp.rule_id.in_(sa.select(Rule.id).where(Rule.tenant_id == tenant_id,
                                                                           Rule.trigger.in_(triggers))))
        result = await self.session.execute(stmt.values(state="cancelled", reason=reason, updated_at=self.now),
                                            execution_options={"synchronize_session": False})
        return result.rowcount or 0
