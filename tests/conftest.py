"""Test fixtures: real Postgres (a fresh database per session, migrated with Alembic) and real RabbitMQ
(a fresh vhost per session). Each test works in its own dealer group, so tests never share data."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import httpx
import pytest
import sqlalchemy as sa

from customer_svc.app import MIGRATIONS, CustomerRuntime, create_service_app
from customer_svc.bootstrap import StaffSeed, create_tenant
from customer_svc.models import Staff, Store
from customer_svc.settings import CustomerSettings
from followup_svc.app import MIGRATIONS as FOLLOWUP_MIGRATIONS, FollowupRuntime, create_service_app as followup_app
from followup_svc.settings import FollowupSettings
from notify_svc.app import MIGRATIONS as NOTIFY_MIGRATIONS, NotifyRuntime, create_service_app as notify_app
from notify_svc.settings import NotifySettings
from survey_svc.app import MIGRATIONS as SURVEY_MIGRATIONS, SurveyRuntime, create_service_app as survey_app
from survey_svc.settings import SurveySettings
from shared.auth.roles import Role
from shared.auth.tokens import generate_keypair
from shared.db import migrations
from shared.testing import infra
from shared.runtime import ServiceRuntime
from shared.testing.events import EventTap

PASSWORD = "correct-horse-battery"


@dataclass
class Infra:
    database_url: str
    amqp_url: str
    exchange: str
    private_key: str
    public_key: str

    def customer_settings(self, **overrides: object) -> CustomerSettings:
        values = dict(database_url=self.database_url, amqp_url=self.amqp_url, exchange=self.exchange,
                      jwt_private_key=self.private_key, jwt_public_key=self.public_key, environment="test",
                      retry_delays_ms=[100, 300], relay_poll_seconds=0.05, log_json=False)
        values.update(overrides)
        return CustomerSettings(**values)  # type: ignore[arg-type]

    def followup_settings(self, **overrides: object) -> FollowupSettings:
        values = dict(database_url=self.database_url, amqp_url=self.amqp_url, exchange=self.exchange,
                      jwt_public_key=self.public_key, environment="test", retry_delays_ms=[100, 300],
                      relay_poll_seconds=0.05, log_json=False, test_clock=True, scheduler_poll_seconds=0.1,
                      escalation_poll_seconds=0.1)
        values.update(overrides)
        return FollowupSettings(**values)  # type: ignore[arg-type]

    def notify_settings(self, **overrides: object) -> NotifySettings:
        values = dict(database_url=self.database_url, amqp_url=self.amqp_url, exchange=self.exchange,
                      jwt_public_key=self.public_key, environment="test", retry_delays_ms=[100, 300],
                      relay_poll_seconds=0.05, log_json=False, dispatcher_poll_seconds=0.1,
                      webhook_poll_seconds=0.1, webhook_allow_private=True)
        values.update(overrides)
        return NotifySettings(**values)  # type: ignore[arg-type]

    def survey_settings(self, **overrides: object) -> SurveySettings:
        values = dict(database_url=self.database_url, amqp_url=self.amqp_url, exchange=self.exchange,
                      jwt_public_key=self.public_key, environment="test", retry_delays_ms=[100, 300],
                      relay_poll_seconds=0.05, log_json=False, reminder_poll_seconds=0.1, sla_poll_seconds=0.1,
                      public_base_url="https://survey.test")
        values.update(overrides)
        return SurveySettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
async def infra_env() -> AsyncIterator[Infra]:
    db_name, db_url = await infra.create_database()
    vhost, amqp_url = await asyncio.to_thread(infra.create_vhost)
    private, public = generate_keypair()
    env = Infra(db_url, amqp_url, "aftercare.events", private, public)
    await asyncio.to_thread(migrations.upgrade, env.customer_settings(), MIGRATIONS)
    await asyncio.to_thread(migrations.upgrade, env.followup_settings(), FOLLOWUP_MIGRATIONS)
    await asyncio.to_thread(migrations.upgrade, env.notify_settings(), NOTIFY_MIGRATIONS)
    await asyncio.to_thread(migrations.upgrade, env.survey_settings(), SURVEY_MIGRATIONS)
    try:
        yield env
    finally:
        await infra.drop_database(db_name)
        await asyncio.to_thread(infra.delete_vhost, vhost)


@pytest.fixture(scope="session")
async def event_tap(infra_env: Infra) -> AsyncIterator[EventTap]:
    tap = await EventTap(infra_env.amqp_url, infra_env.exchange, durable_queue="test.tap").start()
    yield tap
    await tap.close()


R = TypeVar("R", bound=ServiceRuntime)


@asynccontextmanager
async def with_workers(runtime: R) -> AsyncIterator[R]:
    """A service runtime with its worker loops running (connected to the broker) until the block ends."""
    stop = asyncio.Event()
    tasks = runtime.start_workers(stop)
    if runtime.consumer_runner is not None:
        await asyncio.wait_for(runtime.consumer_runner.connected.wait(), 20)
    try:
        yield runtime
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runtime.dispose()


@pytest.fixture(scope="session")
async def customer_runtime(infra_env: Infra, event_tap: EventTap) -> AsyncIterator[CustomerRuntime]:
    """customer_svc with its worker (relay + consumers) running for the whole session."""
    async with with_workers(CustomerRuntime(infra_env.customer_settings())) as runtime:
        yield runtime


@pytest.fixture(scope="session")
async def client(customer_runtime: CustomerRuntime) -> AsyncIterator[httpx.AsyncClient]:
    """Real HTTP through the ASGI app (routing, validation, middleware, error handlers)."""
    app = create_service_app(customer_runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://customer.test") as c:
        yield c


@pytest.fixture(scope="session")
async def followup_runtime(infra_env: Infra, customer_runtime: CustomerRuntime) -> AsyncIterator[FollowupRuntime]:
    """followup_svc with its worker (relay, consumers, scheduler, SLA watch) and the test clock enabled."""
    async with with_workers(FollowupRuntime(infra_env.followup_settings())) as runtime:
        yield runtime


@pytest.fixture(scope="session")
async def followup_client(followup_runtime: FollowupRuntime) -> AsyncIterator[httpx.AsyncClient]:
    app = followup_app(followup_runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://followup.test") as c:
        yield c


@pytest.fixture(scope="session")
async def notify_runtime(infra_env: Infra, customer_runtime: CustomerRuntime) -> AsyncIterator[NotifyRuntime]:
    """notify_svc with its worker (relay, consumers, dispatcher, webhook deliveries); providers are set by
    ``tests/notify_svc/conftest.py`` to the local provider sandbox."""
    from tests.notify_svc.sandbox_env import sandbox_settings  # the sandbox's address is known only at run time

    async with with_workers(NotifyRuntime(infra_env.notify_settings(**await sandbox_settings()))) as runtime:
        yield runtime


@pytest.fixture(scope="session")
async def notify_client(notify_runtime: NotifyRuntime) -> AsyncIterator[httpx.AsyncClient]:
    app = notify_app(notify_runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notify.test") as c:
        yield c


@pytest.fixture(scope="session")
async def survey_runtime(infra_env: Infra, customer_runtime: CustomerRuntime) -> AsyncIterator[SurveyRuntime]:
    """survey_svc with its worker (relay, consumers, reminders, complaint SLA watch)."""
    async with with_workers(SurveyRuntime(infra_env.survey_settings())) as runtime:
        yield runtime


@pytest.fixture(scope="session")
async def survey_client(survey_runtime: SurveyRuntime) -> AsyncIterator[httpx.AsyncClient]:
    app = survey_app(survey_runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://survey.test") as c:
        yield c


@dataclass
class Group:
    """A dealer group made for one test: two stores and one user per role in each store."""

    tenant_id: uuid.UUID
    code: str
    stores: dict[str, uuid.UUID]
    runtime: CustomerRuntime
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def store_a(self) -> uuid.UUID:
        return self.stores["A"]

    @property
    def store_b(self) -> uuid.UUID:
        return self.stores["B"]

    def headers(self, role: Role | str = Role.ADMIN, store: str = "A", **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[(str(role), store)]}", **extra}


async def make_group(runtime: CustomerRuntime) -> Group:
    code = f"g{uuid.uuid4().hex[:10]}"
    roles = [r for r in Role if r is not Role.INTEGRATION]
    staff = [StaffSeed(f"{r.value}-{s}", f"{r.value} {s}", "dept", [r.value], [s]) for r in roles for s in ("A", "B")]
    tenant = await create_tenant(runtime.sessionmaker, runtime.outbox, code=code, name=f"Group {code}",
                                 stores=[("A", "Store A"), ("B", "Store B")], staff=staff, password=PASSWORD)
    group = Group(tenant, code, {}, runtime)
    async with runtime.sessionmaker() as session:
        group.stores = {s.code: s.id for s in await session.scalars(sa.select(Store).where(Store.tenant_id == tenant))}
        for member in await session.scalars(sa.select(Staff).where(Staff.tenant_id == tenant)):
            token, _ = runtime.issuer.issue(subject=member.id, tenant_id=tenant, store_ids=member.store_ids,
                                            roles=member.roles)
            role, store = member.employee_no.rsplit("-", 1)
            group.tokens[(role, store)] = token
    return group


@pytest.fixture
async def group(customer_runtime: CustomerRuntime) -> Group:
    return await make_group(customer_runtime)


_phone_counter = iter(range(10_000_000))


def new_phone() -> str:
    """A made-up, valid mainland mobile number, unique within the test session."""
    return f"+86139{os.getpid() % 100:02d}{next(_phone_counter):06d}"


def customer_body(store_id: uuid.UUID, **overrides: object) -> dict:
    body: dict = {"store_id": str(store_id), "name": "测试客户", "phones": [{"number": new_phone()}]}
    body.update(overrides)
    return body
