"""Events survey_svc consumes: customer_svc's basic data (stores, staff, customers, the visits and deliveries
surveys are about) feeds the read model; followup_svc's survey commands become invitations."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from survey_svc.invitations.service import InviteRequest, SurveyUnknown, invite
from survey_svc.models import CustomerView, StaffView, StoreView, VisitView
from survey_svc.policy import rules_for
from survey_svc.surveys.store import ensure_default_surveys
from shared.db.base import dialect_insert
from shared.events.catalog import customer as ev
from shared.events.catalog import followup as fev
from shared.events.envelope import CloudEvent
from shared.messaging.consumer import Subscription

if TYPE_CHECKING:
    from survey_svc.app import SurveyRuntime

log = structlog.get_logger("survey_consumers")
#: CustomerUpdated ``changed`` names that mean the contact phone changed.
PHONE_FIELDS = {"phones", "primary_phone", "phone"}


def _tenant(event: CloudEvent) -> uuid.UUID:
    return uuid.UUID(event.tenantid)  # type: ignore[arg-type]


async def _upsert(session: AsyncSession, model: Any, key: Any, **values: Any) -> Any:
    row = await session.get(model, key, with_for_update=True)
    if row is None:
        row = model(**values)
        session.add(row)
    else:
        for name, value in values.items():
            setattr(row, name, value)
    return row


async def store(session: AsyncSession, event: CloudEvent) -> None:
    data = ev.StoreUpserted.model_validate(event.data)
    await _upsert(session, StoreView, data.store_id, id=data.store_id, tenant_id=_tenant(event), code=data.code,
                  name=data.name, timezone=data.timezone, active=data.active)
    await ensure_default_surveys(session, _tenant(event))


async def staff(session: AsyncSession, event: CloudEvent) -> None:
    data = ev.StaffUpserted.model_validate(event.data)
    await _upsert(session, StaffView, data.staff_id, id=data.staff_id, tenant_id=_tenant(event), name=data.name,
                  roles=list(data.roles), store_ids=[str(s) for s in data.store_ids], active=data.active)


async def customer(session: AsyncSession, event: CloudEvent) -> None:
    """The customer's copy, newest snapshot wins. A phone change is recognised from an update's ``changed`` list,
    or from a different number than the copy had: an update can arrive first (events about one customer are
    handled concurrently), and its change must not be lost to the older "created" snapshot behind it."""
    data = ev.CustomerSnapshot.model_validate(event.data)
    row = await session.get(CustomerView, data.customer_id, with_for_update=True)
    if row is None:
        # Insert-if-absent, then lock: two first events for one customer must not both insert.
        await session.execute(dialect_insert(session)(CustomerView).values(
            id=data.customer_id, tenant_id=_tenant(event), store_id=data.store_id, name=data.name,
            phone=data.primary_phone, status="active").on_conflict_do_nothing(index_elements=["id"]))
        row = await session.get(CustomerView, data.customer_id, with_for_update=True, populate_existing=True)
        assert row is not None
    if row.snapshot_at is not None and event.time < row.snapshot_at:
        return  # an older snapshot overtaken by a newer one
    changed = set(event.data.get("changed") or [])
    if changed & PHONE_FIELDS or (row.snapshot_at is not None and data.primary_phone != row.phone):
        row.phone_changed_at = max(row.phone_changed_at or event.time, event.time)
    row.store_id, row.name, row.phone, row.snapshot_at = data.store_id, data.name, data.primary_phone, event.time


async def merged(session: AsyncSession, event: CloudEvent) -> None:
    data = ev.CustomerMerged.model_validate(event.data)
    row = await session.get(CustomerView, data.merged_id, with_for_update=True)
    if row is not None:
        row.status, row.merged_into = "merged", data.customer_id


async def visit_completed(session: AsyncSession, event: CloudEvent) -> None:
    data = ev.ServiceVisitCompleted.model_validate(event.data)
    await _upsert(session, VisitView, (data.visit_id, "visit"), id=data.visit_id, kind="visit",
                  tenant_id=_tenant(event), store_id=uuid.UUID(event.storeid), customer_id=data.customer_id,  # type: ignore[arg-type]
                  vehicle_id=data.vehicle_id, visit_type=data.visit_type, ro_number=data.ro_number,
                  staff_id=data.advisor_id, completed_at=data.completed_at)


async def vehicle_delivered(session: AsyncSession, event: CloudEvent) -> None:
    data = ev.VehicleDelivered.model_validate(event.data)
    await _upsert(session, VisitView, (data.vehicle_id, "delivery"), id=data.vehicle_id, kind="delivery",
                  tenant_id=_tenant(event), store_id=uuid.UUID(event.storeid), customer_id=data.customer_id,  # type: ignore[arg-type]
                  vehicle_id=data.vehicle_id, staff_id=data.selling_consultant_id, completed_at=event.time,
                  delivery_date=data.delivery_date)


def subscriptions(runtime: SurveyRuntime) -> list[Subscription]:
    async def survey_requested(session: AsyncSession, event: CloudEvent) -> None:
        data = fev.SurveyRequested.model_validate(event.data)
        tenant = _tenant(event)
        req = InviteRequest(
            tenant_id=tenant, store_id=uuid.UUID(event.storeid), idempotency_key=data.idempotency_key,  # type: ignore[arg-type]
            survey_key=data.survey, customer_id=data.customer_id, vehicle_id=data.vehicle_id,
            about_type=data.about_type, about_id=data.about_id, staff_id=data.staff_id,
            channels=[str(c) for c in data.channels], not_before=data.not_before, rule_key=data.rule_key)
        if data.expires_at is not None and data.expires_at <= runtime.clock():
            return  # the command went stale on its way (the worker was down): nothing to ask any more
        try:
            await invite(session, runtime.outbox, runtime.settings, await rules_for(session, tenant), req,
                         runtime.clock())
        except SurveyUnknown:
            log.warning("survey_unknown", survey=data.survey)

    return [
        Subscription("stores", (ev.StoreUpserted.type,), store),
        Subscription("staff", (ev.StaffUpserted.type,), staff),
        Subscription("customers", (ev.CustomerCreated.type, ev.CustomerUpdated.type), customer),
        Subscription("merged", (ev.CustomerMerged.type,), merged),
        Subscription("visits", (ev.ServiceVisitCompleted.type,), visit_completed),
        Subscription("deliveries", (ev.VehicleDelivered.type,), vehicle_delivered),
        Subscription("survey_requests", (fev.SurveyRequested.type,), survey_requested),
    ]
