"""Events followup_svc consumes: customer_svc's basic data feeds the read model, and each change
(re)plans the follow-ups it drives, in the same transaction as the inbox row; survey_svc's low scores and closed
complaints plan service recovery, the post-resolution revisit and the re-survey."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from followup_svc.models import CustomerView, FollowUp, StaffView, StoreView, Task, VehicleView
from followup_svc.playbooks.seeding import ensure_default_rules
from followup_svc.scheduling import triggers
from followup_svc.scheduling.planner import Planner, Subject
from shared.events.catalog import customer as ev
from shared.events.catalog import survey as sev
from shared.events.envelope import CloudEvent
from shared.messaging.consumer import MissingDependency, Subscription

if TYPE_CHECKING:
    from followup_svc.app import FollowupRuntime

#: Customer fields whose change re-plans something (the rest only refresh the read model).
INTENT_FIELDS = {"intent_level", "relationship_type", "relationship"}
PERSONAL_FIELDS = {"birthday", "birthday_calendar", "wedding_anniversary", "relationship_type", "relationship"}
VEHICLE_DATE_FIELDS = {"insurance_expiry", "next_inspection_date", "warranty_end"}


def _tenant(event: CloudEvent) -> uuid.UUID:
    return uuid.UUID(event.tenantid)  # type: ignore[arg-type]


def _customer_fields(data: ev.CustomerSnapshot) -> dict[str, Any]:
    return dict(store_id=data.store_id, name=data.name, phone=data.primary_phone, wechat_openid=data.wechat_openid,
                birthday=data.birthday, birthday_calendar=data.birthday_calendar,
                wedding_anniversary=data.wedding_anniversary, relationship=data.relationship,
                intent_level=data.intent_level, value_class=data.value_class, preferred_channel=data.preferred_channel,
                do_not_call=data.do_not_call, assigned_sales_id=data.assigned_sales_id,
                assigned_advisor_id=data.assigned_advisor_id, tags=list(data.tags),
                consents={f"{c.channel}:{c.purpose}": c.granted for c in data.consents})


class Handlers:
    """One method per event type. Read-model rows are read ``FOR UPDATE``: two events about the same customer
    or vehicle (a visit and its odometer update) are handled one after the other, each seeing the other's
    effect, so neither plans from a stale copy."""

    def __init__(self, runtime: FollowupRuntime) -> None:
        self.clock = runtime.clock

    def planner(self, session: AsyncSession) -> Planner:
        return Planner(session, self.clock.now())

    # --- stores and staff -----------------------------------------------------------------------------

    async def store(self, session: AsyncSession, event: CloudEvent) -> None:
        data = ev.StoreUpserted.model_validate(event.data)
        tenant = _tenant(event)
        store = await session.get(StoreView, data.store_id, with_for_update=True)
        if store is None:
            store = StoreView(id=data.store_id, tenant_id=tenant)
            session.add(store)
        store.code, store.name, store.timezone = data.code, data.name, data.timezone
        store.business_hours, store.active = data.business_hours, data.active
        await ensure_default_rules(session, tenant, self.clock.now())

    async def staff(self, session: AsyncSession, event: CloudEvent) -> None:
        data = ev.StaffUpserted.model_validate(event.data)
        member = await session.get(StaffView, data.staff_id, with_for_update=True)
        if member is None:
            member = StaffView(id=data.staff_id, tenant_id=_tenant(event))
            session.add(member)
        was_active = member.active
        member.name, member.roles, member.active = data.name, list(data.roles), data.active
        member.store_ids = [str(s) for s in data.store_ids]
        if was_active and not data.active:
            # A leaver's open work goes back to the team queues (a manager may bulk-reassign it).
            await session.execute(sa.update(Task).where(
                Task.tenant_id == member.tenant_id, Task.assignee_id == member.id,
                Task.status.in_(("open", "in_progress"))).values(assignee_id=None, version=Task.version + 1))

    # --- customers ------------------------------------------------------------------------------------

    async def customer_created(self, session: AsyncSession, event: CloudEvent) -> None:
        data = ev.CustomerCreated.model_validate(event.data)
        if await session.get(CustomerView, data.customer_id, with_for_update=True) is None:
            await self._first_seen(session, event, data)

    async def _first_seen(self, session: AsyncSession, event: CloudEvent, data: ev.CustomerCreated) -> None:
        """A customer new to the read model: copy them and plan what a new customer triggers.

        An imported customer is history: what a new contact triggers is planned from when the relationship began
        in the source system (its past steps recorded as stale), or not at all when that is unknown."""
        customer = CustomerView(id=data.customer_id, tenant_id=_tenant(event), **_customer_fields(data))
        session.add(customer)
        await session.flush()
        began: datetime | None = event.time
        if data.imported:
            began = data.since
        await triggers.customer_created(self.planner(session), customer, event.time, began)

    async def customer_updated(self, session: AsyncSession, event: CloudEvent) -> None:
        data = ev.CustomerUpdated.model_validate(event.data)
        customer = await session.get(CustomerView, data.customer_id, with_for_update=True)
        if customer is None:
            # The created event is behind (retried, or handled concurrently): it says whether the customer is a
            # fresh contact or imported history, which an update cannot.
            raise MissingDependency(f"customer {data.customer_id} not in the read model yet")
        old_sales, old_advisor = customer.assigned_sales_id, customer.assigned_advisor_id
        was_callable = not customer.do_not_call
        for name, value in _customer_fields(data).items():
            setattr(customer, name, value)
        changed = set(data.changed)
        if customer.lost and "relationship_type" in changed and data.relationship != "lost":
            customer.lost = False  # back from lost (战败): follow-ups resume
        if was_callable and customer.do_not_call:  # calls already in the agents' queues stop too
            await _cancel_open_tasks(session, customer.tenant_id, customer.id, "customer asked not to be called",
                                     self.clock.now(), kind="call")
        await self._follow_owner_change(session, customer, old_sales, customer.assigned_sales_id)
        await self._follow_owner_change(session, customer, old_advisor, customer.assigned_advisor_id)
        what = ({"intent"} if changed & INTENT_FIELDS else set()) | ({"personal"} if changed & PERSONAL_FIELDS else set())
        if what:
            await session.flush()
            await triggers.reconcile_customer(self.planner(session), customer, what, event.time)

    async def _follow_owner_change(self, session: AsyncSession, customer: CustomerView, old: uuid.UUID | None,
                                   new: uuid.UUID | None) -> None:
        """Open tasks follow the customer to the new consultant or advisor (handover, R-HAND-01)."""
        if old is None or old == new:
            return
        await session.execute(sa.update(Task).where(
            Task.tenant_id == customer.tenant_id, Task.customer_id == customer.id, Task.assignee_id == old,
            Task.status.in_(("open", "in_progress"))).values(assignee_id=new, version=Task.version + 1))

    async def customer_lost(self, session: AsyncSession, event: CloudEvent) -> None:
        data = ev.CustomerLost.model_validate(event.data)
        customer = await self._customer(session, data.customer_id)
        customer.lost = True
        reason = f"customer lost ({data.lost_kind}): {data.reason}"[:300]
        await self.planner(session).cancel(customer.tenant_id, reason, customer_id=customer.id)
        await _cancel_open_tasks(session, customer.tenant_id, customer.id, reason, self.clock.now())

    async def customer_merged(self, session: AsyncSession, event: CloudEvent) -> None:
        """The duplicate's own plans (greetings, cadence) end; its cars, their plans and its open tasks carry on
        for the surviving record (customer_svc moved the cars without a vehicle event)."""
        data = ev.CustomerMerged.model_validate(event.data)
        merged = await session.get(CustomerView, data.merged_id, with_for_update=True)
        if merged is None:
            return
        merged.merged_into_id = data.customer_id
        planner = self.planner(session)
        await planner.cancel(merged.tenant_id, f"customer merged into {data.customer_id}", customer_id=merged.id,
                             subject_type="customer")
        await session.execute(sa.update(FollowUp).where(
            FollowUp.tenant_id == merged.tenant_id, FollowUp.customer_id == merged.id,
            FollowUp.state == "scheduled").values(customer_id=data.customer_id))
        await session.execute(sa.update(Task).where(
            Task.tenant_id == merged.tenant_id, Task.customer_id == merged.id,
            Task.status.in_(("open", "in_progress"))).values(customer_id=data.customer_id))
        cars = (await session.scalars(sa.select(VehicleView).where(
            VehicleView.tenant_id == merged.tenant_id, VehicleView.customer_id == merged.id)
            .with_for_update())).all()
        for car in cars:
            car.customer_id = data.customer_id
        await session.flush()
        for car in cars:
            await triggers.reconcile_vehicle(planner, car)

    async def consent_changed(self, session: AsyncSession, event: CloudEvent) -> None:
        data = ev.CustomerConsentChanged.model_validate(event.data)
        customer = await self._customer(session, data.customer_id)
        customer.consents = {**customer.consents, f"{data.channel}:{data.purpose}": data.granted}
        planner = self.planner(session)
        if data.purpose == "marketing" and not any(
                granted for key, granted in customer.consents.items() if key.endswith(":marketing")):
            pending = list(await session.scalars(sa.select(FollowUp).where(
                FollowUp.tenant_id == customer.tenant_id, FollowUp.customer_id == customer.id,
                FollowUp.purpose == "marketing", FollowUp.state == "scheduled")))
            await planner.cancel(customer.tenant_id, f"customer opted out of marketing ({data.channel}, {data.source})"[:300],
                                 customer_id=customer.id, purpose="marketing")
            await triggers.continue_series(planner, pending)
        elif data.granted:
            await triggers.reconcile_customer(planner, customer, {"personal"}, event.time)

    async def _customer(self, session: AsyncSession, customer_id: uuid.UUID) -> CustomerView:
        customer = await session.get(CustomerView, customer_id, with_for_update=True)
        if customer is None:
            raise MissingDependency(f"customer {customer_id} not in the read model yet")
        return customer

    # --- vehicles and visits --------------------------------------------------------------------------

    async def vehicle(self, session: AsyncSession, event: CloudEvent) -> None:
        data = (ev.VehicleUpdated if event.type == ev.VehicleUpdated.type else ev.VehicleRegistered
                ).model_validate(event.data)
        vehicle = await session.get(VehicleView, data.vehicle_id, with_for_update=True)
        changed = set(getattr(data, "changed", [])) or None
        if vehicle is None:
            vehicle = VehicleView(id=data.vehicle_id, tenant_id=_tenant(event), mileage_readings=[],
                                  maintenance_count=0, declined_items=[])
            session.add(vehicle)
            changed = None
        vehicle.store_id = uuid.UUID(event.storeid) if event.storeid else vehicle.store_id
        vehicle.customer_id, vehicle.vin, vehicle.plate = data.customer_id, data.vin, data.plate
        vehicle.brand, vehicle.model = data.brand, data.model
        vehicle.selling_consultant_id = data.selling_consultant_id
        vehicle.delivery_date = data.delivery_date or vehicle.delivery_date
        vehicle.insurance_expiry, vehicle.next_inspection_date = data.insurance_expiry, data.next_inspection_date
        vehicle.warranty_end = data.warranty_end
        mileage = getattr(data, "mileage_km", None)
        if mileage is not None:
            _add_reading(vehicle, event.time.date(), mileage)
        await session.flush()
        planner = self.planner(session)
        if changed is None or changed & VEHICLE_DATE_FIELDS:
            await triggers.reconcile_vehicle_dates(planner, vehicle)
        if changed is None or "mileage_km" in changed:
            await triggers.reconcile_maintenance(planner, vehicle)

    async def delivered(self, session: AsyncSession, event: CloudEvent) -> None:
        data = ev.VehicleDelivered.model_validate(event.data)
        vehicle = await self._vehicle(session, data.vehicle_id)
        vehicle.delivery_date = data.delivery_date
        vehicle.customer_id = data.customer_id
        if data.selling_consultant_id:
            vehicle.selling_consultant_id = data.selling_consultant_id
        await session.flush()
        await triggers.vehicle_delivered(self.planner(session), vehicle, data.delivery_date, event.time)

    async def transferred(self, session: AsyncSession, event: CloudEvent) -> None:
        data = ev.VehicleTransferred.model_validate(event.data)
        vehicle = await self._vehicle(session, data.vehicle_id)
        planner = self.planner(session)
        await planner.cancel(vehicle.tenant_id, "vehicle transferred to another owner", vehicle_id=vehicle.id,
                             customer_id=data.previous_customer_id)
        # Nor is the previous owner called about the car he sold.
        await _cancel_open_tasks(session, vehicle.tenant_id, data.previous_customer_id,
                                 "vehicle transferred to another owner", self.clock.now(), vehicle_id=vehicle.id)
        vehicle.customer_id = data.customer_id
        await session.flush()
        await triggers.reconcile_vehicle(planner, vehicle)

    async def visit(self, session: AsyncSession, event: CloudEvent) -> None:
        data = ev.ServiceVisitCompleted.model_validate(event.data)
        vehicle = await self._vehicle(session, data.vehicle_id)
        if vehicle.last_visit_at is None or data.completed_at > vehicle.last_visit_at:
            vehicle.last_visit_at = data.completed_at
            vehicle.declined_items = list(data.declined_items)
        if data.visit_type in triggers.MAINTENANCE_VISITS:
            vehicle.maintenance_count += 1
            # An older repair order arriving late (a DMS import) counts, but does not move the base date back.
            if vehicle.last_maintenance_at is None or data.completed_at > vehicle.last_maintenance_at:
                vehicle.last_maintenance_at = data.completed_at
                vehicle.last_maintenance_km = data.mileage_km
        if data.mileage_km is not None:
            _add_reading(vehicle, data.completed_at.date(), data.mileage_km)
        customer = await session.get(CustomerView, data.customer_id, with_for_update=True)
        if customer is not None and (customer.last_visit_at is None or data.completed_at > customer.last_visit_at):
            customer.last_visit_at = data.completed_at
        await session.flush()
        await triggers.visit_completed(self.planner(session), vehicle, data.visit_id, data.visit_type,
                                       data.completed_at, data.advisor_id)

    async def _vehicle(self, session: AsyncSession, vehicle_id: uuid.UUID) -> VehicleView:
        vehicle = await session.get(VehicleView, vehicle_id, with_for_update=True)
        if vehicle is None:
            raise MissingDependency(f"vehicle {vehicle_id} not in the read model yet")
        return vehicle

    # --- survey_svc -----------------------------------------------------------------------------------

    async def low_score(self, session: AsyncSession, event: CloudEvent) -> None:
        """A low score or negative comment: a service-recovery task (owner and SLA from the playbook), carrying
        what tripped the alert so the manager calls knowing what went wrong."""
        data = sev.SurveyLowScore.model_validate(event.data)
        context = {"survey": data.survey, "survey_version": data.survey_version, "reasons": list(data.reasons),
                   "satisfaction_index": data.satisfaction_index, "nps_score": data.nps_score,
                   "comment": data.comment, "staff_id": _str(data.staff_id), "invitation_id": str(data.invitation_id),
                   "about_type": data.about_type, "about_id": str(data.about_id)}
        customer_id = await _surviving(session, data.customer_id)
        subject = Subject("survey_response", data.response_id, _tenant(event),
                          await self._store_of(session, event, customer_id), customer_id, data.vehicle_id,
                          {k: v for k, v in context.items() if v is not None})
        await triggers.survey_low_score(self.planner(session), subject, data.survey, data.answered_at)

    async def complaint_closed(self, session: AsyncSession, event: CloudEvent) -> None:
        data = sev.ComplaintClosed.model_validate(event.data)
        context = {"complaint_number": data.number, "category": data.category, "severity": data.severity,
                   "kind": data.kind, "owner_id": _str(data.owner_id), "feedback_result": data.feedback_result,
                   "feedback_speed": data.feedback_speed}
        customer_id = await _surviving(session, data.customer_id)
        subject = Subject("complaint", data.complaint_id, _tenant(event),
                          await self._store_of(session, event, customer_id), customer_id, data.vehicle_id,
                          {k: v for k, v in context.items() if v is not None})
        await triggers.complaint_closed(self.planner(session), subject, data.closed_at)

    async def _store_of(self, session: AsyncSession, event: CloudEvent, customer_id: uuid.UUID | None) -> uuid.UUID:
        """The event's store; the customer's when the event names none."""
        if event.storeid:
            return uuid.UUID(event.storeid)
        if customer_id is not None:
            return (await self._customer(session, customer_id)).store_id
        raise MissingDependency(f"{event.type} {event.subject} names no store and no customer")


async def _surviving(session: AsyncSession, customer_id: uuid.UUID | None) -> uuid.UUID | None:
    """The customer a survey_svc event is about now: survey_svc keeps the id the answer or complaint was taken
    under, and staff may have merged that record into another since (merge chains are kept flat)."""
    if customer_id is None:
        return None
    customer = await session.get(CustomerView, customer_id)
    return customer.merged_into_id if customer is not None and customer.merged_into_id else customer_id


def _str(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None


def _add_reading(vehicle: VehicleView, day: date, km: int) -> None:
    """Keep the odometer history sorted and short (the last 20 readings estimate the daily distance)."""
    readings = [r for r in (vehicle.mileage_readings or []) if r[0] != day.isoformat()]
    readings.append([day.isoformat(), km])
    vehicle.mileage_readings = sorted(readings)[-20:]


async def _cancel_open_tasks(session: AsyncSession, tenant_id: uuid.UUID, customer_id: uuid.UUID, reason: str,
                             now: datetime, *, vehicle_id: uuid.UUID | None = None, kind: str | None = None) -> None:
    """The customer's open tasks (of one vehicle, of one kind, when given) cancelled with ``reason``."""
    stmt = sa.update(Task).where(Task.tenant_id == tenant_id, Task.customer_id == customer_id,
                                 Task.status.in_(("open", "in_progress")))
    if vehicle_id is not None:
        stmt = stmt.where(Task.vehicle_id == vehicle_id)
    if kind is not None:
        stmt = stmt.where(Task.kind == kind)
    await session.execute(stmt.values(status="cancelled", outcome={"reason": reason}, completed_at=now,
                                      escalate_at=None, version=Task.version + 1))


