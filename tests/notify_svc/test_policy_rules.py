"""The policy's time and counting rules on their own: quiet hours, the marketing window, holiday peaks, caps,
the group-wide budget and the opt-out words (store-local time; no database needed)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from notify_svc.messages.optout import is_opt_out
from notify_svc.policy.caps import Send, SendHistory
from notify_svc.policy.config import PolicyConfig
from notify_svc.policy.windows import next_allowed

SH = ZoneInfo("Asia/Shanghai")
POLICY = PolicyConfig.of(None)


def local(day: date, hh: int, mm: int = 0, tz: ZoneInfo = SH) -> datetime:
    return datetime.combine(day, time(hh, mm), tz).astimezone(UTC)


ORDINARY = date(2026, 11, 24)  # a Tuesday, no holiday


def test_defaults_are_the_documented_ones() -> None:
    assert (POLICY.quiet_start, POLICY.quiet_end) == (time(21), time(8))
    assert (POLICY.marketing_start, POLICY.marketing_end) == (time(9), time(20))
    assert POLICY.template_daily_cap <= 50  # never above Aliyun's per-number limit


@pytest.mark.parametrize(("hh", "mm", "expect"), [
    (10, 0, (10, 0)), (7, 59, (8, 0)), (21, 0, (8, 0)), (23, 30, (8, 0)), (20, 59, (20, 59))])
def test_service_messages_wait_for_the_end_of_quiet_hours(hh: int, mm: int, expect: tuple[int, int]) -> None:
    now = local(ORDINARY, hh, mm)
    allowed = next_allowed(now, "Asia/Shanghai", POLICY, "service", False)
    day = ORDINARY + timedelta(days=1) if hh >= 21 else ORDINARY
    assert allowed == local(day, *expect)


@pytest.mark.parametrize(("hh", "expect_day", "expect_hh"), [(8, 0, 9), (12, 0, 12), (20, 1, 9), (22, 1, 9)])
def test_marketing_only_inside_its_window(hh: int, expect_day: int, expect_hh: int) -> None:
    allowed = next_allowed(local(ORDINARY, hh), "Asia/Shanghai", POLICY, "marketing", False)
    assert allowed == local(ORDINARY + timedelta(days=expect_day), expect_hh)


def test_marketing_waits_out_a_statutory_holiday() -> None:
    national_day = date(2026, 10, 2)
    allowed = next_allowed(local(national_day, 11), "Asia/Shanghai", POLICY, "marketing", True)
    after = allowed.astimezone(SH)
    assert after.date() > date(2026, 10, 7) and after.time() >= time(9)
    # Service messages are not held by holidays.
    assert next_allowed(local(national_day, 11), "Asia/Shanghai", POLICY, "service", True) == local(national_day, 11)


def test_local_time_is_the_store_s() -> None:
    # 10:00 in Urumqi is 10:00 local there, not Beijing time.
    urumqi = ZoneInfo("Asia/Urumqi")
    now = local(ORDINARY, 7, 30, urumqi)
    assert next_allowed(now, "Asia/Urumqi", POLICY, "service", False) == local(ORDINARY, 8, 0, urumqi)


def _history(*sends: tuple[datetime, str, str]) -> SendHistory:
    history = SendHistory()
    for at, purpose, key in sends:
        history.add("k", Send(at, purpose, key))
    return history


def test_daily_cap_holds_until_the_next_local_morning() -> None:
    now = local(ORDINARY, 15)
    quiet = POLICY.calendars("Asia/Shanghai")[0]
    history = _history(*[(local(ORDINARY, 9 + i), "service", f"t{i}") for i in range(POLICY.daily_cap)])
    reason, until = history.check("k", now, POLICY, quiet, "service", "other")  # type: ignore[misc]
    assert reason == "daily_cap" and until == local(ORDINARY + timedelta(days=1), 8)
    # Yesterday's sends do not count today.
    history = _history(*[(local(ORDINARY - timedelta(days=1), 9 + i), "service", f"t{i}") for i in range(3)])
    assert history.check("k", now, POLICY, quiet, "service", "other") is None


def test_weekly_marketing_budget_counts_seven_rolling_days() -> None:
    now = local(ORDINARY, 15)
    quiet = POLICY.calendars("Asia/Shanghai")[0]
    first = now - timedelta(days=6)
    history = _history((first, "marketing", "a"), (now - timedelta(days=2), "marketing", "b"))
    reason, until = history.check("k", now, POLICY, quiet, "marketing", "c")  # type: ignore[misc]
    assert reason == "contact_budget" and until == first + timedelta(days=7)
    # Service messages have their own budget.
    assert history.check("k", now, POLICY, quiet, "service", "c") is None


def test_same_template_cap_per_rolling_day() -> None:
    now = local(ORDINARY, 15)
    quiet = POLICY.calendars("Asia/Shanghai")[0]
    policy = PolicyConfig(**{**POLICY.__dict__, "template_daily_cap": 1, "daily_cap": 5})
    history = _history((now - timedelta(hours=20), "service", "same"))
    reason, until = history.check("k", now, policy, quiet, "service", "same")  # type: ignore[misc]
    assert reason == "template_cap" and until == now + timedelta(hours=4)


@pytest.mark.parametrize("reply", ["TD", "td", " T ", "退订", "R", "n", "退订谢谢", "STOP", "T D", "TD。", "ＴＤ", "Ｒ",
                                   "ｔｄ！"])
def test_opt_out_words(reply: str) -> None:
    assert is_opt_out(reply)


@pytest.mark.parametrize("reply", ["好的", "谢谢", "明天来保养", "TDX", ""])
def test_ordinary_replies_are_not_opt_outs(reply: str) -> None:
    assert not is_opt_out(reply)


def test_a_budget_of_zero_holds_rather_than_breaks() -> None:
    now = local(ORDINARY, 15)
    policy = PolicyConfig(**{**POLICY.__dict__, "weekly_marketing_budget": 0})
    reason, until = SendHistory().check("k", now, policy, policy.calendars("Asia/Shanghai")[0],  # type: ignore[misc]
                                        "marketing", "t")
    assert reason == "contact_budget" and until == now + timedelta(days=7)


def test_an_older_consent_event_never_re_grants_a_newer_withdrawal() -> None:
    from notify_svc.consent import set_consent
    from notify_svc.models import CustomerView

    row = CustomerView(consents={}, consent_at={})
    newer, older = local(ORDINARY, 12), local(ORDINARY, 11)
    assert set_consent(row, "sms:marketing", False, newer)
    assert not set_consent(row, "sms:marketing", True, older)  # arrived late: ignored
    assert row.consents["sms:marketing"] is False
    assert set_consent(row, "sms:marketing", True, newer + timedelta(minutes=1))  # a real later grant applies
