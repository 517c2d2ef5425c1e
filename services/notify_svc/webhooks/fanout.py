"""From platform events to webhook deliveries: one pending delivery per subscribed endpoint.

Runs as a consumer handler, inside the consumer's transaction (its inbox row makes a redelivered event a no-op)
and writes rows only: the HTTP calls happen later in :mod:`notify_svc.webhooks.delivery`, so a slow partner never
holds the consumer. The unique (endpoint, event) pair makes a second fan-out of one event harmless as well.

An integration key's endpoint gets nothing once notify_svc knows the key was revoked or lost ``webhooks:manage``,
and only events of the key's current stores (a race with :func:`~notify_svc.webhooks.keys.follow_key`, or an
endpoint saved with a token older than the change, must not leak another store's events), and only event types
its current scopes cover (:data:`EVENT_SCOPES`). Free text that may hold a customer's phone number is masked for a
key without ``pii:read``, as the exports mask it; a key notify_svc has no state of yet (an endpoint older than that
state) counts as one without.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from notify_svc.models import ApiKeyView, WebhookDelivery, WebhookEndpoint
from notify_svc.webhooks.keys import PII_SCOPE, refusal
from shared.auth.scopes import read_scope
from shared.db.base import dialect_insert, utcnow
from shared.events.envelope import CloudEvent
from shared.ids import new_id
from shared.pii import mask_value

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
#: The read scope an integration key needs for each (``shared.auth.scopes.EVENT_READ_SCOPES``): the same data
#: through the export and read APIs needs that scope, so ``webhooks:manage`` alone must not open it.
EVENT_SCOPES: dict[str, str] = {t: read_scope(t) or "" for t in PARTNER_EVENT_TYPES}
#: Where in ``data`` a customer or staff member may have typed a phone number (free text, and everything under a
#: task's ``outcome``): masked for a key without ``pii:read``, as the exports and read APIs mask them.
FREE_TEXT: dict[str, tuple[tuple[str, ...], ...]] = {
    "survey.response.low_score.v1": (("comment",),),
    "followup.task.completed.v1": (("outcome",),),
    "followup.task.escalated.v1": (("reason",), ("title",)),
    "survey.complaint.escalated.v1": (("reason",), ("title",)),
    "survey.complaint.resolved.v1": (("remedy",),),
    "notify.message.failed.v1": (("reason",),),
    "customer.visit.completed.v1": (("declined_items",),),
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
    if leaf in data:
        data[leaf] = mask_value(leaf, data[leaf])  # texts, and lists and objects of them


def masked_payload(payload: dict[str, Any], pii: bool) -> dict[str, Any]:
    """A delivery's body (the CloudEvent as JSON) as a reader or receiver with (``pii``) or without personal data
    sees it: its free text's phone numbers masked unless ``pii``. Masking twice changes nothing, so a body queued
    for a key that has since lost ``pii:read`` is masked again when sent or read."""
    if pii or not isinstance(payload.get("data"), dict):
        return payload
    out = {**payload, "data": dict(payload["data"])}
    for path in FREE_TEXT.get(str(payload.get("type")), ()):
        _mask_at(out["data"], path)
    return out


def partner_payload(event: CloudEvent, pii: bool) -> dict[str, Any]:
    """The request body: the CloudEvent as JSON, its free text's phone numbers masked unless ``pii``."""
    return masked_payload(event.model_dump(mode="json"), pii)


def key_allows(event_type: str, scopes: Any) -> bool:
    """Whether an integration key with ``scopes`` may receive ``event_type`` (see :data:`EVENT_SCOPES`)."""
    needed = EVENT_SCOPES.get(event_type)
    return needed is None or needed in scopes


def delivery_row(tenant_id: uuid.UUID, endpoint_id: uuid.UUID, event: CloudEvent, *,
                 pii: bool = True) -> dict[str, Any]:
    """The values of a new pending delivery of ``event`` (the CloudEvent as JSON is the request body; see
    :func:`partner_payload` for ``pii``)."""
    now = utcnow()
    return {"id": new_id(), "tenant_id": tenant_id, "endpoint_id": endpoint_id, "event_id": event.id,
            "event_type": event.type, "payload": partner_payload(event, pii), "status": "pending",
            "attempts": 0, "next_attempt_at": now, "created_at": now, "updated_at": now}


def sees_pii(row: Any) -> bool:
    """Staff's endpoints get the event as it is; a key's only with ``pii:read`` among its known scopes (a row with
    the endpoint's ``api_key_id`` and its key's ``revoked`` and ``scopes``)."""
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
    rows = [delivery_row(tenant_id, r.id, event, pii=sees_pii(r)) for r in endpoints
            if wants(r.store_ids, r.event_types, event, owned=r.api_key_id is not None)
            and (r.api_key_id is None or (refusal(r, r.key_store_ids, event.storeid) is None
                                          and (r.revoked is None or key_allows(event.type, r.scopes))))]
    if rows:
        insert = dialect_insert(session)
        await session.execute(insert(WebhookDelivery).values(rows).on_conflict_do_nothing())
