"""Service appointments: booking by plate against workshop capacity, moving, and the reception workflow
登记 (booked) → 转前台 (arrived) → 进厂 (in_workshop) → 结算 (settled) → 执行 (closed, with satisfaction),
or cancelled / no-show (DOMAIN.md §4.7, §11, §12.5).

While an appointment is booked it carries the D-3 parts check and the D-1 confirmation call
(``triggers.reconcile_appointment``); moving it moves them, leaving ``booked`` cancels the pending ones, and a
cancellation or no-show also cancels the tasks they already opened.

Concurrency: bookings and moves of one store take a transaction-scoped advisory lock on the store's slot book
(and on the vehicle), so two requests never both take the last place of a slot or book one car twice.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa

from followup_svc.appointments import slots
from followup_svc.appointments.schemas import AppointmentCreate, AppointmentUpdate, TransitionRequest
from followup_svc.deps import Ctx
from followup_svc.models import (Appointment, CustomerView, FollowUp, StaffView, StoreView, Task, TaskNote,
                                 VehicleView)
from followup_svc.models.appointment import ACTIVE_STATES
from followup_svc.scheduling import triggers
from shared.calendar import StoreCalendar
from followup_svc.scheduling.planner import Planner, calendar_of
from shared.audit import snapshot
from shared.auth import Role, ensure_store, get_scoped, scoped
from shared.db.base import advisory_locks, where_given
from shared.errors import Conflict, Duplicate, InvalidField, NotFound, reject_nulls
from shared.events.catalog.followup import AppointmentBooked, AppointmentChanged, TaskCompleted
from shared.http.etag import check_if_match
from shared.http.pagination import PageParams, paginate

#: Reception books and moves appointments (advisors, their manager, the CS call centre, admins).
WRITERS = frozenset({Role.SERVICE_ADVISOR, Role.SERVICE_MANAGER, Role.CS_AGENT, Role.ADMIN})
#: Where each status may go next (§12.5).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "booked": ("arrived", "cancelled", "no_show"),
    "arrived": ("in_workshop",),
    "in_workshop": ("settled",),
    "settled": ("closed",),
    "closed": (), "cancelled": (), "no_show": (),
}
#: Which optional fields of a transition request each target accepts.
TRANSITION_FIELDS: dict[str, frozenset[str]] = {
    "arrived": frozenset({"mileage_km", "advisor_id"}),
    "in_workshop": frozenset({"mileage_km", "advisor_id"}),
    "settled": frozenset(),
    "closed": frozenset({"satisfaction"}),
    "cancelled": frozenset({"reason"}),
    "no_show": frozenset({"reason"}),
}
#: Ends where the open D-3/D-1 tasks of the appointment lose their point (after arrival the parts check still
#: matters: the car is there and needs its parts).
ENDS_TASKS = ("cancelled", "no_show")
_MIDNIGHT = time(0, 0)


class SlotFull(Conflict):
    """The slot has no place left; ``alternatives`` are the next free slots to offer."""

    code, title = "slot_full", "The slot is full"

    def __init__(self, detail: str, alternatives: list[slots.Slot]) -> None:
        super().__init__(detail)
        self.alternatives = alternatives


# --- reading -------------------------------------------------------------------------------------------------


async def get_appointment(ctx: Ctx, appointment_id: uuid.UUID, for_update: bool = False) -> Appointment:
    return await get_scoped(ctx.session, Appointment, ctx.principal, appointment_id, "Appointment",
                            for_update=for_update)


async def store_calendar(ctx: Ctx, store_id: uuid.UUID) -> StoreCalendar:
    return calendar_of(await ctx.session.get(StoreView, store_id))


async def list_appointments(ctx: Ctx, params: PageParams, *, store_id: uuid.UUID | None, day: date | None,
                            slot_from: datetime | None, slot_to: datetime | None, status: str | None,
                            plate: str | None, advisor_id: uuid.UUID | None, vehicle_id: uuid.UUID | None,
                            customer_id: uuid.UUID | None) -> list[Appointment]:
    if store_id is not None:
        ensure_store(ctx.principal, store_id)
    stmt = where_given(scoped(sa.select(Appointment), Appointment, ctx.principal),
                       (Appointment.store_id, store_id), (Appointment.status, status), (Appointment.plate, plate),
                       (Appointment.advisor_id, advisor_id), (Appointment.vehicle_id, vehicle_id),
                       (Appointment.customer_id, customer_id))
    if day is not None:
        if store_id is None:
            raise InvalidField("query.store_id", "required with `day` (the day is the store's local day)")
        calendar = await store_calendar(ctx, store_id)
        day_start = calendar.at_local(day, _MIDNIGHT)
        slot_from = max(slot_from, day_start) if slot_from else day_start
        day_end = calendar.at_local(day + timedelta(days=1), _MIDNIGHT)
        slot_to = min(slot_to, day_end) if slot_to else day_end
    if slot_from is not None:
        stmt = stmt.where(Appointment.slot_start >= slot_from)
    if slot_to is not None:
        stmt = stmt.where(Appointment.slot_start < slot_to)
    return list((await ctx.session.scalars(paginate(stmt, Appointment.id, params))).all())


async def slot_day(ctx: Ctx, store_id: uuid.UUID, day: date) -> dict[str, Any]:
    ensure_store(ctx.principal, store_id)
    store = await ctx.session.get(StoreView, store_id)
    if store is None or store.tenant_id != ctx.principal.tenant_id:  # group-wide roles pass ensure_store for any id
        raise NotFound("Store not found.")
    settings = ctx.runtime.settings
    calendar = calendar_of(store)
    found = await slots.slots_of_day(ctx.session, ctx.principal.tenant_id, store_id, calendar, day,
                                     settings.appointment_slot_minutes, settings.appointment_slot_capacity,
                                     ctx.runtime.clock.now())
    return {"store_id": store_id, "day": day, "timezone": calendar.timezone,
            "slot_minutes": settings.appointment_slot_minutes, "capacity": settings.appointment_slot_capacity,
            "slots": found}


# --- checks --------------------------------------------------------------------------------------------------


async def _vehicle(ctx: Ctx, data: AppointmentCreate) -> VehicleView:
    """The vehicle the body names, among the caller's stores (same 422 whether unknown or out of scope)."""
    if data.plate is None and data.vehicle_id is None:
        raise InvalidField("body.plate", "give the plate (or vehicle_id) of the car to book")
    stmt = scoped(sa.select(VehicleView), VehicleView, ctx.principal)
    if data.vehicle_id is not None:
        vehicle = await ctx.session.scalar(stmt.where(VehicleView.id == data.vehicle_id))
        if vehicle is None:
            raise InvalidField("body.vehicle_id", "no such vehicle in your stores; register it first")
        if data.plate is not None and vehicle.plate != data.plate:
            raise InvalidField("body.plate", f"does not match the vehicle's plate ({vehicle.plate or 'none'})")
        return vehicle
    found = list((await ctx.session.scalars(stmt.where(VehicleView.plate == data.plate).limit(2))).all())
    if not found:
        raise InvalidField("body.plate", "no vehicle with this plate in your stores; register it first")
    if len(found) > 1:
        raise InvalidField("body.plate", "several vehicles of your stores carry this plate; give vehicle_id")
    return found[0]


