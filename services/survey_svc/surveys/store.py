"""Survey template rows: seeding the defaults, the version in force, new versions."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from survey_svc.models import SurveyTemplate
from survey_svc.surveys.defaults import DEFAULT_SURVEYS
from survey_svc.surveys.schemas import SurveyDefinition
from shared.db.base import dialect_insert, utcnow
from shared.ids import new_id

_definitions: dict[uuid.UUID, SurveyDefinition] = {}


def definition_of(template: SurveyTemplate) -> SurveyDefinition:
    """Versions never change once written, so parsed definitions are cached by row id."""
    found = _definitions.get(template.id)
    if found is None:
        found = _definitions[template.id] = SurveyDefinition.model_validate(template.definition)
    return found


async def definition_by_id(session: AsyncSession, template_id: uuid.UUID) -> SurveyDefinition:
    """The definition of a template version, read once per process (every answer needs it; versions never
    change)."""
    found = _definitions.get(template_id)
    if found is None:
        template = await session.get(SurveyTemplate, template_id)
        assert template is not None, "an invitation's template version is never deleted"
        found = definition_of(template)
    return found


async def ensure_default_surveys(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Version 1 of every default survey for a dealer group (a no-op once there; edits make new versions)."""
    now = utcnow()
    rows = [dict(id=new_id(), tenant_id=tenant_id, key=key, version=1, name=name,
                 definition=definition.model_dump(mode="json", exclude_none=True), created_at=now)
            for key, (name, definition) in DEFAULT_SURVEYS.items()]
    await session.execute(dialect_insert(session)(SurveyTemplate).values(rows).on_conflict_do_nothing(
        index_elements=["tenant_id", "key", "version"]))


async def current(session: AsyncSession, tenant_id: uuid.UUID, key: str) -> SurveyTemplate | None:
    """The version in force (the highest not withdrawn)."""
    return await session.scalar(sa.select(SurveyTemplate).where(
        SurveyTemplate.tenant_id == tenant_id, SurveyTemplate.key == key, SurveyTemplate.retired_at.is_(None))
        .order_by(SurveyTemplate.version.desc()).limit(1))


async def add_version(session: AsyncSession, tenant_id: uuid.UUID, key: str, name: str,
                      definition: SurveyDefinition, change_note: str | None, author: uuid.UUID | None,
                      now: datetime, check: Callable[[int], None] | None = None) -> SurveyTemplate:
    """A new version; the one it replaces is retired (its open invitations still answer it). ``check`` gets the
    latest version, locked (an editor's If-Match: two editors of one version do not both succeed)."""
    latest = await session.scalar(sa.select(SurveyTemplate).where(
        SurveyTemplate.tenant_id == tenant_id, SurveyTemplate.key == key)
        .order_by(SurveyTemplate.version.desc()).limit(1).with_for_update())
    if check is not None:
        check(latest.version if latest is not None else 0)
    if latest is not None and latest.retired_at is None:
        latest.retired_at = now
    row = SurveyTemplate(id=new_id(), tenant_id=tenant_id, key=key, version=(latest.version + 1) if latest else 1,
                         name=name, definition=definition.model_dump(mode="json", exclude_none=True),
                         change_note=change_note, created_by=author, created_at=now)
    session.add(row)
    await session.flush()
    return row
