"""From a rule's schedule and an anchor to due times (pure: no database)."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

from followup_svc.playbooks.defaults import DEFAULT_RULES
from followup_svc.playbooks.schemas import RuleDefinition
from shared.calendar import StoreCalendar
from followup_svc.scheduling.timing import due_time, sampled, stale_limit

SHANGHAI = StoreCalendar("Asia/Shanghai")
#: Wednesday 2031-03-12 22:30 in Shanghai (no Chinese holiday data for 2031: plain weekends).
LATE_EVENING = datetime(2031, 3, 12, 14, 30, tzinfo=UTC)


def local(at: datetime) -> datetime:
    return SHANGHAI.local(at)


def test_calendar_months_and_local_time() -> None:
    calls = DEFAULT_RULES["post_delivery_calls"]  # days 3, 7, 15, then 1 calendar month, at 10:00, working days
    anchor = datetime(2031, 1, 31, 4, 0, tzinfo=UTC)  # Friday 12:00 local
    month = local(due_time(calls, anchor, 3, SHANGHAI))
    # One calendar month after January 31 is February 28 (a Friday, a working day), not "31 days later".
    assert (month.month, month.day, month.time()) == (2, 28, time(10, 0))
    week = local(due_time(calls, anchor, 1, SHANGHAI))
    assert (week.month, week.day, week.hour) == (2, 7, 10)


def test_before_a_date_anchor_counts_back() -> None:
    insurance = DEFAULT_RULES["insurance_renewal"]  # 45 and 15 days before, 10:00, a message
    expiry = SHANGHAI.at_local(datetime(2031, 6, 30).date(), time(0, 0))
    first, second = (local(due_time(insurance, expiry, s, SHANGHAI)) for s in (0, 1))
    assert (first.month, first.day, first.hour) == (5, 16, 10)
    assert (second.month, second.day, second.hour) == (6, 15, 10)


def test_messages_wait_out_quiet_hours_and_tasks_wait_for_opening() -> None:
    thanks = DEFAULT_RULES["post_delivery_thanks_sms"]  # 4 h after the anchor, a message
    sms = local(due_time(thanks, LATE_EVENING - timedelta(hours=4), 0, SHANGHAI))
    assert (sms.day, sms.time()) == (13, time(8, 0))  # 22:30 is quiet: 08:00 next morning
    call = DEFAULT_RULES["post_delivery_call_3h"]  # a task, any day
    task = local(due_time(call, LATE_EVENING - timedelta(hours=3), 0, SHANGHAI))
    assert (task.day, task.time()) == (13, time(8, 30))  # the store opens at 08:30


def test_spread_days_distribute_a_window_evenly_and_deterministically() -> None:
    rule = RuleDefinition.model_validate({**DEFAULT_RULES["service_callback"].model_dump(mode="json"),
                                          "schedule": {"offsets": [{"days": 2}], "spread_days": 3,
                                                       "local_time": "10:00", "working_days_only": False}})
    anchor = datetime(2031, 3, 10, 2, 0, tzinfo=UTC)
    subjects = [uuid.uuid4() for _ in range(2000)]
    days = Counter(local(due_time(rule, anchor, 0, SHANGHAI, s)).day for s in subjects)
    assert set(days) == {12, 13, 14, 15}
    assert all(400 < n < 600 for n in days.values()), days  # about a quarter each
    assert due_time(rule, anchor, 0, SHANGHAI, subjects[0]) == due_time(rule, anchor, 0, SHANGHAI, subjects[0])


def test_stale_limit_and_sampling() -> None:
    thanks = DEFAULT_RULES["post_delivery_thanks_sms"]  # stale after 3 days
    due = datetime(2031, 3, 12, 0, 0, tzinfo=UTC)
    assert stale_limit(thanks, due) == due + timedelta(days=3)
    assert stale_limit(RuleDefinition.model_validate({**thanks.model_dump(mode="json"),
                                                      "schedule": {"offsets": [{}]}}), due) is None
    ids = [uuid.uuid4() for _ in range(4000)]
    share = sum(sampled(i, 35) for i in ids) / len(ids)
    assert 0.31 < share < 0.39 and all(sampled(i, None) for i in ids[:10])


def test_the_next_maintenance_counts_from_the_last_ones_odometer() -> None:
    """Plan: first at 2,500 km, second at 7,500, then every 10,000 (or 12 months). A car first serviced here at
    60,000 km (bought elsewhere) is next due at 65,000, not at once; one serviced on plan keeps the plan."""
    from followup_svc.models import VehicleView
    from followup_svc.playbooks.schemas import MaintenancePlan
    from followup_svc.scheduling.triggers import maintenance_due

    plan = MaintenancePlan()
    serviced = datetime(2026, 3, 1, 2, tzinfo=UTC)

    def car(count: int, km: int, readings: list[list]) -> VehicleView:  # type: ignore[type-arg]
        return VehicleView(delivery_date=serviced.date() - timedelta(days=700), maintenance_count=count,
                           last_maintenance_at=serviced, last_maintenance_km=km, mileage_readings=readings)

    used = car(1, 60_000, [["2025-03-01", 50_000], ["2026-03-01", 60_000]])  # 10,000 km a year
    cycle, day = maintenance_due(used, plan)  # type: ignore[misc]
    assert cycle == 2 and day == serviced.date() + timedelta(days=182)  # 5,000 km at ~27 km a day
    on_plan = car(2, 7_400, [["2025-03-01", 2_500], ["2026-03-01", 7_400]])
    cycle, day = maintenance_due(on_plan, plan)  # type: ignore[misc]
    assert cycle == 3 and day == date(2027, 3, 1)  # 17,400 km is 2 years away: the 12 months come first
