"""Everything one service needs at run time, built from its settings alone (embedded or production)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase

from shared.auth.tokens import TokenVerifier, load_or_create_dev_keys, read_key
from shared.db.engine import create_engine, make_sessionmaker
from shared.db.migrations import prepare_database
from shared.db.reader import Reader
from shared.http.call_audit import CallAudit, audit_table
from shared.http.idempotency import Idempotency
from shared.messaging.amqp import AmqpConsumerRunner, AmqpPublisher
from shared.messaging.consumer import EventConsumer, Subscription
from shared.messaging.housekeeping import run_housekeeping
from shared.messaging.memory import InProcessBus, db_parker
from shared.messaging.outbox import Outbox
from shared.messaging.relay import OutboxRelay
from shared.messaging.tables import MessagingModels
from shared.periodic import Periodic
from shared.settings import ServiceSettings


def public_key_for(settings: ServiceSettings) -> str:
    if settings.jwt_public_key:
        return read_key(settings.jwt_public_key)
    if settings.environment == "prod":
        raise RuntimeError("AFTERCARE_JWT_PUBLIC_KEY is required in production")
    return load_or_create_dev_keys(settings.var_dir)[1]


class ServiceRuntime:
    def __init__(self, settings: ServiceSettings, base: type[DeclarativeBase], messaging: MessagingModels,
                 migrations_dir: Path, subscriptions: Callable[[ServiceRuntime], list[Subscription]] | None = None,
                 bus: InProcessBus | None = None) -> None:
        self.settings = settings
        self.name = settings.service_name
        self.metadata = base.metadata
        self.messaging = messaging
        self.migrations_dir = migrations_dir
        self.engine = create_engine(settings)
        self.sessionmaker = make_sessionmaker(self.engine)
        self.reader = Reader(settings.database_url) if self.engine.dialect.name == "postgresql" else None
        if settings.embedded:
            self.bus = bus or InProcessBus()
            self.publisher: InProcessBus | AmqpPublisher = self.bus
        else:
            self.bus = None
            assert settings.amqp_url is not None
            self.publisher = AmqpPublisher(settings.amqp_url, settings.exchange)
        self.relay = OutboxRelay(self.name, self.sessionmaker, messaging.outbox, self.publisher,
                                 settings.relay_batch_size, settings.relay_poll_seconds)
        self.outbox = Outbox(messaging.outbox, source=self.name, on_append=self.relay.nudge)
        self.idempotency = Idempotency(self.sessionmaker, messaging.idempotency)
        self.verifier = TokenVerifier(public_key_for(settings), settings.jwt_issuer, settings.jwt_audience)
        self.consumer = EventConsumer(self.name, self.sessionmaker, messaging.inbox,
                                      subscriptions(self) if subscriptions else [])
        self.consumer_runner: AmqpConsumerRunner | None = None
        #: The service's own periodic jobs (scheduler, dispatcher, SLA watch...): started with the worker and
        #: part of its liveness.
        self.loops: list[Periodic] = []
        #: Integration calls to this service's API, buffered for its audit log (written by the API process).
        self.call_audit = CallAudit(self.name, self.engine, audit_table(self.metadata))

    async def prepare(self) -> None:
        """Embedded start-up: create (SQLite) or migrate (Postgres) this service's schema."""
        await prepare_database(self.engine, self.metadata, self.settings, self.migrations_dir)

    def start_workers(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        """Outbox relay and event consumers (the worker process; embedded mode runs them in the API process)."""
        tasks = [asyncio.create_task(self.relay.run(stop), name=f"{self.name}.relay"),
                 asyncio.create_task(run_housekeeping(self.sessionmaker, self.messaging, stop),
                                     name=f"{self.name}.housekeeping")]
        tasks += [asyncio.create_task(loop.run(stop), name=f"{self.name}.{loop.name}") for loop in self.loops]
        if not self.consumer.subscriptions:
            return tasks
        if self.bus is not None:
            self.bus.attach(self.consumer, db_parker(self.sessionmaker, self.messaging.parked))
        else:
            assert self.settings.amqp_url is not None
            self.consumer_runner = AmqpConsumerRunner(
                self.consumer, self.settings.amqp_url, self.settings.exchange,
                self.settings.consumer_prefetch, self.settings.retry_delays_ms)
            tasks.append(asyncio.create_task(self.consumer_runner.run(stop), name=f"{self.name}.consumer"))
        return tasks

    def worker_alive(self, max_silence: float = 60) -> bool:
        """The relay, every periodic loop and the consumers' connect loop turned recently. A broker outage is not
        a dead worker: its consumers reconnect on their own, and the relay, scheduler and dispatcher have work that
        needs only Postgres, which a restart would interrupt."""
        now = time.monotonic()
        loops_ok = all(now - loop.beat < max(max_silence, loop.poll_seconds * 3) for loop in self.loops)
        relay_ok = now - self.relay.beat < max_silence
        consumers_ok = self.consumer_runner is None or now - self.consumer_runner.beat < max_silence
        return relay_ok and loops_ok and consumers_ok

    async def check_database(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def check_broker(self) -> None:
        if isinstance(self.publisher, AmqpPublisher):
            await self.publisher.ping()

    async def dispose(self) -> None:
        if isinstance(self.publisher, AmqpPublisher):
            await self.publisher.close()
        if self.reader is not None:
            await self.reader.close()
        await self.engine.dispose()
