"""A partner's endpoints follow its integration key: revoked, or without ``webhooks:manage`` any more, they stop;
stores taken from the key are taken from them (and one left with no store stops). Consumed from customer_svc's
``customer.api_key.changed.v1``, in the consumer's transaction.

The key's latest state is kept as well (:class:`~notify_svc.models.ApiKeyView`): a token issued before the change
stays valid for up to 15 minutes, and without it the partner could create or re-activate an endpoint with it, or
widen its stores again, and fan-out would deliver to a revoked key. Events may arrive out of order (retries,
concurrent consumers): the newest by event time wins, and a revocation is final (customer_svc never un-revokes).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from notify_svc.deps import audit_log
from notify_svc.models import ApiKeyView, WebhookEndpoint
from shared.auth.principal import Principal
from shared.db.base import dialect_insert, utcnow
from shared.events.catalog.customer import ApiKeyChanged
from shared.events.envelope import CloudEvent

SCOPE = "webhooks:manage"
PII_SCOPE = "pii:read"


def usable(key: Any) -> bool:
    """Whether the key (an :class:`ApiKeyView`, or a row with its ``revoked`` and ``scopes``) may still have
    webhooks: not revoked, and still holding ``webhooks:manage``."""
    return not key.revoked and SCOPE in key.scopes


def refusal(key: Any, key_store_ids: list[str], store_id: str | None) -> str | None:
    """Why the key's latest known state keeps an event of ``store_id`` from its endpoint, None if it may have it:
    at fan-out, and again when a delivery queued before the change is due. No state (``revoked`` null): the key is
    as its token said when the endpoint was saved, and the endpoint's own store filter is the key's."""
    if key.revoked is None:
        return None
    if not usable(key):
        return "integration key revoked or without webhooks:manage"
    if store_id is not None and store_id not in key_store_ids:
        return "the event's store is no longer one of the integration key's"
    return None


def _key(tenant_id: uuid.UUID, key_id: uuid.UUID) -> sa.Select[tuple[ApiKeyView]]:
    return sa.select(ApiKeyView).where(ApiKeyView.tenant_id == tenant_id, ApiKeyView.id == key_id)


async def known_key(session: AsyncSession, tenant_id: uuid.UUID, key_id: uuid.UUID) -> ApiKeyView | None:
    """The key's latest known state, None when it never changed (and never saved an endpoint)."""
    return await session.scalar(_key(tenant_id, key_id))


async def remember_token(session: AsyncSession, principal: Principal) -> ApiKeyView:
    """The key of an integration ``principal``, its row written from the token's claims when notify_svc has none
    yet (no event came: the key is as it was created, and the token says how). Fan-out then knows the key's scopes
    (``pii:read``) without a token at hand. The row stays share-locked to the end of the caller's transaction: a
    change of the key consumed meanwhile waits for the caller's endpoint to commit, and then stops or narrows it
    too."""
    await session.execute(dialect_insert(session)(ApiKeyView).values(
        tenant_id=principal.tenant_id, id=principal.subject, scopes=sorted(principal.scopes),
        store_ids=sorted(str(s) for s in principal.store_ids), revoked=False, changed_at=None,
        updated_at=utcnow()).on_conflict_do_nothing())
    return (await session.scalars(_key(principal.tenant_id, principal.subject).with_for_update(read=True))).one()


async def _record(session: AsyncSession, tenant_id: uuid.UUID, data: ApiKeyChanged, at: datetime) -> ApiKeyView:
    """Keep ``data`` as the key's state unless a newer event was kept already; a revocation stays."""
    await session.execute(dialect_insert(session)(ApiKeyView).values(
        tenant_id=tenant_id, id=data.api_key_id, scopes=[], store_ids=[], revoked=False, changed_at=None,
        updated_at=utcnow()).on_conflict_do_nothing())
    key = (await session.scalars(_key(tenant_id, data.api_key_id).with_for_update())).one()
    if key.changed_at is None or at >= key.changed_at:
        key.scopes, key.store_ids = sorted(data.scopes), sorted(str(s) for s in data.store_ids)
        key.changed_at = at
    key.revoked = key.revoked or data.revoked
    return key


async def follow_key(session: AsyncSession, event: CloudEvent) -> None:
    """Record the key's change, then bring its endpoints in line with the key's latest state (not the event's: a
    late, older event must not undo a newer one's narrowing)."""
    try:
        tenant_id = uuid.UUID(event.tenantid or "")
    except ValueError:
        return
    data = ApiKeyChanged.model_validate(event.data)
    key = await _record(session, tenant_id, data, event.time)
    allowed = set(key.store_ids)
    endpoints = await session.scalars(sa.select(WebhookEndpoint).where(
        WebhookEndpoint.api_key_id == data.api_key_id, WebhookEndpoint.tenant_id == key.tenant_id).with_for_update())
    for endpoint in endpoints:
        before = {"active": endpoint.active, "store_ids": list(endpoint.store_ids)}
        stores = [s for s in endpoint.store_ids if s in allowed]
        active = endpoint.active and usable(key) and bool(stores)
        if (active, stores) == (endpoint.active, endpoint.store_ids):
            continue
        endpoint.active, endpoint.store_ids, endpoint.updated_at = active, stores, utcnow()
        audit_log.record(session, None, "follow_key", "webhook_endpoint", endpoint.id, tenant_id=endpoint.tenant_id,
                         store_id=None, before=before, after={"active": active, "store_ids": stores,
                                                              "reason": "key revoked" if key.revoked else
                                                              "key changed"})
