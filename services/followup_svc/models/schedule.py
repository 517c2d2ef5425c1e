"""Follow-up occurrences: one row per planned touch, with its due time and what became of it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from followup_svc.models import Base
from shared.db.base import TimestampMixin, TenantScopedMixin

#: States: ``scheduled`` (waiting), ``fired`` (its task or command was created), ``skipped`` (not done on purpose:
#: stale, opted out, lost...), ``cancelled`` (the reason for it went away) and ``failed`` (gave up after retries).
STATES = ("scheduled", "fired", "skipped", "cancelled", "failed")


class FollowUp(TenantScopedMixin, TimestampMixin, Base):
    __tablename__ = "followup"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "occurrence_key"),
        # The due query reads only this index: its cost follows the due rows, not all pending ones.
        sa.Index("ix_followup_due", "due_at", postgresql_where=sa.text("state = 'scheduled'"),
                 sqlite_where=sa.text("state = 'scheduled'")),
        sa.Index("ix_followup_customer", "tenant_id", "customer_id", "due_at"),
        # Reports and the completion export: a store's occurrences due in a period.
        sa.Index("ix_followup_store_due", "tenant_id", "store_id", "due_at"),
        sa.Index("ix_followup_subject", "tenant_id", "subject_id"),
        sa.Index("ix_followup_vehicle", "tenant_id", "vehicle_id", "due_at"),
        sa.Index("ix_followup_rule_pending", "rule_id", postgresql_where=sa.text("state = 'scheduled'"),
                 sqlite_where=sa.text("state = 'scheduled'")),
    )
    # No single-column tenant/store indexes (the mixin's default): every index above already leads with the
    # tenant, and each extra index is written on every state change of a million-row table.
    tenant_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid())
    store_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid())
    rule_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("rule.id"))
    rule_key: Mapped[str] = mapped_column(sa.String(60))
    occurrence_key: Mapped[str] = mapped_column(sa.String(200))
    subject_type: Mapped[str] = mapped_column(sa.String(20))
    subject_id: Mapped[uuid.UUID]
    customer_id: Mapped[uuid.UUID | None]
    vehicle_id: Mapped[uuid.UUID | None]
    anchor_at: Mapped[datetime]
    step: Mapped[int] = mapped_column(default=0, comment="Which offset or recurrence cycle of the rule")
    due_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(sa.String(12), default="scheduled")
    reason: Mapped[str | None] = mapped_column(sa.String(300))
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    fired_at: Mapped[datetime | None]
    task_id: Mapped[uuid.UUID | None]
    purpose: Mapped[str] = mapped_column(sa.String(10), default="service")
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)


class TestClock(Base):
    """The test clock's offset (one row), shared by API and worker processes; unused unless enabled."""

    __tablename__ = "test_clock"
    __test__ = False
    id: Mapped[int] = mapped_column(primary_key=True)
    offset_seconds: Mapped[float] = mapped_column(default=0)
