"""Task writes: ad-hoc creation, starting (claiming from the queue), outcomes and their retries, rescheduling,
reassignment (one or a leaver's whole portfolio), cancellation and notes. Reads live in ``queries``.

Visibility: executors (sales consultants, service advisors, CS agents) see their own tasks and the unassigned
queue of their roles in their stores; managers see every task of their stores. Anything else answers 404.
Every write locks the task row, bumps its version (the ETag), is audited and publishes its event in the same
transaction. Reasons given for reschedule, reassignment and cancellation are kept as notes on the task.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa

from followup_svc.deps import Ctx
from followup_svc.models import CustomerView, StaffView, StoreView, Task, TaskNote, VehicleView
from followup_svc.models.task import OPEN_STATES
from followup_svc.scheduling import triggers
from followup_svc.scheduling.planner import Planner, calendar_of
from followup_svc.tasks import schemas as s
from followup_svc.tasks.queries import get_task, is_manager
from shared.audit import snapshot
from shared.auth import ensure_store, scoped
from shared.auth.roles import MANAGERS, TENANT_WIDE
from shared.db.base import where_given
from shared.errors import Conflict, Forbidden, InvalidField
from shared.events.catalog.followup import TaskCompleted, TaskCreated, TaskReassigned
from shared.http.etag import check_if_match
from shared.ids import new_id

#: A call not reached is tried again this many times in all; the last miss ends the task as failed.
MAX_ATTEMPTS = 3
#: A retry waits at least this long, then the next business slot of the store.
RETRY_GAP = timedelta(hours=4)
#: Reception PCs' clocks drift: a due time this far in the past still counts as "now".
CLOCK_SKEW = timedelta(minutes=5)


# --- writes --------------------------------------------------------------------------------------------


def _eligible(member: StaffView | None, tenant_id: uuid.UUID, store_id: uuid.UUID, role: str) -> bool:
    """Who may hold a task: active staff of its store with its role, or a manager of the store (or group)."""
    if member is None or member.tenant_id != tenant_id or not member.active:
        return False
    roles = set(member.roles)
    if roles & {str(r) for r in TENANT_WIDE}:
        return True
    return str(store_id) in member.store_ids and (role in roles or bool(roles & {str(r) for r in MANAGERS}))


async def _assignee(ctx: Ctx, staff_id: uuid.UUID, store_id: uuid.UUID, role: str, field: str) -> None:
    if not _eligible(await ctx.session.get(StaffView, staff_id), ctx.principal.tenant_id, store_id, role):
        raise InvalidField(field, f"no active staff member of this store with role {role} (or a manager)")


def _touch(task: Task, now: datetime) -> None:
    task.version += 1
    task.updated_at = now


def _audit(ctx: Ctx, action: str, task: Task, before: dict[str, Any] | None) -> None:
    ctx.audit.record(ctx.session, ctx.principal, action, "task", task.id, tenant_id=task.tenant_id,
                     store_id=task.store_id, before=before, after=snapshot(task))


def _note(ctx: Ctx, task: Task, text: str, now: datetime) -> TaskNote:
    note = TaskNote(id=new_id(), task_id=task.id, tenant_id=task.tenant_id, author_id=ctx.principal.subject,
                    body=text[:2000], created_at=now)
    ctx.session.add(note)
    return note


def _publish(ctx: Ctx, task: Task, event: Any) -> None:
    ctx.outbox.append(ctx.session, event, tenant_id=task.tenant_id, store_id=task.store_id)


def _reassigned(ctx: Ctx, task: Task, to: uuid.UUID | None, reason: str, now: datetime) -> None:
    before = task.assignee_id
    task.assignee_id = to
    if task.status == "in_progress":
        task.status = "open"  # the new holder has not started it
    _touch(task, now)
    _publish(ctx, task, TaskReassigned(task_id=task.id, from_id=before, to_id=to, reason=reason))


def _ensure_open(task: Task) -> None:
    if task.status not in OPEN_STATES:
        raise Conflict(f"The task is already {task.status}.")


def _complete(ctx: Ctx, task: Task, status: str, now: datetime) -> None:
    task.status, task.completed_at, task.completed_by = status, now, ctx.principal.subject
    task.escalate_at = None
    _publish(ctx, task, TaskCompleted(
        task_id=task.id, occurrence_key=task.occurrence_key, rule_key=task.rule_key, customer_id=task.customer_id,
        vehicle_id=task.vehicle_id, status=status, outcome=task.outcome or {},  # type: ignore[arg-type]
        completed_by=ctx.principal.subject,
        completed_at=now, on_time=now <= task.sla_due_at))


async def create_task(ctx: Ctx, data: s.TaskCreate) -> Task:
    now = ctx.runtime.clock.now()
    if data.due_at < now - CLOCK_SKEW:
        raise InvalidField("body.due_at", "is in the past")
    async with ctx.session.begin():
        customer = await ctx.session.scalar(scoped(sa.select(CustomerView), CustomerView, ctx.principal)
                                            .where(CustomerView.id == data.customer_id))
        if customer is None:
            raise InvalidField("body.customer_id", "no such customer in your stores")
        if customer.merged_into_id is not None:
            raise InvalidField("body.customer_id", f"merged into customer {customer.merged_into_id}: use that one")
        if data.vehicle_id is not None:
            vehicle = await ctx.session.get(VehicleView, data.vehicle_id)
            if vehicle is None or vehicle.tenant_id != customer.tenant_id or vehicle.customer_id != customer.id:
                raise InvalidField("body.vehicle_id", "no such vehicle of this customer")
        role = str(data.role)
        if data.assignee_id is not None:
            await _assignee(ctx, data.assignee_id, customer.store_id, role, "body.assignee_id")
        task_id = new_id()
        due = data.due_at.astimezone(UTC)
        sla = due + timedelta(hours=data.sla_hours)
        task = Task(id=task_id, tenant_id=customer.tenant_id, store_id=customer.store_id,
                    occurrence_key=f"manual:{task_id}", customer_id=customer.id, vehicle_id=data.vehicle_id,
                    kind=data.kind, title=data.title, instructions=data.instructions, role=role,
                    assignee_id=data.assignee_id, status="open", priority=data.priority, due_at=due, sla_due_at=sla,
                    attempt=1, escalation_level=0, escalate_at=sla, context={"source": "manual"},
                    created_by=ctx.principal.subject, version=1, created_at=now, updated_at=now)
        ctx.session.add(task)
        await ctx.session.flush()
        _audit(ctx, "create", task, None)
        _publish(ctx, task, TaskCreated(
            task_id=task.id, occurrence_key=task.occurrence_key, customer_id=task.customer_id,
            vehicle_id=task.vehicle_id, kind=data.kind, title=task.title, role=role, assignee_id=task.assignee_id,
            priority=task.priority, due_at=due, sla_due_at=sla))
    return task


def _claim(ctx: Ctx, task: Task, now: datetime) -> None:
    """An unassigned queue task goes to the caller (visibility already limits executors to their roles)."""
    if task.assignee_id is None:
        _reassigned(ctx, task, ctx.principal.subject, "claimed from the team queue", now)


async def start_task(ctx: Ctx, task_id: uuid.UUID, if_match: str | None) -> Task:
    async with ctx.session.begin():
        task = await get_task(ctx, task_id, for_update=True)
        if if_match is not None:
            check_if_match(if_match, task.version)
        _ensure_open(task)
        if task.assignee_id not in (None, ctx.principal.subject) and not is_manager(ctx.principal):
            raise Forbidden("Only the assignee or a manager starts this task.")
        if task.status == "in_progress" and task.assignee_id is not None:
            return task  # started already: nothing changes
        now = ctx.runtime.clock.now()
        before = snapshot(task)
        _claim(ctx, task, now)
        task.status = "in_progress"
        if task.version == before["version"]:
            _touch(task, now)
        _audit(ctx, "start", task, before)
    return task


async def _serviced_elsewhere(ctx: Ctx, task: Task, day: date, now: datetime) -> None:
    """The customer had the maintenance done elsewhere: the vehicle's cycle moves on and reminders re-plan."""
    field = "body.serviced_elsewhere_on"
    if task.vehicle_id is None:
        raise InvalidField(field, "this task is not about a vehicle")
    vehicle = await ctx.session.get(VehicleView, task.vehicle_id, with_for_update=True)
    if vehicle is None:
        raise InvalidField(field, "the task's vehicle is not known to follow-up yet; try again shortly")
    cal = calendar_of(await ctx.session.get(StoreView, vehicle.store_id))
    if day > cal.local(now).date():
        raise InvalidField(field, "cannot be in the future")
    at = cal.at_local(day, time(12))
    vehicle.maintenance_count += 1
    if vehicle.last_maintenance_at is None or at > vehicle.last_maintenance_at:
        vehicle.last_maintenance_at = at
    await ctx.session.flush()
    await triggers.reconcile_maintenance(Planner(ctx.session, now), vehicle)


