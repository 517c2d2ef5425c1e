"""Outbox -> RabbitMQ -> inbox, on the real broker: events for every change, duplicates absorbed,
poison messages parked after bounded retries while others flow, parked messages replayed, relay replicas."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import ClassVar

import aio_pika
import httpx
import sqlalchemy as sa

from customer_svc.app import CustomerRuntime
from customer_svc.models import TimelineEntry
from shared.auth.roles import Role
from shared.events.envelope import CloudEvent, EventData, build_event
from shared.messaging.amqp import AmqpConsumerRunner, list_parked, replay_parked
from shared.messaging.consumer import HANDLED, EventConsumer, Subscription
from shared.messaging.relay import OutboxRelay
from shared.testing.events import EventTap
from shared.testing.waiting import eventually
from tests.conftest import Group, Infra, customer_body


async def publish_raw(infra_env: Infra, body: bytes, routing_key: str, message_id: str | None = None) -> None:
    conn = await aio_pika.connect(infra_env.amqp_url)
    async with conn:
        channel = await conn.channel()
        exchange = await channel.get_exchange(infra_env.exchange)
        await exchange.publish(aio_pika.Message(body, message_id=message_id,
                                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=routing_key)


@contextlib.asynccontextmanager
async def probe_consumer(infra_env: Infra, runtime: CustomerRuntime, service: str, handler, delays: list[int]):  # type: ignore[no-untyped-def]
    """A throwaway consuming service on the session's broker, handling ``test.<service>.#`` with ``handler``."""
    consumer = EventConsumer(service, runtime.sessionmaker, runtime.messaging.inbox,
                             [Subscription("probe", (f"test.{service}.#",), handler)])
    runner = AmqpConsumerRunner(consumer, infra_env.amqp_url, infra_env.exchange, prefetch=10, retry_delays_ms=delays)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await asyncio.wait_for(runner.connected.wait(), 10)
        yield f"test.{service}.probe.v1"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


class TestEveryChangePublishes:
    async def test_customer_and_vehicle_lifecycle_events(self, client: httpx.AsyncClient, group: Group,
                                                         event_tap: EventTap) -> None:
        h = group.headers(Role.SALES_MANAGER)
        c = (await client.post("/api/v1/customers", json=customer_body(group.store_a), headers=h)).json()
        other = (await client.post("/api/v1/customers", json=customer_body(group.store_a), headers=h)).json()
        await client.patch(f"/api/v1/customers/{c['id']}", json={"intent_level": "A"}, headers={**h, "If-Match": 'W/"1"'})
        await client.put(f"/api/v1/customers/{c['id']}/consents", headers=h,
                         json={"channel": "wechat", "purpose": "service", "granted": True, "source": "app"})
        v = (await client.post("/api/v1/vehicles", headers=h, json={
            "customer_id": c["id"], "vin": "LSVAU218XN2183294", "plate": "粤B12345"})).json()
        await client.post(f"/api/v1/vehicles/{v['id']}/delivery", json={"delivery_date": "2026-11-01"}, headers=h)
        await client.post(f"/api/v1/vehicles/{v['id']}/transfer", json={"customer_id": other["id"]}, headers=h)
        prospect = (await client.post("/api/v1/customers", json=customer_body(group.store_a), headers=h)).json()
        lost = await client.post(f"/api/v1/customers/{prospect['id']}/lost", json={"reason": "moved away"}, headers=h)
        assert lost.status_code == 200, lost.text

        for type_, subject in [
            ("customer.customer.created.v1", c["id"]), ("customer.customer.updated.v1", c["id"]),
            ("customer.customer.consent_changed.v1", c["id"]), ("customer.vehicle.registered.v1", v["id"]),
            ("customer.vehicle.delivered.v1", v["id"]), ("customer.vehicle.transferred.v1", v["id"]),
            ("customer.customer.lost.v1", prospect["id"]),
        ]:
            event = (await event_tap.wait_for(type_, subject=subject))[0]
            assert event.specversion == "1.0" and event.source == "customer_svc"
            assert event.tenantid == str(group.tenant_id) and event.storeid == str(group.store_a)
            assert event.correlationid and event.time.tzinfo is not None
            assert str(event.id) in event_tap.message_ids  # AMQP message_id = event id (consumer dedup key)
        updates = await event_tap.wait_for("customer.customer.updated.v1", subject=c["id"], count=2)
        assert sorted(u.data["changed"][0] for u in updates) == ["intent_level", "relationship_type"]
        assert all(u.data["intent_level"] == "A" for u in updates)

    async def test_timeline_is_fed_by_the_consumer(self, client: httpx.AsyncClient, group: Group) -> None:
        c = (await client.post("/api/v1/customers", json=customer_body(group.store_a), headers=group.headers())).json()
        await client.post("/api/v1/vehicles", headers=group.headers(),
                          json={"customer_id": c["id"], "vin": "1M8GDM9AXKP042788", "delivery_date": "2026-10-01"})

        async def types() -> set[str] | None:
            page = (await client.get(f"/api/v1/customers/{c['id']}/timeline", headers=group.headers())).json()
            found = {i["event_type"] for i in page["items"]}
            return found if len(found) >= 4 else None

        assert await eventually(types) == {"customer.customer.created.v1", "customer.vehicle.registered.v1",
                                           "customer.vehicle.delivered.v1", "customer.customer.updated.v1"}


