"""Consent as notify_svc keeps it: per channel and purpose, each key with the time it changed at its source."""

from __future__ import annotations

from datetime import datetime

from notify_svc.models import CustomerView


def set_consent(row: CustomerView, key: str, granted: bool, at: datetime) -> bool:
    """Apply one consent change unless a newer one is already recorded; True when it changed the row."""
    times = dict(row.consent_at or {})
    known = times.get(key)
    if known is not None and datetime.fromisoformat(known) > at:
        return False
    times[key] = at.isoformat()
    row.consent_at = times
    if (row.consents or {}).get(key) == granted:
        return False
    row.consents = {**(row.consents or {}), key: granted}
    return True
