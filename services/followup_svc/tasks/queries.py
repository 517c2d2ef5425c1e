"""Reading tasks: visibility rules, my tasks today, the team queue, the calendar (with what is still planned)
and the workload view."""


from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa

from followup_svc.deps import Ctx
from followup_svc.models import CustomerView, FollowUp, Rule, StaffView, StoreView, Task, TaskNote, VehicleView
from followup_svc.models.task import OPEN_STATES
from shared.calendar import StoreCalendar
from followup_svc.scheduling.planner import Calendars, calendar_of
from followup_svc.tasks import schemas as s
from shared.auth import ensure_store, scoped
from shared.auth.principal import Principal
from shared.auth.roles import MANAGERS, Role
from shared.db.base import where_given
from shared.errors import Forbidden, InvalidField, NotFound
from shared.http.pagination import PageParams, paginate

EXECUTORS = frozenset({Role.SALES_CONSULTANT, Role.SERVICE_ADVISOR, Role.CS_AGENT})
CALENDAR_MAX_DAYS = 62
CLOSED_STATES = ("done", "failed", "cancelled")


# --- reading -------------------------------------------------------------------------------------------


def is_manager(p: Principal) -> bool:
    return bool(p.roles & MANAGERS)


def visible(stmt: Any, p: Principal) -> Any:
    """Scope a task query to what the caller may see (stores, then own tasks and own roles' queues)."""
    stmt = scoped(stmt, Task, p)
    if is_manager(p):
        return stmt
    queues = sorted(str(r) for r in p.roles & EXECUTORS)
    return stmt.where(sa.or_(Task.assignee_id == p.subject,
                             sa.and_(Task.assignee_id.is_(None), Task.role.in_(queues))))


def view(task: Task, now: datetime, notes: list[TaskNote] | None = None) -> dict[str, Any]:
    """The response body of a task: its columns plus ``overdue`` (and ``notes`` for the detail view)."""
    data = {c.key: getattr(task, c.key) for c in sa.inspect(Task).column_attrs}
    data["overdue"] = task.status in OPEN_STATES and task.sla_due_at <= now
    if notes is not None:
        data["notes"] = notes
    return data


async def get_task(ctx: Ctx, task_id: uuid.UUID, for_update: bool = False) -> Task:
    stmt = visible(sa.select(Task), ctx.principal).where(Task.id == task_id)
    task = await ctx.session.scalar(stmt.with_for_update() if for_update else stmt)
    if task is None:
        raise NotFound("Task not found.")
    return task


async def task_detail(ctx: Ctx, task_id: uuid.UUID) -> tuple[Task, list[TaskNote]]:
    async with ctx.session.begin():
        task = await get_task(ctx, task_id)
        notes = list(await ctx.session.scalars(sa.select(TaskNote).where(TaskNote.task_id == task.id)
                                               .order_by(TaskNote.created_at, TaskNote.id)))
    return task, notes


async def home_calendar(ctx: Ctx) -> StoreCalendar:
    """The calendar of the caller's first store ("today" for people working in several stores)."""
    ids = sorted(ctx.principal.store_ids)
    return calendar_of(await ctx.session.get(StoreView, ids[0]) if ids else None)


def day_bounds(cal: StoreCalendar, day: date) -> tuple[datetime, datetime]:
    return cal.at_local(day, time(0)), cal.at_local(day + timedelta(days=1), time(0))


async def my_tasks(ctx: Ctx, day: date | None) -> tuple[date, list[Task]]:
    async with ctx.session.begin():
        cal = await home_calendar(ctx)
        day = day or cal.local(ctx.runtime.clock.now()).date()
        _, end = day_bounds(cal, day)
        rows = await ctx.session.scalars(
            scoped(sa.select(Task), Task, ctx.principal)
            .where(Task.assignee_id == ctx.principal.subject, Task.status.in_(OPEN_STATES), Task.due_at < end)
            .order_by(Task.priority, Task.due_at, Task.id))
        return day, list(rows)


@dataclass
class TaskFilter:
    store_id: uuid.UUID | None = None
    role: str | None = None
    assignee_id: uuid.UUID | None = None
    unassigned: bool | None = None
    statuses: list[str] | None = None
    due_from: datetime | None = None
    due_to: datetime | None = None
    customer_id: uuid.UUID | None = None
    rule_key: str | None = None
    overdue: bool | None = None