class TestDuplicates:
    async def test_same_event_twice_has_one_effect(self, infra_env: Infra, customer_runtime: CustomerRuntime,
                                                   group: Group) -> None:
        customer_id = uuid.uuid4()
        event = CloudEvent(id=uuid.uuid4(), source="survey_svc", type="test.survey.answered.v1",
                           time="2026-11-23T08:00:00Z", tenantid=str(group.tenant_id), storeid=str(group.store_a),
                           data={"customer_id": str(customer_id), "score": 9})
        duplicates = HANDLED.labels("customer_svc", "timeline", "duplicate")
        before = duplicates._value.get()
        for _ in range(2):
            await publish_raw(infra_env, event.model_dump_json().encode(), event.type, str(event.id))
        await eventually(lambda: asyncio.sleep(0, duplicates._value.get() >= before + 1))
        async with customer_runtime.sessionmaker() as s:
            rows = (await s.scalars(sa.select(TimelineEntry).where(TimelineEntry.customer_id == customer_id))).all()
        assert [r.id for r in rows] == [event.id]


class ProbeEvent(EventData):
    type: ClassVar[str] = "test.relay.probe.v1"
    subject_field: ClassVar[str] = "run"
    run: str
    n: int


class TestPoisonAndReplay:
    async def test_poison_is_parked_after_bounded_retries_while_others_flow(
            self, infra_env: Infra, customer_runtime: CustomerRuntime) -> None:
        service = f"test_poison_{uuid.uuid4().hex[:6]}"
        handled: list[int] = []
        attempts: dict[int, int] = {}
        healthy = asyncio.Event()

        async def handler(session, event: CloudEvent) -> None:  # type: ignore[no-untyped-def]
            n = event.data["n"]
            attempts[n] = attempts.get(n, 0) + 1
            if event.data.get("poison") and not healthy.is_set():
                raise RuntimeError("boom: cannot handle this one")
            handled.append(n)

        async with probe_consumer(infra_env, customer_runtime, service, handler, [100, 300]) as key:

            def event(n: int, poison: bool = False) -> CloudEvent:
                return CloudEvent(id=uuid.uuid4(), source="test", type=key, time="2026-11-23T08:00:00Z",
                                  data={"n": n, "poison": poison})

            poison = event(0, poison=True)
            await publish_raw(infra_env, poison.model_dump_json().encode(), key, str(poison.id))
            for n in range(1, 6):
                e = event(n)
                await publish_raw(infra_env, e.model_dump_json().encode(), key, str(e.id))
            await eventually(lambda: asyncio.sleep(0, sorted(handled) == [1, 2, 3, 4, 5]))
            parked = await eventually(lambda: list_parked(infra_env.amqp_url, service))
            assert attempts[0] == 3 and 0 not in handled  # 1 try + 2 retries, then parked
            assert len(parked) == 1 and parked[0]["message_id"] == str(poison.id)
            assert parked[0]["attempts"] == 3 and "boom" in parked[0]["error"]

            healthy.set()  # the bug is fixed: replay the parked message
            assert await replay_parked(infra_env.amqp_url, service) == 1
            await eventually(lambda: asyncio.sleep(0, 0 in handled))
            assert await list_parked(infra_env.amqp_url, service) == []

    async def test_a_stopping_consumer_finishes_the_messages_under_way(
            self, infra_env: Infra, customer_runtime: CustomerRuntime) -> None:
        """SIGTERM while a handler runs: it finishes and its message is acked before the connection closes (not
        cut off, rolled back and delivered again to the next worker)."""
        service = f"test_stop_{uuid.uuid4().hex[:6]}"
        started, handled = asyncio.Event(), []

        async def handler(session, event: CloudEvent) -> None:  # type: ignore[no-untyped-def]
            started.set()
            await asyncio.sleep(0.5)
            handled.append(event.data["n"])

        consumer = EventConsumer(service, customer_runtime.sessionmaker, customer_runtime.messaging.inbox,
                                 [Subscription("probe", (f"test.{service}.#",), handler)])
        key = f"test.{service}.probe.v1"

        async def consuming(stop: asyncio.Event) -> asyncio.Task[None]:
            """A runner's task, once it is subscribed (the queue and its bindings exist)."""
            runner = AmqpConsumerRunner(consumer, infra_env.amqp_url, infra_env.exchange, prefetch=10,
                                        retry_delays_ms=[100])
            task = asyncio.create_task(runner.run(stop))
            await asyncio.wait_for(runner.connected.wait(), 10)
            return task

        stop = asyncio.Event()
        first = await consuming(stop)
        event = CloudEvent(id=uuid.uuid4(), source="test", type=key, time="2026-11-23T08:00:00Z", data={"n": 1})
        await publish_raw(infra_env, event.model_dump_json().encode(), key, str(event.id))
        await asyncio.wait_for(started.wait(), 10)
        stop.set()
        await asyncio.wait_for(first, 10)
        assert handled == [1]  # finished before the runner returned
        # acked: a fresh consumer on the queue gets nothing more
        started.clear()
        again = asyncio.Event()
        second = await consuming(again)
        await asyncio.sleep(1)  # a redelivery would arrive at once
        again.set()
        await asyncio.wait_for(second, 10)
        assert handled == [1] and not started.is_set()

    async def test_database_outage_is_retried_without_using_up_attempts(
            self, infra_env: Infra, customer_runtime: CustomerRuntime) -> None:
        from sqlalchemy.exc import OperationalError

        service = f"test_outage_{uuid.uuid4().hex[:6]}"
        failures_left = [6]  # more than the 3 attempts a failing handler gets
        handled: list[str] = []

        async def handler(session, event: CloudEvent) -> None:  # type: ignore[no-untyped-def]
            if failures_left[0] > 0:
                failures_left[0] -= 1
                raise OperationalError("SELECT 1", {}, ConnectionRefusedError("database is restarting"))
            handled.append(str(event.id))

        async with probe_consumer(infra_env, customer_runtime, service, handler, [50, 100]) as key:
            event = CloudEvent(id=uuid.uuid4(), source="test", type=key, time="2026-11-23T08:00:00Z", data={})
            await publish_raw(infra_env, event.model_dump_json().encode(), key, str(event.id))
            await eventually(lambda: asyncio.sleep(0, handled == [str(event.id)]))
            assert await list_parked(infra_env.amqp_url, service) == []

    async def test_undecodable_message_is_parked_at_once(self, infra_env: Infra,
                                                         customer_runtime: CustomerRuntime) -> None:
        message_id = str(uuid.uuid4())
        await publish_raw(infra_env, b"{not json", "test.garbage.v1", message_id)
        parked = await eventually(lambda: list_parked(infra_env.amqp_url, "customer_svc"))
        [entry] = [p for p in parked if p["message_id"] == message_id]
        assert entry["attempts"] == 1 and "undecodable" in entry["error"]


