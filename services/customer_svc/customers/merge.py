"""Duplicates across a dealer group's stores, and folding a duplicate record into the one that survives.

Across stores the same person legitimately has one record per store (each store keeps its own
relationship), so duplicates there are only reported. Within one store two records of one person
are merged: the duplicate keeps its rows for history, gets ``merged_into_id`` and disappears from
every query through ``repository.visible``.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from customer_svc.customers import repository as repo
from customer_svc.customers.schemas import MergeRequest
from customer_svc.customers.service import full_snapshot, get_customer, snapshot_event
from customer_svc.deps import Ctx
from customer_svc.membership.events import publish_change
from customer_svc.models import (Consent, Customer, CustomerPhone, CustomerTag, Membership, ServiceVisit, Vehicle,
                                 VehicleOwnership)
from shared.auth import scoped
from shared.db.base import utcnow
from shared.errors import BusinessRuleViolation, InvalidField, NotFound
from shared.events.catalog.customer import CustomerConsentChanged, CustomerMerged, CustomerUpdated
from shared.http.etag import check_if_match

#: Survivor fields that take the duplicate's value when the survivor has none.
FILLED = ("contact_person", "id_number", "gender", "wedding_anniversary", "wechat_openid", "wechat_unionid", "address",
          "postcode", "occupation", "employer", "preferred_channel", "preferred_contact_time", "source_code",
          "source_detail", "intent_level", "value_class", "notes", "assigned_sales_id", "assigned_advisor_id")


async def find_duplicates(ctx: Ctx, customer_id: uuid.UUID) -> list[tuple[Customer, list[str]]]:
    """Records in the group's other stores sharing a phone or the ID number, oldest first, with the matched keys.

    Deliberately not scoped to staff's stores: staff learn that the group knows the person, and the view decides
    how much of each record they may see. An integration key learns nothing beyond its stores: it is the group's
    partner for those stores only.
    """
    customer = await get_customer(ctx, customer_id)
    found: dict[uuid.UUID, tuple[Customer, list[str]]] = {}
    by_key = [("phone", await repo.find_by_phones(ctx.session, customer.tenant_id, [p.e164 for p in customer.phones],
                                                  exclude=customer.id))]
    if customer.id_number:
        by_key.append(("id_number", await repo.find_by_id_number(ctx.session, customer.tenant_id, customer.id_number,
                                                                 exclude=customer.id)))
    for key, rows in by_key:
        for other in rows:
            if other.store_id != customer.store_id and (
                    ctx.principal.kind != "integration" or ctx.principal.can_access_store(other.store_id)):
                found.setdefault(other.id, (other, []))[1].append(key)
    return sorted(found.values(), key=lambda m: m[0].created_at)


def _fold_fields(survivor: Customer, dup: Customer) -> None:
    for field in FILLED:
        if getattr(survivor, field) in (None, "") and getattr(dup, field) not in (None, ""):
            setattr(survivor, field, getattr(dup, field))
    if survivor.birthday is None and dup.birthday is not None:
        survivor.birthday, survivor.birthday_calendar, survivor.birthday_md = (
            dup.birthday, dup.birthday_calendar, dup.birthday_md)
    if not survivor.family and dup.family:
        survivor.family = dict(dup.family)
    if not survivor.hobbies and dup.hobbies:
        survivor.hobbies = list(dup.hobbies)
    survivor.vip = survivor.vip or dup.vip
    survivor.do_not_call = survivor.do_not_call or dup.do_not_call  # a "no more calls" wish is never lost
    if dup.relationship_type == "owner":
        survivor.relationship_type = "owner"


def _fold_contacts(ctx: Ctx, survivor: Customer, dup: Customer) -> None:
    """Phones and tags are unioned; for a consent held by both, the more recently recorded one wins."""
    have = {p.e164 for p in survivor.phones}
    for p in dup.phones:
        if p.e164 not in have:
            survivor.phones.append(CustomerPhone(e164=p.e164, tenant_id=survivor.tenant_id, store_id=survivor.store_id,
                                                 label=p.label, is_primary=False, position=len(survivor.phones)))
    tags = set(survivor.tags)
    survivor.tag_rows.extend(CustomerTag(tag=t.tag, tenant_id=survivor.tenant_id) for t in dup.tag_rows
                             if t.tag not in tags)
    for theirs in dup.consents:
        ours = next((x for x in survivor.consents if (x.channel, x.purpose) == (theirs.channel, theirs.purpose)), None)
        if ours is not None and ours.recorded_at >= theirs.recorded_at:
            continue
        if ours is None:
            survivor.consents.append(Consent(channel=theirs.channel, purpose=theirs.purpose, granted=theirs.granted,
                                             source=theirs.source, recorded_at=theirs.recorded_at,
                                             recorded_by=theirs.recorded_by))
        else:
            was = ours.granted
            ours.granted, ours.source = theirs.granted, theirs.source
            ours.recorded_at, ours.recorded_by = theirs.recorded_at, theirs.recorded_by
            if was == theirs.granted:
                continue
        ctx.outbox.append(ctx.session, CustomerConsentChanged(
            customer_id=survivor.id, channel=theirs.channel, purpose=theirs.purpose, granted=theirs.granted,
            source=theirs.source, recorded_at=theirs.recorded_at),
            tenant_id=survivor.tenant_id, store_id=survivor.store_id)


async def _move_references(ctx: Ctx, survivor: Customer, dup: Customer) -> dict[str, list[str]]:
    """Vehicles (with a new ownership period), memberships, visits and earlier merges move to the survivor."""
    tenant, now = survivor.tenant_id, utcnow()
    vehicles = list((await ctx.session.scalars(sa.select(Vehicle).where(
        Vehicle.tenant_id == tenant, Vehicle.customer_id == dup.id).with_for_update())).all())
    if vehicles:
        await ctx.session.execute(sa.update(VehicleOwnership).where(
            VehicleOwnership.vehicle_id.in_([v.id for v in vehicles]), VehicleOwnership.ended_at.is_(None))
            .values(ended_at=now))
    for v in vehicles:
        v.customer_id = survivor.id
        v.version += 1
        ctx.session.add(VehicleOwnership(vehicle_id=v.id, customer_id=survivor.id, store_id=v.store_id,
                                         started_at=now, reason="customer merge"))
    memberships = list((await ctx.session.scalars(sa.select(Membership).where(
        Membership.tenant_id == tenant, Membership.customer_id == dup.id).with_for_update(of=Membership))).all())
    for m in memberships:
        m.customer_id = survivor.id
        m.version += 1
        publish_change(ctx, m, "customer_merged")
    await ctx.session.execute(sa.update(ServiceVisit).where(
        ServiceVisit.tenant_id == tenant, ServiceVisit.customer_id == dup.id).values(customer_id=survivor.id))
    await ctx.session.execute(sa.update(Customer).where(
        Customer.tenant_id == tenant, Customer.merged_into_id == dup.id).values(merged_into_id=survivor.id))
    return {"vehicles": [str(v.id) for v in vehicles], "memberships": [str(m.id) for m in memberships]}


async def merge(ctx: Ctx, survivor_id: uuid.UUID, data: MergeRequest, if_match: str | None) -> Customer:
    """Fold ``data.duplicate_id`` into the survivor in one transaction. Repeating a done merge answers the survivor."""
    if data.duplicate_id == survivor_id:
        raise InvalidField("body.duplicate_id", "cannot merge a customer into itself")
    async with ctx.session.begin():
        # Both rows locked in id order, so two opposite merges cannot deadlock or both succeed.
        rows = await ctx.session.scalars(scoped(sa.select(Customer), Customer, ctx.principal)
                                         .where(Customer.id.in_([survivor_id, data.duplicate_id]))
                                         .order_by(Customer.id).with_for_update(of=Customer))
        by_id = {c.id: c for c in rows}
        survivor, dup = by_id.get(survivor_id), by_id.get(data.duplicate_id)
        if survivor is None or survivor.merged_into_id is not None:
            raise NotFound("Customer not found.")
        if dup is None:
            raise InvalidField("body.duplicate_id", "no such customer in your stores")
        if dup.merged_into_id == survivor.id:
            return survivor
        if dup.merged_into_id is not None:
            raise BusinessRuleViolation("That customer was already merged into another record.")
        check_if_match(if_match, survivor.version)
        if dup.store_id != survivor.store_id:
            raise InvalidField("body.duplicate_id", "must be a customer of the same store; across stores each store "
                                                    "keeps its own record")
        before, dup_before = full_snapshot(survivor), full_snapshot(dup)
        _fold_fields(survivor, dup)
        _fold_contacts(ctx, survivor, dup)
        moved = await _move_references(ctx, survivor, dup)
        now = utcnow()
        dup.merged_into_id, dup.version, dup.updated_at = survivor.id, dup.version + 1, now
        survivor.version, survivor.updated_at = survivor.version + 1, now
        await ctx.session.flush()
        after = full_snapshot(survivor)
        changed = sorted(k for k in after if before.get(k) != after.get(k) and k not in ("updated_at", "version"))
        ctx.audit.record(ctx.session, ctx.principal, "merge", "customer", survivor.id, tenant_id=survivor.tenant_id,
                         store_id=survivor.store_id, before=before, after={**after, "merged_id": str(dup.id), **moved})
        ctx.audit.record(ctx.session, ctx.principal, "merged", "customer", dup.id, tenant_id=dup.tenant_id,
                         store_id=dup.store_id, before=dup_before, after=full_snapshot(dup))
        ctx.outbox.append(ctx.session, CustomerMerged(customer_id=survivor.id, merged_id=dup.id),
                          tenant_id=survivor.tenant_id, store_id=survivor.store_id)
        ctx.outbox.append(ctx.session, CustomerUpdated(**snapshot_event(survivor), changed=changed),
                          tenant_id=survivor.tenant_id, store_id=survivor.store_id)
    return survivor
