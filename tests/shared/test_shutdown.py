"""A stopping worker (SIGTERM on a rolling deploy or a scale-down) lets its loops finish the step under way, up to
its drain timeout, instead of cancelling them mid-step; loops waiting for their next poll stop at once."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import types
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import ClassVar

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from customer_svc.app import MIGRATIONS
from customer_svc.models import messaging
from customer_svc.settings import CustomerSettings
from shared import cli
from shared.db import migrations
from shared.db.engine import create_engine, make_sessionmaker
from shared.events.envelope import CloudEvent, EventData
from shared.messaging.outbox import Outbox
from shared.messaging.relay import OutboxRelay
from shared.periodic import Periodic, pause
from shared.testing import infra
from shared.testing.waiting import eventually


class SlowStep:
    """A periodic step that takes ``seconds`` and records each step it completes."""

    def __init__(self, seconds: float, result: int = 0) -> None:
        self.seconds = seconds
        self.result = result
        self.started = asyncio.Event()
        self.done: list[float] = []

    async def __call__(self) -> int:
        self.started.set()
        await asyncio.sleep(self.seconds)
        self.done.append(time.monotonic())
        return self.result


async def returns_within(seconds: float, awaitable: Awaitable[object]) -> float:
    t0 = time.monotonic()
    await asyncio.wait_for(awaitable, seconds)
    return time.monotonic() - t0


class TestPause:
    async def test_ends_on_any_event_or_the_timeout(self) -> None:
        a, b = asyncio.Event(), asyncio.Event()
        assert await returns_within(1, pause(0.05, a, b)) >= 0.04
        asyncio.get_running_loop().call_later(0.05, b.set)
        assert await returns_within(1, pause(60, a, b)) < 1
        assert await returns_within(0.1, pause(60, a, b)) < 0.1  # already set: no wait at all


class TestPeriodicStops:
    async def test_step_under_way_finishes_when_stop_is_set(self) -> None:
        step = SlowStep(0.5)
        stop = asyncio.Event()
        task = asyncio.create_task(Periodic("slow", step, poll_seconds=0.01).run(stop))
        await asyncio.wait_for(step.started.wait(), 5)
        t0 = time.monotonic()
        assert await cli.drain([task], stop, timeout=5) == []
        assert len(step.done) == 1 and step.done[0] >= t0  # the step finished after stop was set, and no other ran
        assert task.done() and not task.cancelled()

    async def test_full_batches_stop_between_steps(self) -> None:
        """A loop with more work waiting skips its pause, but still checks ``stop`` before the next step."""
        step = SlowStep(0.1, result=10)
        stop = asyncio.Event()
        task = asyncio.create_task(Periodic("busy", step, poll_seconds=60, full_batch=10).run(stop))
        await asyncio.wait_for(step.started.wait(), 5)
        assert await cli.drain([task], stop, timeout=5) == []
        assert len(step.done) == 1

    async def test_loop_waiting_for_its_poll_stops_at_once(self) -> None:
        step = SlowStep(0)
        stop = asyncio.Event()
        task = asyncio.create_task(Periodic("idle", step, poll_seconds=60).run(stop))
        await asyncio.wait_for(step.started.wait(), 5)
        await asyncio.sleep(0.05)  # now in its 60 s pause
        stop.set()
        assert await returns_within(1, task) < 0.5

    async def test_loop_backing_off_after_a_failure_stops_at_once(self) -> None:
        failed = asyncio.Event()

        async def failing() -> int:
            failed.set()
            raise RuntimeError("database away")

        stop = asyncio.Event()
        task = asyncio.create_task(Periodic("failing", failing, poll_seconds=60).run(stop))
        await asyncio.wait_for(failed.wait(), 5)
        await asyncio.sleep(0.05)  # in its back-off (1 s after a first failure)
        stop.set()
        assert await returns_within(1, task) < 0.5

    async def test_a_nudge_still_ends_the_pause(self) -> None:
        step = SlowStep(0)
        stop = asyncio.Event()
        loop = Periodic("nudged", step, poll_seconds=60)
        task = asyncio.create_task(loop.run(stop))
        await asyncio.wait_for(step.started.wait(), 5)
        await asyncio.sleep(0.05)
        loop.nudge()
        await eventually(lambda: asyncio.sleep(0, len(step.done) == 2), timeout=5)
        await cli.drain([task], stop, timeout=5)


class TestDrain:
    async def test_a_step_that_does_not_finish_in_time_is_cancelled(self) -> None:
        step = SlowStep(30)
        stop = asyncio.Event()
        task = asyncio.create_task(Periodic("import", step, poll_seconds=1).run(stop), name="customer_svc.imports")
        await asyncio.wait_for(step.started.wait(), 5)
        t0 = time.monotonic()
        assert await cli.drain([task], stop, timeout=0.3) == [task]
        assert 0.25 <= time.monotonic() - t0 < 2
        assert task.cancelled() and step.done == []

    async def test_hurry_cancels_at_once(self) -> None:
        step = SlowStep(30)
        stop, hurry = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(Periodic("import", step, poll_seconds=1).run(stop))
        await asyncio.wait_for(step.started.wait(), 5)
        asyncio.get_running_loop().call_later(0.1, hurry.set)
        assert await returns_within(2, cli.drain([task], stop, timeout=20, hurry=hurry)) < 1
        assert task.cancelled()

    async def test_finished_and_failed_tasks_and_no_tasks(self) -> None:
        async def boom() -> None:
            raise RuntimeError("crashed earlier")

        failed = asyncio.create_task(boom())
        await asyncio.sleep(0)
        assert await cli.drain([failed], asyncio.Event(), timeout=1) == []
        stop = asyncio.Event()
        assert await cli.drain([], stop, timeout=1) == [] and stop.is_set()

    def test_the_default_fits_in_the_pods_grace_period(self) -> None:
        assert 0 < cli.DRAIN_SECONDS <= 20  # terminationGracePeriodSeconds is 30 (tests/deploy/test_manifests.py)


class TestRunWorker:
    """``run_worker`` itself, signalled like the kubelet does, with a stand-in runtime."""

    @pytest.fixture(autouse=True)
    def _no_gc_freeze(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(cli.gc_tuning, "settle", lambda: None)  # process-wide: not in the test runner

    @staticmethod
    def runtime(step: SlowStep) -> tuple[types.SimpleNamespace, asyncio.Event]:
        started = asyncio.Event()
        disposed: list[bool] = []

        def start_workers(stop: asyncio.Event) -> list[asyncio.Task[None]]:
            started.set()
            return [asyncio.create_task(Periodic("step", step, poll_seconds=60).run(stop))]

        async def dispose() -> None:
            disposed.append(True)

        settings = types.SimpleNamespace(worker_metrics_port=None, worker_heartbeat_file=None)
        return types.SimpleNamespace(settings=settings, start_workers=start_workers, dispose=dispose,
                                     disposed=disposed), started

    async def test_sigterm_lets_the_step_finish_then_disposes(self) -> None:
        step = SlowStep(0.5)
        runtime, started = self.runtime(step)
        worker = asyncio.create_task(cli.run_worker(runtime, drain_seconds=5))  # type: ignore[arg-type]
        await asyncio.wait_for(started.wait(), 5)
        await asyncio.wait_for(step.started.wait(), 5)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(worker, 5)
        assert len(step.done) == 1 and runtime.disposed == [True]
        # the handlers are gone with the worker (the default action again)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL

    async def test_a_second_signal_cuts_the_drain_short(self) -> None:
        step = SlowStep(30)
        runtime, _ = self.runtime(step)
        worker = asyncio.create_task(cli.run_worker(runtime, drain_seconds=20))  # type: ignore[arg-type]
        await asyncio.wait_for(step.started.wait(), 5)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.1)
        assert not worker.done()  # draining: the step has 20 s
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.wait_for(worker, 2)
        assert step.done == [] and runtime.disposed == [True]


# ---- the outbox relay, on Postgres: a batch under way when stop is set is published and its rows marked -----------


class ShutdownProbe(EventData):
    type: ClassVar[str] = "test.shutdown.probe.v1"
    subject_field: ClassVar[str] = "run"
    run: str
    n: int


class SlowPublisher:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = asyncio.Event()
        self.published: list[CloudEvent] = []

    async def publish_batch(self, events: list[CloudEvent]) -> list[BaseException | None]:
        self.started.set()
        await asyncio.sleep(self.seconds)
        self.published.extend(events)
        return [None] * len(events)


@pytest.fixture(scope="module")
async def outbox_db() -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    name, url = await infra.create_database()
    settings = CustomerSettings(database_url=url)
    await asyncio.to_thread(migrations.upgrade, settings, MIGRATIONS)
    engine = create_engine(settings)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()
        await infra.drop_database(name)


async def appended(sessionmaker: async_sessionmaker[AsyncSession], count: int) -> str:
    run = uuid.uuid4().hex
    outbox = Outbox(messaging.outbox, source="customer_svc")
    async with sessionmaker() as session, session.begin():
        for n in range(count):
            outbox.append(session, ShutdownProbe(run=run, n=n), tenant_id=None, store_id=None)
    return run


async def unpublished(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    t = messaging.outbox.__table__
    async with sessionmaker() as session:
        return (await session.execute(sa.select(sa.func.count()).where(t.c.published_at.is_(None)))).scalar_one()


class TestRelayStops:
    async def test_batch_under_way_is_published_and_marked(self, outbox_db: async_sessionmaker[AsyncSession]) -> None:
        await appended(outbox_db, 5)
        publisher = SlowPublisher(0.5)
        relay = OutboxRelay("customer_svc", outbox_db, messaging.outbox, publisher, poll_seconds=60)
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        await asyncio.wait_for(publisher.started.wait(), 5)
        assert await cli.drain([task], stop, timeout=5) == []
        assert len(publisher.published) == 5
        assert await unpublished(outbox_db) == 0  # committed: no replica publishes them again

    async def test_relay_waiting_for_its_poll_stops_at_once(self, outbox_db: async_sessionmaker[AsyncSession]) -> None:
        publisher = SlowPublisher(0)
        relay = OutboxRelay("customer_svc", outbox_db, messaging.outbox, publisher, poll_seconds=60)
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        await asyncio.sleep(0.3)  # one empty turn, then its 60 s pause
        stop.set()
        assert await returns_within(1, task) < 0.5
