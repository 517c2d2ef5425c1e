"""Membership use cases: tiers (managers), join / upgrade / renew / withdraw / delete, and points.

Every change to a membership, its points included, is audited and published as MembershipChanged
in the same transaction. The ledger is the history; ``points_balance`` is its running sum.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from customer_svc.deps import Ctx
from customer_svc.membership.events import publish_change
from customer_svc.membership.schemas import (MembershipCreate, MembershipUpdate, PointsAdjust, PointsBatch,
                                             TierCreate, TierUpdate)
from customer_svc.models import Membership, MembershipTier, PointsEntry, Store
from customer_svc.staff.service import require_active_staff
from customer_svc.vehicles import service as vehicle_service
from shared.audit import snapshot
from shared.auth import get_scoped, scoped
from shared.db.base import utcnow, where_given
from shared.errors import BusinessRuleViolation, Duplicate, InvalidField, NotFound, reject_nulls
from shared.http.etag import check_if_match
from shared.http.pagination import PageParams, paginate
from shared.ids import new_id

#: Points of a frozen (冻结) or withdrawn (退会) membership do not move.
POINTS_LOCKED = frozenset({"frozen", "withdrawn"})


def _non_null(changes: dict[str, Any]) -> dict[str, Any]:
    """Every field of these PATCH bodies is required once sent."""
    reject_nulls(changes)
    return changes


# --- tiers -------------------------------------------------------------------------------------------------------

async def _tier_by_name(ctx: Ctx, name: str) -> uuid.UUID | None:
    return await ctx.session.scalar(sa.select(MembershipTier.id).where(
        MembershipTier.tenant_id == ctx.principal.tenant_id, MembershipTier.name == name))


async def get_tier(ctx: Ctx, tier_id: uuid.UUID, for_update: bool = False) -> MembershipTier:
    stmt = sa.select(MembershipTier).where(MembershipTier.tenant_id == ctx.principal.tenant_id,
                                           MembershipTier.id == tier_id)
    tier = await ctx.session.scalar(stmt.with_for_update() if for_update else stmt)
    if tier is None:
        raise NotFound("Membership tier not found.")
    return tier


async def list_tiers(ctx: Ctx) -> list[MembershipTier]:
    return list((await ctx.session.scalars(sa.select(MembershipTier).where(
        MembershipTier.tenant_id == ctx.principal.tenant_id).order_by(MembershipTier.fee, MembershipTier.name))).all())


async def create_tier(ctx: Ctx, data: TierCreate) -> MembershipTier:
    async with ctx.session.begin():
        if existing := await _tier_by_name(ctx, data.name):
            raise Duplicate(f"A tier named {data.name} exists.", existing_id=existing)
        tier = MembershipTier(tenant_id=ctx.principal.tenant_id, **data.model_dump())
        ctx.session.add(tier)
        await ctx.session.flush()
        ctx.audit.record(ctx.session, ctx.principal, "create", "membership_tier", tier.id, tenant_id=tier.tenant_id,
                         store_id=None, after=snapshot(tier))
    return tier


async def update_tier(ctx: Ctx, tier_id: uuid.UUID, data: TierUpdate, if_match: str | None) -> MembershipTier:
    async with ctx.session.begin():
        tier = await get_tier(ctx, tier_id, for_update=True)
        check_if_match(if_match, tier.version)
        changes = _non_null(data.model_dump(exclude_unset=True))
        renamed = changes.get("name", tier.name) != tier.name
        if renamed and (existing := await _tier_by_name(ctx, changes["name"])):
            raise Duplicate(f"A tier named {changes['name']} exists.", existing_id=existing)
        before = snapshot(tier)
        for key, value in changes.items():
            setattr(tier, key, value)
        tier.version += 1
        await ctx.session.flush()
        ctx.audit.record(ctx.session, ctx.principal, "update", "membership_tier", tier.id, tenant_id=tier.tenant_id,
                         store_id=None, before=before, after=snapshot(tier))
    return tier


# --- memberships -------------------------------------------------------------------------------------------------

def _plus_one_year(d: date) -> date:
    try:
        return d.replace(year=d.year + 1)
    except ValueError:  # 29 February
        return d.replace(year=d.year + 1, day=28)


async def _store_today(ctx: Ctx, store_id: uuid.UUID) -> date:
    store = await ctx.session.get(Store, store_id)
    return datetime.now(ZoneInfo(store.timezone if store else "Asia/Shanghai")).date()


async def _usable_tier(ctx: Ctx, tier_id: uuid.UUID) -> MembershipTier:
    tier = await ctx.session.scalar(sa.select(MembershipTier).where(
        MembershipTier.tenant_id == ctx.principal.tenant_id, MembershipTier.id == tier_id))
    if tier is None or not tier.active:
        raise InvalidField("body.tier_id", "no active membership tier with this id")
    return tier


#: What a card's balance and fees paid can hold (an int4 column; Numeric(12, 2)).
MAX_POINTS = 2**31 - 1
MAX_FEES = Decimal("9999999999.99")


def _check_balance(m: Membership, delta: int, field: str) -> None:
    if m.points_balance + delta < 0:
        raise InvalidField(field, f"would take the balance ({m.points_balance}) below zero")
    if m.points_balance + delta > MAX_POINTS:
        raise InvalidField(field, f"would take the balance ({m.points_balance}) above {MAX_POINTS:,} points")


def _credit(ctx: Ctx, m: Membership, delta: int, *, kind: str, reason: str, operator_id: uuid.UUID,
            batch_id: uuid.UUID | None = None) -> PointsEntry:
    m.points_balance += delta
    entry = PointsEntry(id=new_id(), tenant_id=m.tenant_id, store_id=m.store_id, membership_id=m.id, delta=delta,
                        balance_after=m.points_balance, kind=kind, reason=reason, operator_id=operator_id,
                        batch_id=batch_id, created_by=ctx.principal.subject, created_at=utcnow())
    ctx.session.add(entry)
    return entry


def _snapshot(m: Membership) -> dict[str, Any]:
    return {**snapshot(m), "tier": m.tier.name}


async def get_membership(ctx: Ctx, membership_id: uuid.UUID, for_update: bool = False) -> Membership:
    return await get_scoped(ctx.session, Membership, ctx.principal, membership_id, "Membership",
                            for_update=for_update)


async def list_memberships(ctx: Ctx, params: PageParams, *, customer_id: uuid.UUID | None,
                           vehicle_id: uuid.UUID | None, card_no: str | None, status: str | None) -> list[Membership]:
    stmt = where_given(scoped(sa.select(Membership), Membership, ctx.principal),
                       (Membership.customer_id, customer_id), (Membership.vehicle_id, vehicle_id),
                       (Membership.card_no, card_no), (Membership.status, status))
    return list((await ctx.session.scalars(paginate(stmt, Membership.id, params))).all())


async def join(ctx: Ctx, data: MembershipCreate) -> Membership:
    """入会: the vehicle must already be registered; the fee paid in full credits the tier's bonus points."""
    try:
        async with ctx.session.begin():
            vehicle = await vehicle_service.vehicle_named_in_body(ctx, data.vehicle_id, "; register it first")
            tier = await _usable_tier(ctx, data.tier_id)
            same_card = await ctx.session.scalar(sa.select(Membership).where(
                Membership.tenant_id == ctx.principal.tenant_id, Membership.card_no == data.card_no))
            if same_card is not None:
                visible = ctx.principal.can_access_store(same_card.store_id)
                raise Duplicate("This card number is in use" + ("." if visible else " in another store of your group."),
                                **({"existing_id": same_card.id} if visible else {}))
            current = await ctx.session.scalar(sa.select(Membership.id).where(
                Membership.vehicle_id == vehicle.id, Membership.status != "withdrawn"))
            if current is not None:
                raise Duplicate("This vehicle already has a membership; change its tier instead.", existing_id=current)
            joined = data.joined_at or await _store_today(ctx, vehicle.store_id)
            expires = data.expires_at or _plus_one_year(joined)
            if expires <= joined:
                raise InvalidField("body.expires_at", "must be after joined_at")
            fee = tier.fee if data.fee_paid is None else data.fee_paid
            m = Membership(id=new_id(), tenant_id=vehicle.tenant_id, store_id=vehicle.store_id,
                           customer_id=vehicle.customer_id, vehicle_id=vehicle.id, tier_id=tier.id, tier=tier,
                           card_no=data.card_no, status="active", joined_at=joined, expires_at=expires, fee_paid=fee,
                           points_balance=0, version=1)
            ctx.session.add(m)
            await ctx.session.flush()
            if tier.bonus_points and fee >= tier.fee:
                _credit(ctx, m, tier.bonus_points, kind="bonus", reason=f"joined {tier.name}",
                        operator_id=ctx.principal.subject)
            ctx.audit.record(ctx.session, ctx.principal, "create", "membership", m.id, tenant_id=m.tenant_id,
                             store_id=m.store_id, after=_snapshot(m))
            publish_change(ctx, m, "joined")
    except IntegrityError as exc:
        raise Duplicate("The card number or vehicle was just taken by another request.") from exc
    return m


