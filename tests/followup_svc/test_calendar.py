"""Store calendar rules: statutory working days, quiet hours, business hours, DST, anniversaries and festivals.

Pure unit tests: no database, no broker. Holiday facts are the State Council's 2026 arrangement as shipped in
chinesecalendar 1.11.0 (National Day 10-01..10-07, make-up Sunday 09-20 and Saturday 10-10, ...).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest

from shared.calendar import (DEFAULT_HOURS, FESTIVALS, StoreCalendar, anniversary_in_year,
                                              festival_date, next_anniversary, next_festival)

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
CAL = StoreCalendar()
WEEKDAYS_ONLY = {d: ["08:30", "18:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat")}  # closed on Sunday


def sh(*args: int) -> datetime:
    """An aware Shanghai wall-clock datetime."""
    return datetime(*args, tzinfo=SHANGHAI)


def assert_utc(value: datetime, expected_local: datetime) -> None:
    assert value.utcoffset() == timedelta(0), value
    assert value == expected_local
    assert value.astimezone(expected_local.tzinfo).replace(tzinfo=None) == expected_local.replace(tzinfo=None)


# -- statutory calendar ------------------------------------------------------------------------------------------


def test_national_day_2026_is_a_named_holiday() -> None:
    assert not CAL.is_working_day(date(2026, 10, 1))
    assert CAL.holiday_name(date(2026, 10, 1)) == "National Day"
    assert CAL.holiday_name(date(2026, 10, 7)) == "National Day"
    assert CAL.holiday_name(date(2026, 10, 8)) is None
    assert CAL.is_working_day(date(2026, 10, 8))
    assert CAL.holiday_name(date(2026, 2, 17)) == "Spring Festival"


@pytest.mark.parametrize("day", [date(2026, 1, 4), date(2026, 2, 14), date(2026, 2, 28), date(2026, 5, 9),
                                 date(2026, 9, 20), date(2026, 10, 10)])
def test_make_up_weekend_days_are_working_and_not_holidays(day: date) -> None:
    assert day.weekday() >= 5
    assert CAL.is_working_day(day)
    # chinese_calendar names these days after the holiday they compensate for; they are still no holiday
    assert CAL.holiday_name(day) is None


def test_plain_weekend_and_weekday() -> None:
    assert not CAL.is_working_day(date(2026, 3, 7))  # Saturday
    assert CAL.holiday_name(date(2026, 3, 7)) is None
    assert CAL.is_working_day(date(2026, 3, 9))  # Monday


def test_a_holiday_monday_is_not_working() -> None:
    assert date(2026, 2, 16).weekday() == 0
    assert not CAL.is_working_day(date(2026, 2, 16))


@pytest.mark.parametrize("year", [2003, 2027, 2031, 2099])
def test_years_without_data_fall_back_to_mon_to_fri(year: int) -> None:
    monday = date(year, 3, 1) + timedelta(days=-date(year, 3, 1).weekday() + 7)
    saturday = monday + timedelta(days=5)
    assert CAL.is_working_day(monday)
    assert not CAL.is_working_day(saturday)
    assert not CAL.is_working_day(saturday + timedelta(days=1))
    assert CAL.holiday_name(date(year, 10, 1)) is None
    assert CAL.is_working_day(date(year, 10, 1)) == (date(year, 10, 1).weekday() < 5)


def test_year_2031_saturday_off_monday_on() -> None:
    assert date(2031, 3, 1).weekday() == 5 and date(2031, 3, 3).weekday() == 0
    assert not CAL.is_working_day(date(2031, 3, 1))
    assert CAL.is_working_day(date(2031, 3, 3))


# -- conversions -------------------------------------------------------------------------------------------------


def test_local_and_at_local_round_trip() -> None:
    at = datetime(2026, 3, 10, 1, 0, tzinfo=UTC)
    assert CAL.local(at) == at
    assert CAL.local(at).replace(tzinfo=None) == datetime(2026, 3, 10, 9, 0)
    assert_utc(CAL.at_local(date(2026, 3, 10), time(9, 0)), sh(2026, 3, 10, 9, 0))


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError):
        CAL.local(datetime(2026, 3, 10, 9, 0))
    with pytest.raises(ValueError):
        CAL.next_message_time(datetime(2026, 3, 10, 23, 0))


def test_unknown_time_zone_fails_at_construction() -> None:
    with pytest.raises(ZoneInfoNotFoundError):
        StoreCalendar(timezone="Asia/Atlantis")


def test_berlin_nonexistent_time_moves_forward_and_ambiguous_takes_first() -> None:
    berlin = StoreCalendar(timezone="Europe/Berlin")
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist
    spring = berlin.at_local(date(2026, 3, 29), time(2, 30))
    assert spring == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert spring.astimezone(BERLIN).replace(tzinfo=None) == datetime(2026, 3, 29, 3, 30)
    # 2026-10-25: 03:00 CEST goes back to 02:00 CET, so 02:30 happens twice; the first (CEST) one wins
    assert berlin.at_local(date(2026, 10, 25), time(2, 30)) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    # an ordinary summer day uses CEST (+02:00)
    assert berlin.at_local(date(2026, 7, 1), time(8, 30)) == datetime(2026, 7, 1, 6, 30, tzinfo=UTC)


def test_berlin_store_opening_in_the_dst_gap() -> None:
    berlin = StoreCalendar(timezone="Europe/Berlin", business_hours={"sun": ["02:30", "12:00"]})
    saturday_night = datetime(2026, 3, 28, 22, 0, tzinfo=BERLIN)
    opens = berlin.next_task_time(saturday_night, working_days_only=False)
    assert opens == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST
    assert berlin.local(opens).replace(tzinfo=None) == datetime(2026, 3, 29, 3, 30)


def test_berlin_quiet_hours_follow_local_clock_across_dst() -> None:
    berlin = StoreCalendar(timezone="Europe/Berlin")
    winter = datetime(2026, 1, 15, 21, 30, tzinfo=UTC)  # 22:30 CET
    assert berlin.next_message_time(winter) == datetime(2026, 1, 16, 7, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 15, 20, 30, tzinfo=UTC)  # 22:30 CEST
    assert berlin.next_message_time(summer) == datetime(2026, 7, 16, 6, 0, tzinfo=UTC)


def test_urumqi_store_uses_its_own_zone() -> None:
    urumqi = StoreCalendar(timezone="Asia/Urumqi")  # UTC+6, two hours behind Beijing time
    at = datetime(2026, 3, 10, 1, 0, tzinfo=UTC)  # 09:00 Beijing, but 07:00 in Urumqi
    assert not CAL.in_quiet_hours(at)
    assert urumqi.in_quiet_hours(at)
    assert urumqi.next_message_time(at) == datetime(2026, 3, 10, 2, 0, tzinfo=UTC)  # 08:00 Urumqi
    assert urumqi.next_task_time(at) == datetime(2026, 3, 10, 2, 30, tzinfo=UTC)  # 08:30 Urumqi


# -- quiet hours -------------------------------------------------------------------------------------------------


def test_message_in_the_evening_waits_until_next_morning() -> None:
    result = CAL.next_message_time(sh(2026, 3, 10, 22, 30))
    assert_utc(result, sh(2026, 3, 11, 8, 0))


def test_message_after_midnight_waits_until_the_same_morning() -> None:
    assert_utc(CAL.next_message_time(sh(2026, 3, 11, 3, 0)), sh(2026, 3, 11, 8, 0))


def test_message_at_noon_goes_out_at_once() -> None:
    at = sh(2026, 3, 10, 12, 0)
    assert CAL.next_message_time(at) is at


def test_quiet_hour_boundaries() -> None:
    assert CAL.in_quiet_hours(sh(2026, 3, 10, 21, 0))
    assert not CAL.in_quiet_hours(sh(2026, 3, 10, 20, 59))
    assert CAL.in_quiet_hours(sh(2026, 3, 10, 7, 59))
    assert not CAL.in_quiet_hours(sh(2026, 3, 10, 8, 0))
    # evaluated on the store's clock, whatever zone the instant comes in
    assert CAL.in_quiet_hours(datetime(2026, 3, 10, 14, 0, tzinfo=UTC))  # 22:00 Shanghai


def test_same_day_quiet_window() -> None:
    siesta = StoreCalendar(quiet_start=time(12, 0), quiet_end=time(14, 0))
    assert siesta.in_quiet_hours(sh(2026, 3, 10, 13, 0))
    assert not siesta.in_quiet_hours(sh(2026, 3, 10, 23, 0))
    assert_utc(siesta.next_message_time(sh(2026, 3, 10, 12, 15)), sh(2026, 3, 10, 14, 0))


def test_equal_quiet_bounds_mean_no_quiet_hours() -> None:
    never = StoreCalendar(quiet_start=time(0, 0), quiet_end=time(0, 0))
    assert not never.in_quiet_hours(sh(2026, 3, 10, 0, 0))
    assert not never.in_quiet_hours(sh(2026, 3, 10, 23, 59))


# -- business hours ----------------------------------------------------------------------------------------------


def test_friday_evening_task_moves_to_monday_on_working_days() -> None:
    friday = sh(2026, 3, 13, 19, 0)
    assert friday.weekday() == 4
    assert_utc(CAL.next_task_time(friday), sh(2026, 3, 16, 8, 30))


def test_friday_evening_task_moves_to_saturday_when_weekends_count() -> None:
    assert_utc(CAL.next_task_time(sh(2026, 3, 13, 19, 0), working_days_only=False), sh(2026, 3, 14, 8, 30))


def test_task_inside_opening_hours_stays_and_boundaries() -> None:
    at = sh(2026, 3, 12, 10, 0)
    assert CAL.next_task_time(at) is at
    assert CAL.next_task_time(sh(2026, 3, 12, 8, 30)) == sh(2026, 3, 12, 8, 30)
    assert_utc(CAL.next_task_time(sh(2026, 3, 12, 7, 0)), sh(2026, 3, 12, 8, 30))
    assert_utc(CAL.next_task_time(sh(2026, 3, 12, 18, 0)), sh(2026, 3, 13, 8, 30))  # closing time is closed


def test_store_closed_on_sunday() -> None:
    store = StoreCalendar(business_hours=WEEKDAYS_ONLY)
    saturday_evening = sh(2026, 3, 14, 19, 0)
    assert_utc(store.next_task_time(saturday_evening, working_days_only=False), sh(2026, 3, 16, 8, 30))
    sunday_noon = sh(2026, 3, 15, 12, 0)
    assert_utc(store.next_task_time(sunday_noon, working_days_only=False), sh(2026, 3, 16, 8, 30))


def test_per_day_hours() -> None:
    store = StoreCalendar(business_hours={**DEFAULT_HOURS, "sat": ["10:00", "16:00"]})
    assert_utc(store.next_task_time(sh(2026, 3, 13, 19, 0), working_days_only=False), sh(2026, 3, 14, 10, 0))
    assert_utc(store.next_task_time(sh(2026, 3, 14, 16, 30), working_days_only=False), sh(2026, 3, 15, 8, 30))


def test_national_day_week_skips_to_first_working_day() -> None:
    eve = sh(2026, 9, 30, 19, 0)
    assert_utc(CAL.next_task_time(eve), sh(2026, 10, 8, 8, 30))
    assert_utc(CAL.next_task_time(sh(2026, 10, 3, 11, 0)), sh(2026, 10, 8, 8, 30))
    # without the working-day rule the store is simply open the next morning
    assert_utc(CAL.next_task_time(eve, working_days_only=False), sh(2026, 10, 1, 8, 30))


def test_spring_festival_break_is_skipped() -> None:
    # 2026-02-14 (Sat) is a make-up working day, then 02-15..02-23 are off
    assert_utc(CAL.next_task_time(sh(2026, 2, 13, 19, 0)), sh(2026, 2, 14, 8, 30))
    assert_utc(CAL.next_task_time(sh(2026, 2, 14, 19, 0)), sh(2026, 2, 24, 8, 30))


def test_make_up_saturday_opens_for_tasks() -> None:
    assert_utc(CAL.next_task_time(sh(2026, 10, 9, 19, 0)), sh(2026, 10, 10, 8, 30))


def test_sunday_only_store_needs_a_make_up_sunday() -> None:
    store = StoreCalendar(business_hours={"sun": ["09:00", "17:00"]})
    # 2026-09-20 is the only make-up Sunday after September 1st
    assert_utc(store.next_task_time(sh(2026, 9, 1, 12, 0)), sh(2026, 9, 20, 9, 0))
    # after it, no Sunday is a working day within 400 days (2027 has no data: plain weekends)
    with pytest.raises(ValueError, match="store has no open hours"):
        store.next_task_time(sh(2026, 9, 21, 12, 0))
    assert_utc(store.next_task_time(sh(2026, 9, 21, 12, 0), working_days_only=False), sh(2026, 9, 27, 9, 0))


@pytest.mark.parametrize("hours", [{}, {"mon": []}])
def test_empty_business_hours_raise(hours: dict[str, list[str]]) -> None:
    store = StoreCalendar(business_hours=hours)
    for working_days_only in (True, False):
        with pytest.raises(ValueError, match="store has no open hours"):
            store.next_task_time(sh(2026, 3, 10, 12, 0), working_days_only=working_days_only)


@pytest.mark.parametrize("hours", [{"monday": ["08:30", "18:00"]}, {"mon": ["18:00", "08:30"]},
                                   {"mon": ["08:30", "08:30"]}, {"mon": ["8h30", "18:00"]}, {"mon": ["08:30"]}])
def test_invalid_business_hours_fail_at_construction(hours: dict[str, list[str]]) -> None:
    with pytest.raises(ValueError):
        StoreCalendar(business_hours=hours)


def test_default_hours_and_calendar_value_semantics() -> None:
    assert set(DEFAULT_HOURS) == {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
    assert StoreCalendar() == StoreCalendar(business_hours=DEFAULT_HOURS)
    assert hash(StoreCalendar()) == hash(StoreCalendar(business_hours=DEFAULT_HOURS))
    assert StoreCalendar() != StoreCalendar(business_hours=WEEKDAYS_ONLY)
    StoreCalendar().business_hours["mon"].append("mutated")  # type: ignore[attr-defined]
    assert DEFAULT_HOURS["mon"] == ["08:30", "18:00"]  # each calendar gets its own copy


# -- after_holiday -----------------------------------------------------------------------------------------------


def test_after_holiday_moves_past_national_day() -> None:
    assert_utc(CAL.after_holiday(sh(2026, 10, 3, 10, 15)), sh(2026, 10, 8, 10, 15))
    assert_utc(CAL.after_holiday(sh(2026, 10, 7, 23, 0)), sh(2026, 10, 8, 23, 0))


def test_after_holiday_keeps_ordinary_days_and_weekends() -> None:
    for at in (sh(2026, 10, 8, 10, 0), sh(2026, 3, 14, 10, 0), sh(2027, 10, 1, 10, 0)):
        assert CAL.after_holiday(at) is at


def test_after_holiday_can_land_on_a_make_up_sunday() -> None:
    # New Year 2026: 01-01..01-03 off, 01-04 (Sunday) is a make-up working day
    assert_utc(CAL.after_holiday(sh(2026, 1, 2, 9, 0)), sh(2026, 1, 4, 9, 0))


def test_after_holiday_uses_the_store_local_day() -> None:
    # 2026-09-30 17:00 UTC is already 10-01 01:00 in Shanghai
    assert_utc(CAL.after_holiday(datetime(2026, 9, 30, 17, 0, tzinfo=UTC)), sh(2026, 10, 8, 1, 0))


# -- anniversaries -----------------------------------------------------------------------------------------------


def test_solar_anniversary() -> None:
    assert anniversary_in_year(date(1990, 5, 10), 2026) == date(2026, 5, 10)
    assert anniversary_in_year(date(2024, 2, 29), 2027) == date(2027, 2, 28)
    assert anniversary_in_year(date(2024, 2, 29), 2028) == date(2028, 2, 29)
    assert anniversary_in_year(date(2024, 2, 29), 10000) is None


def test_lunar_birthday_on_mid_autumn() -> None:
    lunar_birthday = date(1988, 8, 15)  # lunar 8/15 stored as month/day
    assert anniversary_in_year(lunar_birthday, 2026, "lunar") == date(2026, 9, 25)
    assert anniversary_in_year(lunar_birthday, 2026, "lunar") == festival_date("mid_autumn", 2026)


def test_lunar_day_30_falls_back_to_29_in_short_months() -> None:
    # lunar 2025 month 12 has 29 days; its last day is 2026-02-16, the eve of Spring Festival 2026
    assert anniversary_in_year(date(1990, 12, 30), 2025, "lunar") == date(2026, 2, 16)
    assert anniversary_in_year(date(1990, 12, 29), 2025, "lunar") == date(2026, 2, 16)


def test_lunar_anniversary_may_fall_in_the_next_solar_year() -> None:
    assert anniversary_in_year(date(1990, 12, 20), 2025, "lunar") == date(2026, 2, 7)
    assert next_anniversary(date(1990, 12, 20), date(2026, 1, 15), "lunar") == date(2026, 2, 7)
    assert next_anniversary(date(1990, 12, 20), date(2026, 2, 8), "lunar") == date(2027, 1, 27)


def test_lunar_out_of_range_is_none() -> None:
    assert anniversary_in_year(date(1990, 1, 1), 1899, "lunar") is None
    assert anniversary_in_year(date(1990, 1, 1), 2100, "lunar") is None


def test_next_anniversary_solar_is_inclusive() -> None:
    assert next_anniversary(date(1990, 5, 10), date(2026, 5, 10)) == date(2026, 5, 10)
    assert next_anniversary(date(1990, 5, 10), date(2026, 5, 11)) == date(2027, 5, 10)
    assert next_anniversary(date(2024, 2, 29), date(2026, 3, 1)) == date(2027, 2, 28)


def test_unknown_calendar_kind() -> None:
    with pytest.raises(ValueError):
        anniversary_in_year(date(1990, 5, 10), 2026, "islamic")


# -- festivals ---------------------------------------------------------------------------------------------------


def test_festival_dates_2026() -> None:
    assert festival_date("spring_festival", 2026) == date(2026, 2, 17)
    assert festival_date("lantern", 2026) == date(2026, 3, 3)
    assert festival_date("dragon_boat", 2026) == date(2026, 6, 19)
    assert festival_date("mid_autumn", 2026) == date(2026, 9, 25)
    assert festival_date("new_year", 2026) == date(2026, 1, 1)
    assert festival_date("national_day", 2026) == date(2026, 10, 1)


def test_lunardate_agrees_with_the_statutory_calendar() -> None:
    for year in range(2004, 2027):
        assert CAL.holiday_name(festival_date("spring_festival", year)) == "Spring Festival", year


def test_every_festival_stays_in_its_solar_year() -> None:
    assert {key for key, *_ in FESTIVALS} == {"new_year", "spring_festival", "lantern", "dragon_boat", "qixi",
                                             "mid_autumn", "national_day", "double_ninth"}
    for year in (1901, 1985, 2026, 2033, 2099):
        for key, *_ in FESTIVALS:
            assert festival_date(key, year).year == year, (key, year)


def test_unknown_festival() -> None:
    with pytest.raises(KeyError):
        festival_date("christmas", 2026)


def test_next_festival() -> None:
    assert next_festival("spring_festival", date(2026, 2, 17)) == date(2026, 2, 17)
    assert next_festival("spring_festival", date(2026, 2, 18)) == date(2027, 2, 6)
    assert next_festival("national_day", date(2026, 10, 2)) == date(2027, 10, 1)
