"""Staff accounts: admins create and change them; deactivation revokes every refresh token."""

from __future__ import annotations

import asyncio
import uuid

import sqlalchemy as sa

from customer_svc.auth.passwords import hash_password
from customer_svc.deps import Ctx
from customer_svc.models import RefreshToken, Staff, StaffStore, Store
from customer_svc.staff.schemas import StaffCreate, StaffUpdate
from shared.audit import snapshot
from shared.db.base import contains_pattern, utcnow
from shared.errors import Duplicate, InvalidField, NotFound, reject_nulls
from shared.events.catalog.customer import StaffUpserted
from shared.http.etag import check_if_match
from shared.http.pagination import PageParams, make_page, paginate


def staff_event(staff: Staff) -> StaffUpserted:
    return StaffUpserted(staff_id=staff.id, employee_no=staff.employee_no, name=staff.name, phone=staff.phone,
                         department=staff.department, roles=staff.roles, store_ids=staff.store_ids, active=staff.active)


def _visible(ctx: Ctx) -> sa.Select:
    stmt = sa.select(Staff).where(Staff.tenant_id == ctx.principal.tenant_id)
    if not ctx.principal.tenant_wide:
        stmt = stmt.where(Staff.id.in_(sa.select(StaffStore.staff_id).where(StaffStore.store_id.in_(ctx.principal.store_ids))))
    return stmt


async def _check_stores(ctx: Ctx, store_ids: list[uuid.UUID]) -> None:
    found = set((await ctx.session.scalars(sa.select(Store.id).where(
        Store.tenant_id == ctx.principal.tenant_id, Store.id.in_(store_ids)))).all())
    for i, sid in enumerate(store_ids):
        if sid not in found or not ctx.principal.can_access_store(sid):
            raise InvalidField(f"body.store_ids.{i}", "no such store in your scope")


async def get_staff(ctx: Ctx, staff_id: uuid.UUID, for_update: bool = False) -> Staff:
    stmt = _visible(ctx).where(Staff.id == staff_id)
    staff = await ctx.session.scalar(stmt.with_for_update(of=Staff) if for_update else stmt)
    if staff is None:
        raise NotFound("Staff member not found.")
    return staff


async def search_staff(ctx: Ctx, params: PageParams, q: str | None, department: str | None,
                       store_id: uuid.UUID | None, active: bool | None) -> dict:
    stmt = _visible(ctx)
    if q:
        stmt = stmt.where(sa.or_(Staff.employee_no == q, Staff.name.like(contains_pattern(q), escape="\\")))
    if department:
        stmt = stmt.where(Staff.department == department)
    if store_id:
        stmt = stmt.where(Staff.id.in_(sa.select(StaffStore.staff_id).where(StaffStore.store_id == store_id)))
    if active is not None:
        stmt = stmt.where(Staff.active == active)
    rows = list((await ctx.session.scalars(paginate(stmt, Staff.id, params))).all())
    return make_page(rows, params)


async def create_staff(ctx: Ctx, data: StaffCreate) -> Staff:
    password_hash = await asyncio.to_thread(hash_password, data.password)  # ~0.1 s of CPU: off the event loop
    async with ctx.session.begin():
        await _check_stores(ctx, data.store_ids)
        exists = await ctx.session.scalar(sa.select(Staff.id).where(
            Staff.tenant_id == ctx.principal.tenant_id, Staff.employee_no == data.employee_no))
        if exists:
            raise Duplicate(f"Employee number {data.employee_no} is taken.", existing_id=exists)
        staff = Staff(tenant_id=ctx.principal.tenant_id, employee_no=data.employee_no, name=data.name,
                      gender=data.gender, department=data.department, education=data.education, phone=data.phone,
                      roles=[str(r) for r in dict.fromkeys(data.roles)], password_hash=password_hash,
                      stores=[StaffStore(store_id=s) for s in dict.fromkeys(data.store_ids)])
        ctx.session.add(staff)
        await ctx.session.flush()
        ctx.audit.record(ctx.session, ctx.principal, "create", "staff", staff.id, tenant_id=staff.tenant_id,
                         store_id=None, after={**snapshot(staff), "store_ids": staff.store_ids})
        ctx.outbox.append(ctx.session, staff_event(staff), tenant_id=staff.tenant_id, store_id=None)
    return staff


async def update_staff(ctx: Ctx, staff_id: uuid.UUID, data: StaffUpdate, if_match: str | None) -> Staff:
    password_hash = await asyncio.to_thread(hash_password, data.password) if data.password else None
    async with ctx.session.begin():
        staff = await get_staff(ctx, staff_id, for_update=True)  # the lock makes If-Match a real guard
        check_if_match(if_match, staff.version)
        before = {**snapshot(staff), "store_ids": staff.store_ids}
        changes = data.model_dump(exclude_unset=True)
        reject_nulls(changes, ("name", "roles", "store_ids", "active", "password"))
        if "store_ids" in changes and data.store_ids is not None:
            await _check_stores(ctx, data.store_ids)
            staff.stores = [StaffStore(store_id=s) for s in dict.fromkeys(data.store_ids)]
        if data.roles is not None:
            staff.roles = [str(r) for r in dict.fromkeys(data.roles)]
        if data.password is not None:
            staff.password_hash = password_hash
            staff.failed_logins, staff.locked_until = 0, None
        for key in ("name", "gender", "department", "education", "phone", "active"):
            if key in changes:
                setattr(staff, key, changes[key])
        if data.active is False or data.password is not None:
            await ctx.session.execute(sa.update(RefreshToken).where(
                RefreshToken.staff_id == staff.id, RefreshToken.revoked_at.is_(None)).values(revoked_at=utcnow()))
        staff.version += 1
        await ctx.session.flush()
        ctx.audit.record(ctx.session, ctx.principal, "update", "staff", staff.id, tenant_id=staff.tenant_id,
                         store_id=None, before=before, after={**snapshot(staff), "store_ids": staff.store_ids})
        ctx.outbox.append(ctx.session, staff_event(staff), tenant_id=staff.tenant_id, store_id=None)
    return staff


async def require_active_staff(ctx: Ctx, staff_id: uuid.UUID, field: str) -> Staff:
    """A staff member named in a request (advisor, points operator): active and of the caller's dealer group."""
    staff = await ctx.session.get(Staff, staff_id)
    if staff is None or staff.tenant_id != ctx.principal.tenant_id or not staff.active:
        raise InvalidField(field, "no active staff member with this id in your dealer group")
    return staff
