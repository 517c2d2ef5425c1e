"""Fixtures of the notify tests: customer_svc and notify_svc running on the real broker, a dealer group that
notify_svc already knows, and helpers that read notify_svc's tables."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from notify_svc.app import NotifyRuntime
from notify_svc.models import CustomerView, Message, StaffView, StoreView, Template
from shared.db.base import utcnow
from shared.events.catalog.followup import MessageRequested
from shared.events.envelope import build_event
from shared.messaging.amqp import AmqpPublisher
from shared.testing.waiting import eventually
from tests.conftest import Group, make_group
from tests.notify_svc.sandbox_env import Sandbox, sandbox

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def ngroup(customer_runtime, notify_runtime: NotifyRuntime) -> Group:  # type: ignore[no-untyped-def]
    """A dealer group whose stores, staff and default templates notify_svc already has."""
    group = await make_group(customer_runtime)

    async def known() -> bool:
        async with notify_runtime.sessionmaker() as s:
            stores = await s.scalar(sa.select(sa.func.count()).select_from(StoreView)
                                    .where(StoreView.tenant_id == group.tenant_id))
            staff = await s.scalar(sa.select(sa.func.count()).select_from(StaffView)
                                   .where(StaffView.tenant_id == group.tenant_id))
            templates = await s.scalar(sa.select(sa.func.count()).select_from(Template)
                                       .where(Template.tenant_id == group.tenant_id))
        return stores == 2 and staff >= 18 and templates > 0

    await eventually(known)
    return group


async def messages(runtime: NotifyRuntime, tenant_id: uuid.UUID, **where: object) -> list[Message]:
    """Messages of one dealer group, filtered by column equality, oldest first."""
    return await rows(runtime, Message, tenant_id, **where)


async def rows(runtime: NotifyRuntime, model: Any, tenant_id: uuid.UUID, **where: object) -> list[Any]:
    async with runtime.sessionmaker() as s:
        stmt = sa.select(model).where(model.tenant_id == tenant_id)
        for name, value in where.items():
            stmt = stmt.where(getattr(model, name) == value)
        return list((await s.scalars(stmt.order_by(model.created_at))).all())


@pytest.fixture
async def box(notify_runtime: NotifyRuntime) -> Sandbox:
    """The provider sandbox, with no faults and nothing recorded from earlier tests."""
    sandbox_ = await sandbox()
    sandbox_.state.reset()
    return sandbox_


class FixedClock:
    """The dispatcher's clock (the background loop's too), pinned for one test: policy decisions depend on the
    store-local time of day, and tests must not."""

    def __init__(self, runtime: NotifyRuntime) -> None:
        self.runtime = runtime
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def at_local(self, hh: int, mm: int = 0, days: int = 0) -> datetime:
        """Pin to today (+ ``days``) at hh:mm Shanghai time."""
        today = datetime.now(SHANGHAI).date() + timedelta(days=days)
        self.now = datetime.combine(today, time(hh, mm), SHANGHAI).astimezone(UTC)
        return self.now

    def advance(self, by: timedelta) -> datetime:
        self.now += by
        return self.now


@pytest.fixture
async def clock(notify_runtime: NotifyRuntime) -> AsyncIterator[FixedClock]:
    fixed = FixedClock(notify_runtime)
    fixed.at_local(10)
    notify_runtime.dispatcher.clock = fixed
    yield fixed
    notify_runtime.dispatcher.clock = utcnow


async def request_message(runtime: NotifyRuntime, group: Group, customer_id: str | uuid.UUID, *,
                          store: str = "A", template: str = "purchase_thanks", purpose: str = "service",
                          channels: tuple[str, ...] = ("sms",), key: str | None = None,
                          not_before: datetime | None = None, expires_at: datetime | None = None,
                          variables: dict[str, Any] | None = None) -> str:
    """Publish a ``followup.message.requested.v1`` command on the real broker, as followup_svc's relay does;
    returns its idempotency key."""
    key = key or f"test:{uuid.uuid4()}"
    data = MessageRequested(request_id=uuid.uuid4(), idempotency_key=key, customer_id=uuid.UUID(str(customer_id)),
                            rule_key="post_delivery_thanks_sms", template=template, channels=list(channels),
                            purpose=purpose, variables=variables or {"plate": "粤B12345"},  # type: ignore[arg-type]
                            not_before=not_before or runtime.dispatcher.clock(), expires_at=expires_at)
    event = build_event(data, source="followup_svc", tenant_id=group.tenant_id, store_id=group.stores[store])
    publisher = AmqpPublisher(runtime.settings.amqp_url or "", runtime.settings.exchange)
    try:
        assert (await publisher.publish_batch([event])) == [None]
    finally:
        await publisher.close()
    return key


async def message_by_key(runtime: NotifyRuntime, group: Group, key: str, *statuses: str,
                         timeout: float = 15) -> Message:
    """The message of ``key`` once it exists (and, when given, has one of ``statuses``)."""
    async def found() -> Message | None:
        async with runtime.sessionmaker() as s:
            row = await s.scalar(sa.select(Message).where(Message.tenant_id == group.tenant_id,
                                                          Message.idempotency_key == key))
        return row if row is not None and (not statuses or row.status in statuses) else None

    return await eventually(found, timeout=timeout)


async def known_customer(runtime: NotifyRuntime, customer_id: str) -> CustomerView:
    async def found() -> CustomerView | None:
        async with runtime.sessionmaker() as s:
            return await s.get(CustomerView, uuid.UUID(customer_id))

    return await eventually(found)


async def set_provider_code(runtime: NotifyRuntime, group: Group, key: str, channel: str, **codes: str) -> None:
    """What a tenant does once Aliyun / Tencent / WeChat approved a template: record its code."""
    async with runtime.sessionmaker() as s, s.begin():
        template = await s.scalar(sa.select(Template).where(Template.tenant_id == group.tenant_id,
                                                            Template.store_id.is_(None), Template.key == key,
                                                            Template.channel == channel))
        assert template is not None
        template.provider_codes = {**template.provider_codes, **codes}
        template.sign_name = template.sign_name or "测试汽车"


async def drain(runtime: NotifyRuntime, clock: FixedClock) -> None:
    """Let the dispatcher finish what earlier tests left due at the pinned time (held until a morning the clock
    has now passed), so faults queued in the shared sandbox meet this test's messages only."""
    runtime.nudge_dispatcher()

    async def idle() -> bool:
        async with runtime.sessionmaker() as s:
            due = await s.scalar(sa.select(sa.func.count()).select_from(Message).where(
                Message.status.in_(("queued", "held", "sending")), Message.next_attempt_at <= clock.now))
        return due == 0

    await eventually(idle)
