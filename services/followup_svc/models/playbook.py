"""Playbook rules: versioned rows, one active version per (tenant, scope, key).

``scope`` is ``*`` for the dealer group's rule or a store id for that store's override. Editing a rule
retires the active version and adds the next one; occurrences keep pointing at the version that
planned them, so history always says which rule did what.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from followup_svc.models import Base
from shared.db.base import utcnow
from shared.ids import new_id

TENANT_SCOPE = "*"


class Rule(Base):
    __tablename__ = "rule"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "scope", "key", "version"),
        sa.Index("ix_rule_active", "tenant_id", "trigger", postgresql_where=sa.text("retired_at IS NULL"),
                 sqlite_where=sa.text("retired_at IS NULL")),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    scope: Mapped[str] = mapped_column(sa.String(36), default=TENANT_SCOPE)
    key: Mapped[str] = mapped_column(sa.String(60))
    version: Mapped[int] = mapped_column(default=1)
    trigger: Mapped[str] = mapped_column(sa.String(60))
    enabled: Mapped[bool] = mapped_column(default=True)
    definition: Mapped[dict[str, Any]]
    change_note: Mapped[str | None] = mapped_column(sa.String(500))
    created_by: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]
