"""The scheduler: claims due occurrences in batches and carries each one out, all in one transaction.

Claiming is ``SELECT … FOR UPDATE SKIP LOCKED`` on the partial due index, so N workers share the work
without coordination. A claim is the row lock of the firing transaction: a worker that crashes or loses
its connection rolls back, and its rows are claimable again at once (nothing to rescue by hand).
Each occurrence is checked again at firing time (stale? customer lost or opted out? vehicle sold?),
then becomes a task, a message command or a survey command plus its outbox event; the occurrence is
marked with the outcome and the next recurrence or chained rule is planned.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from followup_svc.clock import Clock
from followup_svc.models import CustomerView, FollowUp, Rule, StaffView, StoreView, Task, VehicleView
from followup_svc.playbooks.schemas import MaintenancePlan, RuleDefinition
from followup_svc.scheduling import timing, triggers
from shared.calendar import StoreCalendar
from followup_svc.scheduling.planner import Planner, calendar_of, definition_of
from shared.db.base import dialect_insert
from shared.events.catalog.followup import MessageRequested, OccurrenceSkipped, SurveyRequested, TaskCreated
from shared.events.envelope import EventData
from shared.ids import new_id
from shared.messaging.outbox import Outbox

log = structlog.get_logger("scheduler")
FIRED = Counter("followups_fired_total", "Follow-up occurrences handled by the scheduler", ["outcome"])
_COUNT = {outcome: FIRED.labels(outcome) for outcome in ("fired", "skipped", "cancelled", "failed", "retry", "deferred")}


#: The columns of a due occurrence the scheduler reads; what it writes back is in ``OUTCOME``.
CLAIMED = ("id", "tenant_id", "store_id", "rule_id", "rule_key", "occurrence_key", "subject_type", "subject_id",
           "customer_id", "vehicle_id", "anchor_at", "step", "due_at", "attempts", "context", "reason", "last_error")
OUTCOME = ("state", "reason", "due_at", "attempts", "last_error", "fired_at", "task_id", "updated_at")


#: What a survey command is about, by the occurrence's subject (a chain inherits its first rule's subject);
#: None: nothing a survey can be bound to.
SURVEY_ABOUT: dict[str, str | None] = {"visit": "visit", "vehicle": "delivery", "complaint": "complaint",
                                       "survey_response": None}
CUSTOMER_COLUMNS = ("name", "lost", "merged_into_id", "consents", "do_not_call", "assigned_sales_id",
                    "assigned_advisor_id")
#: The maintenance reminder names its due day, computed from the last maintenance and the odometer readings.
VEHICLE_COLUMNS = ("customer_id", "maintenance_count", "selling_consultant_id", "plate", "model", "declined_items",
                   "last_maintenance_at", "last_maintenance_km", "delivery_date", "mileage_readings")


class Due:
    """One claimed occurrence: read from its row, changed by the decision, written back in one UPDATE per batch."""

    __slots__ = (*CLAIMED, "state", "fired_at", "task_id", "updated_at")

    def __init__(self, row: Any, now: datetime) -> None:
        for name in CLAIMED:
            setattr(self, name, getattr(row, name))
        self.state, self.fired_at, self.task_id, self.updated_at = "scheduled", None, None, now

    def outcome(self) -> dict[str, Any]:
        return {"b_id": self.id, **{name: getattr(self, name) for name in OUTCOME}}


@dataclass
class Batch:
    """Everything the batch's decisions read, loaded with one query per table."""

    rules: dict[uuid.UUID, Rule]
    customers: dict[uuid.UUID, CustomerView]
    vehicles: dict[uuid.UUID, VehicleView]
    staff: dict[uuid.UUID, StaffView]
    stores: dict[uuid.UUID, StoreView]
    calendars: dict[uuid.UUID, StoreCalendar]
    last_calls: dict[uuid.UUID, datetime]
    #: Open tasks due within a day per staff member (the daily cap's count; grows as the batch assigns).
    load: dict[uuid.UUID, int]
    tasks: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[EventData, uuid.UUID | None, uuid.UUID | None]] = field(default_factory=list)

    @classmethod
    async def load(cls, session: AsyncSession, rows: list[Due], now: datetime) -> Batch:
        async def by_id(model: Any, ids: set[uuid.UUID | None], columns: tuple[str, ...] = ()) -> dict[uuid.UUID, Any]:
            ids.discard(None)
            if not ids:
                return {}
            if not columns:
                return {o.id: o for o in await session.scalars(sa.select(model).where(model.id.in_(ids)))}
            # Plain rows of the columns decisions read (no identity map, no change tracking, no unused JSON).
            table = model.__table__
            found = await session.execute(sa.select(*(table.c[c] for c in ("id", *columns))).where(table.c.id.in_(ids)))
            return {r.id: r for r in found}

        rules = await by_id(Rule, {r.rule_id for r in rows})
        customers = await by_id(CustomerView, {r.customer_id for r in rows}, CUSTOMER_COLUMNS)
        vehicles = await by_id(VehicleView, {r.vehicle_id for r in rows}, VEHICLE_COLUMNS)
        staff_ids = {c.assigned_sales_id for c in customers.values()} | {c.assigned_advisor_id for c in customers.values()}
        staff_ids |= {v.selling_consultant_id for v in vehicles.values()}
        staff_ids |= {_uuid(r.context.get("advisor_id")) for r in rows if r.context}
        staff = await by_id(StaffView, staff_ids, ("active", "store_ids"))
        stores = await by_id(StoreView, {r.store_id for r in rows}, ("name", "timezone", "business_hours"))
        tenants = {r.tenant_id for r in rows}
        gap_customers = {r.customer_id for r in rows if r.customer_id and _gap_days(rules.get(r.rule_id))}
        last_calls: dict[uuid.UUID, datetime] = {}
        if gap_customers:
            found = await session.execute(
                sa.select(Task.customer_id, sa.func.max(Task.completed_at))
                .where(Task.tenant_id.in_(tenants), Task.customer_id.in_(gap_customers), Task.status == "done",
                       Task.kind == "call")
                .group_by(Task.customer_id))
            last_calls = {cid: at for cid, at in found if at is not None}
        load: dict[uuid.UUID, int] = {}
        if staff:
            counted = await session.execute(
                sa.select(Task.assignee_id, sa.func.count())
                .where(Task.tenant_id.in_(tenants), Task.assignee_id.in_(staff.keys()),
                       Task.status.in_(("open", "in_progress")), Task.due_at < now + timedelta(days=1))
                .group_by(Task.assignee_id))
            load = {sid: n for sid, n in counted}
        calendars = {sid: calendar_of(store) for sid, store in stores.items()}
        return cls(rules, customers, vehicles, staff, stores, calendars, last_calls, load)


