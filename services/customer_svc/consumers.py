"""Events customer_svc consumes: every event about a customer feeds that customer's timeline."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from customer_svc.customers.schemas import ConsentIn
from customer_svc.customers.service import full_snapshot, set_consent_on
from customer_svc.deps import audit_log
from customer_svc.models import Customer, TimelineEntry
from shared.events.catalog.notify import ConsentRevoked
from shared.events.envelope import CloudEvent
from shared.messaging.consumer import Handler, Subscription

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


def consent_revoker(runtime: ServiceRuntime) -> Handler:
    """The customer withdrew consent by replying to a message (notify_svc relays it): recorded on the customer like
    any consent change (event, audit entry with no staff actor), so every service stops that kind of contact."""

    async def handle(session: AsyncSession, event: CloudEvent) -> None:
        data = ConsentRevoked.model_validate(event.data)
        customer = await session.get(Customer, data.customer_id, with_for_update=True)
        if customer is None or str(customer.tenant_id) != event.tenantid:
            return
        before = full_snapshot(customer)
        change = ConsentIn(channel=data.channel, purpose=data.purpose, granted=False, source=data.source[:100])
        if set_consent_on(session, runtime.outbox, customer, change, None):
            customer.version += 1
            await session.flush()
            audit_log.record(session, None, "consent", "customer", customer.id, tenant_id=customer.tenant_id,
                             store_id=customer.store_id, before=before, after=full_snapshot(customer))

    return handle


def subscriptions(runtime: ServiceRuntime) -> list[Subscription]:
    return [Subscription("timeline", ("#",), record_timeline),
            Subscription("consent_revoked", (ConsentRevoked.type,), consent_revoker(runtime))]
