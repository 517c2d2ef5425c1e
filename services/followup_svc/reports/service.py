"""Follow-up reports, computed with SQL aggregates over store-local days.

A report covers the caller's stores (or one of them). Days are the stores' own: the bounds of a local day
are converted to UTC per time zone, so one query covers stores in several zones. "Reached" is read from the
task outcome's ``reached`` field (``reached`` / ``not_reached`` / ``refused`` / ``wrong_number``, DOMAIN §4.10).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from followup_svc.deps import Ctx
from followup_svc.models import FollowUp, StaffView, StoreView, Task, TestClock
from followup_svc.models.task import OPEN_STATES
from followup_svc.reports.schemas import (
    MAX_DAYS, MINOR_REPAIR_TARGET, ActivityCounts, ActivityRow, CallbackCounts, CallbacksByAssignee, CallbacksByRule,
    CallbacksReport, CoverageCounts, CoverageReport, CoverageRow, DailyActivityReport, OutcomeCounts, OutcomesByRule,
    OutcomesReport, SkipReason)
from shared.calendar import StoreCalendar
from shared.auth import Role
from shared.auth.scoping import stores_in_scope
from shared.errors import InvalidField

DEFAULT_ZONE = StoreCalendar.timezone
#: Report days must convert to UTC and back in every zone: no dates near the ends of the calendar.
EARLIEST, LATEST = date(2000, 1, 1), date(2099, 12, 31)
EXECUTORS = (Role.SALES_CONSULTANT, Role.SERVICE_ADVISOR, Role.CS_AGENT)
FINISHED = ("done", "failed")
REACHED = "reached"
MINOR_REPAIR_CALLBACK = "minor_repair_callback"
NOT_DONE_STATES = ("skipped", "cancelled", "failed")
TOP_REASONS = 10
_MIDNIGHT = time(0, 0)
_ONE_DAY = timedelta(days=1)


# --- scope and period -------------------------------------------------------------------------------------


@dataclass
class Scope:
    """The stores a report covers, their time zones, and the service's "now"."""

    tenant_id: uuid.UUID
    store_id: uuid.UUID | None
    stores: dict[uuid.UUID, StoreView | None]
    #: Tenant-wide without a store filter: every store counts, also one the directory has not heard of yet.
    everything: bool
    now: datetime

    def zones(self) -> dict[str, list[uuid.UUID]]:
        found: dict[str, list[uuid.UUID]] = {}
        for sid, view in self.stores.items():
            found.setdefault(view.timezone if view is not None else DEFAULT_ZONE, []).append(sid)
        if self.everything:
            found.setdefault(DEFAULT_ZONE, [])
        return found

    def today(self) -> date:
        zones = list(self.zones())
        return StoreCalendar(zones[0] if len(zones) == 1 else DEFAULT_ZONE).local(self.now).date()

    def per_zone(self, model: Any, first: date, last: date,
                 make: Callable[[datetime, datetime], ColumnElement[bool]]) -> ColumnElement[bool]:
        """OR over the time zones in scope of: the zone's stores, and ``make(start, end)`` of the local days
        ``first``..``last`` there (UTC instants, end exclusive). Always also restricted to the tenant."""
        zones = self.zones()
        clauses = []
        for zone, ids in zones.items():
            calendar = StoreCalendar(zone)
            start, end = calendar.at_local(first, _MIDNIGHT), calendar.at_local(last + _ONE_DAY, _MIDNIGHT)
            cond = make(start, end)
            if self.everything and zone == DEFAULT_ZONE:
                others = [s for z, more in zones.items() if z != zone for s in more]
                if others:
                    cond = sa.and_(cond, model.store_id.not_in(others))
            else:
                cond = sa.and_(cond, model.store_id.in_(ids))
            clauses.append(cond)
        return sa.and_(model.tenant_id == self.tenant_id, sa.or_(*clauses) if clauses else sa.false())

    def within(self, model: Any, column: Any, first: date, last: date) -> ColumnElement[bool]:
        return self.per_zone(model, first, last, lambda start, end: sa.and_(column >= start, column < end))


async def resolve_scope(ctx: Ctx, store_id: uuid.UUID | None) -> Scope:
    """The caller's stores, or ``store_id`` when it is one of them (else 404, as for any record out of scope)."""
    principal = ctx.principal
    runtime = ctx.runtime
    await runtime.clock.load(runtime.engine, TestClock.__table__)
    stores, whole_group = await stores_in_scope(ctx.session, StoreView, principal, store_id)
    return Scope(principal.tenant_id, store_id, stores, whole_group, runtime.clock.now())


