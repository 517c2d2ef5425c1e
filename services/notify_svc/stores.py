"""The caller's stores as notify_svc knows them (its read model of customer_svc's stores)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from notify_svc.models import StoreView
from shared.auth import Principal
from shared.auth.scoping import ensure_store
from shared.errors import NotFound


async def ensure_own_store(session: AsyncSession, principal: Principal, store_id: uuid.UUID) -> StoreView:
    """A store of the caller's dealer group and scope, else 404: group-wide roles pass ``ensure_store`` for any id,
    so the store's tenant is checked here too (no rows written under a store of another group)."""
    ensure_store(principal, store_id)
    store = await session.get(StoreView, store_id)
    if store is None or store.tenant_id != principal.tenant_id:
        raise NotFound("Store not found.")
    return store
