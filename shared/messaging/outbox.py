"""Appending events to the outbox inside the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.envelope import CloudEvent, Envelopes, EventData, build_event


@dataclass(frozen=True)
class PreparedEvent:
    """An event whose payload the caller built itself as a dict (values orjson can write: str, numbers, UUIDs,
    dates): a bulk writer's hot path, where a pydantic model per event costs more than the rest of the work.
    ``of`` takes the catalog class, which names the type and the subject field; tests validate such payloads
    against the catalog."""

    type: str
    subject: Any
    data: dict[str, Any]

    @classmethod
    def of(cls, type_of: type[EventData], data: dict[str, Any]) -> PreparedEvent:
        return cls(type_of.type, data.get(type_of.subject_field), data)


class Outbox:
    """Bound to one service's outbox model. ``append`` never commits: the caller's transaction does."""

    def __init__(self, model: type, source: str, on_append: Callable[[], None] | None = None) -> None:
        self.model = model
        self.source = source
        self.on_append = on_append

    def append(self, session: AsyncSession, data: EventData, *, tenant_id: uuid.UUID | None,
               store_id: uuid.UUID | None) -> CloudEvent:
        event = build_event(data, source=self.source, tenant_id=tenant_id, store_id=store_id)
        session.add(self.model(
            id=event.id,
            event_type=event.type,
            payload=event.model_dump(mode="json"),
            occurred_at=event.time,
            next_attempt_at=event.time,
        ))
        if self.on_append is not None:
            # A hint for the relay to poll now; the table stays the source of truth.
            session.sync_session.info.setdefault("after_commit", []).append(self.on_append)
        return event

    async def append_many(self, session: AsyncSession,
                          items: list[tuple[EventData, uuid.UUID | None, uuid.UUID | None]]) -> None:
        """Many events in one INSERT (batch writers such as the follow-up scheduler); same transaction rules."""
        if not items:
            return
        await session.execute(sa.insert(self.model.__table__), self.rows(items))
        self.hint_relay(session)

    def rows(self, items: list[tuple[EventData | PreparedEvent, uuid.UUID | None, uuid.UUID | None]]
             ) -> list[dict[str, Any]]:
        """Outbox rows for ``items`` (for a caller writing them itself, e.g. with ``shared.db.bulk``; it then
        calls :meth:`hint_relay`)."""
        rows = []
        envelopes = Envelopes(self.source)
        now = envelopes.now
        for data, tenant_id, store_id in items:
            if isinstance(data, PreparedEvent):
                type_, subject, payload = data.type, data.subject, data.data
            else:
                type_, subject = data.type, getattr(data, data.subject_field, None)
                payload = data.model_dump(mode="json")
            event_id, envelope = envelopes.make(type_, subject, payload, tenant_id, store_id)
            rows.append({"id": event_id, "event_type": type_, "payload": envelope, "occurred_at": now,
                         "published_at": None, "attempts": 0, "next_attempt_at": now, "last_error": None})
        return rows

    def hint_relay(self, session: AsyncSession) -> None:
        """After the commit, tell the relay to poll now (the table stays the source of truth)."""
        if self.on_append is not None:
            session.sync_session.info.setdefault("after_commit", []).append(self.on_append)


from sqlalchemy import event as _sa_event  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402


@_sa_event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop("after_commit", []):
        callback()


@_sa_event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop("after_commit", None)
