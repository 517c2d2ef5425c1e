"""The one scoping helper every query goes through: tenant always, stores unless the role is tenant-wide."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth.principal import Principal
from shared.errors import NotFound

S = TypeVar("S", bound=Select[Any])


def scoped(stmt: S, model: Any, principal: Principal) -> S:
    stmt = stmt.where(model.tenant_id == principal.tenant_id)
    if not principal.tenant_wide:
        stmt = stmt.where(model.store_id.in_(principal.store_ids))
    return stmt


async def get_scoped(session: AsyncSession, model: Any, principal: Principal, record_id: uuid.UUID, what: str,
                     *, for_update: bool = False) -> Any:
    """One record of the caller's tenant and stores by id (optionally locked), else a 404 naming ``what``."""
    stmt = scoped(sa.select(model), model, principal).where(model.id == record_id)
    found = await session.scalar(stmt.with_for_update(of=model) if for_update else stmt)
    if found is None:
        raise NotFound(f"{what} not found.")
    return found


async def get_in_tenant(session: AsyncSession, model: Any, principal: Principal, record_id: uuid.UUID, what: str,
                        *, for_update: bool = False) -> Any:
    """One record of the caller's dealer group by id, for records that belong to the group rather than a store
    (webhook endpoints, integration keys), else a 404 naming ``what``."""
    stmt = sa.select(model).where(model.tenant_id == principal.tenant_id, model.id == record_id)
    found = await session.scalar(stmt.with_for_update() if for_update else stmt)
    if found is None:
        raise NotFound(f"{what} not found.")
    return found


def ensure_store(principal: Principal, store_id: uuid.UUID, what: str = "Store") -> None:
    """A store outside the caller's scope is reported as not found (no existence leak)."""
    if not principal.can_access_store(store_id):
        raise NotFound(f"{what} not found.")
