"""In-process bus for embedded mode, with the same outbox/inbox guarantees as RabbitMQ.

``publish_batch`` returns only after every subscribed consumer has committed the event (or parked
it), so the relay marks an outbox row published exactly when a broker would have confirmed it: a
crash in between re-delivers from the outbox, and the inbox absorbs the repeat.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.events.envelope import CloudEvent
from shared.messaging.consumer import EventConsumer

log = structlog.get_logger("memory_bus")
Parker = Callable[[CloudEvent, str, int], Awaitable[None]]


def db_parker(sessionmaker: async_sessionmaker[AsyncSession], parked_model: type) -> Parker:
    async def park(event: CloudEvent, error: str, attempts: int) -> None:
        async with sessionmaker() as session, session.begin():
            await session.merge(parked_model(id=event.id, event_type=event.type,
                                             payload=event.model_dump(mode="json"), error=error[:2000], attempts=attempts))
        log.error("event_parked", event_id=str(event.id), type=event.type, attempts=attempts, error=error[:300])

    return park


class InProcessBus:
    def __init__(self, retry_delays_ms: list[int] | None = None) -> None:
        self.retry_delays_ms = retry_delays_ms if retry_delays_ms is not None else [50, 200, 1000]
        self._consumers: list[tuple[EventConsumer, Parker]] = []

    def attach(self, consumer: EventConsumer, park: Parker) -> None:
        self._consumers.append((consumer, park))

    async def publish_batch(self, events: list[CloudEvent]) -> list[BaseException | None]:
        results: list[BaseException | None] = []
        for event in events:
            try:
                for consumer, park in self._consumers:
                    if any(s.matches(event.type) for s in consumer.subscriptions):
                        await self._deliver(consumer, park, event)
                results.append(None)
            except Exception as exc:  # noqa: BLE001 - e.g. the parking write failed: keep it in the outbox
                results.append(exc)
        return results

    async def _deliver(self, consumer: EventConsumer, park: Parker, event: CloudEvent) -> None:
        attempts = len(self.retry_delays_ms) + 1
        for attempt in range(1, attempts + 1):
            try:
                await consumer.handle(event)
                return
            except Exception as exc:  # noqa: BLE001
                error = repr(exc)
                log.warning("event_handler_failed", event_id=str(event.id), attempt=attempt, error=error)
                if attempt <= len(self.retry_delays_ms):
                    await asyncio.sleep(self.retry_delays_ms[attempt - 1] / 1000)
        await park(event, error, attempts)
