"""Checked value types used in request schemas: phones (E.164), VINs (ISO 3779), Chinese plates, store time zones,
ISO 8601 dates and date-times."""

from __future__ import annotations

import operator
import re
import time
import unicodedata
from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import phonenumbers
from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field

_VIN_MAP = {**{str(d): d for d in range(10)},
            **dict(zip("ABCDEFGH", range(1, 9))), **dict(zip("JKLMN", range(1, 6))), "P": 7, "R": 9,
            **dict(zip("STUVWXYZ", range(2, 10)))}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_PLATE = re.compile(
    rf"^[{_PROVINCES}][A-HJ-NP-Z]"
    r"(?:[A-HJ-NP-Z0-9]{4}[A-HJ-NP-Z0-9挂学警港澳]"        # ordinary 7-character plate
    r"|[DF][A-HJ-NP-Z0-9][0-9]{4}"                        # new-energy small car: D/F + 5
    r"|[0-9]{5}[DF])$"                                     # new-energy large vehicle: 5 digits + D/F
)


_CN = phonenumbers.PhoneMetadata.metadata_for_region("CN")
_CN_MOBILE = re.compile(_CN.mobile.national_number_pattern)
_CN_ANY = re.compile(_CN.general_desc.national_number_pattern)
_SEPARATORS = str.maketrans("", "", " -")


def normalize_phone(value: str, region: str = "CN") -> str:
    """Any common format (138 0013 8000, +86-138..., 0086...) to E.164; raises ValueError if invalid."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("phone number is required")
    raw = value.strip()
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    if region == "CN":
        # The common case answered from phonenumbers' own CN patterns, with the result its parse would give (no
        # mobile number starts with a carrier-selection prefix it would strip); anything else takes the full parse.
        compact = raw.translate(_SEPARATORS)
        national = compact[3:] if compact.startswith("+86") else compact
        if len(national) == 11 and national.isascii() and national.isdigit() and _CN_MOBILE.fullmatch(national) \
                and _CN_ANY.fullmatch(national):
            return "+86" + national
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("not a phone number") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def vin_check_digit(vin: str) -> str:
    total = sum(map(operator.mul, map(_VIN_MAP.__getitem__, vin), _VIN_WEIGHTS))
    r = total % 11
    return "X" if r == 10 else str(r)


def halfwidth(value: str) -> str:
    """Full-width letters and digits (as a Chinese input method types them) as ASCII."""
    return value if value.isascii() else unicodedata.normalize("NFKC", value)


def normalize_vin(value: str) -> str:
    vin = halfwidth(value).strip().upper() if isinstance(value, str) else ""
    if len(vin) != 17:
        raise ValueError("a VIN has 17 characters")
    if any(c not in _VIN_MAP for c in vin):
        raise ValueError("a VIN uses digits and letters except I, O and Q")
    if vin[8] != vin_check_digit(vin):
        raise ValueError("VIN check digit (9th character) does not match")
    return vin


def normalize_plate(value: str) -> str:
    plate = re.sub(r"[\s·\-]", "", halfwidth(value)).upper() if isinstance(value, str) else ""
    if not _PLATE.match(plate):
        raise ValueError("not a Chinese licence plate (e.g. 粤B12345, or new-energy 粤BD12345)")
    return plate


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("not an IANA time zone such as Asia/Shanghai") from exc
    if value not in available_timezones():
        raise ValueError("not an IANA time zone such as Asia/Shanghai")
    return value


Phone = Annotated[str, Field(min_length=3, max_length=32, examples=["13800138000"]), AfterValidator(normalize_phone)]
Vin = Annotated[str, Field(min_length=17, max_length=17, examples=["LSVAU218XN2183294"]), AfterValidator(normalize_vin)]
Plate = Annotated[str, Field(min_length=7, max_length=12, examples=["粤B12345"]), AfterValidator(normalize_plate)]
TimeZone = Annotated[str, Field(max_length=64, examples=["Asia/Shanghai"]), AfterValidator(check_timezone)]
Trimmed = BeforeValidator(lambda v: v.strip() if isinstance(v, str) else v)


def iso_only(value: object) -> object:
    """Dates and times are ISO 8601 strings; pydantic would also read numbers as Unix timestamps."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(r"\s*[-+]?[\d.]+\s*", value)):
        raise ValueError("give an ISO 8601 date (2026-01-31) or date-time (2026-01-31T09:00:00+08:00)")
    return value


IsoDate = Annotated[date, BeforeValidator(iso_only)]


_AHEAD = 14 * 3600  # seconds: UTC+14, the earliest time zone
_today: list[float | date] = [0.0, date.min]  # until when (epoch seconds) the cached date holds, and the date


def latest_today() -> date:
    """Today's date somewhere on Earth (UTC+14): a date "not in the future" is checked against this, because a
    store's today begins before the server's (Shanghai is 8 hours ahead of a UTC server). Worked out once per day
    (bulk imports check several dates per record)."""
    now = time.time()
    if now >= _today[0]:  # type: ignore[operator]
        day = (datetime.fromtimestamp(now, UTC) + timedelta(seconds=_AHEAD)).date()
        _today[:] = [(now + _AHEAD) // 86400 * 86400 + 86400 - _AHEAD, day]
    return _today[1]  # type: ignore[return-value]
#: An ISO 8601 date-time with its time zone (a naive time is ambiguous across store time zones).
IsoDateTime = Annotated[AwareDatetime, BeforeValidator(iso_only)]