async def update_membership(ctx: Ctx, membership_id: uuid.UUID, data: MembershipUpdate,
                            if_match: str | None) -> Membership:
    """Upgrade (tier), renew (expires_at) and set the status; one event per kind of change.

    Renewing an expired membership into the future makes it active again unless a status is sent too.
    """
    async with ctx.session.begin():
        m = await get_membership(ctx, membership_id, for_update=True)
        check_if_match(if_match, m.version)
        changes = _non_null(data.model_dump(exclude_unset=True))
        if "fee_paid" in changes and "tier_id" not in changes:
            raise InvalidField("body.fee_paid", "is only accepted with a tier change (tier_id)")
        if m.status == "withdrawn":
            raise BusinessRuleViolation("A withdrawn (退会) membership cannot change; delete it or join anew.")
        before, done = _snapshot(m), []
        if data.tier_id is not None and data.tier_id != m.tier_id:
            tier = await _usable_tier(ctx, data.tier_id)
            fee = tier.fee if data.fee_paid is None else data.fee_paid
            if m.fee_paid + fee > MAX_FEES:
                raise InvalidField("body.fee_paid", f"the fees paid would exceed {MAX_FEES:,}")
            m.tier_id, m.tier, m.fee_paid = tier.id, tier, m.fee_paid + fee
            if tier.bonus_points and fee >= tier.fee:
                _credit(ctx, m, tier.bonus_points, kind="bonus", reason=f"changed to {tier.name}",
                        operator_id=ctx.principal.subject)
            done.append("tier_changed")
        today = await _store_today(ctx, m.store_id)
        if data.expires_at is not None and data.expires_at != m.expires_at:
            if data.expires_at <= m.joined_at:
                raise InvalidField("body.expires_at", "must be after joined_at")
            m.expires_at = data.expires_at
            done.append("renewed")
            if m.status == "expired" and data.status is None and m.expires_at >= today:
                m.status = "active"
                done.append("status_changed")
        if data.status is not None and data.status != m.status:
            if data.status == "active" and m.expires_at < today:
                raise InvalidField("body.status", f"the membership expired on {m.expires_at}; renew expires_at too")
            m.status = data.status
            done.append("status_changed")
        if done:
            m.version += 1
            await ctx.session.flush()
            ctx.audit.record(ctx.session, ctx.principal, "update", "membership", m.id, tenant_id=m.tenant_id,
                             store_id=m.store_id, before=before, after=_snapshot(m))
            for change in done:
                publish_change(ctx, m, change)
    return m


