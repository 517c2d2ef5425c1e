"""Webhook endpoints and their deliveries, per dealer group: create, change, rotate, ping, list and replay.

Endpoints belong to the dealer group (a store filter narrows which events they get), so every query is scoped
by the caller's tenant and anything of another group is "not found". A partner calling with its integration key
(scope ``webhooks:manage``) owns what it creates (``api_key_id``) and sees only that: its own endpoints, their
deliveries and replays; anything else is "not found" as well. A key's endpoint is confined to the key's stores:
its store filter must name stores of the key, and "empty" stores the key's stores explicitly (as the token lists
them when the endpoint is saved); admins may narrow that filter, never widen it. Targets are
SSRF-checked before the transaction opens (DNS can be slow). Secrets leave only in the create and rotate answers
and never enter the audit log.

A token outlives a change of its key by up to 15 minutes, so a partner's create and change also check the key's
latest state notify_svc heard of (:mod:`notify_svc.webhooks.keys`): revoked, or without ``webhooks:manage``, is
403; its stores are the token's that the key still has. An endpoint whose key is revoked, lacks the scope or has
none of the endpoint's stores left cannot be re-activated by staff either.

``WebhookEndpoint`` has no version column: its ETag is the microsecond of its last change (``updated_at``),
read and compared under a row lock, so a stale ``If-Match`` still answers 412.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import defer
from sqlalchemy.orm.attributes import flag_modified

from notify_svc.deps import Ctx
from notify_svc.models import ApiKeyView, StoreView, WebhookDelivery, WebhookEndpoint
from notify_svc.webhooks.fanout import EVENT_SCOPES, PING_EVENT_TYPE, delivery_row, key_allows, masked_payload
from notify_svc.webhooks.keys import PII_SCOPE, SCOPE, known_key, remember_token, usable
from notify_svc.webhooks.schemas import EndpointCreate, EndpointUpdate
from notify_svc.webhooks.signing import new_secret
from notify_svc.webhooks.ssrf import check_target
from shared.audit import snapshot
from shared.db.base import utcnow
from shared.errors import BusinessRuleViolation, Forbidden, InvalidField, NotFound, reject_nulls
from shared.events.envelope import CloudEvent
from shared.http.etag import check_if_match, etag_for
from shared.http.pagination import PageParams, paginate
from shared.ids import new_id

SOURCE = "notify_svc"
_HIDDEN_ENDPOINT = frozenset({"secret"})
_HIDDEN_DELIVERY = frozenset({"payload"})


def version_of(endpoint: WebhookEndpoint) -> int:
    """The endpoint's concurrency token: its last change to the microsecond."""
    return int(endpoint.updated_at.timestamp() * 1_000_000)


def etag_of(endpoint: WebhookEndpoint) -> str:
    return etag_for(version_of(endpoint))


def _owner(ctx: Ctx) -> uuid.UUID | None:
    """The integration key calling (it sees its own endpoints only), None for staff (they see the group's)."""
    return ctx.principal.subject if ctx.principal.kind == "integration" else None


def _mine(stmt: Any, ctx: Ctx) -> Any:
    """``stmt`` on endpoints narrowed to the caller's: its dealer group, and its key's own for a partner."""
    stmt = stmt.where(WebhookEndpoint.tenant_id == ctx.principal.tenant_id)
    owner = _owner(ctx)
    return stmt if owner is None else stmt.where(WebhookEndpoint.api_key_id == owner)


def _allow_private(ctx: Ctx) -> bool:
    return bool(ctx.runtime.settings.webhook_allow_private)


async def _calling_key(ctx: Ctx) -> ApiKeyView | None:
    """A partner's key as notify_svc knows it now (written from the token when it never changed), 403 when it was
    revoked or lost ``webhooks:manage`` since the token was issued; None for staff."""
    if _owner(ctx) is None:
        return None
    key = await remember_token(ctx.session, ctx.principal)
    if key.revoked:
        raise Forbidden("Your integration key was revoked: its tokens no longer manage webhooks.")
    if SCOPE not in key.scopes:
        raise Forbidden(f"Your integration key no longer holds the `{SCOPE}` scope.")
    return key


