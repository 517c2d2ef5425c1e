"""Outbox relay: claims pending rows with ``FOR UPDATE SKIP LOCKED``, publishes them with confirms, marks them.

Safe with any number of replicas: a claimed batch is invisible to the others until its transaction
ends. A crash after the broker confirmed but before the commit re-publishes the batch later; the
consumers' inbox absorbs such duplicates (the message id is the event id).
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import sqlalchemy as sa
import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.base import utcnow
from shared.events.envelope import CloudEvent
from shared.messaging.transport import Publisher
from shared.periodic import pause

log = structlog.get_logger("outbox.relay")
PUBLISHED = Counter("outbox_published_total", "Outbox events published", ["service"])
FAILED = Counter("outbox_publish_failures_total", "Outbox publish failures", ["service"])


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(2 ** attempts, 300))


class OutboxRelay:
    def __init__(self, service: str, sessionmaker: async_sessionmaker[AsyncSession], model: type,
                 publisher: Publisher, batch_size: int = 200, poll_seconds: float = 0.25) -> None:
        self.service = service
        self.sessionmaker = sessionmaker
        self.model = model
        self.publisher = publisher
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.wakeup = asyncio.Event()
        self.beat = time.monotonic()  # last loop turn: the worker's liveness probe reads it

    def nudge(self) -> None:
        """Called after a commit that appended events, so they go out without waiting for the poll.

        Only where the relay runs in the same process (embedded mode, the worker's own writes); an API process in
        production has no relay, and its events wait at most ``poll_seconds`` for the worker's next poll."""
        self.wakeup.set()

    async def run_once(self) -> int:
        """Publish one batch; returns how many rows it claimed."""
        t = self.model.__table__
        now = utcnow()
        async with self.sessionmaker() as session, session.begin():
            rows = (await session.execute(
                # The envelope as JSON text, parsed once by pydantic (not json.loads into a dict, then validated).
                sa.select(t.c.id, sa.cast(t.c.payload, sa.Text).label("payload"), t.c.attempts)
                .where(t.c.published_at.is_(None), t.c.next_attempt_at <= now)
                .order_by(t.c.occurred_at, t.c.id)  # a batch writer's events share a time; ids keep their order
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            )).all()
            if not rows:
                return 0
            events = [CloudEvent.model_validate_json(r.payload) for r in rows]
            results = await self.publisher.publish_batch(events)
            ok = [r.id for r, err in zip(rows, results) if err is None]
            if ok:
                await session.execute(sa.update(t).where(t.c.id.in_(ok)).values(published_at=utcnow()))
                PUBLISHED.labels(self.service).inc(len(ok))
            for row, err in zip(rows, results):
                if err is not None:
                    FAILED.labels(self.service).inc()
                    await session.execute(sa.update(t).where(t.c.id == row.id).values(
                        attempts=row.attempts + 1,
                        next_attempt_at=utcnow() + backoff(row.attempts),
                        last_error=f"{type(err).__name__}: {err}"[:1000],
                    ))
            if len(ok) < len(rows):
                log.warning("outbox_publish_failed", failed=len(rows) - len(ok), error=repr(next(e for e in results if e)))
        return len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set: a batch under way is published and marked first, a pause ends at once."""
        failures = 0
        while not stop.is_set():
            self.beat = time.monotonic()
            try:
                # A half-open connection must not freeze the relay: give up on the batch and try again.
                claimed = await asyncio.wait_for(self.run_once(), timeout=120)
                failures = 0
            except Exception:  # noqa: BLE001 - the relay must outlive database or broker outages
                failures += 1
                log.exception("outbox_relay_error")
                claimed = 0
                await pause(min(0.5 * 2 ** failures, 10), stop)
            if claimed >= self.batch_size:
                continue
            self.wakeup.clear()
            await pause(self.poll_seconds, self.wakeup, stop)
