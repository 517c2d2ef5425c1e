"""Giving a dealer group its default playbook the first time followup_svc hears of it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from followup_svc.models import Rule
from followup_svc.models.playbook import TENANT_SCOPE
from followup_svc.playbooks.defaults import DEFAULT_RULES
from shared.db.base import dialect_insert
from shared.ids import new_id


async def ensure_default_rules(session: AsyncSession, tenant_id: uuid.UUID, now: datetime) -> None:
    """Version 1 of every default rule; keys the group already has (any version) are left alone."""
    rows = [dict(id=new_id(), tenant_id=tenant_id, scope=TENANT_SCOPE, key=key, version=1, trigger=rdef.trigger,
                 enabled=True, definition=rdef.model_dump(mode="json"), change_note="default playbook",
                 created_by=None, created_at=now, retired_at=None)
            for key, rdef in DEFAULT_RULES.items()]
    stmt = dialect_insert(session)(Rule.__table__).values(rows)
    await session.execute(stmt.on_conflict_do_nothing(index_elements=["tenant_id", "scope", "key", "version"]))