def _key_stores(ctx: Ctx, key: ApiKeyView | None) -> list[uuid.UUID]:
    """The stores a partner may filter on: its token's that its key still has (a store taken from the key after
    the token was issued is gone; one added comes with the next token)."""
    stores = ctx.principal.store_ids
    if key is not None:
        stores = stores & {uuid.UUID(s) for s in key.store_ids}
    return sorted(stores)


async def _check_stores(ctx: Ctx, store_ids: list[uuid.UUID], endpoint: WebhookEndpoint | None = None,
                        key: ApiKeyView | None = None) -> list[str]:
    """The ids as stored, each a store of the caller's dealer group (else 422 naming the entry). A partner's
    must be stores of its key (``key``: its latest known state), none meaning all of the key's; an admin changing
    a partner's endpoint may only narrow its stores (the endpoint's are the key's, follow_key keeps them so)."""
    if _owner(ctx) is not None:
        allowed = _key_stores(ctx, key)
        for i, store_id in enumerate(store_ids):
            if store_id not in allowed:
                raise InvalidField(f"body.store_ids.{i}", "not a store of your integration key")
        if not store_ids and not allowed:
            raise InvalidField("body.store_ids", "your integration key has none of your token's stores any more")
        return [str(s) for s in (store_ids or allowed)]
    if endpoint is not None and endpoint.api_key_id is not None:
        if not store_ids:
            raise InvalidField("body.store_ids", "a partner's endpoint keeps a store filter; name its stores")
        for i, store_id in enumerate(store_ids):
            if str(store_id) not in endpoint.store_ids:
                raise InvalidField(f"body.store_ids.{i}", "not a store of this partner endpoint (you may only "
                                                          "narrow a partner's store filter)")
        return [str(s) for s in store_ids]
    if not store_ids:
        return []
    known = set((await ctx.session.scalars(sa.select(StoreView.id).where(
        StoreView.tenant_id == ctx.principal.tenant_id, StoreView.id.in_(store_ids)))).all())
    for i, store_id in enumerate(store_ids):
        if store_id not in known:
            raise InvalidField(f"body.store_ids.{i}", "not a store of your dealer group")
    return [str(s) for s in store_ids]


def _check_event_types(event_types: list[str], scopes: set[str] | None, whose: str = "your integration key") -> None:
    """A key's endpoint subscribes only to event types its scopes cover (422 naming the entry); ``scopes`` None:
    staff's endpoint, or a key notify_svc knows nothing of yet (its token was checked when the endpoint was saved)."""
    if scopes is None:
        return
    for i, event_type in enumerate(event_types):
        if not key_allows(event_type, scopes):
            raise InvalidField(f"body.event_types.{i}", f"needs the `{EVENT_SCOPES[event_type]}` scope, which "
                                                        f"{whose} does not hold")


async def _key_scopes(ctx: Ctx, endpoint: WebhookEndpoint | None, key: ApiKeyView | None) -> set[str] | None:
    """The scopes a key's endpoint may subscribe with: a partner's, those of both its token and its key as last
    heard of; for staff changing a partner's endpoint, the key's as last heard of (None when unknown or staff's)."""
    if key is not None:
        return set(ctx.principal.scopes) & set(key.scopes)
    if endpoint is not None and endpoint.api_key_id is not None:
        known = await known_key(ctx.session, endpoint.tenant_id, endpoint.api_key_id)
        return set(known.scopes) if known is not None and known.revoked is not None else None
    return None


async def _endpoint(ctx: Ctx, endpoint_id: uuid.UUID, *, lock: bool = False) -> WebhookEndpoint:
    """One of the caller's endpoints (see :func:`_mine`), else 404: another key's is as unknown as a foreign one."""
    stmt = _mine(sa.select(WebhookEndpoint), ctx).where(WebhookEndpoint.id == endpoint_id)
    found = await ctx.session.scalar(stmt.with_for_update() if lock else stmt)
    if found is None:
        raise NotFound("Webhook endpoint not found.")
    return found


def _audit(ctx: Ctx, action: str, record_type: str, record_id: uuid.UUID, before: dict[str, Any] | None = None,
           after: dict[str, Any] | None = None) -> None:
    ctx.audit.record(ctx.session, ctx.principal, action, record_type, record_id, tenant_id=ctx.principal.tenant_id,
                     store_id=None, before=before, after=after)


