"""What of a complaint is personal data beyond its complainant's name and phone: phone numbers staff write down in
its free text."""

from __future__ import annotations

from typing import Any

from shared.pii import mask_phone

#: A complaint's free text, where staff may write down a phone number: masked for readers without personal data.
FREE_TEXT = ("description", "demands", "chosen_remedy", "root_cause", "action_taken")


def masked_text(c: Any, pii: bool) -> dict[str, str | None]:
    """The complaint's free text (``FREE_TEXT`` of a model or row), phone numbers masked unless the reader sees
    personal data."""
    text = {f: getattr(c, f) for f in FREE_TEXT}
    return text if pii else {f: mask_phone(v) if v else v for f, v in text.items()}
