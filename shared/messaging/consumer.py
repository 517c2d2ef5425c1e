"""Idempotent event handling: the inbox row and the handler's writes commit in one transaction.

A service declares :class:`Subscription` s (binding patterns + handler). Transports (RabbitMQ or the
in-process bus) hand each delivered event to :meth:`EventConsumer.handle`; it raises when a handler
fails so the transport can retry or park the message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.base import dialect_insert
from shared.events.envelope import CloudEvent, topic_matches
from shared.observability.context import causation_id_var, correlation_id_var, traceparent_var

log = structlog.get_logger("consumer")
HANDLED = Counter("events_handled_total", "Events handled", ["service", "handler", "outcome"])

Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]


@dataclass(frozen=True)
class Subscription:
    name: str
    patterns: tuple[str, ...]
    handler: Handler

    def matches(self, event_type: str) -> bool:
        return any(topic_matches(p, event_type) for p in self.patterns)


class EventConsumer:
    def __init__(self, service: str, sessionmaker: async_sessionmaker[AsyncSession], inbox_model: type,
                 subscriptions: list[Subscription]) -> None:
        self.service = service
        self.sessionmaker = sessionmaker
        self.inbox = inbox_model.__table__
        self.subscriptions = subscriptions

    @property
    def patterns(self) -> list[str]:
        return sorted({p for s in self.subscriptions for p in s.patterns})

    async def handle(self, event: CloudEvent) -> None:
        """Run every matching handler once; a handler that already committed this event is skipped."""
        # Events a handler emits carry this event's correlation id and trace, and name it as their cause.
        tokens = (correlation_id_var.set(event.correlationid or str(event.id)), causation_id_var.set(str(event.id)),
                  traceparent_var.set(event.traceparent))
        try:
            for sub in self.subscriptions:
                if sub.matches(event.type):
                    await self._handle_one(sub, event)
        finally:
            correlation_id_var.reset(tokens[0])
            causation_id_var.reset(tokens[1])
            traceparent_var.reset(tokens[2])

    async def _handle_one(self, sub: Subscription, event: CloudEvent) -> None:
        consumer = f"{self.service}.{sub.name}"
        async with self.sessionmaker() as session, session.begin():
            insert = dialect_insert(session)
            claimed = await session.execute(
                insert(self.inbox)
                .values(event_id=event.id, consumer=consumer, event_type=event.type)
                .on_conflict_do_nothing()
                .returning(self.inbox.c.event_id)
            )
            if claimed.first() is None:
                HANDLED.labels(self.service, sub.name, "duplicate").inc()
                log.info("event_duplicate_skipped", event_id=str(event.id), handler=consumer)
                return
            try:
                await sub.handler(session, event)
            except Exception:
                HANDLED.labels(self.service, sub.name, "error").inc()
                raise
        HANDLED.labels(self.service, sub.name, "ok").inc()
