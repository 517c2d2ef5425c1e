"""Stores: created and changed by admins; everyone reads the stores they work in."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from customer_svc.deps import Ctx
from customer_svc.models import Store
from customer_svc.stores.schemas import StoreCreate, StoreUpdate
from shared.audit import snapshot
from shared.errors import Duplicate, NotFound, reject_nulls
from shared.events.catalog.customer import StoreUpserted
from shared.http.etag import check_if_match


def store_event(store: Store) -> StoreUpserted:
    return StoreUpserted(store_id=store.id, code=store.code, name=store.name, timezone=store.timezone,
                         business_hours=store.business_hours, active=store.active)


async def get_store(ctx: Ctx, store_id: uuid.UUID, for_update: bool = False) -> Store:
    store = await ctx.session.get(Store, store_id, with_for_update=for_update)
    if store is None or store.tenant_id != ctx.principal.tenant_id or not ctx.principal.can_access_store(store.id):
        raise NotFound("Store not found.")
    return store


async def list_stores(ctx: Ctx) -> list[Store]:
    stmt = sa.select(Store).where(Store.tenant_id == ctx.principal.tenant_id).order_by(Store.code)
    if not ctx.principal.tenant_wide:
        stmt = stmt.where(Store.id.in_(ctx.principal.store_ids))
    return list((await ctx.session.scalars(stmt)).all())


async def create_store(ctx: Ctx, data: StoreCreate) -> Store:
    async with ctx.session.begin():
        exists = await ctx.session.scalar(sa.select(Store.id).where(
            Store.tenant_id == ctx.principal.tenant_id, Store.code == data.code))
        if exists:
            raise Duplicate(f"Store code {data.code} is taken.", existing_id=exists)
        store = Store(tenant_id=ctx.principal.tenant_id, **data.model_dump())
        ctx.session.add(store)
        await ctx.session.flush()
        ctx.audit.record(ctx.session, ctx.principal, "create", "store", store.id, tenant_id=store.tenant_id,
                         store_id=store.id, after=snapshot(store))
        ctx.outbox.append(ctx.session, store_event(store), tenant_id=store.tenant_id, store_id=store.id)
    return store


async def update_store(ctx: Ctx, store_id: uuid.UUID, data: StoreUpdate, if_match: str | None) -> Store:
    async with ctx.session.begin():
        store = await get_store(ctx, store_id, for_update=True)  # the lock makes If-Match a real guard
        check_if_match(if_match, store.version)
        changes = data.model_dump(exclude_unset=True)
        reject_nulls(changes, ("name", "timezone", "business_hours", "active"))
        before = snapshot(store)
        for key, value in changes.items():
            setattr(store, key, value)
        store.version += 1
        await ctx.session.flush()
        ctx.audit.record(ctx.session, ctx.principal, "update", "store", store.id, tenant_id=store.tenant_id,
                         store_id=store.id, before=before, after=snapshot(store))
        ctx.outbox.append(ctx.session, store_event(store), tenant_id=store.tenant_id, store_id=store.id)
    return store