def _gap_days(rule: Rule | None) -> int:
    """A rule that no longer validates counts as no gap here; its own row fails (and is retried) in the batch."""
    try:
        return definition_of(rule).schedule.min_gap_days if rule is not None else 0
    except ValueError:
        return 0


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


_OUTCOME_UPDATE = (sa.update(FollowUp.__table__).where(FollowUp.__table__.c.id == sa.bindparam("b_id"))
                   .values({name: sa.bindparam(name) for name in OUTCOME}))
_OUTCOME_TYPES = {"state": "text", "reason": "text", "due_at": "timestamptz", "attempts": "int", "last_error": "text",
                  "fired_at": "timestamptz", "task_id": "uuid", "updated_at": "timestamptz"}
#: Postgres: every outcome of the batch in one set-based statement (arrays unnested), not one UPDATE per row.
_OUTCOME_UNNEST = sa.text(
    f"UPDATE {FollowUp.__table__.fullname} AS f SET "
    + ", ".join(f"{c} = v.{c}" for c in OUTCOME)
    + " FROM unnest(CAST(:id AS uuid[]), "
    + ", ".join(f"CAST(:{c} AS {_OUTCOME_TYPES[c]}[])" for c in OUTCOME)
    + ") AS v(id, " + ", ".join(OUTCOME) + ") WHERE f.id = v.id")