async def delete_membership(ctx: Ctx, membership_id: uuid.UUID, if_match: str | None) -> None:
    """R-PERM-08: only a withdrawn (退会) membership is deleted. Its ledger goes with it; the audit log keeps both."""
    async with ctx.session.begin():
        m = await get_membership(ctx, membership_id, for_update=True)
        if if_match is not None:
            check_if_match(if_match, m.version)
        if m.status != "withdrawn":
            raise BusinessRuleViolation("Set the status to withdrawn (退会) before deleting the membership.")
        ledger = (await ctx.session.scalars(sa.select(PointsEntry).where(
            PointsEntry.membership_id == m.id).order_by(PointsEntry.id))).all()
        ctx.audit.record(ctx.session, ctx.principal, "delete", "membership", m.id, tenant_id=m.tenant_id,
                         store_id=m.store_id, before={**_snapshot(m), "ledger": [snapshot(e) for e in ledger]})
        publish_change(ctx, m, "deleted")
        await ctx.session.delete(m)


# --- points ------------------------------------------------------------------------------------------------------

def _record_points(ctx: Ctx, m: Membership, entry: PointsEntry) -> None:
    m.version += 1
    ctx.audit.record(ctx.session, ctx.principal, "points", "membership", m.id, tenant_id=m.tenant_id,
                     store_id=m.store_id, before={"points_balance": entry.balance_after - entry.delta},
                     after={"points_balance": entry.balance_after, "delta": entry.delta, "reason": entry.reason,
                            "operator_id": entry.operator_id, "batch_id": entry.batch_id})
    publish_change(ctx, m, "points_adjusted")


