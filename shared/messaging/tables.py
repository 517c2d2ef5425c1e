"""Messaging tables each service declares in its own schema: outbox, inbox, idempotency keys, parked events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db.base import utcnow


@dataclass(frozen=True)
class MessagingModels:
    outbox: Any
    inbox: Any
    idempotency: Any
    parked: Any


def messaging_models(base: type[DeclarativeBase]) -> MessagingModels:
    """Declare the four messaging tables on a service's declarative base."""

    class OutboxMessage(base):  # type: ignore[valid-type, misc]
        """Events appended in the business transaction; the relay publishes and marks them."""

        __tablename__ = "outbox_message"
        __table_args__ = (
            sa.Index("ix_outbox_message_pending", "occurred_at", "id",
                     postgresql_where=sa.text("published_at IS NULL"),
                     sqlite_where=sa.text("published_at IS NULL")),
        )
        id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
        event_type: Mapped[str] = mapped_column(sa.String(200))
        #: The envelope as written (``json``, not ``jsonb``): nothing queries into it, the relay reads it back as
        #: text, and jsonb's parse on every insert was a sixth of Postgres's work in a bulk import.
        payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON())
        occurred_at: Mapped[datetime]
        published_at: Mapped[datetime | None]
        attempts: Mapped[int] = mapped_column(default=0)
        next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
        last_error: Mapped[str | None] = mapped_column(sa.Text())

    class InboxMessage(base):  # type: ignore[valid-type, misc]
        """Ids of handled events per handler, written in the handler's transaction (dedup)."""

        __tablename__ = "inbox_message"
        event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
        consumer: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
        event_type: Mapped[str] = mapped_column(sa.String(200))
        received_at: Mapped[datetime] = mapped_column(default=utcnow)

    class IdempotencyKey(base):  # type: ignore[valid-type, misc]
        """Responses of creating POSTs by ``Idempotency-Key``, replayed for repeats."""

        __tablename__ = "idempotency_key"
        tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
        key: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
        request_hash: Mapped[str] = mapped_column(sa.String(64))
        status_code: Mapped[int | None]
        response: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql"))
        headers: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql"))
        created_at: Mapped[datetime] = mapped_column(default=utcnow)

    class ParkedMessage(base):  # type: ignore[valid-type, misc]
        """Embedded mode's parking lot (production parks in the ``<service>.parked`` queue)."""

        __tablename__ = "parked_message"
        id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
        event_type: Mapped[str] = mapped_column(sa.String(200))
        payload: Mapped[dict[str, Any]]
        error: Mapped[str] = mapped_column(sa.Text())
        attempts: Mapped[int]
        parked_at: Mapped[datetime] = mapped_column(default=utcnow)

    return MessagingModels(OutboxMessage, InboxMessage, IdempotencyKey, ParkedMessage)
