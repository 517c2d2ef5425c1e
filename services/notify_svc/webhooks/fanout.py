"""From platform events to webhook deliveries: one pending delivery per subscribed endpoint.

Runs as a consumer handler, inside the consumer's transaction (its inbox row makes a redelivered event a no-op)
and writes rows only: the HTTP calls happen later in :mod:`notify_svc.webhooks.delivery`, so a slow partner never
holds the consumer. The unique (endpoint, event) pair makes a second fan-out of one event harmless as well.

An integration key's endpoint gets nothing once notify_svc knows the key was revoked or lost ``webhooks:manage``,
and only events of the key's current stores (a race with :func:`~notify_svc.webhooks.keys.follow_key`, or an
endpoint saved with a token older than the change, must not leak another store's events). Free text that may hold
a customer's phone number is masked for a key without ``pii:read``, as the exports mask it; a key notify_svc has
no state of yet (an endpoint older than that state) counts as one without.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from notify_svc.models import ApiKeyView, WebhookDelivery, WebhookEndpoint
from notify_svc.webhooks.keys import PII_SCOPE, refusal
from shared.db.base import dialect_insert, utcnow
from shared.events.envelope import CloudEvent
from shared.ids import new_id
from shared.pii import mask_phone

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
#: Free-text fields (paths into ``data``) a customer or staff member may have typed a phone number into: masked for
#: a key without ``pii:read`` (followup_svc's completion export masks the same summary).
FREE_TEXT: dict[str, tuple[tuple[str, ...], ...]] = {
    "survey.response.low_score.v1": (("comment",),),
    "followup.task.completed.v1": (("outcome", "summary"),),
}
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


def _mask_at(data: dict[str, Any], path: tuple[str, ...]) -> None:
    *parents, leaf = path
    for name in parents:
        data = data.get(name)  # type: ignore[assignment]
        if not isinstance(data, dict):
            return
    if isinstance(data.get(leaf), str):
        data[leaf] = mask_phone(data[leaf])


def partner_payload(event: CloudEvent, pii: bool) -> dict[str, Any]:
    """The request body: the CloudEvent as JSON, its free text's phone numbers masked unless ``pii``."""
    payload = event.model_dump(mode="json")
    if not pii:
        for path in FREE_TEXT.get(event.type, ()):
            _mask_at(payload["data"], path)
    return payload


def delivery_row(tenant_id: uuid.UUID, endpoint_id: uuid.UUID, event: CloudEvent, *,
                 pii: bool = True) -> dict[str, Any]:
    """The values of a new pending delivery of ``event`` (the CloudEvent as JSON is the request body; see
    :func:`partner_payload` for ``pii``)."""
    now = utcnow()
    return {"id": new_id(), "tenant_id": tenant_id, "endpoint_id": endpoint_id, "event_id": event.id,
            "event_type": event.type, "payload": partner_payload(event, pii), "status": "pending",
            "attempts": 0, "next_attempt_at": now, "created_at": now, "updated_at": now}


def _sees_pii(row: Any) -> bool:
    """Staff's endpoints get the event as it is; a key's only with ``pii:read`` among its known scopes."""
    return row.api_key_id is None or (row.revoked is not None and PII_SCOPE in row.scopes)


async def fan_out(session: AsyncSession, event: CloudEvent) -> None:
    """Queue ``event`` for every active endpoint of its dealer group that subscribes to it."""
    if not event.tenantid:
        return
    try:
        tenant_id = uuid.UUID(event.tenantid)
    except ValueError:
        return
    e, k = WebhookEndpoint, ApiKeyView
    endpoints = (await session.execute(
        sa.select(e.id, e.store_ids, e.event_types, e.api_key_id, k.revoked, k.scopes,
                  k.store_ids.label("key_store_ids"))
        .outerjoin(k, sa.and_(k.tenant_id == e.tenant_id, k.id == e.api_key_id))
        .where(e.tenant_id == tenant_id, e.active.is_(True)))).all()
    rows = [delivery_row(tenant_id, r.id, event, pii=_sees_pii(r)) for r in endpoints
            if wants(r.store_ids, r.event_types, event, owned=r.api_key_id is not None)
            and (r.api_key_id is None or refusal(r, r.key_store_ids, event.storeid) is None)]
    if rows:
        insert = dialect_insert(session)
        await session.execute(insert(WebhookDelivery).values(rows).on_conflict_do_nothing())
