"""The facts every complaint event carries, appended to the outbox in the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from survey_svc.models import Complaint
from shared.events.catalog.survey import ComplaintFacts
from shared.messaging.outbox import Outbox


def publish(session: AsyncSession, outbox: Outbox, c: Complaint, event: type[ComplaintFacts], **extra: Any) -> None:
    data = event(complaint_id=c.id, number=c.number, customer_id=c.customer_id, vehicle_id=c.vehicle_id,
                 channel=c.channel, category=c.category, severity=c.severity,  # type: ignore[arg-type]
                 nature=c.nature, kind=c.kind, status=c.status, owner_id=c.owner_id,  # type: ignore[arg-type]
                 **extra)
    outbox.append(session, data, tenant_id=c.tenant_id, store_id=c.store_id)