async def list_tasks(ctx: Ctx, params: PageParams, f: TaskFilter) -> list[Task]:
    if f.store_id is not None:
        ensure_store(ctx.principal, f.store_id)
    stmt = where_given(visible(sa.select(Task), ctx.principal), (Task.store_id, f.store_id), (Task.role, f.role),
                       (Task.assignee_id, f.assignee_id), (Task.customer_id, f.customer_id),
                       (Task.rule_key, f.rule_key))
    if f.unassigned is not None:
        stmt = stmt.where(Task.assignee_id.is_(None) if f.unassigned else Task.assignee_id.is_not(None))
    if f.statuses:
        stmt = stmt.where(Task.status.in_(f.statuses))
    if f.due_from is not None:
        stmt = stmt.where(Task.due_at >= f.due_from)
    if f.due_to is not None:
        stmt = stmt.where(Task.due_at < f.due_to)
    if f.overdue is not None:
        late = sa.and_(Task.status.in_(OPEN_STATES), Task.sla_due_at <= ctx.runtime.clock.now())
        stmt = stmt.where(late if f.overdue else sa.not_(late))
    async with ctx.session.begin():
        return list((await ctx.session.scalars(paginate(stmt, Task.id, params))).all())


# --- calendar ------------------------------------------------------------------------------------------


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def _serves(staff: StaffView | None, store_id: uuid.UUID) -> bool:
    return staff is not None and staff.active and str(store_id) in staff.store_ids


async def _planned(ctx: Ctx, lo: datetime, hi: datetime, store_id: uuid.UUID | None, target: uuid.UUID | None,
                   target_roles: set[str]) -> list[s.CalendarItem]:
    """Task occurrences rules will create in [lo, hi), with who they would go to if they fired now (the same
    owner rule as the scheduler: the customer's own consultant or advisor when active in the store, else the
    queue). With a target person: only theirs and their roles' queues."""
    stmt = (scoped(sa.select(FollowUp, Rule), FollowUp, ctx.principal).join(Rule, Rule.id == FollowUp.rule_id)
            .where(FollowUp.state == "scheduled", FollowUp.due_at >= lo, FollowUp.due_at < hi,
                   Rule.definition["action"]["kind"].as_string() == "task"))
    if store_id is not None:
        stmt = stmt.where(FollowUp.store_id == store_id)
    rows = (await ctx.session.execute(stmt.order_by(FollowUp.due_at))).all()
    if not rows:
        return []

    async def by_id(model: Any, ids: set[Any]) -> dict[uuid.UUID, Any]:
        ids.discard(None)
        return {o.id: o for o in await ctx.session.scalars(sa.select(model).where(model.id.in_(ids)))} if ids else {}

    customers = await by_id(CustomerView, {r.FollowUp.customer_id for r in rows})
    vehicles = await by_id(VehicleView, {r.FollowUp.vehicle_id for r in rows})
    candidates = {c.assigned_sales_id for c in customers.values()} | {c.assigned_advisor_id for c in customers.values()}
    candidates |= {v.selling_consultant_id for v in vehicles.values()}
    candidates |= {_uuid((r.FollowUp.context or {}).get("advisor_id")) for r in rows}
    staff = await by_id(StaffView, candidates)
    items = []
    for row, rule in rows:
        # Read the stored definition as it is: a rule that no longer validates must not break the calendar.
        rdef = rule.definition or {}
        action = rdef.get("action") or {}
        mode, role = action.get("assignee", "role"), str(action.get("role") or Role.CS_AGENT)
        customer, vehicle = customers.get(row.customer_id), vehicles.get(row.vehicle_id)
        options: list[uuid.UUID | None] = []
        if mode == "sales_consultant":
            options = [vehicle.selling_consultant_id if vehicle else None,
                       customer.assigned_sales_id if customer else None]
        elif mode == "service_advisor":
            options = [_uuid((row.context or {}).get("advisor_id")),
                       customer.assigned_advisor_id if customer else None]
        owner = next((o for o in options if o and _serves(staff.get(o), row.store_id)), None)
        if target is not None and owner != target and not (owner is None and role in target_roles):
            continue
        priority = rdef.get("priority")
        items.append(s.CalendarItem(
            type="planned", id=row.id, store_id=row.store_id, rule_key=row.rule_key,
            title=str(action.get("title") or rdef.get("name") or row.rule_key)[:200],
            kind=str(action.get("task_kind") or "call"), role=role, assignee_id=owner, status="scheduled",
            priority=priority if isinstance(priority, int) else 3, due_at=row.due_at, customer_id=row.customer_id,
            vehicle_id=row.vehicle_id))
    return items