async def record_outcome(ctx: Ctx, task_id: uuid.UUID, data: s.OutcomeWrite, if_match: str | None) -> Task:
    """Record a callback's result. Not safe to repeat by design: the If-Match version makes a replay 412 (or 409
    once the task is finished), so an attempt is never counted twice."""
    async with ctx.session.begin():
        task = await get_task(ctx, task_id, for_update=True)
        _ensure_open(task)
        check_if_match(if_match, task.version)
        now = ctx.runtime.clock.now()
        before = snapshot(task)
        _claim(ctx, task, now)
        entry = {**data.model_dump(mode="json"), "attempt": task.attempt, "recorded_at": now.isoformat(),
                 "recorded_by": str(ctx.principal.subject)}
        attempts = [*((task.outcome or {}).get("attempts") or []),
                    {k: entry[k] for k in ("attempt", "reached", "recorded_at", "recorded_by")}]
        task.outcome = {**entry, "attempts": attempts}
        if data.serviced_elsewhere_on is not None:
            await _serviced_elsewhere(ctx, task, data.serviced_elsewhere_on, now)
        if data.reached == "not_reached" and task.attempt < MAX_ATTEMPTS:
            cal = calendar_of(await ctx.session.get(StoreView, task.store_id))
            try:
                due = cal.next_task_time(now + RETRY_GAP, working_days_only=True)
            except ValueError:  # a store without opening hours on record
                due = now + RETRY_GAP
            task.sla_due_at = due + (task.sla_due_at - task.due_at)
            task.due_at, task.attempt, task.status = due, task.attempt + 1, "open"
            if task.escalation_level == 0:
                task.escalate_at = task.sla_due_at
        else:
            _complete(ctx, task, "done" if data.reached == "reached" else "failed", now)
            if task.status == "done":
                await triggers.contact_made(Planner(ctx.session, now), task)
        if task.version == before["version"]:
            _touch(task, now)
        _audit(ctx, "outcome", task, before)
    return task


