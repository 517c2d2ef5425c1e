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


async def stores_in_scope(session: AsyncSession, store_model: Any, principal: Principal,
                          store_id: uuid.UUID | None) -> tuple[dict[uuid.UUID, Any], bool]:
    """The stores a report covers, from a service's store read model: ``store_id`` when it is one of the caller's
    (else 404, as for any record out of scope), or every store the caller may see. Returns the stores by id (None
    for one of the caller's stores the read model has not heard of yet) and whether that is the whole group."""
    ids: list[uuid.UUID] | None = None
    if store_id is not None:
        ensure_store(principal, store_id)
        ids = [store_id]
    elif not principal.tenant_wide:
        ids = sorted(principal.store_ids)
    stmt = sa.select(store_model).where(store_model.tenant_id == principal.tenant_id)
    if ids is not None:
        stmt = stmt.where(store_model.id.in_(ids))
    known = {s.id: s for s in await session.scalars(stmt)}
    if store_id is not None and store_id not in known and principal.tenant_wide:
        raise NotFound("Store not found.")
    return (known if ids is None else {i: known.get(i) for i in ids}), ids is None