# --- endpoints ----------------------------------------------------------------------------------------------


async def create_endpoint(ctx: Ctx, body: EndpointCreate) -> WebhookEndpoint:
    """A new active endpoint with a fresh secret (the caller reads it once, from this answer)."""
    await check_target(body.url, _allow_private(ctx))
    async with ctx.session.begin():
        key = await _calling_key(ctx)
        _check_event_types(list(body.event_types), await _key_scopes(ctx, None, key))
        endpoint = WebhookEndpoint(tenant_id=ctx.principal.tenant_id, api_key_id=_owner(ctx),
                                   partner=body.partner, url=body.url,
                                   event_types=list(body.event_types),
                                   store_ids=await _check_stores(ctx, body.store_ids, key=key),
                                   secret=new_secret(), active=True)
        ctx.session.add(endpoint)
        await ctx.session.flush()
        _audit(ctx, "create", "webhook_endpoint", endpoint.id, after=snapshot(endpoint, _HIDDEN_ENDPOINT))
    return endpoint


async def list_endpoints(ctx: Ctx, params: PageParams, active: bool | None) -> list[WebhookEndpoint]:
    stmt = _mine(sa.select(WebhookEndpoint), ctx)
    if active is not None:
        stmt = stmt.where(WebhookEndpoint.active.is_(active))
    async with ctx.session.begin():
        await _calling_key(ctx)  # a revoked key's token no longer reads its endpoints' URLs
        return list((await ctx.session.scalars(paginate(stmt, WebhookEndpoint.id, params))).all())


async def get_endpoint(ctx: Ctx, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    async with ctx.session.begin():
        await _calling_key(ctx)
        return await _endpoint(ctx, endpoint_id)


async def update_endpoint(ctx: Ctx, endpoint_id: uuid.UUID, body: EndpointUpdate,
                          if_match: str | None) -> WebhookEndpoint:
    """Change the target, filters, name or state (If-Match required). A new URL is checked like at creation."""
    changes = body.model_dump(exclude_unset=True)
    reject_nulls(changes)
    if "url" in changes:
        await check_target(changes["url"], _allow_private(ctx))
    async with ctx.session.begin():
        key = await _calling_key(ctx)
        endpoint = await _endpoint(ctx, endpoint_id, lock=True)
        check_if_match(if_match, version_of(endpoint))
        if "store_ids" in changes:
            changes["store_ids"] = await _check_stores(ctx, body.store_ids or [], endpoint, key)
        if "event_types" in changes:
            _check_event_types(changes["event_types"], await _key_scopes(ctx, endpoint, key),
                               "your integration key" if key is not None else "the endpoint's integration key")
        if changes.get("active"):
            await _check_activation(ctx, endpoint, changes.get("store_ids", endpoint.store_ids))
        before = snapshot(endpoint, _HIDDEN_ENDPOINT)
        for name, value in changes.items():
            setattr(endpoint, name, value)
        if "url" in changes or changes.get("active"):
            _warm(endpoint)  # a new target, or the partner says it is back: try it at once
        if changes:
            endpoint.updated_at = utcnow()
            await ctx.session.flush()
            _audit(ctx, "update", "webhook_endpoint", endpoint.id, before, snapshot(endpoint, _HIDDEN_ENDPOINT))
    return endpoint


def _warm(endpoint: WebhookEndpoint) -> None:
    """End the endpoint's cooling (see :mod:`notify_svc.webhooks.delivery`): someone says it works again. Not a
    change of the endpoint: its ``updated_at`` (ETag) stays unless the caller changes it too."""
    if endpoint.cool_until is not None:
        endpoint.cool_until = None
        flag_modified(endpoint, "updated_at")  # written as it is, so its onupdate does not move it


async def _check_activation(ctx: Ctx, endpoint: WebhookEndpoint, store_ids: list[str]) -> None:
    """A key's endpoint turned on again must still be the key's to have (what follow_key stopped stays stopped:
    revoked, without ``webhooks:manage``, or no store left), else 422 on ``active``. The partner itself was
    refused before (403) when its key is revoked or lacks the scope. No lock on the key's row: the endpoint's
    own lock orders this change with follow_key's, which re-reads the endpoint once this one commits."""
    if endpoint.api_key_id is None:
        return
    key = await known_key(ctx.session, endpoint.tenant_id, endpoint.api_key_id)
    if key is not None and not usable(key):
        raise InvalidField("body.active", "the endpoint's integration key was revoked or no longer holds "
                                          f"`{SCOPE}`; it cannot be re-activated")
    if not store_ids:
        raise InvalidField("body.active", "the endpoint has no store of its integration key left; name its stores "
                                          "in `store_ids`")


async def rotate_secret(ctx: Ctx, endpoint_id: uuid.UUID, if_match: str | None,
                        overlap_hours: int = 24) -> WebhookEndpoint:
    """A new secret (If-Match required): every request from now on, retries included, is signed with it, and
    with the one it replaces for ``overlap_hours`` (only two secrets at a time: rotating during an overlap ends
    the oldest)."""
    async with ctx.session.begin():
        await _calling_key(ctx)
        endpoint = await _endpoint(ctx, endpoint_id, lock=True)
        check_if_match(if_match, version_of(endpoint))
        now = utcnow()
        endpoint.previous_secret = endpoint.secret if overlap_hours else None
        endpoint.previous_secret_until = now + timedelta(hours=overlap_hours) if overlap_hours else None
        endpoint.secret = new_secret()
        endpoint.updated_at = now
        await ctx.session.flush()
        _audit(ctx, "rotate_secret", "webhook_endpoint", endpoint.id, after={"overlap_hours": overlap_hours})
    return endpoint


async def delete_endpoint(ctx: Ctx, endpoint_id: uuid.UUID, if_match: str | None) -> None:
    """Remove the endpoint and its delivery history (If-Match checked when sent)."""
    async with ctx.session.begin():
        await _calling_key(ctx)
        endpoint = await _endpoint(ctx, endpoint_id, lock=True)
        if if_match is not None:
            check_if_match(if_match, version_of(endpoint))
        before = snapshot(endpoint, _HIDDEN_ENDPOINT)
        await ctx.session.execute(sa.delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id))
        _audit(ctx, "delete", "webhook_endpoint", endpoint_id, before=before)