class TestRelayReplicas:
    async def test_three_relays_publish_each_event_exactly_once(self, customer_runtime: CustomerRuntime,
                                                                event_tap: EventTap) -> None:
        run = uuid.uuid4().hex
        async with customer_runtime.sessionmaker() as session, session.begin():
            for n in range(300):
                customer_runtime.outbox.append(session, ProbeEvent(run=run, n=n), tenant_id=None, store_id=None)
        extra = [OutboxRelay("customer_svc", customer_runtime.sessionmaker, customer_runtime.messaging.outbox,
                             customer_runtime.publisher, batch_size=20) for _ in range(2)]
        # Two more replicas race the session's own relay over the same rows.
        counts = await asyncio.gather(*(r.run_once() for r in extra for _ in range(3)))
        assert sum(counts) > 0
        events = await event_tap.wait_for("test.relay.probe.v1", subject=run, count=300, timeout=30)
        await asyncio.sleep(0.5)
        events = event_tap.matching("test.relay.probe.v1", subject=run)
        assert sorted(e.data["n"] for e in events) == list(range(300))


class TestHousekeeping:
    async def test_old_published_outbox_rows_and_old_inbox_ids_are_pruned(self, customer_runtime: CustomerRuntime) -> None:
        from datetime import timedelta

        from shared.db.base import utcnow
        from shared.messaging.housekeeping import prune

        m = customer_runtime.messaging
        old, fresh = uuid.uuid4(), uuid.uuid4()
        async with customer_runtime.sessionmaker() as s, s.begin():
            for event_id, age in ((old, timedelta(days=8)), (fresh, timedelta(hours=1))):
                e = build_event(ProbeEvent(run="prune", n=0), source="t", tenant_id=None, store_id=None)
                s.add(m.outbox(id=event_id, event_type=e.type, payload=e.model_dump(mode="json"),
                               occurred_at=utcnow() - age, published_at=utcnow() - age))
                s.add(m.inbox(event_id=event_id, consumer="t.prune", event_type=e.type,
                              received_at=utcnow() - age * 4))
        await prune(customer_runtime.sessionmaker, m)
        async with customer_runtime.sessionmaker() as s:
            outbox_left = set((await s.scalars(sa.select(m.outbox.id).where(m.outbox.id.in_([old, fresh])))).all())
            inbox_left = set((await s.scalars(sa.select(m.inbox.event_id).where(m.inbox.event_id.in_([old, fresh])))).all())
        assert outbox_left == {fresh} and inbox_left == {fresh}


