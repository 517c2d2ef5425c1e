"""``make bench-notify``: policy-checked sends per second end to end, beside the provider's raw capacity.

One run is self-contained: a fresh database (notify_svc's schema, migrated with Alembic) and RabbitMQ vhost, the
provider sandbox in its own process (``python -m notify_svc.sandbox``: real Aliyun request signing checked on
every call), and one dealer group with one store whose time zone puts "now" mid-day locally (so quiet hours do
not depend on when the bench runs) and its default templates with an approved Aliyun template code.

The workload is 50,000 ``followup.message.requested.v1`` commands, published on the broker before the worker starts:

- 38,000 service messages, two to each of 19,000 customers (send);
- 5,000 to customers who withdrew SMS consent for service messages (suppressed: consent);
- 2,500 marketing messages to customers without marketing consent (suppressed: consent);
- 2,000 service messages, four to each of 500 customers, over the daily cap of 3 (1,500 sent, 500 held);
- 2,500 redeliveries of commands already published (no new message).

1. ``raw_provider_per_s``: the Aliyun adapter alone sends to the sandbox from this process, 64 calls in flight,
   for 10,000 messages: what the fake provider and one client process can do with no database or policy.
2. ``sends_per_s``: one notify worker process (``python -m notify_svc worker``: consumers, dispatcher, relay) takes
   the commands from the broker, checks each against the policy, calls the sandbox and commits each status;
   the clock runs from its first stored message until every message has its decided status. Sends are
   messages the provider accepted (``sent``). Messages due together with one template go as Aliyun
   ``SendBatchSms`` requests (up to 100 numbers each), as in production; the provider requests made are printed.
3. ``policy_violations``: what the sandbox received, checked against the rules: any message to a customer without
   the consent, more than the daily cap to one number, a message sent twice (the same ``OutId`` and number: a
   batch's numbers share its ``OutId``), or a count that differs from what notify_svc recorded as sent. Must be 0.

The last line printed is one JSON object: ``sends_per_s``, ``raw_provider_per_s``, ``ratio``, ``policy_violations``.
Target: sends_per_s >= 1,000 per worker process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import sqlalchemy as sa
from pydantic import SecretStr

from bench.__main__ import machine
from bench.procs import ROOT, Server, cpu_seconds
from notify_svc.app import MIGRATIONS
from notify_svc.channels.aliyun import AliyunSms
from notify_svc.channels.base import Outgoing
from notify_svc.consumers import subscriptions
from notify_svc.models import CustomerView, Message, StoreView, Template
from notify_svc.settings import NotifySettings
from notify_svc.templates.seeding import ensure_default_templates
from shared.auth.tokens import generate_keypair
from shared.db import migrations
from shared.db.engine import create_engine, make_sessionmaker
from shared.events.catalog.followup import MessageRequested
from shared.events.envelope import build_event
from shared.messaging.amqp import declare_exchange, declare_service_queues
from shared.testing import infra

EXCHANGE = "aftercare.events"
KEY_ID, KEY_SECRET = "LTAI5tBenchKeyId0001", "aliyun-bench-secret-not-real"
TEMPLATE_CODE = "SMS_900001"
KEYS = ["sends_per_s", "raw_provider_per_s", "ratio", "policy_violations"]
TARGETS = {"sends_per_s": 1000.0}
REGULAR, REVOKED, NO_MARKETING, CAPPED, CAPPED_EACH = 19_000, 5_000, 2_500, 500, 4
DUPLICATES = 2_500
DAILY_CAP = 3
BENCH_TENANT = uuid.UUID(int=0xBE7C0001)
BENCH_STORE = uuid.UUID(int=0xBE7C0002)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def midday_zone() -> str:
    """A fixed-offset IANA zone where it is about 13:00 now (Etc/GMT-8 is UTC+8: the sign is inverted)."""
    offset = (13 - datetime.now(UTC).hour + 12) % 24 - 12
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")


def phone(i: int) -> str:
    return f"+86137{i:08d}"


async def seed(url: str, tenant: uuid.UUID, store: uuid.UUID) -> None:
    engine = create_engine(NotifySettings(database_url=url, environment="test"))
    sessions = make_sessionmaker(engine)
    now = datetime.now(UTC)
    async with sessions() as s, s.begin():
        s.add(StoreView(id=store, tenant_id=tenant, code="B", name="Bench store", timezone=midday_zone(), active=True))
        await ensure_default_templates(s, tenant)
        await s.execute(sa.update(Template).where(Template.tenant_id == tenant, Template.channel == "sms")
                        .values(provider_codes={"aliyun": TEMPLATE_CODE}, sign_name="基准汽车"))
    rows: list[dict[str, Any]] = []
    total = REGULAR + REVOKED + NO_MARKETING + CAPPED
    for i in range(total):
        consents = {"sms:service": False} if REGULAR <= i < REGULAR + REVOKED else {}
        rows.append(dict(id=customer_id(i), tenant_id=tenant, store_id=store, name=f"客户{i}", phone=phone(i),
                         consents=consents, do_not_call=False, status="active", updated_at=now))
    async with sessions() as s, s.begin():
        for chunk in range(0, len(rows), 5000):
            await s.execute(sa.insert(CustomerView.__table__), rows[chunk:chunk + 5000])
    await engine.dispose()


def customer_id(i: int) -> uuid.UUID:
    return uuid.UUID(int=(0xBE7C << 112) | i)


def commands(tenant: uuid.UUID, store: uuid.UUID) -> list[aio_pika.Message]:
    """The 50,000 commands, as followup_svc's relay would publish them."""
    now = datetime.now(UTC)
    specs: list[tuple[int, str, str, str]] = []  # customer index, template, purpose, key
    for i in range(REGULAR):
        specs += [(i, "purchase_thanks", "service", f"r:{i}:a"), (i, "service_thanks", "service", f"r:{i}:b")]
    specs += [(REGULAR + i, "purchase_thanks", "service", f"x:{i}") for i in range(REVOKED)]
    specs += [(REGULAR + REVOKED + i, "monthly_care", "marketing", f"m:{i}") for i in range(NO_MARKETING)]
    base = REGULAR + REVOKED + NO_MARKETING
    specs += [(base + i, "purchase_thanks", "service", f"c:{i}:{n}") for i in range(CAPPED) for n in range(CAPPED_EACH)]
    specs += [specs[k * 7] for k in range(DUPLICATES)]  # redelivered commands (same key)
    out = []
    for index, template, purpose, key in specs:
        data = MessageRequested(request_id=uuid.uuid4(), idempotency_key=key, customer_id=customer_id(index),
                                rule_key="bench", template=template, channels=["sms"],
                                purpose=purpose,  # type: ignore[arg-type]
                                variables={"plate": "粤B12345"}, not_before=now,
                                expires_at=now + timedelta(days=1))
        event = build_event(data, source="followup_svc", tenant_id=tenant, store_id=store)
        out.append(aio_pika.Message(event.model_dump_json().encode(), content_type="application/cloudevents+json",
                                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=str(event.id)))
    return out