async def calendar(ctx: Ctx, start: date, end: date, assignee_id: uuid.UUID | None, team: bool,
                   store_id: uuid.UUID | None) -> s.Calendar:
    p = ctx.principal
    if end < start:
        raise InvalidField("query.to", "must not be before `from`")
    if (end - start).days + 1 > CALENDAR_MAX_DAYS:
        raise InvalidField("query.to", f"at most {CALENDAR_MAX_DAYS} days from `from`")
    if team and assignee_id is not None:
        raise InvalidField("query.team", "give either team=true or assignee_id, not both")
    if (team or (assignee_id is not None and assignee_id != p.subject)) and not is_manager(p):
        raise Forbidden("Only managers see other people's or the team's calendar.")
    if team and store_id is None and (p.tenant_wide or len(p.store_ids) > 1):
        # Everyone's tasks and plans are loaded and placed day by day: one store's team at a time.
        raise InvalidField("query.store_id", "a team calendar shows one store: give store_id")
    if store_id is not None:
        ensure_store(p, store_id)
    target = None if team else (assignee_id or p.subject)
    # A UTC window wide enough for any store's time zone; each item is then placed on its store's local day.
    lo = datetime.combine(start - timedelta(days=1), time(0), UTC)
    hi = datetime.combine(end + timedelta(days=2), time(0), UTC)
    async with ctx.session.begin():
        if target is None or target == p.subject:
            target_roles = {str(r) for r in p.roles & EXECUTORS} if target else set()
        else:
            member = await ctx.session.get(StaffView, target)
            target_roles = set(member.roles) if member is not None and member.tenant_id == p.tenant_id else set()
        stmt = where_given(scoped(sa.select(Task), Task, p).where(Task.due_at >= lo, Task.due_at < hi),
                           (Task.assignee_id, target), (Task.store_id, store_id))
        tasks = list(await ctx.session.scalars(stmt.order_by(Task.due_at, Task.id)))
        items = [s.CalendarItem(type="task", id=t.id, store_id=t.store_id, rule_key=t.rule_key, title=t.title,
                                kind=t.kind, role=t.role, assignee_id=t.assignee_id, status=t.status,
                                priority=t.priority, due_at=t.due_at, customer_id=t.customer_id,
                                vehicle_id=t.vehicle_id) for t in tasks]
        items += await _planned(ctx, lo, hi, store_id, target, target_roles)
        calendars = Calendars(ctx.session)
        days: dict[date, s.CalendarDay] = {}
        for item in sorted(items, key=lambda i: i.due_at):
            day = (await calendars.get(item.store_id)).local(item.due_at).date()
            if not start <= day <= end:
                continue
            entry = days.setdefault(day, s.CalendarDay(day=day, open=0, closed=0, planned=0, items=[]))
            if item.type == "planned":
                entry.planned += 1
            elif item.status in OPEN_STATES:
                entry.open += 1
            else:
                entry.closed += 1
            entry.items.append(item)
    return s.Calendar(start=start, end=end, assignee_id=target, days=[days[d] for d in sorted(days)])


# --- workload ------------------------------------------------------------------------------------------


async def workload(ctx: Ctx, day: date | None, store_id: uuid.UUID | None) -> s.Workload:
    cap = ctx.runtime.settings.daily_task_cap
    p = ctx.principal
    if store_id is None:
        if not p.store_ids:
            raise InvalidField("query.store_id", "required: you work in no particular store")
        store_id = sorted(p.store_ids)[0]
    ensure_store(p, store_id)
    async with ctx.session.begin():
        store = await ctx.session.get(StoreView, store_id)
        if store is None or store.tenant_id != p.tenant_id:
            raise NotFound("Store not found.")
        cal = calendar_of(store)
        day = day or cal.local(ctx.runtime.clock.now()).date()
        start, end = day_bounds(cal, day)
        open_due = sa.and_(Task.tenant_id == p.tenant_id, Task.store_id == store_id, Task.status.in_(OPEN_STATES),
                           Task.due_at < end)
        due_today = sa.func.count().filter(Task.due_at >= start)
        per_person = {a: (due, carried) for a, due, carried in await ctx.session.execute(
            sa.select(Task.assignee_id, due_today, sa.func.count().filter(Task.due_at < start))
            .where(open_due, Task.assignee_id.is_not(None)).group_by(Task.assignee_id))}
        queues = {role: (n, due) for role, n, due in await ctx.session.execute(
            sa.select(Task.role, sa.func.count(), sa.func.count().filter(Task.due_at < end))
            .where(Task.tenant_id == p.tenant_id, Task.store_id == store_id, Task.status.in_(OPEN_STATES),
                   Task.assignee_id.is_(None)).group_by(Task.role))}
        staff = list(await ctx.session.scalars(sa.select(StaffView).where(StaffView.tenant_id == p.tenant_id)))
    executors = {str(r) for r in EXECUTORS}
    known = {m.id: m for m in staff}
    shown = [m.id for m in staff if m.active and str(store_id) in m.store_ids and set(m.roles) & executors]
    shown += [a for a in per_person if a not in shown]
    people = []
    for sid in shown:
        member = known.get(sid)
        due, carried = per_person.get(sid, (0, 0))
        people.append(s.PersonLoad(staff_id=sid, name=member.name if member else None,
                                   roles=list(member.roles) if member else [], due=due, carried_over=carried,
                                   cap=cap, over_cap=due > cap))
    people.sort(key=lambda x: (-x.due, x.name or ""))
    roles = sorted(executors | set(queues))
    return s.Workload(day=day, store_id=store_id, cap=cap, people=people,
                      queues=[s.QueueLoad(role=r, unassigned=queues.get(r, (0, 0))[0], due=queues.get(r, (0, 0))[1])
                              for r in roles])
