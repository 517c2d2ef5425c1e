"""Idempotent event handling: the inbox row and the handler's writes commit in one transaction.

A service declares :class:`Subscription` s (binding patterns + handler). Transports (RabbitMQ or the
in-process bus) hand each delivered event to :meth:`EventConsumer.handle`; it raises when a handler
fails so the transport can retry or park the message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.base import dialect_insert
from shared.events.envelope import CloudEvent, topic_matches
from shared.observability.context import causation_id_var, correlation_id_var, traceparent_var

log = structlog.get_logger("consumer")
HANDLED = Counter("events_handled_total", "Events handled", ["service", "handler", "outcome"])

Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]
BatchHandler = Callable[[AsyncSession, list[CloudEvent]], Awaitable[None]]


class MissingDependency(Exception):
    """The event refers to something not in the read model yet (events overtook each other): retried later."""


@dataclass(frozen=True)
class Subscription:
    """Event types (binding patterns) and the handler that runs for each in its own transaction.

    ``batch_handler`` (optional) takes many events of a busy stream in one transaction: the broker runner groups
    events whose every subscription has one (e.g. notify_svc's message commands). It must only write its own
    tables (events it appended would not carry each source event's correlation id). If a batch fails, each of its
    events is handled again alone with ``handler``, so one bad event never holds the others back.
    """

    name: str
    patterns: tuple[str, ...]
    handler: Handler
    batch_handler: BatchHandler | None = None

    def matches(self, event_type: str) -> bool:
        return any(topic_matches(p, event_type) for p in self.patterns)


class EventConsumer:
    def __init__(self, service: str, sessionmaker: async_sessionmaker[AsyncSession], inbox_model: type,
                 subscriptions: list[Subscription]) -> None:
        self.service = service
        self.sessionmaker = sessionmaker
        self.inbox = inbox_model.__table__
        self.subscriptions = subscriptions
        self._claims: dict[str, Any] = {}
        self._matching: dict[str, list[Subscription]] = {}

    def _claim_statement(self, session: AsyncSession) -> Any:
        """The inbox insert, built once per dialect with its values as parameters (so it is compiled once)."""
        dialect = session.bind.dialect.name
        stmt = self._claims.get(dialect)
        if stmt is None:
            stmt = self._claims[dialect] = (dialect_insert(session)(self.inbox).on_conflict_do_nothing()
                                            .returning(self.inbox.c.event_id))
        return stmt

    @property
    def patterns(self) -> list[str]:
        return sorted({p for s in self.subscriptions for p in s.patterns})

    async def handle(self, event: CloudEvent) -> None:
        """Run every matching handler once; a handler that already committed this event is skipped."""
        # Events a handler emits carry this event's correlation id and trace, and name it as their cause.
        tokens = (correlation_id_var.set(event.correlationid or str(event.id)), causation_id_var.set(str(event.id)),
                  traceparent_var.set(event.traceparent))
        try:
            for sub in self.matching(event.type):
                await self._handle_one(sub, event)
        finally:
            correlation_id_var.reset(tokens[0])
            causation_id_var.reset(tokens[1])
            traceparent_var.reset(tokens[2])

    def matching(self, event_type: str) -> list[Subscription]:
        """The subscriptions that take ``event_type`` (pattern matching is done once per type)."""
        found = self._matching.get(event_type)
        if found is None:
            found = self._matching[event_type] = [s for s in self.subscriptions if s.matches(event_type)]
        return found

    def batchable(self, event_type: str) -> bool:
        """True when every subscription that takes ``event_type`` can take it in a batch."""
        matching = self.matching(event_type)
        return bool(matching) and all(s.batch_handler is not None for s in matching)

    async def handle_batch(self, events: list[CloudEvent]) -> None:
        """Batchable events: per subscription, one transaction claims their inbox rows and runs the batch handler
        on the events not handled before. Raises when a transaction fails (the caller then goes event by event)."""
        unique = list({e.id: e for e in events}.values())
        for sub in self.subscriptions:
            matching = [e for e in unique if sub in self.matching(e.type)]
            if matching:
                await self._handle_many(sub, matching)

    async def _handle_many(self, sub: Subscription, events: list[CloudEvent]) -> None:
        consumer = f"{self.service}.{sub.name}"
        assert sub.batch_handler is not None
        async with self.sessionmaker() as session, session.begin():
            claimed = await session.execute(self._claim_statement(session), [
                {"event_id": e.id, "consumer": consumer, "event_type": e.type} for e in events])
            new = {row[0] for row in claimed}
            fresh = [e for e in events if e.id in new]
            if len(fresh) < len(events):
                HANDLED.labels(self.service, sub.name, "duplicate").inc(len(events) - len(fresh))
            if fresh:
                await sub.batch_handler(session, fresh)
        HANDLED.labels(self.service, sub.name, "ok").inc(len(fresh))

    async def _handle_one(self, sub: Subscription, event: CloudEvent) -> None:
        consumer = f"{self.service}.{sub.name}"
        async with self.sessionmaker() as session, session.begin():
            claimed = await session.execute(self._claim_statement(session),
                                            {"event_id": event.id, "consumer": consumer, "event_type": event.type})
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
