"""When a message may go out, in the store's local time: quiet hours for everything, the marketing window and
holiday peaks for marketing. Returns the first allowed instant (``now`` itself when it may go now)."""

from __future__ import annotations

from datetime import datetime

from notify_svc.policy.config import PolicyConfig


def next_allowed(now: datetime, timezone: str, policy: PolicyConfig, purpose: str, avoid_holidays: bool) -> datetime:
    quiet, marketing = policy.calendars(timezone)
    at = quiet.next_message_time(now)
    if purpose != "marketing":
        return at
    keep_off_holidays = avoid_holidays or not policy.marketing_on_holidays
    for _ in range(8):  # each step only moves forward; the windows settle within a couple of rounds
        moved = marketing.next_message_time(quiet.next_message_time(at))
        if keep_off_holidays:
            moved = marketing.after_holiday(moved)
        if moved == at:
            return at
        at = moved
    return at
