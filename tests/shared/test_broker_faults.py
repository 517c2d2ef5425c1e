"""Broker outages on a private RabbitMQ node (started for this module, so other suites are not disturbed):
events written while the broker is down all arrive once it is back, none twice; consumers really resume
after the broker application stops and after a full node restart."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import sqlalchemy as sa

from customer_svc.app import MIGRATIONS, CustomerRuntime, create_service_app
from customer_svc.models import TimelineEntry
from shared.db import migrations
from shared.testing import broker_node, infra
from shared.testing.events import EventTap
from tests.conftest import Group, Infra, customer_body, make_group
from shared.testing.waiting import eventually

pytestmark = [pytest.mark.broker_faults,
              pytest.mark.skipif(not broker_node.available(), reason="rabbitmq-server is not installed")]


@dataclass
class Faulty:
    node: broker_node.BrokerNode
    runtime: CustomerRuntime
    client: httpx.AsyncClient
    group: Group
    amqp_url: str

    async def tap(self) -> EventTap:
        """A durable queue bound to everything: it keeps collecting while the broker's clients are away."""
        return await EventTap(self.amqp_url, self.runtime.settings.exchange, durable_queue="faults.tap").start()


@pytest.fixture(scope="module")
async def faulty(infra_env: Infra) -> AsyncIterator[Faulty]:
    node = await asyncio.to_thread(broker_node.BrokerNode().start)
    db_name, db_url = await infra.create_database()
    settings = infra_env.customer_settings(database_url=db_url, amqp_url=node.url)
    await asyncio.to_thread(migrations.upgrade, settings, MIGRATIONS)
    runtime = CustomerRuntime(settings)
    first_tap = await EventTap(node.url, settings.exchange, durable_queue="faults.tap").start()
    await first_tap.close()
    stop = asyncio.Event()
    tasks = runtime.start_workers(stop)
    assert runtime.consumer_runner is not None
    await asyncio.wait_for(runtime.consumer_runner.connected.wait(), 20)
    app = create_service_app(runtime)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://faulty.test")
    try:
        yield Faulty(node, runtime, client, await make_group(runtime), node.url)
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()
        await runtime.dispose()
        await infra.drop_database(db_name)
        await asyncio.to_thread(node.destroy)


async def timeline_count(runtime: CustomerRuntime, customer_ids: list[str]) -> int:
    async with runtime.sessionmaker() as s:
        return await s.scalar(sa.select(sa.func.count()).select_from(TimelineEntry).where(
            TimelineEntry.customer_id.in_([uuid.UUID(c) for c in customer_ids]))) or 0


async def test_events_written_while_broker_down_arrive_once_it_is_back(faulty: Faulty) -> None:
    await faulty.node.astop_app()
    created = []
    for _ in range(20):
        resp = await faulty.client.post("/api/v1/customers", json=customer_body(faulty.group.store_a),
                                        headers=faulty.group.headers())
        assert resp.status_code == 201  # the API does not need the broker: the outbox holds the events
        created.append(resp.json()["id"])
    outbox = faulty.runtime.messaging.outbox
    async with faulty.runtime.sessionmaker() as s:
        pending = await s.scalar(sa.select(sa.func.count()).select_from(outbox).where(outbox.published_at.is_(None)))
    assert pending >= 20
    await asyncio.sleep(1)  # the relay keeps failing meanwhile, and must not give up or lose anything
    # A broker outage is not a dead worker (its consumers reconnect on their own): the liveness probe must not
    # restart it, interrupting work that needs only Postgres.
    runner = faulty.runtime.consumer_runner
    assert runner is not None
    await eventually(lambda: asyncio.sleep(0, not runner.connected.is_set()), timeout=20)
    assert faulty.runtime.worker_alive()

    await faulty.node.astart_app()
    tap = await faulty.tap()
    try:
        events = await tap.wait_for("customer.customer.created.v1", count=20, timeout=60,
                                    where=lambda e: e.subject in created)
        await asyncio.sleep(1)
        events = tap.matching("customer.customer.created.v1", where=lambda e: e.subject in created)
        assert sorted(e.subject for e in events) == sorted(created)  # every one, none twice
        # ...and the consumer, reconnected, applied each exactly once.
        assert await eventually(lambda: _equals(timeline_count(faulty.runtime, created), 20), timeout=30)
    finally:
        await tap.close()


async def _equals(coro, expected: int) -> bool:  # type: ignore[no-untyped-def]
    return (await coro) == expected


async def test_consumers_resume_after_full_node_restart(faulty: Faulty) -> None:
    runner = faulty.runtime.consumer_runner
    assert runner is not None
    await faulty.node.arestart()
    await asyncio.wait_for(runner.connected.wait(), 60)
    resp = await faulty.client.post("/api/v1/customers", json=customer_body(faulty.group.store_a),
                                    headers=faulty.group.headers())
    assert resp.status_code == 201
    customer_id = resp.json()["id"]
    # The event travels outbox -> relay (reconnected) -> broker -> consumer (re-declared, re-subscribed).
    assert await eventually(lambda: _equals(timeline_count(faulty.runtime, [customer_id]), 1), timeout=60)
