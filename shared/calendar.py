"""Store-local calendar rules: time zones, business and quiet hours, Chinese statutory holidays, anniversaries.

Everything is stored in UTC, but every rule (business hours, customer quiet hours, statutory holidays,
anniversaries) is expressed in the store's local time, so each helper converts at the edge: it takes an aware
datetime, works on the local wall clock and hands back an aware UTC datetime.

Hot path: ``local``, ``next_message_time`` and ``next_task_time`` run in tight loops, so the business hours are
parsed once per calendar, ZoneInfo objects are cached, and statutory-calendar look-ups (``chinese_calendar`` takes
~20 µs per call because it recomputes its data range every time) are memoised per day.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import MAXYEAR, MINYEAR, UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar
from lunardate import LunarDate

__all__ = [
    "DEFAULT_HOURS",
    "FESTIVALS",
    "StoreCalendar",
    "anniversary_in_year",
    "festival_date",
    "next_anniversary",
    "next_festival",
]

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

DEFAULT_HOURS: dict[str, list[str]] = {d: ["08:30", "18:00"] for d in WEEKDAYS}
"""Open 08:30–18:00 every day (dealers' after-sales desks usually open at weekends). Treat as read-only."""

# How far next_task_time looks ahead before deciding the store never opens (longest real gap: ~10-day holidays).
_MAX_LOOKAHEAD_DAYS = 400

_ONE_DAY = timedelta(days=1)

_Hours = tuple[tuple[time, time] | None, ...]  # indexed by date.weekday(): (open, close) or None when closed


@functools.lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """A cached ZoneInfo (its constructor is costly on hot paths)."""
    return ZoneInfo(name)


@functools.lru_cache(maxsize=16384)
def _day_info(day: date) -> tuple[bool, str | None]:
    """(is working day, statutory holiday name) for ``day``.

    Years chinese_calendar has no data for (before 2004, or after the last published State Council notice) fall
    back to a plain Mon–Fri week: holidays and make-up days are only announced about a year ahead, so the weekend
    rule is the best available guess, and scheduling far ahead must keep working rather than raise.
    """
    try:
        on_holiday, name = chinese_calendar.get_holiday_detail(day)
    except NotImplementedError:
        return day.weekday() < 5, None
    # get_holiday_detail also names make-up working days (调休, e.g. "Spring Festival" on a working Saturday),
    # so the name only counts as a holiday when the day is actually off.
    return not on_holiday, (name if on_holiday else None)


def _parse_clock(value: str) -> time:
    try:
        parsed = time.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"invalid time of day {value!r}, expected 'HH:MM'") from None
    if parsed.tzinfo is not None:
        raise ValueError(f"time of day {value!r} must not carry a UTC offset")
    return parsed


@functools.lru_cache(maxsize=1024)
def _parse_hours(items: tuple[tuple[str, tuple[str, ...]], ...]) -> _Hours:
    """Parse ``(day key, (open, close))`` pairs once; cached because many stores share the same hours."""
    slots: list[tuple[time, time] | None] = [None] * 7
    for key, span in items:
        if key not in WEEKDAYS:
            raise ValueError(f"unknown business day {key!r}, expected one of {', '.join(WEEKDAYS)}")
        if not span:  # an empty entry means closed, like a missing key
            continue
        if len(span) != 2:
            raise ValueError(f"business hours for {key!r} must be [open, close], got {list(span)!r}")
        opens, closes = _parse_clock(span[0]), _parse_clock(span[1])
        if opens >= closes:
            raise ValueError(f"business hours for {key!r} must open before they close, got {list(span)!r}")
        slots[WEEKDAYS.index(key)] = (opens, closes)
    return tuple(slots)


def _default_hours() -> dict[str, list[str]]:
    return {day: list(span) for day, span in DEFAULT_HOURS.items()}


