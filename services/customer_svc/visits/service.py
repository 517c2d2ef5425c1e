"""Service visits: a settled repair order moves the vehicle's odometer and tells follow-up to call back.

Visits are append-only (repair archives must not be altered, R-PERM-09): there is no update.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from customer_svc.deps import Ctx
from customer_svc.models import MileageReading, ServiceVisit, Vehicle
from customer_svc.staff.service import require_active_staff
from customer_svc.vehicles import service as vehicle_service
from customer_svc.visits.schemas import VisitCreate
from shared.audit import snapshot
from shared.db.base import where_given
from shared.auth import Role, get_scoped, scoped
from shared.errors import Duplicate, InvalidField
from shared.events.catalog.customer import ServiceVisitCompleted, VehicleUpdated
from shared.http.pagination import PageParams, paginate

#: Reception opens repair orders (service advisors and their managers); DMS integrations use scope visits:write.
WRITERS = frozenset({Role.SERVICE_ADVISOR, Role.SERVICE_MANAGER, Role.ADMIN})


class AlreadyRecorded(Exception):
    """The DMS repair order (``external_id``) was recorded before: the caller answers 200 with ``visit``."""

    def __init__(self, visit: ServiceVisit) -> None:
        super().__init__(str(visit.id))
        self.visit = visit


async def get_visit(ctx: Ctx, visit_id: uuid.UUID) -> ServiceVisit:
    return await get_scoped(ctx.session, ServiceVisit, ctx.principal, visit_id, "Visit")


async def list_visits(ctx: Ctx, params: PageParams, *, vehicle_id: uuid.UUID | None, customer_id: uuid.UUID | None,
                      completed_from: datetime | None, completed_to: datetime | None,
                      visit_type: str | None) -> list[ServiceVisit]:
    stmt = where_given(scoped(sa.select(ServiceVisit), ServiceVisit, ctx.principal),
                       (ServiceVisit.vehicle_id, vehicle_id), (ServiceVisit.customer_id, customer_id),
                       (ServiceVisit.visit_type, visit_type))
    if completed_from:
        stmt = stmt.where(ServiceVisit.completed_at >= completed_from)
    if completed_to:
        stmt = stmt.where(ServiceVisit.completed_at < completed_to)
    return list((await ctx.session.scalars(paginate(stmt, ServiceVisit.id, params))).all())


async def _by_external_id(ctx: Ctx, data: VisitCreate) -> ServiceVisit | None:
    if data.external_id is None:
        return None
    existing = await ctx.session.scalar(sa.select(ServiceVisit).where(
        ServiceVisit.tenant_id == ctx.principal.tenant_id, ServiceVisit.external_id == data.external_id))
    if existing is None:
        return None
    if not ctx.principal.can_access_store(existing.store_id):
        raise Duplicate("This external_id was recorded for a visit in another store of your group.")
    if existing.vehicle_id != data.vehicle_id:
        raise Duplicate("This external_id was recorded for another vehicle.", existing_id=existing.id)
    return existing


async def _add_visit(ctx: Ctx, vehicle: Vehicle, data: VisitCreate) -> ServiceVisit:
    if data.advisor_id is not None:
        await require_active_staff(ctx, data.advisor_id, "body.advisor_id")
    if data.mileage_km is not None:
        if vehicle.mileage_km is not None and data.mileage_km < vehicle.mileage_km:
            raise InvalidField("body.mileage_km", f"lower than the vehicle's last reading ({vehicle.mileage_km} km)")
        ctx.session.add(MileageReading(vehicle_id=vehicle.id, km=data.mileage_km, read_at=data.completed_at,
                                       source="visit"))
    visit = ServiceVisit(tenant_id=vehicle.tenant_id, store_id=vehicle.store_id, customer_id=vehicle.customer_id,
                         created_by=ctx.principal.subject,
                         **data.model_dump(mode="json", exclude={"vehicle_id", "advisor_id", "completed_at"}),
                         vehicle_id=vehicle.id, advisor_id=data.advisor_id, completed_at=data.completed_at)
    ctx.session.add(visit)
    if data.mileage_km is not None and data.mileage_km != vehicle.mileage_km:
        before = snapshot(vehicle)
        vehicle.mileage_km = data.mileage_km
        vehicle.version += 1
        await ctx.session.flush()
        ctx.audit.record(ctx.session, ctx.principal, "update", "vehicle", vehicle.id, tenant_id=vehicle.tenant_id,
                         store_id=vehicle.store_id, before=before, after=snapshot(vehicle))
        ctx.outbox.append(ctx.session, VehicleUpdated(**vehicle_service._event_fields(vehicle), changed=["mileage_km"],
                                                      mileage_km=vehicle.mileage_km),
                          tenant_id=vehicle.tenant_id, store_id=vehicle.store_id)
    await ctx.session.flush()
    ctx.audit.record(ctx.session, ctx.principal, "create", "visit", visit.id, tenant_id=visit.tenant_id,
                     store_id=visit.store_id, after=snapshot(visit))
    ctx.outbox.append(ctx.session, ServiceVisitCompleted(
        visit_id=visit.id, vehicle_id=visit.vehicle_id, customer_id=visit.customer_id, visit_type=visit.visit_type,
        ro_number=visit.ro_number, mileage_km=visit.mileage_km, advisor_id=visit.advisor_id,
        completed_at=visit.completed_at, declined_items=[i["name"] for i in visit.items if i.get("declined")]),
        tenant_id=visit.tenant_id, store_id=visit.store_id)
    return visit


async def record_visit(ctx: Ctx, data: VisitCreate) -> ServiceVisit:
    """Record a settled visit; raises :class:`AlreadyRecorded` when its ``external_id`` is already known."""
    try:
        async with ctx.session.begin():
            # The vehicle lock serialises visits of one car, so a DMS retry sees the first attempt's row.
            vehicle = await vehicle_service.vehicle_named_in_body(ctx, data.vehicle_id)
            existing = await _by_external_id(ctx, data)
            visit = existing or await _add_visit(ctx, vehicle, data)
    except IntegrityError as exc:
        # Only a concurrent post of the same external_id for another vehicle gets here (same vehicle: locked above).
        raise Duplicate("This external_id was just recorded by another request.") from exc
    if existing is not None:  # raised after the commit, which keeps its attributes loaded
        raise AlreadyRecorded(existing)
    return visit
