"""A worker loop for periodic batch jobs (scheduler, SLA checks): safe with N replicas when ``step`` claims
its rows with ``FOR UPDATE SKIP LOCKED``; outlives database outages; exposes a heartbeat for liveness; stops
between steps (a step under way when ``stop`` is set finishes, a pause ends at once)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("periodic")


async def pause(seconds: float, *events: asyncio.Event) -> None:
    """Sleep up to ``seconds``, returning as soon as any of ``events`` is set: a nudge, or ``stop`` (a stopping
    worker must not wait out a poll interval while its pod's termination grace period runs)."""
    if any(e.is_set() for e in events):
        return
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


class Periodic:
    def __init__(self, name: str, step: Callable[[], Awaitable[int]], poll_seconds: float,
                 full_batch: int | None = None, timeout: float = 120) -> None:
        self.name = name
        self.step = step
        self.poll_seconds = poll_seconds
        self.full_batch = full_batch
        self.timeout = timeout
        self.beat = time.monotonic()
        self.wakeup = asyncio.Event()

    def nudge(self) -> None:
        self.wakeup.set()

    def touch(self) -> None:
        """A long step reports progress (the heartbeat is otherwise taken only as each step begins)."""
        self.beat = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        """Step until ``stop`` is set. The step under way then finishes (the worker waits for it, up to its drain
        timeout, see ``shared.cli.drain``): only a pause is cut short."""
        failures = 0
        while not stop.is_set():
            self.beat = time.monotonic()
            try:
                done = await asyncio.wait_for(self.step(), timeout=self.timeout)
                failures = 0
            except Exception:  # noqa: BLE001 - the loop must outlive database outages and bad batches
                failures += 1
                log.exception("periodic_step_failed", job=self.name)
                done = 0
                await pause(min(0.5 * 2 ** failures, 10), stop)
            if self.full_batch is not None and done >= self.full_batch:
                continue  # more work is waiting: no pause
            self.wakeup.clear()
            await pause(self.poll_seconds, self.wakeup, stop)


async def drain(tasks: list[asyncio.Task[None]], stop: asyncio.Event, timeout: float,
                hurry: asyncio.Event | None = None) -> list[asyncio.Task[None]]:
    """Set ``stop``, let ``tasks`` finish the step under way (every loop checks ``stop`` between steps) for up to
    ``timeout`` seconds or until ``hurry`` is set, then cancel what is left; returns the tasks it cancelled.

    A rolling deploy or a scale-down must not cut a relay batch or a scheduler step in half: it would be rolled
    back and done again by another replica, and its provider calls or published events would then repeat."""
    stop.set()
    if tasks:
        finished = asyncio.ensure_future(asyncio.wait(tasks))
        hurried = asyncio.ensure_future((hurry or asyncio.Event()).wait())
        try:
            await asyncio.wait([finished, hurried], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            finished.cancel()  # cancels the waiting, not the tasks
            hurried.cancel()
    left = [t for t in tasks if not t.done()]
    if left:
        log.warning("worker_drain_cancelled", tasks=[t.get_name() for t in left], timeout=timeout)
    for t in left:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return left
