"""Accepting a message request: one row per (dealer group, idempotency key), whatever is redelivered.

The request's own time limits come along (``not_before``, ``expires_at``); the policy is checked later, at send
time, because consent, quiet hours and budgets are about the moment of sending, not of asking.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from notify_svc.models import Message
from shared.db.base import dialect_insert, utcnow
from shared.ids import new_id


@dataclass
class Request:
    tenant_id: uuid.UUID
    store_id: uuid.UUID
    idempotency_key: str
    source: str
    template_key: str
    purpose: str
    channels: list[str]
    customer_id: uuid.UUID | None = None
    staff_id: uuid.UUID | None = None
    vehicle_id: uuid.UUID | None = None
    request_id: uuid.UUID | None = None
    rule_key: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    not_before: datetime | None = None
    expires_at: datetime | None = None
    avoid_holidays: bool = False
    bulk_job_id: uuid.UUID | None = None

    def row(self, now: datetime) -> dict[str, Any]:
        not_before = self.not_before or now
        return dict(id=new_id(), tenant_id=self.tenant_id, store_id=self.store_id,
                    idempotency_key=self.idempotency_key, request_id=self.request_id, source=self.source,
                    customer_id=self.customer_id, staff_id=self.staff_id, vehicle_id=self.vehicle_id,
                    rule_key=self.rule_key, template_key=self.template_key, purpose=self.purpose,
                    channels=list(self.channels), failed_channels=[], variables=self.variables, status="queued",
                    not_before=not_before, expires_at=self.expires_at, avoid_holidays=self.avoid_holidays,
                    next_attempt_at=not_before, attempts=0, bulk_job_id=self.bulk_job_id, created_at=now,
                    updated_at=now)


async def accept(session: AsyncSession, requests: list[Request], now: datetime | None = None) -> list[uuid.UUID]:
    """Insert the requests not seen before; returns the ids of the new messages (repeats are skipped)."""
    if not requests:
        return []
    now = now or utcnow()
    # One statement shape with the rows as parameters: compiled once and cached, not rebuilt per request (the
    # intake runs once per command, thousands of times a second).
    stmt = (dialect_insert(session)(Message.__table__)
            .on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
            .returning(Message.__table__.c.id))
    rows = [r.row(now) for r in requests]
    if len(rows) == 1:
        return list((await session.scalars(stmt, rows[0])).all())
    return list((await session.scalars(stmt, rows)).all())