async def add_note(ctx: Ctx, task_id: uuid.UUID, data: s.NoteWrite) -> TaskNote:
    """Notes are append-only and do not change the task's version (they never invalidate an ETag)."""
    async with ctx.session.begin():
        task = await get_task(ctx, task_id)
        note = _note(ctx, task, data.text, ctx.runtime.clock.now())
        await ctx.session.flush()
        ctx.audit.record(ctx.session, ctx.principal, "create", "task_note", note.id, tenant_id=task.tenant_id,
                         store_id=task.store_id, after=snapshot(note))
    return note


def _may_manage(ctx: Ctx, task: Task) -> None:
    if not is_manager(ctx.principal) and task.assignee_id != ctx.principal.subject:
        raise Forbidden("Only the assignee or a manager changes this task (claim a queue task first).")


async def reschedule(ctx: Ctx, task_id: uuid.UUID, data: s.RescheduleWrite, if_match: str | None) -> Task:
    now = ctx.runtime.clock.now()
    if data.due_at < now - CLOCK_SKEW:
        raise InvalidField("body.due_at", "is in the past")
    async with ctx.session.begin():
        task = await get_task(ctx, task_id, for_update=True)
        _ensure_open(task)
        check_if_match(if_match, task.version)
        _may_manage(ctx, task)
        before = snapshot(task)
        old = task.due_at
        delta = data.due_at - old
        task.due_at, task.sla_due_at = old + delta, task.sla_due_at + delta
        if task.escalation_level == 0:
            task.escalate_at = task.sla_due_at
        _touch(task, now)
        _note(ctx, task, f"Rescheduled from {old:%Y-%m-%d %H:%M} to {task.due_at:%Y-%m-%d %H:%M} UTC: {data.reason}",
              now)
        _audit(ctx, "reschedule", task, before)
    return task


