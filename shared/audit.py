"""Append-only audit log of every write (who, when, what, before/after), one table per service schema."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.auth.principal import Principal
from shared.db.base import utcnow
from shared.ids import new_id
from shared.observability.context import request_id_var


def audit_model(base: type[DeclarativeBase]) -> type:
    class AuditEntry(base):  # type: ignore[valid-type, misc]
        __tablename__ = "audit_log"
        __table_args__ = (
            sa.Index("ix_audit_log_record", "tenant_id", "record_type", "record_id"),
            sa.Index("ix_audit_log_actor", "tenant_id", "actor_id"),
        )
        id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
        tenant_id: Mapped[uuid.UUID]
        store_id: Mapped[uuid.UUID | None]
        actor_id: Mapped[uuid.UUID | None]
        actor_kind: Mapped[str] = mapped_column(sa.String(20))
        action: Mapped[str] = mapped_column(sa.String(60))
        record_type: Mapped[str] = mapped_column(sa.String(60))
        record_id: Mapped[uuid.UUID]
        before: Mapped[dict[str, Any] | None]
        after: Mapped[dict[str, Any] | None]
        request_id: Mapped[str | None] = mapped_column(sa.String(200))
        at: Mapped[datetime] = mapped_column(default=utcnow)

    return AuditEntry


def plain(value: Any) -> Any:
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    return value


def snapshot(obj: Any, exclude: frozenset[str] = frozenset({"password_hash", "key_hash", "token_hash"})) -> dict[str, Any]:
    """Column values of an ORM object, JSON-ready, secrets left out."""
    return {c.key: plain(getattr(obj, c.key)) for c in sa.inspect(obj).mapper.column_attrs if c.key not in exclude}


class AuditLog:
    def __init__(self, model: type) -> None:
        self.model = model

    def record(self, session: AsyncSession, principal: Principal | None, action: str, record_type: str,
               record_id: uuid.UUID, *, tenant_id: uuid.UUID, store_id: uuid.UUID | None,
               before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> None:
        if before is not None and after is not None:
            changed = {k for k in after if before.get(k) != after.get(k)}
            before = {k: v for k, v in before.items() if k in changed}
            after = {k: v for k, v in after.items() if k in changed}
        session.add(self.model(
            tenant_id=tenant_id, store_id=store_id,
            actor_id=principal.subject if principal else None,
            actor_kind=principal.kind if principal else "system",
            action=action, record_type=record_type, record_id=record_id,
            before=plain(before), after=plain(after), request_id=request_id_var.get(),
        ))
