"""A worker loop for periodic batch jobs (scheduler, SLA checks): safe with N replicas when ``step`` claims
its rows with ``FOR UPDATE SKIP LOCKED``; outlives database outages; exposes a heartbeat for liveness."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("periodic")


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
                await asyncio.sleep(min(0.5 * 2 ** failures, 10))
            if self.full_batch is not None and done >= self.full_batch:
                continue  # more work is waiting: no pause
            self.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout=self.poll_seconds)
