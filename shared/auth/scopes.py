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