async def reassign(ctx: Ctx, task_id: uuid.UUID, data: s.ReassignWrite, if_match: str | None) -> Task:
    async with ctx.session.begin():
        task = await get_task(ctx, task_id, for_update=True)
        _ensure_open(task)
        check_if_match(if_match, task.version)
        if not is_manager(ctx.principal) and not (task.assignee_id == ctx.principal.subject
                                                  and data.assignee_id is None):
            raise Forbidden("Only managers reassign tasks; the assignee may hand a task back to the queue.")
        if data.assignee_id == task.assignee_id:
            return task  # already there: nothing changes
        if data.assignee_id is not None:
            await _assignee(ctx, data.assignee_id, task.store_id, task.role, "body.assignee_id")
        now = ctx.runtime.clock.now()
        before = snapshot(task)
        _reassigned(ctx, task, data.assignee_id, data.reason, now)
        _note(ctx, task, f"Reassigned to {data.assignee_id or 'the ' + task.role + ' queue'}: {data.reason}", now)
        _audit(ctx, "reassign", task, before)
    return task


async def reassign_bulk(ctx: Ctx, data: s.BulkReassignWrite) -> list[uuid.UUID]:
    """Move every open task of one person (a leaver); running it again finds nothing left to move."""
    if data.store_id is not None:
        ensure_store(ctx.principal, data.store_id)
    async with ctx.session.begin():
        stmt = where_given(scoped(sa.select(Task), Task, ctx.principal)
                           .where(Task.assignee_id == data.from_staff_id, Task.status.in_(OPEN_STATES)),
                           (Task.store_id, data.store_id))
        tasks = list(await ctx.session.scalars(stmt.order_by(Task.id).with_for_update()))
        if data.to_staff_id is not None:
            member = await ctx.session.get(StaffView, data.to_staff_id)
            if member is None or member.tenant_id != ctx.principal.tenant_id or not member.active:
                raise InvalidField("body.to_staff_id", "no active staff member with this id in your dealer group")
            refused = [t for t in tasks if not _eligible(member, t.tenant_id, t.store_id, t.role)]
            if refused:
                raise InvalidField("body.to_staff_id", f"cannot take {len(refused)} of the {len(tasks)} tasks "
                                                       "(not in their store, or without their role)")
        now = ctx.runtime.clock.now()
        for task in tasks:
            before = snapshot(task)
            _reassigned(ctx, task, data.to_staff_id, data.reason, now)
            _note(ctx, task, f"Moved from {data.from_staff_id} to {data.to_staff_id or 'the queue'}: {data.reason}",
                  now)
            _audit(ctx, "reassign", task, before)
    return [t.id for t in tasks]


async def cancel(ctx: Ctx, task_id: uuid.UUID, data: s.CancelWrite, if_match: str | None) -> Task:
    async with ctx.session.begin():
        task = await get_task(ctx, task_id, for_update=True)
        if task.status == "cancelled":
            return task  # cancelled already
        _ensure_open(task)
        if if_match is not None:
            check_if_match(if_match, task.version)
        now = ctx.runtime.clock.now()
        before = snapshot(task)
        task.outcome = {**(task.outcome or {}), "cancel_reason": data.reason}
        _complete(ctx, task, "cancelled", now)
        _touch(task, now)
        _note(ctx, task, f"Cancelled: {data.reason}", now)
        _audit(ctx, "cancel", task, before)
    return task