def subscriptions(runtime: FollowupRuntime) -> list[Subscription]:
    h = Handlers(runtime)
    return [
        Subscription("stores", (ev.StoreUpserted.type,), h.store),
        Subscription("staff", (ev.StaffUpserted.type,), h.staff),
        Subscription("customer_created", (ev.CustomerCreated.type,), h.customer_created),
        Subscription("customer_updated", (ev.CustomerUpdated.type,), h.customer_updated),
        Subscription("customer_lost", (ev.CustomerLost.type,), h.customer_lost),
        Subscription("customer_merged", (ev.CustomerMerged.type,), h.customer_merged),
        Subscription("consent", (ev.CustomerConsentChanged.type,), h.consent_changed),
        Subscription("vehicles", (ev.VehicleRegistered.type, ev.VehicleUpdated.type), h.vehicle),
        Subscription("delivered", (ev.VehicleDelivered.type,), h.delivered),
        Subscription("transferred", (ev.VehicleTransferred.type,), h.transferred),
        Subscription("visits", (ev.ServiceVisitCompleted.type,), h.visit),
        Subscription("survey_low_score", (sev.SurveyLowScore.type,), h.low_score),
        Subscription("complaint_closed", (sev.ComplaintClosed.type,), h.complaint_closed),
    ]
