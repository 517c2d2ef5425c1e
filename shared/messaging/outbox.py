"""Appending events to the outbox inside the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.envelope import CloudEvent, EventData, build_event


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
        rows = []
        for data, tenant_id, store_id in items:
            event = build_event(data, source=self.source, tenant_id=tenant_id, store_id=store_id)
            rows.append({"id": event.id, "event_type": event.type, "payload": event.model_dump(mode="json"),
                         "occurred_at": event.time, "next_attempt_at": event.time})
        await session.execute(sa.insert(self.model.__table__), rows)
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
