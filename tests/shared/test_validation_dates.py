"""``latest_today`` (the date in UTC+14, worked out once per day) turns over exactly when UTC+14's day does, and the
VIN check digit matches ISO 3779's worked example."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from shared import validation
from shared.validation import latest_today, normalize_vin, vin_check_digit


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    now = [0.0]
    monkeypatch.setattr(validation.time, "time", lambda: now[0])
    monkeypatch.setattr(validation, "_today", [0.0, date.min])

    def at(moment: datetime) -> date:
        now[0] = moment.timestamp()
        return latest_today()
    return at


def test_latest_today_turns_over_at_ten_utc(clock) -> None:  # type: ignore[no-untyped-def]
    assert clock(datetime(2026, 12, 7, 9, 59, 59, 999000, tzinfo=UTC)) == date(2026, 12, 7)
    assert clock(datetime(2026, 12, 7, 10, 0, tzinfo=UTC)) == date(2026, 12, 8)  # 00:00 on Kiritimati
    assert clock(datetime(2026, 12, 8, 9, 0, tzinfo=UTC)) == date(2026, 12, 8)
    assert clock(datetime(2026, 12, 8, 10, 0, 1, tzinfo=UTC)) == date(2026, 12, 9)
    assert clock(datetime(2026, 12, 31, 23, 0, tzinfo=UTC)) == date(2027, 1, 1)


def test_latest_today_is_never_behind_any_time_zone() -> None:
    from zoneinfo import ZoneInfo
    for zone in ("Pacific/Kiritimati", "Asia/Shanghai", "UTC", "Pacific/Pago_Pago"):
        assert latest_today() >= datetime.now(ZoneInfo(zone)).date()


def test_vin_check_digit() -> None:
    assert vin_check_digit("1M8GDM9AXKP042788") == "X"  # the standard's example
    assert normalize_vin(" 1m8gdm9axkp042788 ") == "1M8GDM9AXKP042788"
    with pytest.raises(ValueError, match="check digit"):
        normalize_vin("1M8GDM9A1KP042788")
    with pytest.raises(ValueError, match="except I, O and Q"):
        normalize_vin("1M8GDM9AXKP04278O")