def check_day(value: date, field: str) -> date:
    if not EARLIEST <= value <= LATEST:
        raise InvalidField(field, f"must be between {EARLIEST} and {LATEST}")
    return value


def resolve_period(scope: Scope, first: date | None, last: date | None) -> tuple[date, date]:
    """``to`` defaults to today (store-local), ``from`` to the first of that month; at most 366 days."""
    if first is not None:
        check_day(first, "query.from")
    if last is not None:
        check_day(last, "query.to")
    end = last or scope.today()
    start = first or end.replace(day=1)
    if end < start:
        raise InvalidField("query.to" if last is not None else "query.from", "must not be before `from`"
                           if last is not None else "must not be after `to` (today by default)")
    if (end - start).days + 1 > MAX_DAYS:
        raise InvalidField("query.to" if last is not None else "query.from",
                           f"a report covers at most {MAX_DAYS} days")
    return start, end


# --- shared expressions -----------------------------------------------------------------------------------


def _count(cond: ColumnElement[bool] | None = None) -> Any:
    return sa.func.count().filter(cond) if cond is not None else sa.func.count()


def _reached_value() -> Any:
    return Task.outcome["reached"].as_string()


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


async def _names(ctx: Ctx, ids: set[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = await ctx.session.execute(sa.select(StaffView.id, StaffView.name).where(
        StaffView.tenant_id == ctx.principal.tenant_id, StaffView.id.in_(wanted)))
    return {sid: name for sid, name in rows}


def _by_staff_then_queue(row: Any) -> tuple[Any, ...]:
    return (row.staff_id is None, row.staff_name or "", row.role, str(row.staff_id))


# --- daily activity (T-10) ---------------------------------------------------------------------------------


async def daily_activity(ctx: Ctx, scope: Scope, day: date) -> DailyActivityReport:
    """Per assignee and role: what fell due, what was finished and what is overdue on one local day."""
    finished = Task.status.in_(FINISHED)
    due_today = scope.within(Task, Task.due_at, day, day)
    finished_today = sa.and_(finished, scope.within(Task, Task.completed_at, day, day))

    def overdue_at(start: datetime, end: datetime) -> ColumnElement[bool]:
        cutoff = min(end, scope.now)
        return sa.and_(Task.sla_due_at < cutoff, sa.or_(
            sa.and_(Task.completed_at.is_(None), Task.status.in_(OPEN_STATES)), Task.completed_at > cutoff))

    overdue = scope.per_zone(Task, day, day, overdue_at)
    measures = [
        _count(due_today).label("due"),
        _count(sa.and_(finished_today, Task.status == "done")).label("done"),
        _count(sa.and_(finished_today, Task.status == "failed")).label("failed"),
        _count(sa.and_(due_today, Task.status.in_(OPEN_STATES))).label("open"),
        _count(overdue).label("overdue"),
        _count(sa.and_(finished_today, _reached_value() == REACHED)).label("reached"),
        sa.func.count(sa.distinct(Task.customer_id)).filter(finished_today).label("customers_contacted"),
    ]
    relevant = sa.or_(due_today, finished_today, overdue)
    grouped = await ctx.session.execute(sa.select(Task.assignee_id, Task.role, *measures).where(relevant)
                                        .group_by(Task.assignee_id, Task.role))
    totals = (await ctx.session.execute(sa.select(*measures).where(relevant))).one()
    found = [dict(r._mapping) for r in grouped]
    busy = {r["assignee_id"] for r in found}
    idle = await _idle_executors(ctx, scope, busy)
    names = await _names(ctx, busy)
    rows = []
    for r in found:
        sid = r.pop("assignee_id")
        rows.append(ActivityRow(staff_id=sid, staff_name=names.get(sid) if sid else None, **r))
    zero = dict.fromkeys(ActivityCounts.model_fields, 0)
    rows += [ActivityRow(staff_id=s.id, staff_name=s.name, role=role, **zero) for s, role in idle]
    return DailyActivityReport(store_id=scope.store_id, generated_at=scope.now, day=day,
                               rows=sorted(rows, key=_by_staff_then_queue),
                               totals=ActivityCounts.model_validate(dict(totals._mapping)))


async def _idle_executors(ctx: Ctx, scope: Scope, busy: set[uuid.UUID | None]) -> list[tuple[StaffView, str]]:
    """Active executors of the stores in scope without any task in the report (they get a row of zeros)."""
    staff = await ctx.session.scalars(sa.select(StaffView).where(
        StaffView.tenant_id == scope.tenant_id, StaffView.active.is_(True)))
    wanted = {str(s) for s in scope.stores}
    out = []
    for member in staff:
        roles = [r for r in member.roles if r in {str(e) for e in EXECUTORS}]
        in_scope = scope.everything or wanted.intersection(member.store_ids or [])
        if roles and in_scope and member.id not in busy:
            out.append((member, roles[0]))
    return out


# --- callback execution ------------------------------------------------------------------------------------


async def callbacks(ctx: Ctx, scope: Scope, first: date, last: date) -> CallbacksReport:
    """Call tasks due in the period: planned vs done, on time, reached, overdue and escalated."""
    done = Task.status == "done"
    finished = Task.status.in_(FINISHED)
    reached = _reached_value()
    overdue = sa.or_(sa.and_(Task.completed_at.is_(None), Task.status.in_(OPEN_STATES), Task.sla_due_at < scope.now),
                     sa.and_(finished, Task.completed_at > Task.sla_due_at))
    measures = [
        _count().label("planned"),
        _count(Task.status == "cancelled").label("cancelled"),
        _count(done).label("done"),
        _count(sa.and_(done, Task.completed_at <= Task.sla_due_at)).label("done_on_time"),
        _count(Task.status == "failed").label("failed"),
        _count(Task.status.in_(OPEN_STATES)).label("open"),
        _count(overdue).label("overdue"),
        _count(Task.escalation_level >= 1).label("escalated"),
        _count(sa.and_(finished, reached == REACHED)).label("reached"),
        _count(sa.and_(finished, reached.is_not(None), reached != REACHED)).label("not_reached"),
    ]
    where = sa.and_(Task.kind == "call", scope.within(Task, Task.due_at, first, last))
    totals = (await ctx.session.execute(sa.select(*measures).where(where))).one()
    by_rule = await ctx.session.execute(sa.select(Task.rule_key, *measures).where(where).group_by(Task.rule_key))
    by_assignee = list(await ctx.session.execute(sa.select(Task.assignee_id, Task.role, *measures).where(where)
                                                 .group_by(Task.assignee_id, Task.role)))
    names = await _names(ctx, {r.assignee_id for r in by_assignee})
    rules = [CallbacksByRule(rule_key=r.rule_key, **_with_rates(r._mapping)) for r in by_rule]
    people = [CallbacksByAssignee(staff_id=r.assignee_id, staff_name=names.get(r.assignee_id) if r.assignee_id
                                  else None, role=r.role, **_with_rates(r._mapping)) for r in by_assignee]
    return CallbacksReport(
        store_id=scope.store_id, generated_at=scope.now, from_date=first, to_date=last,
        totals=CallbackCounts(**_with_rates(totals._mapping)),
        by_rule=sorted(rules, key=lambda r: (-r.planned, r.rule_key or "")),
        by_assignee=sorted(people, key=lambda r: (-r.planned, *_by_staff_then_queue(r))))


def _with_rates(row: Any) -> dict[str, Any]:
    counts = {k: row[k] for k in CallbackCounts.model_fields if k in row}
    active = counts["planned"] - counts["cancelled"]
    return {**counts, "completion_rate": _rate(counts["done"], active),
            "on_time_rate": _rate(counts["done_on_time"], active),
            "reach_rate": _rate(counts["reached"], counts["reached"] + counts["not_reached"])}


# --- minor-repair coverage (T-55) ----------------------------------------------------------------------------


async def minor_repair_coverage(ctx: Ctx, scope: Scope, first: date, last: date) -> CoverageReport:
    """Minor-repair visits completed in the period (every occurrence planned about a visit carries its type)
    against the visits whose callback reached the customer."""
    visit_type = FollowUp.context["visit_type"].as_string()
    in_period = scope.within(FollowUp, FollowUp.anchor_at, first, last)
    minor_visits = sa.and_(in_period, FollowUp.subject_type == "visit", visit_type == "minor_repair")
    visits = dict((await ctx.session.execute(
        sa.select(FollowUp.store_id, sa.func.count(sa.distinct(FollowUp.subject_id)))
        .where(minor_visits).group_by(FollowUp.store_id))).all())
    callback = sa.and_(in_period, FollowUp.rule_key == MINOR_REPAIR_CALLBACK)
    sampled = dict((await ctx.session.execute(
        sa.select(FollowUp.store_id, sa.func.count(sa.distinct(FollowUp.subject_id)))
        .where(callback).group_by(FollowUp.store_id))).all())
    done = Task.status == "done"
    calls = {r.store_id: r for r in await ctx.session.execute(
        sa.select(FollowUp.store_id,
                  sa.func.count(sa.distinct(FollowUp.subject_id)).filter(done).label("done"),
                  sa.func.count(sa.distinct(FollowUp.subject_id))
                  .filter(sa.and_(done, _reached_value() == REACHED)).label("reached"))
        .select_from(Task).join(FollowUp, FollowUp.id == Task.followup_id)
        .where(Task.tenant_id == scope.tenant_id, callback).group_by(FollowUp.store_id))}
    store_ids = set(scope.stores) | set(visits) | set(sampled) | set(calls)
    rows = []
    for sid in store_ids:
        view = scope.stores.get(sid)
        call = calls.get(sid)
        rows.append(CoverageRow(store_id=sid, store_name=view.name if view is not None else None,
                                **_coverage(visits.get(sid, 0), sampled.get(sid, 0), call.done if call else 0,
                                            call.reached if call else 0)))
    rows.sort(key=lambda r: (r.store_name is None, r.store_name or "", str(r.store_id)))
    total = _coverage(*(sum(getattr(r, k) for r in rows)
                        for k in ("minor_repair_visits", "sampled", "callbacks_done", "reached")))
    return CoverageReport(store_id=scope.store_id, generated_at=scope.now, from_date=first, to_date=last,
                          stores=rows, total=CoverageCounts(**total))


def _coverage(visits: int, sampled: int, done: int, reached: int) -> dict[str, Any]:
    coverage = _rate(reached, visits)
    return dict(minor_repair_visits=visits, sampled=sampled, callbacks_done=done, reached=reached, coverage=coverage,
                meets_target=None if coverage is None else coverage >= MINOR_REPAIR_TARGET)


# --- outcomes of the planned touches ------------------------------------------------------------------------


def _reason_group() -> Any:
    """Reasons carrying details (how late, which attempt) folded into one group each."""
    return sa.case(
        (FollowUp.reason.like("stale: %"), "stale (too late)"),
        (FollowUp.reason.like("gave up after %"), "gave up after retries"),
        else_=sa.func.coalesce(FollowUp.reason, "(no reason recorded)"))


async def outcomes(ctx: Ctx, scope: Scope, first: date, last: date) -> OutcomesReport:
    """Occurrences due in the period by rule and state, and the most frequent reasons touches did not happen."""
    in_period = scope.within(FollowUp, FollowUp.due_at, first, last)
    counts: dict[str, dict[str, int]] = {}
    for rule_key, state, n in await ctx.session.execute(
            sa.select(FollowUp.rule_key, FollowUp.state, sa.func.count()).where(in_period)
            .group_by(FollowUp.rule_key, FollowUp.state)):
        counts.setdefault(rule_key, {})[state] = n
    by_rule = [OutcomesByRule(rule_key=key, **_states(states)) for key, states in counts.items()]
    by_rule.sort(key=lambda r: (-r.total, r.rule_key))
    totals = _states({s: sum(c.get(s, 0) for c in counts.values()) for s in OutcomeCounts.model_fields})
    grouped = sa.select(FollowUp.state.label("state"), _reason_group().label("reason")) \
        .where(in_period, FollowUp.state.in_(NOT_DONE_STATES)).subquery()
    n = sa.func.count().label("n")
    reasons = await ctx.session.execute(sa.select(grouped.c.state, grouped.c.reason, n)
                                        .group_by(grouped.c.state, grouped.c.reason)
                                        .order_by(n.desc(), grouped.c.state, grouped.c.reason).limit(TOP_REASONS))
    return OutcomesReport(store_id=scope.store_id, generated_at=scope.now, from_date=first, to_date=last,
                          totals=OutcomeCounts(**totals), by_rule=by_rule,
                          top_reasons=[SkipReason(state=s, reason=r, count=c) for s, r, c in reasons])


def _states(states: dict[str, int]) -> dict[str, int]:
    values = {s: states.get(s, 0) for s in ("scheduled", "fired", "skipped", "cancelled", "failed")}
    return {**values, "total": sum(values.values())}