@dataclass(frozen=True)
class StoreCalendar:
    """A store's time zone, opening hours and its customers' quiet hours.

    ``business_hours`` is parsed at construction; mutating the mapping afterwards has no effect.
    Opening hours are the half-open interval [open, close). Quiet hours are [quiet_start, quiet_end): overnight when
    start > end, same-day when start < end, and none at all when start == end.
    """

    timezone: str = "Asia/Shanghai"
    business_hours: Mapping[str, Sequence[str]] = field(default_factory=_default_hours, hash=False)
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)
    _tz: ZoneInfo = field(init=False, repr=False, compare=False, hash=False)
    _hours: _Hours = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.quiet_start.tzinfo is not None or self.quiet_end.tzinfo is not None:
            raise ValueError("quiet hours are local wall-clock times and must be naive")
        items = tuple((str(day), tuple(span or ())) for day, span in self.business_hours.items())
        object.__setattr__(self, "_tz", zone(self.timezone))  # fails fast on an unknown zone name
        object.__setattr__(self, "_hours", _parse_hours(items))

    # -- conversions -------------------------------------------------------------------------------------------

    def local(self, at: datetime) -> datetime:
        """``at`` converted to the store's zone (``at`` must be aware: a naive value would silently mean host time)."""
        if at.tzinfo is None:
            raise ValueError("expected an aware datetime")
        return at.astimezone(self._tz)

    def at_local(self, day: date, t: time) -> datetime:
        """The UTC instant of local ``day`` at wall time ``t``.

        Ambiguous wall times (clocks going back) take the first occurrence (fold=0); wall times skipped by a
        forward jump move forward by the size of the gap (Berlin 02:30 on the spring-forward day -> 03:30 CEST),
        which is PEP 495's fold=0 reading of a non-existent time.
        """
        return self._instant(day, t, 0)

    def _instant(self, day: date, t: time, fold: int) -> datetime:
        wall = datetime(day.year, day.month, day.day, t.hour, t.minute, t.second, t.microsecond,
                        tzinfo=self._tz, fold=fold)
        return wall.astimezone(UTC)

    # -- statutory calendar ------------------------------------------------------------------------------------

    def is_working_day(self, day: date) -> bool:
        """Chinese statutory working day: weekends and public holidays off, make-up days (调休) on.

        Outside chinese_calendar's data (currently 2004–2026) this is simply Mon–Fri; it never raises.
        """
        return _day_info(day)[0]

    def holiday_name(self, day: date) -> str | None:
        """chinese_calendar's English name ("Spring Festival", "National Day", ...) if ``day`` is a statutory day off;
        None for ordinary days, weekends, make-up working days and years without data."""
        return _day_info(day)[1]

    # -- rules -------------------------------------------------------------------------------------------------

    def in_quiet_hours(self, at: datetime) -> bool:
        return self._quiet(self.local(at).time())

    def _quiet(self, t: time) -> bool:
        start, end = self.quiet_start, self.quiet_end
        if start > end:
            return t >= start or t < end
        return start <= t < end

    def next_message_time(self, at: datetime) -> datetime:
        """``at`` itself when customers may be messaged, else the end of the current quiet hours (UTC)."""
        loc = self.local(at)
        t = loc.time()
        if not self._quiet(t):
            return at
        day = loc.date()
        if self.quiet_start > self.quiet_end and t >= self.quiet_start:
            day += _ONE_DAY  # overnight window, still before midnight: it ends tomorrow morning
        result = self._instant(day, self.quiet_end, 0)
        if result <= at:  # quiet_end falls in a repeated hour and `at` is already in its second pass
            result = self._instant(day, self.quiet_end, 1)
        return result

    def next_task_time(self, at: datetime, working_days_only: bool = True) -> datetime:
        """``at`` itself if the store is open then, else the opening time of its next open slot (UTC).

        A day qualifies when it has business hours for its weekday and, with ``working_days_only``, is a statutory
        working day (so a make-up Saturday counts and a holiday Monday does not).
        Raises ValueError("store has no open hours") when no day in the next 400 qualifies.
        """
        loc = self.local(at)
        day = loc.date()
        hours = self._hours
        slot = hours[day.weekday()]
        if slot is not None and (not working_days_only or _day_info(day)[0]):
            t = loc.time()
            if t < slot[0]:
                return self._instant(day, slot[0], 0)
            if t < slot[1]:
                return at
        if any(hours):
            for _ in range(_MAX_LOOKAHEAD_DAYS):
                day += _ONE_DAY
                slot = hours[day.weekday()]
                if slot is not None and (not working_days_only or _day_info(day)[0]):
                    return self._instant(day, slot[0], 0)
        raise ValueError("store has no open hours")

    def after_holiday(self, at: datetime) -> datetime:
        """Postpone ``at`` past a statutory holiday: same local time on the first following non-holiday day (UTC).

        Returns ``at`` unchanged when its local day is no holiday. Only holidays count, not weekends: greetings
        sent the morning after the break are what we want, whatever weekday that is.
        """
        loc = self.local(at)
        day = loc.date()
        if _day_info(day)[1] is None:
            return at
        day += _ONE_DAY
        while _day_info(day)[1] is not None:  # terminates: holidays are finite runs of days within data years
            day += _ONE_DAY
        return self._instant(day, loc.time(), 0)


