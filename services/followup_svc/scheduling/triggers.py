"""What each trigger plans. Called by the event handlers (and by appointments and the scheduler itself)
inside their transaction, with the read model already updated."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from dateutil.relativedelta import relativedelta

from followup_svc.models import Appointment, CustomerView, FollowUp, Rule, Task, VehicleView
from followup_svc.playbooks.schemas import MaintenancePlan, RuleDefinition
from followup_svc.scheduling import timing
from shared.calendar import next_anniversary, next_festival
from followup_svc.scheduling.planner import Planner, Subject, Want, definition_of

#: With fewer than two odometer readings a car is assumed to run this much (a typical private car in China).
DEFAULT_KM_PER_DAY = 40.0
MAINTENANCE_VISITS = ("first_maintenance", "maintenance")


def customer_subject(c: CustomerView) -> Subject:
    return Subject("customer", c.id, c.tenant_id, c.store_id, c.id)


def vehicle_subject(v: VehicleView) -> Subject:
    return Subject("vehicle", v.id, v.tenant_id, v.store_id, v.customer_id, v.id)


# --- customers ----------------------------------------------------------------------------------------


def _customer_matches(c: CustomerView):  # type: ignore[no-untyped-def]
    def matches(rdef: RuleDefinition) -> bool:
        cond = rdef.conditions
        if cond.relationships is not None and c.relationship not in cond.relationships:
            return False
        if cond.intent_levels is not None and c.intent_level not in cond.intent_levels:
            return False
        return timing.sampled(c.id, cond.sample_percent)
    return matches


async def customer_created(planner: Planner, c: CustomerView, at: datetime, began: datetime | None = None) -> None:
    """``began``: when the relationship started (``at`` for a new contact; earlier, or None when unknown, for an
    imported one, whose new-contact steps are then history)."""
    if began is not None:
        await planner.plan("customer.created", customer_subject(c), began, "c", _customer_matches(c))
    await reconcile_customer(planner, c, {"intent", "personal"}, at)


async def reconcile_customer(planner: Planner, c: CustomerView, what: set[str], at: datetime) -> None:
    """Re-plan what a customer's state drives: prospect cadence (intent level) and personal dates."""
    subject = customer_subject(c)
    if "intent" in what:
        for rule, rdef in await planner.rules(subject, "customer.intent"):
            if c.active and c.relationship == "prospect" and _customer_matches(c)(rdef):
                if not await planner.pending_series(rule.key, subject):
                    await planner.insert(rule, rdef, subject, [Want(str(int(at.timestamp())), 0, at)])
            else:
                await planner.reconcile(rule, rdef, subject, [], "intent level or relationship changed")
    if "personal" in what:
        await reconcile_personal_dates(planner, c, planner.now)


async def reconcile_personal_dates(planner: Planner, c: CustomerView, after: datetime,
                                   rule_keys: set[str] | None = None) -> None:
    """Birthdays (solar or lunar), wedding anniversaries and festivals: for each rule, the next date on or after
    ``after`` and after the last one it already fired for (so today's greeting is not planned twice and next
    year's is not cancelled); ``rule_keys`` limits it to those rules."""
    subject = customer_subject(c)
    calendar = await planner.calendars.get(c.store_id)
    for trigger in ("customer.birthday", "customer.wedding_anniversary", "festival"):
        for rule, rdef in await planner.rules(subject, trigger):
            if rule_keys is not None and rule.key not in rule_keys:
                continue
            start = calendar.local(after).date()
            last = await planner.last_done(rule.key, subject)
            if last is not None:
                start = max(start, calendar.local(last).date() + timedelta(days=1))
            day: date | None = None
            if c.active and _customer_matches(c)(rdef):
                if trigger == "customer.birthday" and c.birthday:
                    day = next_anniversary(c.birthday, start, c.birthday_calendar)
                elif trigger == "customer.wedding_anniversary" and c.wedding_anniversary:
                    day = next_anniversary(c.wedding_anniversary, start)
                elif trigger == "festival" and rdef.conditions.festival:
                    day = next_festival(rdef.conditions.festival, start)
            wants = [Want(day.isoformat(), 0, calendar.at_local(day, time(0, 0)))] if day else []
            await planner.reconcile(rule, rdef, subject, wants, f"{trigger.split('.')[-1]} changed or no longer applies")