async def ping(ctx: Ctx, endpoint_id: uuid.UUID) -> WebhookDelivery:
    """Queue a ``webhook.ping`` delivery, signed and retried like any other, so a partner can test their side."""
    async with ctx.session.begin():
        await _calling_key(ctx)
        endpoint = await _endpoint(ctx, endpoint_id, lock=True)
        if not endpoint.active:
            raise BusinessRuleViolation("The endpoint is disabled: set `active` to true before pinging it.")
        now = utcnow()
        event = CloudEvent(id=new_id(), source=SOURCE, type=PING_EVENT_TYPE, subject=str(endpoint.id), time=now,
                           tenantid=str(endpoint.tenant_id),
                           data={"endpoint_id": str(endpoint.id), "partner": endpoint.partner})
        delivery = WebhookDelivery(**delivery_row(endpoint.tenant_id, endpoint.id, event))
        ctx.session.add(delivery)
        _warm(endpoint)
        await ctx.session.flush()
        _audit(ctx, "ping", "webhook_endpoint", endpoint.id, after={"delivery_id": delivery.id})
    return delivery


# --- deliveries ---------------------------------------------------------------------------------------------


async def list_deliveries(ctx: Ctx, params: PageParams, endpoint_id: uuid.UUID | None,
                          status: str | None) -> list[WebhookDelivery]:
    """Deliveries of the group (a partner: of its own endpoints), or of one endpoint, newest first, without their
    payloads."""
    stmt = (_deliveries(ctx, sa.select(WebhookDelivery))
            .options(defer(WebhookDelivery.payload, raiseload=True)))
    async with ctx.session.begin():
        key = await _calling_key(ctx)
        if key is not None:
            stmt = _readable(ctx, key, stmt)
        if endpoint_id is not None:
            await _endpoint(ctx, endpoint_id)
            stmt = stmt.where(WebhookDelivery.endpoint_id == endpoint_id)
        if status is not None:
            stmt = stmt.where(WebhookDelivery.status == status)
        return list((await ctx.session.scalars(paginate(stmt, WebhookDelivery.id, params))).all())


