"""The appointment slot grid and workshop capacity (DOMAIN.md §11: "combine the customer's wish with workshop
capacity"; "when the day is full, always offer alternative slots").

Slots start on multiples of the slot length from local midnight (60 minutes: 09:00, 10:00, ...) and must fit
inside the store's business hours of that weekday. A slot holds ``capacity`` cars; an appointment occupies every
slot its [slot_start, slot_end) overlaps, so a change of the slot length keeps counting older bookings.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from followup_svc.models import Appointment
from followup_svc.models.appointment import ACTIVE_STATES
from shared.calendar import WEEKDAYS, StoreCalendar
from shared.errors import InvalidField

#: How far ahead a slot may be booked.
HORIZON = timedelta(days=366)
#: How many days after the asked slot are searched for alternatives.
SEARCH_DAYS = 31
ALTERNATIVES = 5


@dataclass(frozen=True)
class Slot:
    start: datetime
    end: datetime
    local_start: str
    booked: int
    free: int
    bookable: bool


def _minutes(value: str) -> int:
    t = time.fromisoformat(value)
    return t.hour * 60 + t.minute


def opening_hours(calendar: StoreCalendar, day: date) -> tuple[int, int] | None:
    """(open, close) in minutes after local midnight on ``day``'s weekday, or None when closed."""
    span = calendar.business_hours.get(WEEKDAYS[day.weekday()])
    if not span or len(span) != 2:
        return None
    return _minutes(span[0]), _minutes(span[1])


def day_slots(calendar: StoreCalendar, day: date, minutes: int) -> list[datetime]:
    """The UTC starts of the slots of local ``day`` that fit inside its business hours."""
    hours = opening_hours(calendar, day)
    if hours is None:
        return []
    opens, closes = hours
    starts = []
    m = -(-opens // minutes) * minutes  # first grid point at or after opening
    while m + minutes <= closes:
        wall = time(m // 60, m % 60)
        at = calendar.at_local(day, wall)
        if calendar.local(at).time() == wall:  # a wall time skipped by a daylight-saving jump is no slot
            starts.append(at)
        m += minutes
    return starts


def check_slot(calendar: StoreCalendar, start: datetime, minutes: int, now: datetime, field: str) -> None:
    """422 on ``field`` unless ``start`` is a future slot of the store's grid inside its business hours."""
    if start <= now:
        raise InvalidField(field, "must be in the future")
    if start > now + HORIZON:
        raise InvalidField(field, "can be booked at most a year ahead")
    local = calendar.local(start)
    if local.second or local.microsecond or (local.hour * 60 + local.minute) % minutes:
        raise InvalidField(field, f"must start on the {minutes}-minute slot grid in store-local time "
                                  f"({calendar.timezone}), e.g. 10:00")
    day = local.date()
    hours = opening_hours(calendar, day)
    if hours is None:
        raise InvalidField(field, f"the store is closed on {WEEKDAYS[day.weekday()]}")
    if start not in day_slots(calendar, day, minutes):
        opens, closes = hours
        raise InvalidField(field, f"outside business hours on {WEEKDAYS[day.weekday()]} "
                                  f"({opens // 60:02d}:{opens % 60:02d}–{closes // 60:02d}:{closes % 60:02d} "
                                  f"{calendar.timezone}; a {minutes}-minute slot must end by closing)")


def _active(tenant_id: uuid.UUID, store_id: uuid.UUID, exclude: uuid.UUID | None):  # type: ignore[no-untyped-def]
    cond = [Appointment.tenant_id == tenant_id, Appointment.store_id == store_id,
            Appointment.status.in_(ACTIVE_STATES)]
    if exclude is not None:
        cond.append(Appointment.id != exclude)
    return cond


async def booked_in(session: AsyncSession, tenant_id: uuid.UUID, store_id: uuid.UUID, start: datetime,
                    end: datetime, exclude: uuid.UUID | None = None) -> int:
    """Active appointments overlapping [start, end) (``exclude``: the appointment being moved)."""
    return await session.scalar(sa.select(sa.func.count()).select_from(Appointment).where(
        *_active(tenant_id, store_id, exclude), Appointment.slot_start < end, Appointment.slot_end > start)) or 0


async def _spans(session: AsyncSession, tenant_id: uuid.UUID, store_id: uuid.UUID, start: datetime,
                 end: datetime, exclude: uuid.UUID | None = None) -> list[tuple[datetime, datetime]]:
    rows = await session.execute(sa.select(Appointment.slot_start, Appointment.slot_end).where(
        *_active(tenant_id, store_id, exclude), Appointment.slot_start < end, Appointment.slot_end > start))
    return [(s, e) for s, e in rows.all()]


def _slot(calendar: StoreCalendar, start: datetime, length: timedelta, spans: list[tuple[datetime, datetime]],
          capacity: int, now: datetime) -> Slot:
    end = start + length
    booked = sum(1 for s, e in spans if s < end and e > start)
    free = max(0, capacity - booked)
    return Slot(start, end, calendar.local(start).strftime("%Y-%m-%dT%H:%M"), booked, free,
                free > 0 and start > now)


async def slots_of_day(session: AsyncSession, tenant_id: uuid.UUID, store_id: uuid.UUID, calendar: StoreCalendar,
                       day: date, minutes: int, capacity: int, now: datetime) -> list[Slot]:
    starts = day_slots(calendar, day, minutes)
    if not starts:
        return []
    length = timedelta(minutes=minutes)
    spans = await _spans(session, tenant_id, store_id, starts[0], starts[-1] + length)
    return [_slot(calendar, s, length, spans, capacity, now) for s in starts]


async def alternatives(session: AsyncSession, tenant_id: uuid.UUID, store_id: uuid.UUID, calendar: StoreCalendar,
                       after: datetime, minutes: int, capacity: int, now: datetime,
                       exclude: uuid.UUID | None = None, count: int = ALTERNATIVES) -> list[Slot]:
    """The next ``count`` bookable slots after ``after``: later the same day, then the following days."""
    length = timedelta(minutes=minutes)
    first_day = calendar.local(after).date()
    days = [first_day + timedelta(days=i) for i in range(SEARCH_DAYS)]
    candidates = [s for d in days for s in day_slots(calendar, d, minutes) if s > after and s > now
                  and s <= now + HORIZON]
    if not candidates:
        return []
    spans = await _spans(session, tenant_id, store_id, candidates[0], candidates[-1] + length, exclude)
    found = []
    for start in candidates:
        slot = _slot(calendar, start, length, spans, capacity, now)
        if slot.bookable:
            found.append(slot)
            if len(found) == count:
                break
    return found
