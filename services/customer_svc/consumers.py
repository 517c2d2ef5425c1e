"""Events customer_svc consumes: every event about a customer feeds that customer's timeline."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from customer_svc.models import TimelineEntry
from shared.events.envelope import CloudEvent
from shared.messaging.consumer import Subscription

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime


async def record_timeline(session: AsyncSession, event: CloudEvent) -> None:
    """Events without a ``customer_id`` in their data (stores, staff) are not about a customer: skipped."""
    customer_id = event.data.get("customer_id")
    if not customer_id or not event.tenantid:
        return
    try:
        customer = uuid.UUID(str(customer_id))
        tenant = uuid.UUID(event.tenantid)
        store = uuid.UUID(event.storeid) if event.storeid else None
    except ValueError:
        return
    session.add(TimelineEntry(id=event.id, tenant_id=tenant, store_id=store, customer_id=customer,
                              event_type=event.type, source=event.source, occurred_at=event.time, data=event.data))


def subscriptions(runtime: ServiceRuntime) -> list[Subscription]:  # noqa: ARG001
    return [Subscription("timeline", ("#",), record_timeline)]
