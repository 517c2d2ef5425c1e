"""Tasks: follow-up work for a person (call, visit, letter), with its SLA, outcome and escalation."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from followup_svc.models import Base
from shared.db.base import TenantScopedMixin, TimestampMixin, utcnow
from shared.ids import new_id

OPEN_STATES = ("open", "in_progress")


class Task(TenantScopedMixin, TimestampMixin, Base):
    __tablename__ = "task"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "occurrence_key"),
        sa.Index("ix_task_assignee", "tenant_id", "assignee_id", "status", "due_at"),
        sa.Index("ix_task_queue", "tenant_id", "store_id", "role", "status", "due_at"),
        sa.Index("ix_task_customer", "tenant_id", "customer_id"),
        # Reports and the completion export: a store's tasks due in a period (the queue index puts role and
        # status before the time).
        sa.Index("ix_task_store_due", "tenant_id", "store_id", "due_at"),
        sa.Index("ix_task_escalate", "escalate_at", postgresql_where=sa.text("escalate_at IS NOT NULL"),
                 sqlite_where=sa.text("escalate_at IS NOT NULL")),
    )
    occurrence_key: Mapped[str] = mapped_column(sa.String(200))
    followup_id: Mapped[uuid.UUID | None]
    rule_key: Mapped[str | None] = mapped_column(sa.String(60))
    customer_id: Mapped[uuid.UUID | None]
    vehicle_id: Mapped[uuid.UUID | None]
    kind: Mapped[str] = mapped_column(sa.String(10), default="call")
    title: Mapped[str] = mapped_column(sa.String(200))
    instructions: Mapped[str | None] = mapped_column(sa.Text())
    role: Mapped[str] = mapped_column(sa.String(30))
    assignee_id: Mapped[uuid.UUID | None]
    status: Mapped[str] = mapped_column(sa.String(12), default="open")
    priority: Mapped[int] = mapped_column(default=3)
    due_at: Mapped[datetime]
    sla_due_at: Mapped[datetime]
    attempt: Mapped[int] = mapped_column(default=1, comment="Call attempts so far (not reached → retried)")
    escalation_level: Mapped[int] = mapped_column(default=0)
    #: When the SLA watch looks at this task next (the SLA, then one more SLA period); None when finished.
    escalate_at: Mapped[datetime | None]
    overdue_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    outcome: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None]
    completed_by: Mapped[uuid.UUID | None]
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[uuid.UUID | None]
    version: Mapped[int] = mapped_column(default=1)


class TaskNote(Base):
    __tablename__ = "task_note"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    task_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("task.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[uuid.UUID]
    author_id: Mapped[uuid.UUID | None]
    body: Mapped[str] = mapped_column(sa.Text())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