# --- vehicles ------------------------------------------------------------------------------------------


async def vehicle_delivered(planner: Planner, v: VehicleView, delivered: date, event_time: datetime) -> None:
    """The post-delivery plan. A delivery recorded on the day anchors at the event; an older one (imported
    history) anchors at noon of its day, so its past steps are recorded as stale rather than sent."""
    calendar = await planner.calendars.get(v.store_id)
    anchor = event_time if calendar.local(event_time).date() == delivered else calendar.at_local(delivered, time(12))
    await planner.plan("vehicle.delivered", vehicle_subject(v), anchor, delivered.isoformat())
    await reconcile_vehicle(planner, v)


async def reconcile_vehicle(planner: Planner, v: VehicleView) -> None:
    await reconcile_vehicle_dates(planner, v)
    await reconcile_maintenance(planner, v)
    await reconcile_lapsed(planner, v)


async def reconcile_vehicle_dates(planner: Planner, v: VehicleView) -> None:
    """Insurance renewal, annual inspection and warranty expiry, counted back from the dates on record."""
    subject = vehicle_subject(v)
    calendar = await planner.calendars.get(v.store_id)
    for rule, rdef in await planner.rules(subject, "vehicle.date"):
        day = getattr(v, rdef.conditions.anchor_field or "", None)
        wants = []
        if day is not None:
            anchor = calendar.at_local(day, time(0, 0))
            wants = [Want(day.isoformat(), s, anchor) for s in range(len(rdef.schedule.offsets))]
        await planner.reconcile(rule, rdef, subject, wants, "date changed")


def _km_per_day(readings: list[list]) -> float:  # type: ignore[type-arg]
    if len(readings) < 2:
        return DEFAULT_KM_PER_DAY
    (d0, k0), (d1, k1) = readings[0], readings[-1]
    days = (date.fromisoformat(d1) - date.fromisoformat(d0)).days
    if days < 7 or k1 <= k0:
        return DEFAULT_KM_PER_DAY
    return (k1 - k0) / days


def maintenance_due(v: VehicleView, plan: MaintenancePlan) -> tuple[int, date] | None:
    """The next maintenance cycle and the day it falls due: at its mileage (estimated from the odometer
    readings) or its time limit, whichever comes first. None before the car is delivered. After a maintenance
    with its odometer reading, the next one is that reading plus the plan's step (a car first serviced here at
    60,000 km, or one that skipped a service, is not due again the next day)."""
    cycle = v.maintenance_count + 1
    if v.last_maintenance_at is not None:
        base_day = v.last_maintenance_at.date()
    elif v.delivery_date is not None:
        base_day = v.delivery_date
    else:
        return None
    if cycle > 1 and v.last_maintenance_km is not None:
        target_km = v.last_maintenance_km + (plan.second_km - plan.first_km if cycle == 2 else plan.interval_km)
    else:
        target_km = plan.first_km if cycle == 1 else plan.second_km + (cycle - 2) * plan.interval_km
    months = plan.first_months if cycle == 1 else plan.interval_months
    by_time = base_day + relativedelta(months=months)
    readings = v.mileage_readings or []
    if readings:
        last_day, last_km = date.fromisoformat(readings[-1][0]), readings[-1][1]
    else:
        last_day, last_km = base_day, v.last_maintenance_km or 0
    remaining = target_km - last_km
    by_km = last_day + timedelta(days=max(0, int(remaining / _km_per_day(readings))))
    return cycle, min(by_time, by_km)


async def reconcile_maintenance(planner: Planner, v: VehicleView) -> None:
    subject = vehicle_subject(v)
    calendar = await planner.calendars.get(v.store_id)
    today = calendar.local(planner.now).date()
    for rule, rdef in await planner.rules(subject, "vehicle.maintenance_due"):
        plan = rdef.conditions.maintenance or MaintenancePlan()
        due = maintenance_due(v, plan)
        wants = []
        if due is not None:
            cycle, day = due
            # Due already: remind tomorrow, which also leaves time for the visit that often comes with a reading.
            remind = max(day - timedelta(days=plan.remind_before_days), today + timedelta(days=1))
            wants = [Want(f"c{cycle}", 0, calendar.at_local(remind, time(0, 0)))]
        await planner.reconcile(rule, rdef, subject, wants, "maintenance done or mileage changed the due date")