async def _write_outcomes(session: AsyncSession, rows: list[Due]) -> None:
    if session.bind.dialect.name != "postgresql":
        await session.execute(_OUTCOME_UPDATE, [row.outcome() for row in rows])
        return
    columns: dict[str, list[Any]] = {"id": [row.id for row in rows]}
    for name in OUTCOME:
        columns[name] = [getattr(row, name) for row in rows]
    await session.execute(_OUTCOME_UNNEST, columns)


class Scheduler:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], outbox: Outbox, clock: Clock,
                 batch_size: int = 500, max_attempts: int = 5, daily_task_cap: int = 40) -> None:
        self.sessionmaker = sessionmaker
        self.outbox = outbox
        self.clock = clock
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.daily_task_cap = daily_task_cap

    async def fire_due(self, limit: int | None = None) -> int:
        """Claim and carry out up to ``limit`` due occurrences; returns how many were claimed."""
        table = FollowUp.__table__
        async with self.sessionmaker() as session, session.begin():
            now = self.clock.now()
            claimed = await session.execute(
                sa.select(*(table.c[name] for name in CLAIMED))
                .where(table.c.state == "scheduled", table.c.due_at <= now)
                .order_by(table.c.due_at).limit(limit or self.batch_size)
                .with_for_update(skip_locked=True))
            rows = [Due(r, now) for r in claimed]
            if not rows:
                return 0
            batch = await Batch.load(session, rows, now)
            planner = Planner(session, now, deferred=True)
            for row in rows:
                try:
                    self._carry_out(row, batch, now)
                except Exception as exc:  # noqa: BLE001 - one bad occurrence must not stall the others
                    self._retry_later(row, now, exc)
            # Fired or skipped, a cycle of a series is over: the next one is planned (a skip does not end it).
            for row in (r for r in rows if r.state != "scheduled" and r.state != "failed"):
                rule = batch.rules[row.rule_id]
                await triggers.after_fire(planner, row, rule, definition_of(rule))
            await _write_outcomes(session, rows)
            if batch.tasks:
                await session.execute(dialect_insert(session)(Task.__table__).on_conflict_do_nothing(
                    index_elements=["tenant_id", "occurrence_key"]), batch.tasks)
            await planner.flush()
            await self.outbox.append_many(session, batch.events)
        return len(rows)

    # --- one occurrence -----------------------------------------------------------------------------------

    def _carry_out(self, row: Due, batch: Batch, now: datetime) -> None:
        """Decide and record on ``row`` what happens to one due occurrence (fired, dropped or deferred)."""
        rule = batch.rules[row.rule_id]
        rdef = definition_of(rule)
        customer = batch.customers.get(row.customer_id) if row.customer_id else None
        if row.customer_id and customer is None:
            raise LookupError("customer not in the read model yet")
        vehicle = batch.vehicles.get(row.vehicle_id) if row.vehicle_id else None
        if customer is not None and (customer.lost or customer.merged_into_id is not None):
            self._drop(row, batch, now, "skipped",
                       "customer merged into another record" if customer.merged_into_id else "customer lost")
            return
        if vehicle is not None and row.customer_id and vehicle.customer_id != row.customer_id:
            self._drop(row, batch, now, "cancelled", "vehicle transferred to another owner")
            return
        context = row.context or {}
        cycle = context.get("series") if rule.trigger == "vehicle.maintenance_due" else context.get("maintenance_cycle")
        if cycle and vehicle is not None and f"c{vehicle.maintenance_count + 1}" != cycle:
            self._drop(row, batch, now, "cancelled", "maintenance done since this reminder was planned")
            return
        limit = timing.stale_limit(rdef, row.due_at)
        if limit is not None and now > limit:
            late = now - row.due_at
            self._drop(row, batch, now, "skipped", f"stale: {late.days} d {late.seconds // 3600} h late")
            return
        action = rdef.action
        channels = list(action.channels)
        if customer is not None and rdef.purpose == "marketing":
            channels = [ch for ch in channels if customer.consents.get(f"{ch}:marketing") is True]
            if not channels:
                self._drop(row, batch, now, "skipped", "no marketing consent on " + "/".join(action.channels))
                return
        if customer is not None and action.kind == "task" and action.task_kind == "call" and customer.do_not_call:
            self._drop(row, batch, now, "skipped", "customer asked not to be called")
            return
        store = batch.stores.get(row.store_id)
        calendar = batch.calendars.get(row.store_id) or calendar_of(None)
        if rdef.schedule.holiday_peak == "skip" and calendar.holiday_name(calendar.local(now).date()):
            self._drop(row, batch, now, "skipped", "holiday peak: no marketing")
            return
        if action.kind == "task" and rdef.schedule.min_gap_days and row.customer_id in batch.last_calls:
            free_from = batch.last_calls[row.customer_id] + timedelta(days=rdef.schedule.min_gap_days)
            if free_from > now:
                row.due_at = timing.adjust(rdef, free_from, calendar)
                row.reason = f"deferred: customer was called on {batch.last_calls[row.customer_id]:%Y-%m-%d}"
                _COUNT["deferred"].inc()
                return
        if action.kind == "task":
            self._task(row, rule, rdef, batch, customer, vehicle, now)
        elif action.kind == "message":
            variables = _variables(row, customer, vehicle, store)
            if rule.trigger == "vehicle.maintenance_due" and vehicle is not None:
                # The reminder names the day the maintenance falls due (DOMAIN §7.4), not the day it is sent.
                due = triggers.maintenance_due(vehicle, rdef.conditions.maintenance or MaintenancePlan())
                if due is not None:
                    variables["date"] = due[1].isoformat()
            batch.events.append((MessageRequested(
                request_id=row.id, idempotency_key=row.occurrence_key, customer_id=row.customer_id,
                vehicle_id=row.vehicle_id, rule_key=row.rule_key, template=action.template, channels=channels,
                purpose=rdef.purpose, variables=variables, not_before=now, expires_at=limit,
                avoid_holidays=rdef.schedule.holiday_peak != "allow"), row.tenant_id, row.store_id))
        else:
            about = SURVEY_ABOUT.get(row.subject_type)
            if about is None or row.customer_id is None:
                self._drop(row, batch, now, "skipped", f"nothing to survey: a {row.subject_type}"
                           + ("" if row.customer_id else " without a customer"))
                return
            if about == "visit":
                staff = _uuid(context.get("advisor_id"))
            elif about == "complaint":
                staff = _uuid(context.get("owner_id"))  # the first-contact owner who handled the case
            else:
                staff = vehicle.selling_consultant_id if vehicle else None
            batch.events.append((SurveyRequested(
                request_id=row.id, idempotency_key=row.occurrence_key, customer_id=row.customer_id,
                vehicle_id=row.vehicle_id, rule_key=row.rule_key, survey=action.survey, about_type=about,
                about_id=row.subject_id, staff_id=staff, channels=channels, not_before=now, expires_at=limit),
                row.tenant_id, row.store_id))
        row.state, row.fired_at, row.reason = "fired", now, None
        _COUNT["fired"].inc()

    def _task(self, row: Due, rule: Rule, rdef: RuleDefinition, batch: Batch, customer: CustomerView | None,
              vehicle: VehicleView | None, now: datetime) -> None:
        action = rdef.action
        assignee = _owner(action.assignee, row, batch, customer, vehicle)
        context = {**(row.context or {}), "rule_name": rdef.name, "step": row.step}
        if assignee is not None:
            if batch.load.get(assignee, 0) >= self.daily_task_cap:
                # Per-person daily cap (T-15): the overflow waits in the team queue for whoever has room.
                context["over_cap_of"] = str(assignee)
                assignee = None
            else:
                batch.load[assignee] = batch.load.get(assignee, 0) + 1
        task_id = new_id()
        due = max(row.due_at, now)
        sla = due + timedelta(hours=rdef.sla_hours)
        batch.tasks.append(dict(
            id=task_id, tenant_id=row.tenant_id, store_id=row.store_id, occurrence_key=row.occurrence_key,
            followup_id=row.id, rule_key=rule.key, customer_id=row.customer_id, vehicle_id=row.vehicle_id,
            kind=action.task_kind, title=action.title, instructions=_instructions(action.instructions, context),
            role=str(action.role), assignee_id=assignee, status="open", priority=rdef.priority, due_at=due,
            sla_due_at=sla, attempt=1, escalation_level=0, escalate_at=sla, context=context,
            version=1, created_at=now, updated_at=now))
        row.task_id = task_id
        batch.events.append((TaskCreated(
            task_id=task_id, occurrence_key=row.occurrence_key, rule_key=rule.key, customer_id=row.customer_id,
            vehicle_id=row.vehicle_id, kind=action.task_kind, title=action.title or rdef.name, role=str(action.role),
            assignee_id=assignee, priority=rdef.priority, due_at=due, sla_due_at=sla), row.tenant_id, row.store_id))

    def _drop(self, row: Due, batch: Batch, now: datetime, state: str, reason: str) -> None:
        row.state, row.reason, row.updated_at = state, reason, now
        batch.events.append((OccurrenceSkipped(
            followup_id=row.id, occurrence_key=row.occurrence_key, rule_key=row.rule_key, customer_id=row.customer_id,
            state=state, reason=reason, due_at=row.due_at), row.tenant_id, row.store_id))  # type: ignore[arg-type]
        _COUNT[state].inc()

    def _retry_later(self, row: Due, now: datetime, exc: Exception) -> None:
        row.attempts += 1
        row.last_error = f"{type(exc).__name__}: {exc}"[:500]
        row.updated_at = now
        if row.attempts >= self.max_attempts:
            row.state, row.reason = "failed", f"gave up after {row.attempts} attempts: {row.last_error}"[:300]
            _COUNT["failed"].inc()
        else:
            row.due_at = now + timedelta(minutes=2 ** (row.attempts - 1))
            _COUNT["retry"].inc()
        log.warning("followup_failed", followup_id=str(row.id), attempts=row.attempts, error=row.last_error)


