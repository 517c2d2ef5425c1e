"""From platform events to webhook deliveries: one pending delivery per subscribed endpoint.

Runs as a consumer handler, inside the consumer's transaction (its inbox row makes a redelivered event a no-op)
and writes rows only: the HTTP calls happen later in :mod:`notify_svc.webhooks.delivery`, so a slow partner never
holds the consumer. The unique (endpoint, event) pair makes a second fan-out of one event harmless as well.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from notify_svc.models import WebhookDelivery, WebhookEndpoint
from shared.db.base import dialect_insert, utcnow
from shared.events.envelope import CloudEvent
from shared.ids import new_id

#: Event types integration partners may subscribe to (an OEM follows its dealers' survey scores and complaints).
PARTNER_EVENT_TYPES: tuple[str, ...] = (
    "customer.vehicle.delivered.v1",
    "customer.visit.completed.v1",
    "followup.task.completed.v1",
    "followup.task.escalated.v1",
    "notify.message.delivered.v1",
    "notify.message.failed.v1",
    "survey.response.answered.v1",
    "survey.response.low_score.v1",
    "survey.complaint.opened.v1",
    "survey.complaint.escalated.v1",
    "survey.complaint.resolved.v1",
    "survey.complaint.closed.v1",
)
#: The type of the test delivery ``POST /webhooks/endpoints/{id}/ping`` queues (never subscribed to).
PING_EVENT_TYPE = "webhook.ping"


def wants(store_ids: list[str], event_types: list[str], event: CloudEvent, *, owned: bool = False) -> bool:
    """Whether an endpoint with these filters receives ``event``: its type is subscribed and its store is one of
    the endpoint's. An admin's endpoint without stores takes the whole dealer group's events; an integration
    key's (``owned``) always lists its stores (the key's, at the least), so one without stores takes nothing
    rather than events of stores outside the key."""
    if event.type not in event_types:
        return False
    if not store_ids:
        return not owned
    return event.storeid in store_ids


def delivery_row(tenant_id: uuid.UUID, endpoint_id: uuid.UUID, event: CloudEvent) -> dict[str, Any]:
    """The values of a new pending delivery of ``event`` (the CloudEvent as JSON is the request body)."""
    now = utcnow()
    return {"id": new_id(), "tenant_id": tenant_id, "endpoint_id": endpoint_id, "event_id": event.id,
            "event_type": event.type, "payload": event.model_dump(mode="json"), "status": "pending",
            "attempts": 0, "next_attempt_at": now, "created_at": now, "updated_at": now}


async def fan_out(session: AsyncSession, event: CloudEvent) -> None:
    """Queue ``event`` for every active endpoint of its dealer group that subscribes to it."""
    if not event.tenantid:
        return
    try:
        tenant_id = uuid.UUID(event.tenantid)
    except ValueError:
        return
    endpoints = (await session.execute(
        sa.select(WebhookEndpoint.id, WebhookEndpoint.store_ids, WebhookEndpoint.event_types,
                  WebhookEndpoint.api_key_id)
        .where(WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.active.is_(True)))).all()
    rows = [delivery_row(tenant_id, e.id, event) for e in endpoints
            if wants(e.store_ids, e.event_types, event, owned=e.api_key_id is not None)]
    if rows:
        insert = dialect_insert(session)
        await session.execute(insert(WebhookDelivery).values(rows).on_conflict_do_nothing())