async def reconcile_lapsed(planner: Planner, v: VehicleView) -> None:
    """Owners who stop coming: a check N months after the last visit (or the delivery); a visit moves it."""
    subject = vehicle_subject(v)
    calendar = await planner.calendars.get(v.store_id)
    last = v.last_visit_at.date() if v.last_visit_at else v.delivery_date
    for rule, rdef in await planner.rules(subject, "owner.lapsed"):
        wants = []
        if last is not None and rdef.conditions.lapsed_months:
            day = last + relativedelta(months=rdef.conditions.lapsed_months)
            wants = [Want(last.isoformat(), 0, calendar.at_local(day, time(0, 0)))]
        await planner.reconcile(rule, rdef, subject, wants, "the owner came back (a newer visit)")


async def visit_completed(planner: Planner, v: VehicleView, visit_id, visit_type: str,  # type: ignore[no-untyped-def]
                          completed_at: datetime, advisor_id) -> None:  # type: ignore[no-untyped-def]
    subject = Subject("visit", visit_id, v.tenant_id, v.store_id, v.customer_id, v.id,
                      {"visit_type": visit_type, "advisor_id": str(advisor_id) if advisor_id else None})

    def matches(rdef: RuleDefinition) -> bool:
        cond = rdef.conditions
        if cond.visit_types is not None and visit_type not in cond.visit_types:
            return False
        return timing.sampled(visit_id, cond.sample_percent)

    await planner.plan("visit.completed", subject, completed_at, "v", matches)
    await reconcile_vehicle(planner, v)


# --- survey_svc: low scores and closed complaints -------------------------------------------------------


async def survey_low_score(planner: Planner, subject: Subject, survey: str, answered_at: datetime) -> int:
    """Service recovery for one low-scoring answer (subject: the response). Rules filter by the survey answered,
    so a sales survey reaches the sales manager and a service survey the service manager. Anchored at the answer
    (a redelivered or late alert plans the same occurrence, never a second)."""
    def matches(rdef: RuleDefinition) -> bool:
        surveys = rdef.conditions.surveys
        return (surveys is None or survey in surveys) and timing.sampled(subject.id, rdef.conditions.sample_percent)

    return await planner.plan("survey.low_score", subject, answered_at, "r", matches)


async def complaint_closed(planner: Planner, subject: Subject, closed_at: datetime) -> int:
    """The post-resolution revisit and the re-survey of a closed complaint (subject: the complaint). The series
    is the closing time, so a complaint reopened and closed again gets its own revisit."""
    def matches(rdef: RuleDefinition) -> bool:
        return timing.sampled(subject.id, rdef.conditions.sample_percent)

    return await planner.plan("complaint.closed", subject, closed_at, str(int(closed_at.timestamp())), matches)


# --- appointments and chains ---------------------------------------------------------------------------


async def reconcile_appointment(planner: Planner, a: Appointment) -> None:
    subject = Subject("appointment", a.id, a.tenant_id, a.store_id, a.customer_id, a.vehicle_id,
                      {"advisor_id": str(a.advisor_id) if a.advisor_id else None})
    for rule, rdef in await planner.rules(subject, "appointment.booked"):
        # The series is the slot: a moved appointment gets its own D-3/D-1 even if the old ones already fired.
        series = str(int(a.slot_start.timestamp()))
        wants = ([Want(series, s, a.slot_start) for s in range(len(rdef.schedule.offsets))]
                 if a.status == "booked" else [])
        await planner.reconcile(rule, rdef, subject, wants, f"appointment {a.status}" if a.status != "booked"
                                else "appointment moved")