async def _is_advisor(ctx: Ctx, staff_id: uuid.UUID, store_id: uuid.UUID) -> bool:
    staff = await ctx.session.get(StaffView, staff_id)
    return (staff is not None and staff.tenant_id == ctx.principal.tenant_id and staff.active
            and str(store_id) in (staff.store_ids or []) and Role.SERVICE_ADVISOR.value in (staff.roles or []))


async def _check_advisor(ctx: Ctx, staff_id: uuid.UUID, store_id: uuid.UUID, field: str) -> uuid.UUID:
    if not await _is_advisor(ctx, staff_id, store_id):
        raise InvalidField(field, "not an active service advisor of the appointment's store")
    return staff_id


async def _lock_slots(ctx: Ctx, store_id: uuid.UUID, vehicle_id: uuid.UUID | None = None) -> None:
    keys = [f"appointment-slots:{store_id}"] + ([f"appointment-vehicle:{vehicle_id}"] if vehicle_id else [])
    await advisory_locks(ctx.session, keys)


async def _ensure_room(ctx: Ctx, store_id: uuid.UUID, calendar: StoreCalendar, start: datetime,
                       exclude: uuid.UUID | None = None) -> None:
    settings = ctx.runtime.settings
    minutes, capacity = settings.appointment_slot_minutes, settings.appointment_slot_capacity
    taken = await slots.booked_in(ctx.session, ctx.principal.tenant_id, store_id, start,
                                  start + timedelta(minutes=minutes), exclude)
    if taken >= capacity:
        offer = await slots.alternatives(ctx.session, ctx.principal.tenant_id, store_id, calendar, start, minutes,
                                         capacity, ctx.runtime.clock.now(), exclude)
        local = calendar.local(start).strftime("%Y-%m-%d %H:%M")
        raise SlotFull(f"The {local} slot is full ({taken} of {capacity} cars); offer one of the alternatives.",
                       offer)


