"""An event tap for tests: a queue bound to the exchange that collects every CloudEvent the platform publishes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika

from shared.events.envelope import CloudEvent
from shared.messaging.amqp import declare_exchange


class EventTap:
    def __init__(self, url: str, exchange: str, durable_queue: str | None = None) -> None:
        """With ``durable_queue`` the tap's queue survives broker restarts (it collects while nobody listens)."""
        self.url = url
        self.durable_queue = durable_queue
        self.exchange = exchange
        self.events: list[CloudEvent] = []
        self.message_ids: list[str] = []
        self._changed = asyncio.Condition()
        self._conn: aio_pika.abc.AbstractConnection | None = None

    async def start(self) -> EventTap:
        self._conn = await aio_pika.connect(self.url)
        channel = await self._conn.channel()
        exchange = await declare_exchange(channel, self.exchange)
        if self.durable_queue:
            queue = await channel.declare_queue(self.durable_queue, durable=True, arguments={"x-queue-type": "quorum"})
        else:
            queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="#")
        await queue.consume(self._on_message, no_ack=True)
        return self

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with self._changed:
            self.events.append(CloudEvent.model_validate_json(message.body))
            self.message_ids.append(message.message_id or "")
            self._changed.notify_all()

    def matching(self, type_: str | None = None, subject: str | None = None,
                 where: Callable[[CloudEvent], bool] | None = None) -> list[CloudEvent]:
        return [e for e in self.events if (type_ is None or e.type == type_) and (subject is None or e.subject == subject)
                and (where is None or where(e))]

    async def wait_for(self, type_: str | None = None, subject: str | None = None, count: int = 1,
                       timeout: float = 15, where: Callable[[CloudEvent], bool] | None = None) -> list[CloudEvent]:
        async def until() -> list[CloudEvent]:
            async with self._changed:
                while len(found := self.matching(type_, subject, where)) < count:
                    await self._changed.wait()
                return found

        try:
            return await asyncio.wait_for(until(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"expected {count} x {type_} (subject={subject}) within {timeout}s; got "
                f"{len(self.matching(type_, subject, where))}; seen types: {sorted({e.type for e in self.events})}"
            ) from None

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()


async def handle(sessionmaker: Any, *steps: tuple[Callable[[Any, CloudEvent], Awaitable[None]], CloudEvent]) -> None:
    """Run consumer handlers on events in the order given, each in its own transaction (as the inbox runs them):
    a test of what one ordering of events does, without the broker choosing it."""
    for handler, event in steps:
        async with sessionmaker() as session, session.begin():
            await handler(session, event)