async def publish(amqp_url: str, settings: NotifySettings) -> int:
    """Declare notify_svc's queues (as its worker would) and publish the commands into them, confirmed."""
    tenant, store = BENCH_TENANT, BENCH_STORE
    conn = await aio_pika.connect(amqp_url)
    try:
        channel = await conn.channel(publisher_confirms=True)
        exchange = await declare_exchange(channel, EXCHANGE)
        patterns = sorted({p for sub in subscriptions(None) for p in sub.patterns})  # type: ignore[arg-type]
        await declare_service_queues(channel, exchange, "notify_svc", patterns, settings.retry_delays_ms)
        messages = commands(tenant, store)
        for chunk in range(0, len(messages), 1000):
            await asyncio.gather(*(exchange.publish(m, routing_key=MessageRequested.type)
                                   for m in messages[chunk:chunk + 1000]))
        return len(messages)
    finally:
        await conn.close()


async def raw_provider(endpoint: str, count: int) -> float:
    """The adapter alone against the sandbox: sends per second with 64 in flight (distinct numbers)."""
    adapter = AliyunSms(endpoint=endpoint, access_key_id=KEY_ID, access_key_secret=SecretStr(KEY_SECRET),
                        timeout=10.0)
    gate = asyncio.Semaphore(64)

    async def one(i: int) -> bool:
        out = Outgoing(message_id=uuid.uuid4(), channel="sms", to=f"+86136{i:08d}", text="raw",
                       template_code=TEMPLATE_CODE, sign_name="基准汽车", params={"customer_name": "x"})
        async with gate:
            return (await adapter.send(out)).outcome.value == "sent"

    try:
        await asyncio.gather(*(one(i) for i in range(200)))  # warm the connections
        started = time.perf_counter()
        results = await asyncio.gather(*(one(1000 + i) for i in range(count)))
        elapsed = time.perf_counter() - started
    finally:
        await adapter.aclose()
    if not all(results):
        raise RuntimeError(f"raw run: {results.count(False)} sends were refused")
    return count / elapsed