# -- anniversaries and festivals --------------------------------------------------------------------------------


def _lunar_to_solar(year: int, month: int, day: int) -> date | None:
    """Solar date of (non-leap) lunar ``year/month/day``; day 30 falls back to 29 in a short (29-day) month."""
    try:
        return LunarDate(year, month, day).to_solar_date()
    except ValueError:
        if day != 30:
            return None  # year outside lunardate's range [1900, 2100), or an impossible month/day
    try:
        return LunarDate(year, month, 29).to_solar_date()
    except ValueError:
        return None


def anniversary_in_year(original: date, year: int, calendar: str = "solar") -> date | None:
    """Solar date in ``year`` of the yearly anniversary of ``original``.

    ``calendar="solar"``: same month/day; Feb 29 becomes Feb 28 in common years.
    ``calendar="lunar"``: ``original``'s month/day are a *lunar* month/day (how the customer service stores lunar
    birthdays); returns the solar date of lunar ``year/month/day``, which for the 11th/12th lunar months can fall
    in January/February of ``year + 1``. Leap months are ignored: the regular month of that number is used.
    Returns None when no such date exists (year outside date's or lunardate's range).
    """
    if calendar == "solar":
        if not MINYEAR <= year <= MAXYEAR:
            return None
        try:
            return date(year, original.month, original.day)
        except ValueError:  # Feb 29 in a common year
            return date(year, 2, 28)
    if calendar == "lunar":
        return _lunar_to_solar(year, original.month, original.day)
    raise ValueError(f"unknown calendar {calendar!r}, expected 'solar' or 'lunar'")


def next_anniversary(original: date, after: date, calendar: str = "solar") -> date | None:
    """First anniversary of ``original`` on or after ``after``.

    The previous year is tried too because a lunar anniversary of year N can land in solar year N + 1.
    """
    for year in (after.year - 1, after.year, after.year + 1):
        found = anniversary_in_year(original, year, calendar)
        if found is not None and found >= after:
            return found
    return None


FESTIVALS: tuple[tuple[str, str, str, int, int], ...] = (
    ("new_year", "元旦", "solar", 1, 1),
    ("spring_festival", "春节", "lunar", 1, 1),
    ("lantern", "元宵节", "lunar", 1, 15),
    ("dragon_boat", "端午节", "lunar", 5, 5),
    ("qixi", "七夕", "lunar", 7, 7),
    ("mid_autumn", "中秋节", "lunar", 8, 15),
    ("national_day", "国庆节", "solar", 10, 1),
    ("double_ninth", "重阳节", "lunar", 9, 9),
)
"""(key, Chinese name, kind, month, day); kind "lunar" means month/day are lunar."""

_FESTIVAL_RULES: dict[str, tuple[str, int, int]] = {key: (kind, m, d) for key, _, kind, m, d in FESTIVALS}


def festival_date(key: str, year: int) -> date:
    """Solar date of festival ``key`` in solar year ``year``.

    Raises KeyError for an unknown key and ValueError for a lunar festival outside lunardate's years (1900–2099).
    All listed lunar festivals fall between late January and November, so lunar ``year`` maps into solar ``year``.
    """
    kind, month, day = _FESTIVAL_RULES[key]
    if kind == "solar":
        return date(year, month, day)
    return LunarDate(year, month, day).to_solar_date()


def next_festival(key: str, after: date) -> date:
    """First date of festival ``key`` on or after ``after``."""
    this_year = festival_date(key, after.year)
    return this_year if this_year >= after else festival_date(key, after.year + 1)
