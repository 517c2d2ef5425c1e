"""Outbox relay throughput (events/s from table rows to broker confirms) vs raw aio-pika publish-with-confirm.

Both publish the same bodies, persistent and mandatory, to the platform's topic exchange with a quorum
queue bound (as production routes them), in batches of the same size with ``asyncio.gather``. The
difference is what the relay adds: claiming rows (``FOR UPDATE SKIP LOCKED``), decoding and validating
the stored envelope, building the message, marking the rows published, committing.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass

import aio_pika
import asyncpg

from customer_svc.models import messaging
from shared.db.engine import create_engine, make_sessionmaker
from shared.events.catalog.customer import ConsentState, CustomerCreated
from shared.events.envelope import CloudEvent, build_event
from shared.messaging.amqp import CONTENT_TYPE, AmqpPublisher, declare_exchange
from shared.messaging.relay import OutboxRelay
from bench.env import EXCHANGE, BenchEnv

QUEUE = "bench.relay"
SOURCE = "customer_svc"


@dataclass
class RelayOptions:
    events: int = 20_000
    rounds: int = 2
    batch_size: int | None = None  # None: the service's setting (relay_batch_size)
    sweep: tuple[int, ...] = (100, 500)
    timeout: float = 120


def make_events(n: int) -> list[CloudEvent]:
    tenant, store = uuid.uuid4(), uuid.uuid4()
    out = []
    for i in range(n):
        data = CustomerCreated(
            customer_id=uuid.uuid4(), store_id=store, customer_no=f"C{i:016d}", kind="person", name=f"客户{i}",
            primary_phone=f"+86158{i:08d}", relationship="prospect", intent_level="H", preferred_channel="wechat",
            tags=["bench", "vip"], consents=[ConsentState(channel="sms", purpose="service", granted=True)])
        out.append(build_event(data, source=SOURCE, tenant_id=tenant, store_id=store))
    return out


def pg_dsn(env: BenchEnv) -> str:
    return env.database_url.replace("postgresql+asyncpg://", "postgresql://")


async def fill_outbox(env: BenchEnv, events: list[CloudEvent]) -> None:
    """Rows exactly as ``Outbox.append`` writes them, loaded with COPY, then ANALYZEd (like autovacuum would)."""
    conn = await asyncpg.connect(pg_dsn(env))
    try:
        await conn.execute("TRUNCATE customer.outbox_message")
        records = [(e.id, e.type, json.dumps(e.model_dump(mode="json")), e.time, None, 0, e.time, None) for e in events]
        await conn.copy_records_to_table(
            "outbox_message", schema_name="customer", records=records,
            columns=["id", "event_type", "payload", "occurred_at", "published_at", "attempts", "next_attempt_at",
                     "last_error"])
        await conn.execute("ANALYZE customer.outbox_message")
    finally:
        await conn.close()


async def pending(env: BenchEnv) -> int:
    conn = await asyncpg.connect(pg_dsn(env))
    try:
        return await conn.fetchval("SELECT count(*) FROM customer.outbox_message WHERE published_at IS NULL")
    finally:
        await conn.close()


class Topology:
    """The exchange (with its alternate exchange) and one quorum queue bound to every customer event."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def __aenter__(self) -> Topology:
        self.conn = await aio_pika.connect(self.url, timeout=5)
        self.channel = await self.conn.channel()
        exchange = await declare_exchange(self.channel, EXCHANGE)
        self.queue = await self.channel.declare_queue(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        await self.queue.bind(exchange, routing_key="customer.#")
        return self

    async def count(self) -> int:
        q = await self.channel.declare_queue(QUEUE, passive=True)
        return q.declaration_result.message_count or 0

    async def wait_count(self, n: int, timeout: float = 10) -> int:
        deadline = time.monotonic() + timeout
        while (c := await self.count()) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return c

    async def purge(self) -> None:
        await self.queue.purge()

    async def __aexit__(self, *exc: object) -> None:
        await self.conn.close()


async def raw_publish(url: str, events: list[CloudEvent], batch: int) -> float:
    """Plain aio-pika: confirms on, persistent + mandatory, same bodies and properties; no database."""
    prepared = []
    for e in events:
        headers = {"ce-type": e.type, "correlation-id": e.correlationid} if e.correlationid else {"ce-type": e.type}
        prepared.append((e.model_dump_json().encode(), str(e.id), e.type, e.time, e.source, e.correlationid, headers))
    conn = await aio_pika.connect(url, timeout=5)
    try:
        channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await declare_exchange(channel, EXCHANGE)
        start = time.perf_counter()
        for i in range(0, len(prepared), batch):
            results = await asyncio.gather(*(
                exchange.publish(aio_pika.Message(body=body, content_type=CONTENT_TYPE,
                                                  delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=mid,
                                                  type=etype, timestamp=ts, app_id=src, correlation_id=cid,
                                                  headers=hdrs),
                                 routing_key=etype, mandatory=True, timeout=10)
                for body, mid, etype, ts, src, cid, hdrs in prepared[i:i + batch]), return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                raise RuntimeError(f"raw publish failed: {failed[0]!r}")
        elapsed = time.perf_counter() - start
    finally:
        await conn.close()
    return len(events) / elapsed


async def relay_publish(env: BenchEnv, events: list[CloudEvent], batch: int, timeout: float) -> float:
    """``OutboxRelay.run_once`` with ``AmqpPublisher`` (the worker's code path) until the outbox is drained."""
    settings = env.settings(relay_batch_size=batch)
    engine = create_engine(settings)
    publisher = AmqpPublisher(env.amqp_url, EXCHANGE)
    relay = OutboxRelay(SOURCE, make_sessionmaker(engine), messaging.outbox, publisher, settings.relay_batch_size)
    try:
        await fill_outbox(env, [])
        await relay.run_once()  # warm: pool connection, prepared statements (empty table)
        await publisher.ping()
        await fill_outbox(env, events)
        start = time.perf_counter()
        deadline = time.monotonic() + timeout
        published = 0
        while published < len(events):
            claimed = await relay.run_once()
            if claimed == 0:
                raise RuntimeError(f"relay claimed nothing after {published} of {len(events)} events")
            published += claimed
            if time.monotonic() > deadline:
                raise RuntimeError(f"relay did not drain {len(events)} events in {timeout:g}s")
        elapsed = time.perf_counter() - start
    finally:
        await publisher.close()
        await engine.dispose()
    left = await pending(env)
    if left:
        raise RuntimeError(f"{left} outbox rows still unpublished")
    return len(events) / elapsed


async def run_relay(env: BenchEnv, opts: RelayOptions) -> dict[str, float]:
    batch = opts.batch_size or env.settings().relay_batch_size
    events = make_events(opts.events)
    raws: list[float] = []
    relays: list[float] = []
    async with Topology(env.amqp_url) as topo:
        print(f"  {opts.events} CustomerCreated events (~{len(events[0].model_dump_json())} B), batch {batch}, "
              f"quorum queue bound, {opts.rounds} rounds alternating", flush=True)
        for r in range(opts.rounds):
            for kind in ("raw", "relay"):
                await topo.purge()
                if kind == "raw":
                    eps = await raw_publish(env.amqp_url, events, batch)
                    raws.append(eps)
                else:
                    eps = await relay_publish(env, events, batch, opts.timeout)
                    relays.append(eps)
                routed = await topo.wait_count(len(events))
                if routed != len(events):
                    raise RuntimeError(f"{kind}: {routed} of {len(events)} messages reached the queue")
                print(f"  round {r + 1}: {kind:<5} {eps:8.0f} events/s", flush=True)
        sweep = {}
        for size in opts.sweep:
            if size == batch:
                continue
            await topo.purge()
            sweep[size] = await relay_publish(env, events, size, opts.timeout)
            print(f"  relay, batch {size:<4} {sweep[size]:8.0f} events/s (one round, for comparison)", flush=True)
        await topo.purge()
    raw_best, relay_best = max(raws), max(relays)
    return {
        "relay_eps": round(relay_best, 1),
        "raw_publish_eps": round(raw_best, 1),
        "relay_ratio": round(relay_best / raw_best, 3),
        "relay_batch_size": batch,
        **{f"relay_eps_batch_{k}": round(v, 1) for k, v in sweep.items()},
    }
