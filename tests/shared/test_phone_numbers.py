"""``normalize_phone``'s fast path for mainland mobiles answers exactly as phonenumbers' full parse does."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from shared.validation import normalize_phone


def full_parse(value: str) -> str | None:
    """The slow path alone: phonenumbers' parse, validation and E.164 format."""
    raw = value.strip()
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    try:
        number = phonenumbers.parse(raw, "CN")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def ours(value: str) -> str | None:
    try:
        return normalize_phone(value)
    except ValueError:
        return None


def test_every_eleven_digit_shape_agrees_with_the_full_parse() -> None:
    rnd = random.Random(7)
    # Every 4-digit start of an 11-digit number beginning with 1 (allocated, unallocated and carrier-prefix ones),
    # each with random tails, in the formats people type.
    valid = 0
    for head in range(1000, 2000):
        for _ in range(3):
            digits = f"{head}{rnd.randrange(10 ** 7):07d}"
            for shown in (digits, f"+86{digits}", f"0086 {digits[:3]} {digits[3:7]} {digits[7:]}",
                          f"+86-{digits[:3]}-{digits[3:7]}-{digits[7:]}", f" {digits} "):
                expected = full_parse(shown)
                assert ours(shown) == expected, shown
                valid += expected is not None
    assert valid > 5_000  # the sample holds thousands of real mobiles, not only refusals


def test_a_mainland_mobile_is_answered_without_the_full_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    parse = phonenumbers.parse
    monkeypatch.setattr(phonenumbers, "parse", lambda raw, region: calls.append(raw) or parse(raw, region))
    assert normalize_phone("138 0013 8000") == normalize_phone("+86-138-0013-8000") == "+8613800138000"
    assert calls == []
    assert normalize_phone("010 8888 6666") == "+861088886666"
    assert calls == ["010 8888 6666"]  # a landline takes the full parse


@pytest.mark.parametrize("value", ["13800138000", "+8613800138000", "8613800138000", "1380013800", "138001380001",
                                   "１３８００１３８０００", "(138) 0013 8000", "010 8888 6666", "+1 202 555 0143",
                                   "17951380013800", "+86 179 1380 0138"])
def test_other_formats_take_the_full_parse(value: str) -> None:
    assert ours(value) == full_parse(value)


def test_numbers_stored_as_e164_are_masked_in_documents_whatever_their_kind() -> None:
    """A landline or a Hong Kong number in an event (what the timeline shows) is masked like a mobile."""
    from shared.pii import mask_document

    masked = mask_document({"primary_phone": "+862012345678", "phones": ["+85291234567", "+8613800138000"],
                            "customer_id": "01a251d0-52a6-74eb-a0c2-31e074657bca", "mileage_km": 12345678})
    assert masked["primary_phone"] == "201****5678"
    assert masked["phones"] == ["+85****4567", "+86138****8000"]
    assert masked["customer_id"] == "01a251d0-52a6-74eb-a0c2-31e074657bca" and masked["mileage_km"] == 12345678