def _deliveries(ctx: Ctx, stmt: Any) -> Any:
    """``stmt`` on deliveries narrowed to the caller's: its group's, and to its key's endpoints for a partner."""
    stmt = stmt.where(WebhookDelivery.tenant_id == ctx.principal.tenant_id)
    if _owner(ctx) is None:
        return stmt
    return stmt.where(WebhookDelivery.endpoint_id.in_(_mine(sa.select(WebhookEndpoint.id), ctx)))


def _readable(ctx: Ctx, key: ApiKeyView, stmt: Any) -> Any:
    """``stmt`` on deliveries narrowed to what a partner may still read (``key``: its latest known state): events
    of the stores its key still has (or of none, as pings), of the types whose read scope both its token and its
    key hold. A store or scope taken from the key takes those deliveries' listing, payloads and replays with it."""
    scopes = ctx.principal.scopes & set(key.scopes)
    denied = sorted(t for t in EVENT_SCOPES if not key_allows(t, scopes))
    store = WebhookDelivery.payload["storeid"].as_string()
    stmt = stmt.where(sa.or_(store.is_(None), store.in_([str(s) for s in _key_stores(ctx, key)])))
    return stmt.where(WebhookDelivery.event_type.not_in(denied)) if denied else stmt


async def _delivery(ctx: Ctx, delivery_id: uuid.UUID, key: ApiKeyView | None) -> WebhookDelivery:
    """One of the caller's deliveries, else 404; for a partner (``key``: its latest known state) only one it may
    still read (see :func:`_readable`)."""
    stmt = _deliveries(ctx, sa.select(WebhookDelivery)).where(WebhookDelivery.id == delivery_id)
    if key is not None:
        stmt = _readable(ctx, key, stmt)
    found = await ctx.session.scalar(stmt)
    if found is None:
        raise NotFound("Webhook delivery not found.")
    return found


async def get_delivery(ctx: Ctx, delivery_id: uuid.UUID) -> tuple[WebhookDelivery, dict[str, Any]]:
    """The delivery and its payload as the caller may read it: masked as it was for the endpoint's key without
    ``pii:read`` (and again if the key lost it since), and for a reader without it."""
    async with ctx.session.begin():
        key = await _calling_key(ctx)
        delivery = await _delivery(ctx, delivery_id, key)
        endpoint = await ctx.session.get(WebhookEndpoint, delivery.endpoint_id)
        known = await known_key(ctx.session, endpoint.tenant_id, endpoint.api_key_id) \
            if endpoint is not None and endpoint.api_key_id is not None else None
        pii = ctx.principal.sees_pii and (key is None or PII_SCOPE in key.scopes) and (
            endpoint is None or endpoint.api_key_id is None or (known is not None and PII_SCOPE in known.scopes))
        return delivery, masked_payload(delivery.payload, pii)


async def replay(ctx: Ctx, delivery_id: uuid.UUID) -> WebhookDelivery:
    """Send a delivered or failed delivery again: back to pending, attempts from zero, same ``webhook-id`` (the
    partner dedupes on it). A pending one is already queued and is answered as it is (a repeat is harmless)."""
    async with ctx.session.begin():
        delivery = await _delivery(ctx, delivery_id, await _calling_key(ctx))
        if delivery.status == "pending":
            return delivery
        # The endpoint's row first, then the delivery's: the order the deliverer records outcomes in.
        endpoint = await _endpoint(ctx, delivery.endpoint_id, lock=True)
        await ctx.session.refresh(delivery, with_for_update=True)
        if delivery.status == "pending":
            return delivery
        if not endpoint.active:
            raise BusinessRuleViolation("The endpoint is disabled: set `active` to true before replaying to it.")
        _warm(endpoint)
        before = snapshot(delivery, _HIDDEN_DELIVERY)
        now = utcnow()
        delivery.status, delivery.attempts, delivery.next_attempt_at = "pending", 0, now
        delivery.last_status_code = delivery.last_error = delivery.delivered_at = None
        delivery.updated_at = now
        await ctx.session.flush()
        _audit(ctx, "replay", "webhook_delivery", delivery.id, before, snapshot(delivery, _HIDDEN_DELIVERY))
    return delivery
