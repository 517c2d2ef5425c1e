"""Cell values as dealer systems and Excel write them: dates like 2024/3/5 or 2024年3月5日, 男/女, 首保/保养..."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

#: A date, then optionally a time of day without a zone (a DMS exports date columns as date-times); the groups:
#: year, month, day, hours, minutes, seconds.
_DATETIME = re.compile(r"^\s*(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
                       r"(?:(?:\s*[ T]\s*|(?<=日)\s*)(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?\s*$")
_COMPACT = re.compile(r"^\s*(\d{4})(\d{2})(\d{2})\s*$")

GENDERS = {"男": "male", "女": "female", "m": "male", "f": "female", "male": "male", "female": "female",
           "其他": "other", "other": "other"}
VISIT_TYPES = {"首保": "first_maintenance", "首次保养": "first_maintenance", "保养": "maintenance",
               "定期保养": "maintenance", "小修": "minor_repair", "一般维修": "minor_repair", "大修": "major_overhaul",
               "总成大修": "major_overhaul", "返修": "rework"}
RELATIONSHIPS = {"潜客": "prospect", "潜在客户": "prospect", "意向客户": "prospect", "保有客户": "owner", "车主": "owner"}
KINDS = {"个人": "person", "单位": "company", "公司": "company", "企业": "company"}


def blank_to_none(value: Any) -> Any:
    """Empty cells are absent values (an import never erases a field by leaving its cell empty)."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


def flexible_date(value: Any) -> Any:
    """``2024-03-05``, ``2024/3/5``, ``2024.3.5``, ``2024年3月5日`` or ``20240305``, also with a time of day after
    it (``2024-03-05 00:00:00``, as a DMS exports date columns), which is dropped; other input is refused."""
    value = blank_to_none(value)
    if isinstance(value, (int, float)):
        raise ValueError("give a date such as 2024-03-05, not a number (Excel shows dates as numbers in "
                         "columns formatted as General)")
    if not isinstance(value, str):
        return value
    m = _DATETIME.match(value) or _COMPACT.match(value)
    if m:
        try:
            return date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError as exc:
            raise ValueError(f"{value.strip()} is not a date") from exc
    raise ValueError("give a date such as 2024-03-05 (also 2024/3/5 or 2024年3月5日)")


def flexible_datetime(value: Any) -> Any:
    """ISO 8601 with or without a zone, ``2024/3/5 14:30[:00]`` or ``2024年3月5日14:30``, or a date alone (its
    midnight); a time without a zone is the store's local time (resolved once the store is known)."""
    value = blank_to_none(value)
    if isinstance(value, (int, float)):
        raise ValueError("give a date-time such as 2024-03-05 14:30, not a number")
    if not isinstance(value, str):
        return value
    m = _DATETIME.match(value)
    if m:
        try:
            return datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4] or 0), int(m[5] or 0), int(m[6] or 0))
        except ValueError as exc:
            raise ValueError(f"{value.strip()} is not a date-time") from exc
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError("give a date-time such as 2024-03-05 14:30 or 2024-03-05T14:30:00+08:00") from None


def mapped(table: dict[str, str]) -> Any:
    """A before-validator translating Chinese (or short) spellings to the API's values; unknown ones pass through."""

    def convert(value: Any) -> Any:
        value = blank_to_none(value)
        if isinstance(value, str):
            key = value.strip()
            return table.get(key, table.get(key.lower(), key))
        return value

    return convert
