"""A partner's endpoints follow its integration key: revoked, or without ``webhooks:manage`` any more, they stop;
stores taken from the key are taken from them (and one left with no store stops). Consumed from customer_svc's
``customer.api_key.changed.v1``, in the consumer's transaction."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from notify_svc.deps import audit_log
from notify_svc.models import WebhookEndpoint
from shared.db.base import utcnow
from shared.events.catalog.customer import ApiKeyChanged
from shared.events.envelope import CloudEvent

SCOPE = "webhooks:manage"


async def follow_key(session: AsyncSession, event: CloudEvent) -> None:
    data = ApiKeyChanged.model_validate(event.data)
    allowed = {str(s) for s in data.store_ids}
    usable = not data.revoked and SCOPE in data.scopes
    endpoints = await session.scalars(sa.select(WebhookEndpoint).where(
        WebhookEndpoint.api_key_id == data.api_key_id).with_for_update())
    for endpoint in endpoints:
        if event.tenantid != str(endpoint.tenant_id):
            continue
        before = {"active": endpoint.active, "store_ids": list(endpoint.store_ids)}
        stores = [s for s in endpoint.store_ids if s in allowed]
        active = endpoint.active and usable and bool(stores)
        if (active, stores) == (endpoint.active, endpoint.store_ids):
            continue
        endpoint.active, endpoint.store_ids, endpoint.updated_at = active, stores, utcnow()
        audit_log.record(session, None, "follow_key", "webhook_endpoint", endpoint.id, tenant_id=endpoint.tenant_id,
                         store_id=None, before=before, after={"active": active, "store_ids": stores,
                                                              "reason": "key revoked" if data.revoked else
                                                              "key changed"})