def worker_env(url: str, amqp_url: str, endpoint: str, workdir: Path, public_key: Path) -> dict[str, str]:
    return {"NOTIFY_ENVIRONMENT": "prod", "NOTIFY_DATABASE_URL": url, "NOTIFY_AMQP_URL": amqp_url,
            "NOTIFY_EXCHANGE": EXCHANGE, "NOTIFY_JWT_PUBLIC_KEY": str(public_key), "NOTIFY_VAR_DIR": str(workdir),
            "NOTIFY_PII_HASH_KEY": "bench-only-key", "NOTIFY_SMS_PROVIDER": "aliyun",
            "NOTIFY_ALIYUN_ENDPOINT": endpoint, "NOTIFY_ALIYUN_ACCESS_KEY_ID": KEY_ID,
            "NOTIFY_ALIYUN_ACCESS_KEY_SECRET": KEY_SECRET, "NOTIFY_PROVIDER_QPS": '{"aliyun": 100000}',
            "NOTIFY_LOG_LEVEL": "WARNING", "NOTIFY_CONSUMER_PREFETCH": "200",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "services")])}


async def drain(url: str, expected: dict[str, int], max_seconds: float) -> tuple[float, dict[str, int]]:
    """Seconds from the first stored message until every message has its decided status; final counts."""
    engine = create_engine(NotifySettings(database_url=url, environment="test"))
    counts: dict[str, int] = {}
    first: float | None = None
    deadline = time.monotonic() + max_seconds
    try:
        while time.monotonic() < deadline:
            async with engine.connect() as conn:
                rows = await conn.execute(sa.select(Message.status, sa.func.count()).group_by(Message.status))
                counts = {s: n for s, n in rows}
            if first is None and counts:
                first = time.monotonic()
            if all(counts.get(status, 0) >= n for status, n in expected.items()):
                assert first is not None
                return time.monotonic() - first, counts
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()
    print(f"NOT DRAINED in {max_seconds:.0f} s: the figures below cover what was done by then", flush=True)
    return time.monotonic() - (first or deadline - max_seconds), counts


async def violations(sandbox_url: str, url: str) -> tuple[int, list[str]]:
    """Everything the sandbox received, checked against the policy and against notify_svc's own records."""
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=60) as http:
        received = (await http.get("/_sandbox/messages", params={"provider": "aliyun"})).json()
    engine = create_engine(NotifySettings(database_url=url, environment="test"))
    async with engine.connect() as conn:
        sent = await conn.scalar(sa.select(sa.func.count()).select_from(Message)
                                 .where(Message.status == "sent"))
    await engine.dispose()
    problems: list[str] = []
    no_consent = {phone(i).removeprefix("+86") for i in range(REGULAR, REGULAR + REVOKED + NO_MARKETING)}
    to_them = [m for m in received if m["to"] in no_consent]
    if to_them:
        problems.append(f"{len(to_them)} messages to customers without consent")
    per_number = Counter(m["to"] for m in received)
    over = [n for n, c in per_number.items() if c > DAILY_CAP]
    if over:
        problems.append(f"{len(over)} numbers over the daily cap")
    # A single send's OutId is its message id; a batch's OutId is shared by its numbers, each its own message. And
    # whatever the route (a batch, or alone after a refused batch), no number gets more than its messages.
    base = REGULAR + REVOKED + NO_MARKETING
    allowed = {**{phone(i).removeprefix("+86"): 2 for i in range(REGULAR)},
               **{phone(base + i).removeprefix("+86"): DAILY_CAP for i in range(CAPPED)}}
    twice = [k for k, c in Counter((m["our_id"], m["to"]) for m in received).items() if c > 1]
    twice += [n for n, c in per_number.items() if c > allowed.get(n, 0) and n not in no_consent]
    if twice:
        problems.append(f"{len(twice)} messages sent twice")
    if len(received) != sent:
        problems.append(f"sandbox received {len(received)}, notify_svc recorded {sent} sent")
    return len(to_them) + len(over) + len(twice) + abs(len(received) - (sent or 0)), problems


