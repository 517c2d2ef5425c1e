"""What of a survey answer or a complaint is personal data beyond the complainant's name and phone: phone numbers
and names customers and staff write in free text. Masked for readers without personal-data access (roles without
it, integration keys without ``pii:read``), in the API and the exports alike."""

from __future__ import annotations

from typing import Any

from shared.pii import mask_document, mask_phone, mask_value

#: A complaint's free text, where staff may write down a phone number: masked for readers without personal data.
FREE_TEXT = ("description", "demands", "chosen_remedy", "root_cause", "action_taken")
#: More of it the API shows (not exported): the investigation and the verdict on the staff involved.
STAFF_TEXT = ("investigation", "staff_verdict")


def masked_text(c: Any, pii: bool) -> dict[str, str | None]:
    """The complaint's free text (``FREE_TEXT`` of a model or row), phone numbers masked unless the reader sees
    personal data."""
    text = {f: getattr(c, f) for f in FREE_TEXT}
    return text if pii else {f: mask_phone(v) if v else v for f, v in text.items()}


def mask_complaint(body: Any) -> None:
    """A complaint as the API shows it (its free text, the remedies offered), masked in place."""
    for field in (*FREE_TEXT, *STAFF_TEXT):
        value = getattr(body, field)
        setattr(body, field, mask_phone(value) if value else value)
    body.remedies = mask_value("remedies", body.remedies)


def mask_entry(entry: Any) -> None:
    """A complaint log entry (its note and the data it recorded, remedies included), masked in place."""
    entry.body = mask_phone(entry.body) if entry.body else entry.body
    entry.data = mask_document(entry.data)


def mask_response(body: Any) -> None:
    """A survey answer: the comment and the text answers, masked in place (scores are no personal data)."""
    body.comment = mask_phone(body.comment) if body.comment else body.comment
    body.answers = mask_document(body.answers)
    body.review_note = mask_phone(body.review_note) if body.review_note else body.review_note
