"""Scopes an integration key may hold: which resources, read or write (stores are the key's own list).

One list for every service: customer_svc refuses a key asking for anything else, and each route names the scope
that admits an integration (``require_roles(..., scope=...)``).
"""

from __future__ import annotations

SCOPES: dict[str, str] = {
    "customers:read": "Read customers of the key's stores.",
    "customers:write": "Create and update customers (REST upserts by external id).",
    "vehicles:read": "Read vehicles.",
    "vehicles:write": "Register, update and deliver vehicles.",
    "visits:read": "Read service visits.",
    "visits:write": "Record service visits (repair orders).",
    "imports:write": "Upload bulk import files and read their reports.",
    "pii:read": "See phone numbers, ID numbers and addresses unmasked.",
    "appointments:read": "Read service appointments.",
    "appointments:write": "Book and change service appointments.",
    "followups:read": "Read and export follow-up completion.",
    "surveys:read": "Read and export survey results and satisfaction reports.",
    "complaints:read": "Read and export complaint cases.",
    "webhooks:manage": "Subscribe the key's own webhook endpoints, list their deliveries and replay them.",
}

#: The read scope an event's data needs, by the longest type prefix that matches (first in this order): a key sees
#: an event (a customer's timeline, a webhook) only with the scope that reads the same data through the API.
#: Messages and their consent are follow-up touches.
EVENT_READ_SCOPES: tuple[tuple[str, str], ...] = (
    ("customer.vehicle.", "vehicles:read"),
    ("customer.visit.", "visits:read"),
    ("customer.", "customers:read"),
    ("followup.appointment.", "appointments:read"),
    ("followup.", "followups:read"),
    ("notify.", "followups:read"),
    ("survey.complaint.", "complaints:read"),
    ("survey.", "surveys:read"),
)


def read_scope(event_type: str) -> str | None:
    """The scope reading ``event_type``'s data needs (None: no rule covers it, so no key reads it)."""
    return next((scope for prefix, scope in EVENT_READ_SCOPES if event_type.startswith(prefix)), None)


def readable_prefixes(scopes: frozenset[str] | set[str]) -> list[tuple[str, list[str]]]:
    """The event types ``scopes`` read, as (prefix, more specific prefixes under it that they do not read)."""
    return [(prefix, [other for other, needed in EVENT_READ_SCOPES
                      if other != prefix and other.startswith(prefix) and needed not in scopes])
            for prefix, scope in EVENT_READ_SCOPES if scope in scopes]