async def main(args: argparse.Namespace) -> dict[str, float]:
    print(f"Aftercare notify bench: {machine()}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="aftercare-bench-notify-"))
    db_name, url = await infra.create_database()
    vhost, amqp_url = await asyncio.to_thread(infra.create_vhost)
    sandbox: Server | None = None
    worker: subprocess.Popen[bytes] | None = None
    try:
        settings = NotifySettings(database_url=url, amqp_url=amqp_url, environment="test")
        await asyncio.to_thread(migrations.upgrade, settings, MIGRATIONS)
        public = workdir / "jwt_public.pem"
        public.write_text(generate_keypair()[1])
        port = free_port()
        sandbox = Server("sandbox", ["-m", "notify_svc.sandbox", "--host", "127.0.0.1", "--port", str(port),
                                     "--aliyun-key", f"{KEY_ID}:{KEY_SECRET}"],
                         port, workdir / "sandbox.log", ready_path="/_sandbox/stats").start()
        endpoint = f"http://127.0.0.1:{port}/aliyun/"
        await seed(url, BENCH_TENANT, BENCH_STORE)
        published = await publish(amqp_url, settings)
        print(f"seeded {REGULAR + REVOKED + NO_MARKETING + CAPPED:,} customers; published {published:,} commands "
              f"(store time zone {midday_zone()})", flush=True)

        raw = await raw_provider(endpoint, args.raw_count)
        print(f"raw provider: {raw:,.0f} sends/s (Aliyun adapter -> sandbox, 64 in flight)", flush=True)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            await http.post("/_sandbox/reset")

        log = (workdir / "worker.log").open("ab")
        if args.split:  # diagnostics: the intake alone first (the dispatcher asleep), then the sending alone
            env = {**os.environ, **worker_env(url, amqp_url, endpoint, workdir, public),
                   "NOTIFY_DISPATCHER_POLL_SECONDS": "3600"}
            intake = subprocess.Popen([sys.executable, "-m", "notify_svc", "worker"], stdout=log, stderr=log,
                                      env=env, cwd=workdir)
            took, _ = await drain(url, {"queued": REGULAR * 2 + REVOKED + NO_MARKETING + CAPPED * CAPPED_EACH},
                                  args.max_seconds)
            cpu = cpu_seconds(intake.pid)
            intake.send_signal(2)
            intake.wait(30)
            print(f"intake alone: {47_500 / took:,.0f} commands/s ({took:.1f} s, worker CPU {cpu:.1f} s)", flush=True)
        profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
        worker = subprocess.Popen([sys.executable, *profile, "-m", "notify_svc", "worker"], stdout=log, stderr=log,
                                  env={**os.environ, **worker_env(url, amqp_url, endpoint, workdir, public)},
                                  cwd=workdir)
        sent_expected = REGULAR * 2 + CAPPED * DAILY_CAP
        expected = {"sent": sent_expected, "suppressed": REVOKED + NO_MARKETING,
                    "held": CAPPED * (CAPPED_EACH - DAILY_CAP)}
        cpu_before = cpu_seconds(worker.pid)
        elapsed, counts = await drain(url, expected, args.max_seconds)
        cpu = cpu_seconds(worker.pid) - cpu_before
        sends = counts.get("sent", 0) / elapsed
        print(f"worker: {counts} in {elapsed:.1f} s; {sends:,.0f} sends/s; worker CPU {cpu:.1f} s", flush=True)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            stats = (await http.get("/_sandbox/stats")).json()
        print(f"provider requests: {stats['requests']['aliyun']:,} ({stats['aliyun_batches']:,} SendBatchSms)",
              flush=True)
        bad, problems = await violations(f"http://127.0.0.1:{port}", url)
        for p in problems:
            print(f"POLICY VIOLATION: {p}", flush=True)
        return {"sends_per_s": round(sends, 1), "raw_provider_per_s": round(raw, 1),
                "ratio": round(sends / raw, 3), "policy_violations": bad}
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(2)  # SIGINT: a clean stop (and the profile, when asked, is written)
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()
        if sandbox is not None:
            sandbox.stop()
        await infra.drop_database(db_name)
        await asyncio.to_thread(infra.delete_vhost, vhost)
        shutil.rmtree(workdir, ignore_errors=True)


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw-count", type=int, default=10_000)
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--split", action="store_true", help="measure the intake alone first, then the sends")
    parser.add_argument("--profile", metavar="FILE", help="run the worker under cProfile, stats written to FILE")
    figures = asyncio.run(main(parser.parse_args()))
    for key, target in TARGETS.items():
        mark = "meets" if figures[key] >= target else "MISSES"
        print(f"{key}: {figures[key]:,} ({mark} the target {target:,.0f})", flush=True)
    print(json.dumps({k: figures[k] for k in KEYS}), flush=True)


if __name__ == "__main__":
    run()