def _check_ready_time(a: Appointment) -> None:
    if a.promised_ready_at is not None and a.promised_ready_at <= a.slot_start:
        raise InvalidField("body.promised_ready_at", "must be after the slot starts")


def _facts(a: Appointment) -> dict[str, Any]:
    return dict(appointment_id=a.id, customer_id=a.customer_id, vehicle_id=a.vehicle_id, plate=a.plate,
                advisor_id=a.advisor_id, slot_start=a.slot_start, slot_end=a.slot_end, status=a.status, kind=a.kind)


def _audit(ctx: Ctx, action: str, a: Appointment, before: dict[str, Any] | None) -> None:
    ctx.audit.record(ctx.session, ctx.principal, action, "appointment", a.id, tenant_id=a.tenant_id,
                     store_id=a.store_id, before=before, after=snapshot(a))


# --- writing -------------------------------------------------------------------------------------------------


async def book(ctx: Ctx, data: AppointmentCreate) -> Appointment:
    """预约登记: one active appointment per vehicle; a full slot answers 409 with alternatives."""
    now = ctx.runtime.clock.now()
    async with ctx.session.begin():
        vehicle = await _vehicle(ctx, data)
        customer = await ctx.session.get(CustomerView, vehicle.customer_id)
        if customer is None:
            raise InvalidField("body.plate", "the vehicle's owner is not known here yet; retry in a moment")
        calendar = await store_calendar(ctx, vehicle.store_id)
        slots.check_slot(calendar, data.slot_start, ctx.runtime.settings.appointment_slot_minutes, now,
                         "body.slot_start")
        if data.advisor_id is not None:
            advisor = await _check_advisor(ctx, data.advisor_id, vehicle.store_id, "body.advisor_id")
        elif customer.assigned_advisor_id and await _is_advisor(ctx, customer.assigned_advisor_id, vehicle.store_id):
            advisor = customer.assigned_advisor_id
        else:
            advisor = None
        await _lock_slots(ctx, vehicle.store_id, vehicle.id)
        existing = await ctx.session.scalar(sa.select(Appointment.id).where(
            Appointment.tenant_id == vehicle.tenant_id, Appointment.vehicle_id == vehicle.id,
            Appointment.status.in_(ACTIVE_STATES)).limit(1))
        if existing is not None:
            raise Duplicate("This vehicle already has an active appointment; move or cancel it.",
                            existing_id=existing)
        await _ensure_room(ctx, vehicle.store_id, calendar, data.slot_start)
        appointment = Appointment(
            tenant_id=vehicle.tenant_id, store_id=vehicle.store_id, customer_id=vehicle.customer_id,
            vehicle_id=vehicle.id, plate=vehicle.plate, advisor_id=advisor, kind=data.kind, status="booked",
            slot_start=data.slot_start,
            slot_end=data.slot_start + timedelta(minutes=ctx.runtime.settings.appointment_slot_minutes),
            promised_ready_at=data.promised_ready_at, content=data.content,
            customer_description=data.customer_description, mileage_km=data.mileage_km,
            estimate_amount=data.estimate_amount, is_rework=data.is_rework,
            pickup=data.pickup.model_dump(mode="json") if data.pickup else None, notes=data.notes,
            created_by=ctx.principal.subject, version=1)
        _check_ready_time(appointment)
        ctx.session.add(appointment)
        await ctx.session.flush()
        await triggers.reconcile_appointment(Planner(ctx.session, now), appointment)
        _audit(ctx, "create", appointment, None)
        ctx.outbox.append(ctx.session, AppointmentBooked(**_facts(appointment)),
                          tenant_id=appointment.tenant_id, store_id=appointment.store_id)
    return appointment