async def contact_made(planner: Planner, task: Task) -> None:
    """A recurring contact was made (early or late): its next cycle counts from now, because "at least every N
    days" means N days after the last contact, not after the plan's anchor."""
    row = await planner.session.get(FollowUp, task.followup_id) if task.followup_id else None
    rule = await planner.session.get(Rule, row.rule_id) if row is not None else None
    if row is None or rule is None:
        return
    rdef = definition_of(rule)
    if rdef.schedule.repeat is None:
        return
    calendar = await planner.calendars.get(row.store_id)
    pending = (await planner.session.scalars(sa.select(FollowUp).where(
        FollowUp.tenant_id == row.tenant_id, FollowUp.subject_id == row.subject_id, FollowUp.rule_key == row.rule_key,
        FollowUp.state == "scheduled", FollowUp.step > row.step))).all()
    for nxt in pending:
        nxt.due_at = timing.cycle_due(rdef, planner.now, calendar)
        nxt.reason = f"rescheduled: the previous contact was made on {calendar.local(planner.now):%Y-%m-%d}"
        nxt.updated_at = planner.now


#: Dropped for these reasons, an occurrence ends its series (the subject is gone); any other drop (stale, no
#: consent, do-not-call, holiday) skips one cycle and the series goes on.
ENDS_SERIES = ("customer lost", "customer merged", "vehicle transferred", "maintenance done")


def _subject_of(row: Any) -> Subject:
    return Subject(row.subject_type, row.subject_id, row.tenant_id, row.store_id, row.customer_id, row.vehicle_id,
                   {k: v for k, v in (row.context or {}).items() if k != "series"})


async def continue_series(planner: Planner, rows: list[FollowUp]) -> None:
    """Cycles of recurring series cancelled one by one (a marketing opt-out, a manager cancelling this month's):
    each series' next cycle is planned, so cancelling one never ends the rest (without consent, the firing skips
    them, and a customer who opts back in gets them again)."""
    for row in rows:
        rule = await planner.session.get(Rule, row.rule_id)
        if rule is None:
            continue
        schedule = definition_of(rule).schedule
        if schedule.repeat is not None and timing.is_repeat_step(schedule, row.step + 1):
            await _next_cycle(planner, row, rule, _subject_of(row))


async def after_fire(planner: Planner, row: Any, rule: Rule, rdef: RuleDefinition) -> None:
    """What a handled occurrence plans next: its next recurrence cycle (counted from this cycle's time, with the
    rule's version now in force), next year's date, and chained rules. Called for fired and skipped rows."""
    subject = _subject_of(row)
    if row.state != "fired" and (row.reason or "").startswith(ENDS_SERIES):
        return
    if rdef.schedule.repeat is not None and timing.is_repeat_step(rdef.schedule, row.step + 1):
        await _next_cycle(planner, row, rule, subject)
    if rule.trigger in ("customer.birthday", "customer.wedding_anniversary", "festival"):
        customer = await planner.session.get(CustomerView, row.customer_id) if row.customer_id else None
        if customer is not None:
            await reconcile_personal_dates(planner, customer, row.due_at + timedelta(days=1), {rule.key})
    if row.state != "fired":
        return
    series = (row.context or {}).get("series")
    # A call chained to a maintenance reminder is about that cycle: the scheduler drops it once the cycle is done.
    context = {"maintenance_cycle": series} if rule.trigger == "vehicle.maintenance_due" else {}
    chained = [(r, d) for r, d in await planner.rules(subject, "rule.fired") if d.conditions.after_rule == rule.key]
    for crule, cdef in chained:
        await planner.insert(crule, cdef, Subject(**{**subject.__dict__, "context": {**subject.context, **context}}),
                             [Want(str(row.id), s, planner.now) for s in range(len(cdef.schedule.offsets))])


async def _next_cycle(planner: Planner, row: Any, rule: Rule, subject: Subject) -> None:
    """The next cycle counts from this one's time; cycles that would already be stale (the scheduler was down,
    the contact was late) are passed over rather than planned dead, so the series never silently ends."""
    current = next((r for r, _ in await planner.rules(subject, rule.trigger) if r.key == rule.key), None)
    if current is None:
        return  # the rule was disabled or withdrawn: its series ends here
    cdef = definition_of(current)
    if cdef.schedule.repeat is None:
        return
    calendar = await planner.calendars.get(row.store_id)
    series = (row.context or {}).get("series", "")
    step = row.step + 1
    if step >= timing.total_steps(cdef.schedule):
        return
    live = planner.live_cycle(cdef, calendar, step, timing.cycle_due(cdef, row.due_at, calendar))
    if live is not None:
        await planner.insert(current, cdef, subject, [Want(series, live[0], row.anchor_at, live[1])])