async def adjust_points(ctx: Ctx, membership_id: uuid.UUID, data: PointsAdjust) -> PointsEntry:
    async with ctx.session.begin():
        await require_active_staff(ctx, data.operator_id, "body.operator_id")
        m = await get_membership(ctx, membership_id, for_update=True)
        if m.status in POINTS_LOCKED:
            raise BusinessRuleViolation(f"The membership is {m.status}; its points cannot change.")
        _check_balance(m, data.delta, "body.delta")
        entry = _credit(ctx, m, data.delta, kind="adjustment", reason=data.reason, operator_id=data.operator_id)
        _record_points(ctx, m, entry)
    return entry


async def adjust_points_batch(ctx: Ctx, data: PointsBatch) -> list[PointsEntry]:
    """All entries commit together or none does; entries are applied in order, so one card may appear twice."""
    async with ctx.session.begin():
        await require_active_staff(ctx, data.operator_id, "body.operator_id")
        ids = sorted({e.membership_id for e in data.entries})
        # Locks in id order, so two batches touching the same cards cannot deadlock.
        rows = await ctx.session.scalars(scoped(sa.select(Membership), Membership, ctx.principal)
                                         .where(Membership.id.in_(ids)).order_by(Membership.id)
                                         .with_for_update(of=Membership))
        by_id = {m.id: m for m in rows}
        batch_id, entries = new_id(), []
        for i, item in enumerate(data.entries):
            m = by_id.get(item.membership_id)
            if m is None:
                raise InvalidField(f"body.entries.{i}.membership_id", "no such membership in your stores")
            if m.status in POINTS_LOCKED:
                raise InvalidField(f"body.entries.{i}.membership_id",
                                   f"the membership is {m.status}; its points cannot change")
            _check_balance(m, item.delta, f"body.entries.{i}.delta")
            entry = _credit(ctx, m, item.delta, kind="adjustment", reason=data.reason, operator_id=data.operator_id,
                            batch_id=batch_id)
            _record_points(ctx, m, entry)
            entries.append(entry)
    return entries


async def ledger(ctx: Ctx, membership_id: uuid.UUID, params: PageParams) -> list[PointsEntry]:
    await get_membership(ctx, membership_id)
    stmt = sa.select(PointsEntry).where(PointsEntry.membership_id == membership_id)
    return list((await ctx.session.scalars(paginate(stmt, PointsEntry.id, params))).all())
