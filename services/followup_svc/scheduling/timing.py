"""From a rule's schedule and an anchor to due times in store-local terms (pure functions, no I/O)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
import uuid
from datetime import datetime, timedelta

from dateutil.relativedelta import relativedelta

from followup_svc.playbooks.schemas import Offset, RuleDefinition, Schedule
from shared.calendar import StoreCalendar


@lru_cache(maxsize=4096)
def delta(offset: Offset, times: int = 1) -> relativedelta:
    """Cached: rules are few, and the scheduler asks for the same distances thousands of times a second."""
    return relativedelta(months=offset.months * times, days=offset.days * times, hours=offset.hours * times,
                         minutes=offset.minutes * times)


def total_steps(schedule: Schedule) -> int:
    return len(schedule.offsets) + (schedule.repeat.count if schedule.repeat else 0)


def is_repeat_step(schedule: Schedule, step: int) -> bool:
    return step >= len(schedule.offsets)


def raw_time(schedule: Schedule, anchor: datetime, step: int) -> datetime:
    """The anchor moved by the step's offset (before or after), before any calendar adjustment."""
    if step < len(schedule.offsets):
        distance = delta(schedule.offsets[step])
    else:
        assert schedule.repeat is not None
        distance = delta(schedule.offsets[-1]) + delta(schedule.repeat.every, step - len(schedule.offsets) + 1)
    return anchor - distance if schedule.direction == "before" else anchor + distance


def due_time(rule: RuleDefinition, anchor: datetime, step: int, calendar: StoreCalendar,
             subject_id: uuid.UUID | None = None) -> datetime:
    """When the step may fire: spread over the rule's window by subject, at the rule's local time of day, then
    moved into the allowed window (business hours for tasks; outside quiet hours, and after a holiday when the
    rule defers, for messages)."""
    schedule = rule.schedule
    at = raw_time(schedule, anchor, step)
    if schedule.spread_days and subject_id is not None:
        at += timedelta(days=_bucket(subject_id) % (schedule.spread_days + 1))
    if schedule.local_time is not None:
        at = calendar.at_local(calendar.local(at).date(), schedule.local_time)
    return adjust(rule, at, calendar)


def cycle_due(rule: RuleDefinition, previous: datetime, calendar: StoreCalendar) -> datetime:
    """A recurrence cycle's time: one interval after the previous cycle (or contact), at the rule's local time,
    moved into the allowed window. Counting from the previous cycle keeps "every N days" true after a late or
    early contact."""
    assert rule.schedule.repeat is not None
    at = previous + delta(rule.schedule.repeat.every)
    if rule.schedule.local_time is not None:
        at = calendar.at_local(calendar.local(at).date(), rule.schedule.local_time)
    return adjust(rule, at, calendar)


def adjust(rule: RuleDefinition, at: datetime, calendar: StoreCalendar) -> datetime:
    if rule.action.kind == "task":
        try:
            return calendar.next_task_time(at, rule.schedule.working_days_only)
        except ValueError:  # a store with no opening hours on record: keep the planned time
            return at
    if rule.schedule.holiday_peak == "defer":
        at = calendar.after_holiday(at)
    return calendar.next_message_time(at)


def stale_limit(rule: RuleDefinition, due_at: datetime) -> datetime | None:
    """After this instant the occurrence is not carried out (a thank-you three months late is worse than none)."""
    stale = rule.schedule.stale_after
    return due_at + delta(stale) if stale is not None else None


def _bucket(subject_id: uuid.UUID) -> int:
    """A stable number per subject (UUIDv7 ids are time-ordered, so their low bits are not used directly)."""
    return int.from_bytes(hashlib.sha256(subject_id.bytes).digest()[:4], "big")


def sampled(subject_id: uuid.UUID, percent: int | None) -> bool:
    """Deterministic sampling by subject id: the same visit is always in or out, whoever plans it."""
    if percent is None or percent >= 100:
        return True
    return _bucket(subject_id) % 100 < percent
