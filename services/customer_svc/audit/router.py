from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from customer_svc.deps import CtxDep
from customer_svc.models import AuditEntry, StaffStore
from shared.auth.roles import MANAGERS
from shared.errors import InvalidField, problem_responses
from shared.auth import Role, require_roles
from shared.http.pagination import Page, PageParams, make_page, page_params, paginate

router = APIRouter(prefix="/api/v1/audit", tags=["audit"], responses=problem_responses(401, 403, 422),
                   dependencies=[require_roles(*MANAGERS)])


class AuditRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    at: datetime
    actor_id: uuid.UUID | None
    actor_kind: str
    action: str
    record_type: str
    record_id: uuid.UUID
    store_id: uuid.UUID | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None


@router.get("", response_model=Page[AuditRead])
async def query_audit(ctx: CtxDep, params: Annotated[PageParams, Depends(page_params)],
                      record_id: uuid.UUID | None = None, actor_id: uuid.UUID | None = None) -> dict:
    """Who changed what and when (managers): by record or by user, newest first. The log is append-only."""
    if record_id is None and actor_id is None:
        raise InvalidField("query.record_id", "give record_id or actor_id")
    stmt = sa.select(AuditEntry).where(AuditEntry.tenant_id == ctx.principal.tenant_id)
    if not ctx.principal.has_any(Role.ADMIN, Role.CS_DIRECTOR):
        # Entries without a store: staff changes only for colleagues of the caller's stores, API keys and their
        # calls (admin business) never, the rest (group-level settings) always.
        stores = ctx.principal.store_ids
        colleagues = sa.select(StaffStore.staff_id).where(StaffStore.store_id.in_(stores))
        stmt = stmt.where(sa.or_(
            AuditEntry.store_id.in_(stores),
            sa.and_(AuditEntry.store_id.is_(None), AuditEntry.record_type == "staff",
                    AuditEntry.record_id.in_(colleagues)),
            sa.and_(AuditEntry.store_id.is_(None), AuditEntry.record_type.notin_(("staff", "api_key", "api_call"))),
        ))
    if record_id:
        stmt = stmt.where(AuditEntry.record_id == record_id)
    if actor_id:
        stmt = stmt.where(AuditEntry.actor_id == actor_id)
    rows = list((await ctx.session.scalars(paginate(stmt, AuditEntry.id, params))).all())
    return make_page(rows, params)
