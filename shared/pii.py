"""Masking personal data: one set of rules for logs (always) and API responses (roles without the PII permission)."""

from __future__ import annotations

import re
from typing import Any

_D = "[0-9０-９]"  # digits as typed, full-width ones too (a Chinese input method's)
_SEP = r"[ \-.－]?"  # 138 0013 8000, 138-0013-8000
#: Not next to another digit or a letter: a run of digits inside an identifier (a UUID's hex groups, a VIN, an
#: order number) is not a phone number.
_EDGE_BEFORE, _EDGE_AFTER = r"(?<![0-9０-９A-Za-z])", r"(?![0-9０-９A-Za-z])"
#: Mainland mobiles, with or without +86 and separators between the 3-4-4 groups.
_PHONE = re.compile(rf"{_EDGE_BEFORE}((?:[+＋]?(?:86|８６)){_SEP})?([1１][3-9３-９]{_D}){_SEP}({_D}{{4}}){_SEP}"
                    rf"({_D}{{4}}){_EDGE_AFTER}")
#: Landlines with their area code: 0755-86001234, 010 6512 3456; not between dashes (a UUID's 0123-4567-8901).
_LANDLINE = re.compile(rf"(?<![0-9０-９A-Za-z\-])([0０]{_D}{{2,3}}[ \-－]?)({_D}{{3,4}}){_SEP}({_D}{{4}})"
                       rf"(?![0-9０-９A-Za-z\-])")
#: A value that is a number in E.164 (what events and records store): a landline or a number abroad too.
_E164 = re.compile(r"[+＋][0-9]{7,15}")
NAME_KEYS = frozenset({"name", "customer_name", "contact_person", "full_name"})
ID_KEYS = frozenset({"id_number"})
ADDRESS_KEYS = frozenset({"address", "home_address"})


def mask_phone(text: str) -> str:
    """Every mainland mobile number inside ``text``, 138****8000 style (prefix and last four digits kept), however
    it is grouped, and every landline with its area code, 0755-****1234 style."""
    text = _PHONE.sub(lambda m: f"{m.group(1) or ''}{m.group(2)}****{m.group(4)}", text)
    return _LANDLINE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)


def mask_number(e164: str) -> str:
    """+8613800138000 -> 138****8000 (the local form staff read)."""
    local = e164[3:] if e164.startswith("+86") else e164
    return local[:3] + "****" + local[-4:] if len(local) >= 8 else "****"


def mask_name(name: str) -> str:
    """张三丰 -> 张**: the family name only, as staff say it on the phone."""
    return name[:1] + "*" * max(len(name) - 1, 1) if name else name


def mask_id_number(value: str) -> str:
    return value[:4] + "*" * max(len(value) - 8, 1) + value[-4:] if len(value) > 8 else "****"


def mask_address(value: str) -> str:
    return value[:6] + "****"


def mask_value(key: str, value: Any) -> Any:
    """A value under ``key`` with names, ID numbers, addresses and phone numbers masked, recursively."""
    if isinstance(value, str):
        if key in NAME_KEYS:
            return mask_name(value)
        if key in ID_KEYS:
            return mask_id_number(value)
        if key in ADDRESS_KEYS:
            return mask_address(value)
        masked = mask_phone(value)
        # A landline or a number abroad stored as E.164 has none of the forms mask_phone finds in text.
        return mask_number(value) if masked == value and _E164.fullmatch(value) else masked
    if isinstance(value, dict):
        return {k: mask_value(k, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_value(key, v) for v in value]
    return value


def mask_document(data: dict[str, Any]) -> dict[str, Any]:
    return {k: mask_value(k, v) for k, v in data.items()}