def _owner(mode: str, row: Due, batch: Batch, customer: CustomerView | None,
           vehicle: VehicleView | None) -> uuid.UUID | None:
    """The customer's own consultant or advisor when they are active staff of the store, else the team queue."""
    candidates: list[uuid.UUID | None] = []
    if mode == "sales_consultant":
        candidates = [vehicle.selling_consultant_id if vehicle else None,
                      customer.assigned_sales_id if customer else None]
    elif mode == "service_advisor":
        candidates = [_uuid((row.context or {}).get("advisor_id")), customer.assigned_advisor_id if customer else None]
    for candidate in candidates:
        staff = batch.staff.get(candidate) if candidate else None
        if staff is not None and staff.active and str(row.store_id) in staff.store_ids:
            return staff.id
    return None


def _instructions(base: str | None, context: dict[str, Any]) -> str | None:
    """The rule's instructions, with what the occurrence is about when the event said (a low score's reasons and
    comment, a complaint's number), so the person calling need not look it up first."""
    facts = []
    if context.get("reasons"):
        facts.append("Low-score reasons: " + "; ".join(str(r) for r in context["reasons"]))
    if context.get("satisfaction_index") is not None:
        facts.append(f"Satisfaction index: {context['satisfaction_index']}")
    if context.get("nps_score") is not None:
        facts.append(f"NPS: {context['nps_score']}")
    if context.get("comment"):
        facts.append(f"Comment: {context['comment']}")
    if context.get("complaint_number"):
        facts.append(f"Complaint {context['complaint_number']} ({context.get('category', '—')})")
    if not facts:
        return base
    return "\n".join([*([base] if base else []), *facts])[:4000]


def _variables(row: Due, customer: CustomerView | None, vehicle: VehicleView | None,
               store: StoreView | None) -> dict[str, Any]:
    """What message templates may use (notify_svc validates each template's variables at render time)."""
    values: dict[str, Any] = {"store_name": store.name if store else None}
    if customer is not None:
        values["customer_name"] = customer.name
    if vehicle is not None:
        values.update(plate=vehicle.plate, model=vehicle.model, declined_items=list(vehicle.declined_items or []))
    series = (row.context or {}).get("series")
    if series and row.subject_type in ("vehicle", "customer"):
        values["date"] = series if len(series) == 10 else None
    return {k: v for k, v in values.items() if v is not None}