async def update(ctx: Ctx, appointment_id: uuid.UUID, data: AppointmentUpdate, if_match: str | None) -> Appointment:
    """Change an active appointment; a new slot is checked like a booking and moves the D-3/D-1 follow-ups.
    Sending what is already on record changes nothing (no new version, no event)."""
    now = ctx.runtime.clock.now()
    async with ctx.session.begin():
        a = await get_appointment(ctx, appointment_id, for_update=True)
        check_if_match(if_match, a.version)
        changes = data.model_dump(exclude_unset=True, mode="python")
        reject_nulls(changes, ("slot_start", "advisor_id", "content", "kind", "is_rework"))
        if a.status not in ACTIVE_STATES:
            raise Conflict(f"A {a.status} appointment cannot be changed.")
        if "pickup" in changes:
            changes["pickup"] = data.pickup.model_dump(mode="json") if data.pickup else None
        before = snapshot(a)
        moved = "slot_start" in changes and changes["slot_start"] != a.slot_start
        if moved:
            if a.status != "booked":
                raise Conflict(f"Only a booked appointment can move to another slot; this one is {a.status}.")
            calendar = await store_calendar(ctx, a.store_id)
            slots.check_slot(calendar, changes["slot_start"], ctx.runtime.settings.appointment_slot_minutes, now,
                             "body.slot_start")
            await _lock_slots(ctx, a.store_id)
            await _ensure_room(ctx, a.store_id, calendar, changes["slot_start"], exclude=a.id)
            a.slot_start = changes["slot_start"]
            a.slot_end = a.slot_start + timedelta(minutes=ctx.runtime.settings.appointment_slot_minutes)
        changes.pop("slot_start", None)
        if "advisor_id" in changes and changes["advisor_id"] != a.advisor_id:
            await _check_advisor(ctx, changes["advisor_id"], a.store_id, "body.advisor_id")
        for key, value in changes.items():
            setattr(a, key, value)
        _check_ready_time(a)
        after = snapshot(a)
        changed = sorted(k for k in after if before[k] != after[k] and k != "updated_at")
        if not changed:
            return a
        a.version += 1
        await ctx.session.flush()
        if moved or "advisor_id" in changed:
            await triggers.reconcile_appointment(Planner(ctx.session, now), a)
        if moved:  # the old slot's D-1 call / D-3 check, if already opened, no longer apply
            await _cancel_open_tasks(ctx, a, now, "appointment moved to another slot")
        _audit(ctx, "update", a, before)
        change = "moved" if moved else "advisor_changed" if "advisor_id" in changed else "updated"
        ctx.outbox.append(ctx.session, AppointmentChanged(**_facts(a), change=change),
                          tenant_id=a.tenant_id, store_id=a.store_id)
    return a


async def _check_transition(ctx: Ctx, a: Appointment, data: TransitionRequest, now: datetime) -> None:
    allowed = TRANSITIONS[a.status]
    if data.to not in allowed:
        ways = ", ".join(allowed) if allowed else "nothing (it is final)"
        raise Conflict(f"A {a.status} appointment cannot become {data.to}; it can become: {ways}.")
    given = {k for k in ("satisfaction", "reason", "mileage_km", "advisor_id") if getattr(data, k) is not None}
    unused = sorted(given - TRANSITION_FIELDS[data.to])
    if unused:
        raise InvalidField(f"body.{unused[0]}", f"not used when the appointment becomes {data.to}")
    if data.to == "no_show" and now < a.slot_start:
        raise Conflict("The slot has not started yet; a no-show can only be recorded from the slot's start.")
    if data.to == "cancelled" and data.reason is None:
        raise InvalidField("body.reason", "say why the appointment is cancelled")
    if data.to == "closed" and data.satisfaction is None:
        raise InvalidField("body.satisfaction", "rate the customer's satisfaction (1–5) to close (执行)")
    if data.advisor_id is not None:
        await _check_advisor(ctx, data.advisor_id, a.store_id, "body.advisor_id")
    if data.to == "in_workshop":
        # 进厂: the system refuses check-in until every mandatory field is filled (§12.5).
        if data.mileage_km is None:
            raise InvalidField("body.mileage_km", "required at check-in (进厂): read the odometer")
        if data.advisor_id is None and a.advisor_id is None:
            raise InvalidField("body.advisor_id", "required at check-in (进厂): name the service advisor")
    if data.mileage_km is not None:
        vehicle = await ctx.session.get(VehicleView, a.vehicle_id)
        readings = (vehicle.mileage_readings or []) if vehicle else []
        last = max((r[1] for r in readings if isinstance(r, list) and len(r) == 2), default=None)
        if last is not None and data.mileage_km < last:
            raise InvalidField("body.mileage_km", f"lower than the vehicle's last reading ({last} km)")


