"""Fixtures of the survey tests: customer_svc and survey_svc running on the real broker, a dealer group survey_svc
already knows, a pinned clock, and helpers to invite (as followup_svc's command does) and to read the tables."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from survey_svc.app import SurveyRuntime
from survey_svc.invitations.tokens import token_for
from survey_svc.models import Invitation, StaffView, StoreView, SurveyTemplate, VisitView
from shared.auth.roles import Role
from shared.db.base import utcnow
from shared.events.catalog.followup import SurveyRequested
from shared.events.envelope import build_event
from shared.messaging.amqp import AmqpPublisher
from shared.testing.waiting import eventually
from tests.conftest import Group, customer_body, make_group
from tests.customer_svc.factories import new_vehicle


class SurveyClock:
    """survey_svc's "now" (API and worker loops), pinned for one test and moved by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> datetime:
        self.now += by
        return self.now


@pytest.fixture
async def sclock(survey_runtime: SurveyRuntime) -> AsyncIterator[SurveyClock]:
    fixed = SurveyClock()
    survey_runtime.clock = fixed
    yield fixed
    survey_runtime.clock = utcnow


async def survey_knows(runtime: SurveyRuntime, group: Group) -> None:
    """Wait until survey_svc has the group's stores, staff and default surveys."""

    async def known() -> bool:
        async with runtime.sessionmaker() as s:
            stores = await s.scalar(sa.select(sa.func.count()).select_from(StoreView)
                                    .where(StoreView.tenant_id == group.tenant_id))
            staff = await s.scalar(sa.select(sa.func.count()).select_from(StaffView)
                                   .where(StaffView.tenant_id == group.tenant_id))
            surveys = await s.scalar(sa.select(sa.func.count()).select_from(SurveyTemplate)
                                     .where(SurveyTemplate.tenant_id == group.tenant_id))
        return stores == 2 and staff >= 18 and surveys > 0

    await eventually(known)


@pytest.fixture
async def sgroup(customer_runtime, survey_runtime: SurveyRuntime, sclock: SurveyClock) -> Group:  # type: ignore[no-untyped-def]
    """A dealer group whose stores, staff and default surveys survey_svc already knows."""
    group = await make_group(customer_runtime)
    await survey_knows(survey_runtime, group)
    return group


async def new_customer(client: httpx.AsyncClient, group: Group, store: str = "A", **fields: Any) -> dict:
    r = await client.post("/api/v1/customers", json=customer_body(group.stores[store], **fields),
                          headers=group.headers())
    assert r.status_code == 201, r.text
    return r.json()


async def publish_survey_request(runtime: SurveyRuntime, group: Group, customer_id: uuid.UUID | str, *,
                                 about_id: uuid.UUID | None = None, about_type: str = "visit",
                                 survey: str = "service_satisfaction", store: str = "A",
                                 staff_id: uuid.UUID | None = None, key: str | None = None) -> str:
    """Publish ``followup.survey.requested.v1`` on the real broker, as followup_svc's relay does; returns its
    idempotency key."""
    key = key or f"test:{uuid.uuid4()}"
    data = SurveyRequested(request_id=uuid.uuid4(), idempotency_key=key, customer_id=uuid.UUID(str(customer_id)),
                           rule_key="service_survey", survey=survey, about_type=about_type,  # type: ignore[arg-type]
                           about_id=about_id or uuid.uuid4(), staff_id=staff_id, channels=["sms"],
                           not_before=runtime.clock())
    event = build_event(data, source="followup_svc", tenant_id=group.tenant_id, store_id=group.stores[store])
    publisher = AmqpPublisher(runtime.settings.amqp_url or "", runtime.settings.exchange)
    try:
        assert (await publisher.publish_batch([event])) == [None]
    finally:
        await publisher.close()
    return key


async def invitation_by_key(runtime: SurveyRuntime, group: Group, key: str, timeout: float = 15) -> Invitation:
    async def found() -> Invitation | None:
        async with runtime.sessionmaker() as s:
            return await s.scalar(sa.select(Invitation).where(Invitation.tenant_id == group.tenant_id,
                                                              Invitation.idempotency_key == key))

    return await eventually(found, timeout=timeout)


def token_of(runtime: SurveyRuntime, invitation_id: uuid.UUID) -> str:
    """The answer link's token (what the SMS carries)."""
    return token_for(runtime.settings.token_secret, invitation_id)


async def rows(runtime: SurveyRuntime, model: Any, tenant_id: uuid.UUID, **where: object) -> list[Any]:
    """Rows of ``model`` in one dealer group, filtered by column equality."""
    async with runtime.sessionmaker() as s:
        stmt = sa.select(model).where(model.tenant_id == tenant_id)
        for name, value in where.items():
            stmt = stmt.where(getattr(model, name) == value)
        return list((await s.scalars(stmt)).all())


async def visited(client: httpx.AsyncClient, runtime: SurveyRuntime, group: Group, customer_id: str,
                  kind: str = "visit", store: str = "A") -> str:
    """A real repair order (``kind="visit"``: the visit id) or delivery (the vehicle id) of the customer,
    recorded in customer_svc and known to survey_svc."""
    admin = group.headers(Role.ADMIN, store)
    vehicle = await new_vehicle(client, group, customer_id, store)
    if kind == "visit":
        r = await client.post("/api/v1/visits", headers=admin, json={
            "vehicle_id": vehicle["id"], "visit_type": "maintenance", "completed_at": datetime.now(UTC).isoformat()})
    else:
        r = await client.post(f"/api/v1/vehicles/{vehicle['id']}/delivery", headers=admin,
                              json={"delivery_date": datetime.now(UTC).date().isoformat()})
    assert r.status_code in (200, 201), r.text
    about = r.json()["id"]

    async def known() -> bool:
        async with runtime.sessionmaker() as s:
            return await s.get(VisitView, (uuid.UUID(about), kind)) is not None

    await eventually(known)
    return about
