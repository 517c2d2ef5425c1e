"""Vehicles: registered to a customer, delivered, transferred (ownership history kept), mileage tracked."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from customer_svc.customers import repository as customers
from customer_svc.customers.service import become_owner
from customer_svc.deps import Ctx
from customer_svc.membership.events import publish_change
from customer_svc.models import Customer, Membership, MileageReading, Vehicle, VehicleOwnership
from customer_svc.vehicles.schemas import DeliveryRequest, TransferRequest, VehicleCreate, VehicleUpdate
from shared.audit import snapshot
from shared.auth import get_scoped, scoped
from shared.db.base import utcnow, where_given
from shared.errors import BusinessRuleViolation, Duplicate, InvalidField, NotFound, reject_nulls
from shared.events.catalog.customer import VehicleDelivered, VehicleRegistered, VehicleTransferred, VehicleUpdated
from shared.http.etag import check_if_match
from shared.http.pagination import PageParams, paginate

EVENT_FIELDS = ("vin", "plate", "brand", "model", "purchase_date", "delivery_date", "insurance_expiry",
                "next_inspection_date", "warranty_end", "selling_consultant_id")


def _event_fields(v: Vehicle) -> dict[str, Any]:
    return {"vehicle_id": v.id, "customer_id": v.customer_id, **{k: getattr(v, k) for k in EVENT_FIELDS}}


async def get_vehicle(ctx: Ctx, vehicle_id: uuid.UUID, for_update: bool = False) -> Vehicle:
    return await get_scoped(ctx.session, Vehicle, ctx.principal, vehicle_id, "Vehicle", for_update=for_update)


async def vehicle_named_in_body(ctx: Ctx, vehicle_id: uuid.UUID, hint: str = "") -> Vehicle:
    """The vehicle a request body names, locked for the rest of the transaction; unknown or out of scope is a 422
    on ``body.vehicle_id`` (the same answer either way, so nothing leaks)."""
    try:
        return await get_vehicle(ctx, vehicle_id, for_update=True)
    except NotFound:
        raise InvalidField("body.vehicle_id", f"no such vehicle in your stores{hint}") from None


async def list_vehicles(ctx: Ctx, params: PageParams, customer_id: uuid.UUID | None, plate: str | None,
                        vin: str | None) -> list[Vehicle]:
    stmt = where_given(scoped(sa.select(Vehicle), Vehicle, ctx.principal),
                       (Vehicle.customer_id, customer_id), (Vehicle.plate, plate), (Vehicle.vin, vin))
    return list((await ctx.session.scalars(paginate(stmt, Vehicle.id, params))).all())


async def _owner(ctx: Ctx, customer_id: uuid.UUID, field: str) -> Customer:
    customer = await customers.get_visible(ctx.session, ctx.principal, customer_id, for_update=True)
    if customer is None:
        raise InvalidField(f"body.{field}", "no such customer in your stores")
    return customer


async def register_vehicle(ctx: Ctx, data: VehicleCreate) -> Vehicle:
    async with ctx.session.begin():
        owner = await _owner(ctx, data.customer_id, "customer_id")
        existing = await ctx.session.scalar(sa.select(Vehicle).where(
            Vehicle.tenant_id == ctx.principal.tenant_id, Vehicle.vin == data.vin))
        if existing is not None:
            visible = ctx.principal.can_access_store(existing.store_id)
            raise Duplicate("A vehicle with this VIN is already registered"
                            + ("." if visible else " in another store of your group; ask for a transfer."),
                            **({"existing_id": existing.id} if visible else {}))
        vehicle = Vehicle(tenant_id=owner.tenant_id, store_id=owner.store_id, **data.model_dump())
        ctx.session.add(vehicle)
        await ctx.session.flush()
        ctx.session.add(VehicleOwnership(vehicle_id=vehicle.id, customer_id=owner.id, store_id=owner.store_id,
                                         reason="registered"))
        if data.mileage_km is not None:
            ctx.session.add(MileageReading(vehicle_id=vehicle.id, km=data.mileage_km, source="registration"))
        if data.delivery_date is not None:
            become_owner(ctx, owner)
        ctx.audit.record(ctx.session, ctx.principal, "create", "vehicle", vehicle.id, tenant_id=vehicle.tenant_id,
                         store_id=vehicle.store_id, after=snapshot(vehicle))
        ctx.outbox.append(ctx.session, VehicleRegistered(**_event_fields(vehicle)),
                          tenant_id=vehicle.tenant_id, store_id=vehicle.store_id)
        if vehicle.delivery_date is not None:
            ctx.outbox.append(ctx.session, VehicleDelivered(
                vehicle_id=vehicle.id, customer_id=vehicle.customer_id, delivery_date=vehicle.delivery_date,
                selling_consultant_id=vehicle.selling_consultant_id), tenant_id=vehicle.tenant_id, store_id=vehicle.store_id)
    return vehicle


async def update_vehicle(ctx: Ctx, vehicle_id: uuid.UUID, data: VehicleUpdate, if_match: str | None) -> Vehicle:
    async with ctx.session.begin():
        vehicle = await get_vehicle(ctx, vehicle_id, for_update=True)
        check_if_match(if_match, vehicle.version)
        before = snapshot(vehicle)
        changes = data.model_dump(exclude_unset=True)
        reject_nulls(changes, ("mileage_km",))  # an odometer is not unread: "only goes up" would hold no more
        if "mileage_km" in changes:
            if vehicle.mileage_km is not None and changes["mileage_km"] < vehicle.mileage_km:
                raise InvalidField("body.mileage_km", f"lower than the last reading ({vehicle.mileage_km} km)")
            if changes["mileage_km"] != vehicle.mileage_km:
                ctx.session.add(MileageReading(vehicle_id=vehicle.id, km=changes["mileage_km"], source="staff"))
        for key, value in changes.items():
            setattr(vehicle, key, value)
        if vehicle.delivery_date and vehicle.purchase_date and vehicle.delivery_date < vehicle.purchase_date:
            raise InvalidField("body.purchase_date", f"is after the delivery date ({vehicle.delivery_date})")
        after = snapshot(vehicle)
        changed = sorted(k for k in after if before[k] != after[k] and k not in ("updated_at",))
        if changed:
            vehicle.version += 1
            await ctx.session.flush()
            ctx.audit.record(ctx.session, ctx.principal, "update", "vehicle", vehicle.id,
                             tenant_id=vehicle.tenant_id, store_id=vehicle.store_id, before=before, after=snapshot(vehicle))
            ctx.outbox.append(ctx.session, VehicleUpdated(**_event_fields(vehicle), changed=changed,
                                                          mileage_km=vehicle.mileage_km),
                              tenant_id=vehicle.tenant_id, store_id=vehicle.store_id)
    return vehicle


async def deliver(ctx: Ctx, vehicle_id: uuid.UUID, data: DeliveryRequest) -> Vehicle:
    """Handover (交车): the owner becomes an owner customer, and every post-delivery follow-up starts from here.

    Idempotent: delivering again on the same date changes nothing and emits nothing.
    """
    async with ctx.session.begin():
        vehicle = await get_vehicle(ctx, vehicle_id, for_update=True)
        if vehicle.delivery_date == data.delivery_date:
            return vehicle
        if vehicle.delivery_date is not None:
            raise BusinessRuleViolation(
                f"Already delivered on {vehicle.delivery_date}. A delivery date is not changed afterwards: the "
                "delivery's follow-ups and survey were planned from it (ask an administrator to correct the record).")
        if vehicle.purchase_date and data.delivery_date < vehicle.purchase_date:
            raise InvalidField("body.delivery_date", "is before the purchase date")
        before = snapshot(vehicle)
        vehicle.delivery_date = data.delivery_date
        vehicle.version += 1
        owner = await ctx.session.get(Customer, vehicle.customer_id, with_for_update=True)
        if owner is not None:
            become_owner(ctx, owner)
        await ctx.session.flush()
        ctx.audit.record(ctx.session, ctx.principal, "deliver", "vehicle", vehicle.id, tenant_id=vehicle.tenant_id,
                         store_id=vehicle.store_id, before=before, after=snapshot(vehicle))
        ctx.outbox.append(ctx.session, VehicleDelivered(
            vehicle_id=vehicle.id, customer_id=vehicle.customer_id, delivery_date=data.delivery_date,
            selling_consultant_id=vehicle.selling_consultant_id), tenant_id=vehicle.tenant_id, store_id=vehicle.store_id)
    return vehicle


async def transfer(ctx: Ctx, vehicle_id: uuid.UUID, data: TransferRequest) -> Vehicle:
    async with ctx.session.begin():
        vehicle = await get_vehicle(ctx, vehicle_id, for_update=True)
        if vehicle.customer_id == data.customer_id:
            return vehicle
        new_owner = await _owner(ctx, data.customer_id, "customer_id")
        if new_owner.store_id != vehicle.store_id:
            raise InvalidField("body.customer_id", "the new owner must be a customer of the vehicle's store")
        before, previous = snapshot(vehicle), vehicle.customer_id
        now = utcnow()
        await ctx.session.execute(sa.update(VehicleOwnership).where(
            VehicleOwnership.vehicle_id == vehicle.id, VehicleOwnership.ended_at.is_(None)).values(ended_at=now))
        ctx.session.add(VehicleOwnership(vehicle_id=vehicle.id, customer_id=new_owner.id, store_id=vehicle.store_id,
                                         started_at=now, reason=data.reason))
        vehicle.customer_id = new_owner.id
        vehicle.version += 1
        await _end_membership(ctx, vehicle)
        await ctx.session.flush()
        ctx.audit.record(ctx.session, ctx.principal, "transfer", "vehicle", vehicle.id, tenant_id=vehicle.tenant_id,
                         store_id=vehicle.store_id, before=before, after=snapshot(vehicle))
        if vehicle.delivery_date is not None:  # the new owner of a car on the road is an owner (保有客户)
            become_owner(ctx, new_owner)  # locked by _owner
        ctx.outbox.append(ctx.session, VehicleTransferred(vehicle_id=vehicle.id, customer_id=new_owner.id,
                                                          previous_customer_id=previous, reason=data.reason),
                          tenant_id=vehicle.tenant_id, store_id=vehicle.store_id)
    return vehicle


async def _end_membership(ctx: Ctx, vehicle: Vehicle) -> None:
    """The previous owner's membership on the car (its card and points are theirs) ends with the sale: withdrawn
    (退会), so the new owner may join with a card of their own."""
    current = await ctx.session.scalar(sa.select(Membership).where(
        Membership.vehicle_id == vehicle.id, Membership.status != "withdrawn").with_for_update(of=Membership))
    if current is None:
        return
    before = {"status": current.status}
    current.status = "withdrawn"
    current.version += 1
    ctx.audit.record(ctx.session, ctx.principal, "update", "membership", current.id, tenant_id=current.tenant_id,
                     store_id=current.store_id, before=before, after={"status": "withdrawn",
                                                                       "reason": "vehicle transferred"})
    publish_change(ctx, current, "status_changed")


async def ownership(ctx: Ctx, vehicle_id: uuid.UUID) -> list[VehicleOwnership]:
    await get_vehicle(ctx, vehicle_id)
    return list((await ctx.session.scalars(sa.select(VehicleOwnership).where(
        VehicleOwnership.vehicle_id == vehicle_id).order_by(VehicleOwnership.started_at))).all())