class TestOwnerPromotion:
    async def test_delivery_turns_the_prospect_into_an_owner_with_an_event(self, client: httpx.AsyncClient,
                                                                           group: Group, event_tap: EventTap) -> None:
        c = (await client.post("/api/v1/customers", json=customer_body(group.store_a), headers=group.headers())).json()
        v = (await client.post("/api/v1/vehicles", headers=group.headers(),
                               json={"customer_id": c["id"], "vin": "1M8GDM9AXKP042788"})).json()
        await client.post(f"/api/v1/vehicles/{v['id']}/delivery", json={"delivery_date": "2026-11-20"},
                          headers=group.headers())
        [update] = await event_tap.wait_for("customer.customer.updated.v1", subject=c["id"])
        assert update.data["relationship"] == "owner" and update.data["changed"] == ["relationship_type"]
        log = (await client.get("/api/v1/audit", params={"record_id": c["id"]}, headers=group.headers())).json()
        assert [e["action"] for e in log["items"]] == ["update", "create"]


class TestWorkerLiveness:
    async def test_heartbeat_file_is_touched_while_the_worker_is_healthy(self, customer_runtime: CustomerRuntime,
                                                                         tmp_path) -> None:  # type: ignore[no-untyped-def]
        from shared.cli import heartbeat

        assert customer_runtime.worker_alive()
        path = tmp_path / "worker.alive"
        stop = asyncio.Event()
        task = asyncio.create_task(heartbeat(customer_runtime, path, stop, every=0.05))
        await eventually(lambda: asyncio.sleep(0, path.exists()))
        stop.set()
        await task
        customer_runtime.relay.beat -= 3600  # as if the relay loop had been stuck for an hour
        assert not customer_runtime.worker_alive()
        customer_runtime.relay.beat += 3600
        runner = customer_runtime.consumer_runner
        assert runner is not None
        runner.beat -= 3600  # the consumers' connect loop stuck
        assert not customer_runtime.worker_alive()
        runner.beat += 3600