async def _cancel_open_tasks(ctx: Ctx, a: Appointment, now: datetime, reason: str | None = None) -> None:
    """Open tasks born from the appointment's follow-ups (the D-1 call, the D-3 parts check) are cancelled with the
    reason, the way a person cancelling them would (note, audit, TaskCompleted)."""
    born_here = sa.select(FollowUp.id).where(FollowUp.tenant_id == a.tenant_id, FollowUp.subject_id == a.id)
    open_tasks = (await ctx.session.scalars(sa.select(Task).where(
        Task.tenant_id == a.tenant_id, Task.followup_id.in_(born_here),
        Task.status.in_(("open", "in_progress"))).with_for_update())).all()
    reason = reason or f"appointment {a.status}" + (f": {a.cancel_reason}" if a.cancel_reason else "")
    for task in open_tasks:
        before = snapshot(task)
        task.outcome = {**(task.outcome or {}), "cancel_reason": reason[:300]}
        task.status, task.completed_at, task.completed_by = "cancelled", now, ctx.principal.subject
        task.escalate_at = None
        task.version += 1
        task.updated_at = now
        ctx.session.add(TaskNote(task_id=task.id, tenant_id=task.tenant_id, author_id=ctx.principal.subject,
                                 body=f"Cancelled: {reason}"[:2000], created_at=now))
        ctx.audit.record(ctx.session, ctx.principal, "cancel", "task", task.id, tenant_id=task.tenant_id,
                         store_id=task.store_id, before=before, after=snapshot(task))
        ctx.outbox.append(ctx.session, TaskCompleted(
            task_id=task.id, occurrence_key=task.occurrence_key, rule_key=task.rule_key,
            customer_id=task.customer_id, vehicle_id=task.vehicle_id, status="cancelled", outcome=task.outcome,
            completed_by=ctx.principal.subject, completed_at=now, on_time=now <= task.sla_due_at),
            tenant_id=task.tenant_id, store_id=task.store_id)


async def transition(ctx: Ctx, appointment_id: uuid.UUID, data: TransitionRequest, if_match: str | None
                     ) -> Appointment:
    """Move the appointment to its next status. Asking for the status it already has changes nothing."""
    now = ctx.runtime.clock.now()
    async with ctx.session.begin():
        a = await get_appointment(ctx, appointment_id, for_update=True)
        check_if_match(if_match, a.version)
        if data.to == a.status:
            return a
        await _check_transition(ctx, a, data, now)
        before = snapshot(a)
        was_booked = a.status == "booked"
        a.status = data.to
        if data.mileage_km is not None:
            a.mileage_km = data.mileage_km
        if data.advisor_id is not None:
            a.advisor_id = data.advisor_id
        if data.satisfaction is not None:
            a.satisfaction = data.satisfaction
        if data.reason is not None:
            a.cancel_reason = data.reason
        a.version += 1
        await ctx.session.flush()
        if was_booked:
            await triggers.reconcile_appointment(Planner(ctx.session, now), a)
        if data.to in ENDS_TASKS:
            await _cancel_open_tasks(ctx, a, now)
        _audit(ctx, data.to, a, before)
        service_date = None
        if data.to in ("settled", "closed"):
            service_date = (await store_calendar(ctx, a.store_id)).local(now).date()
        ctx.outbox.append(ctx.session, AppointmentChanged(**_facts(a), change=data.to, satisfaction=a.satisfaction,
                                                          service_date=service_date),
                          tenant_id=a.tenant_id, store_id=a.store_id)
    return a
