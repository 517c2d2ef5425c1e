"""Giving a dealer group its default templates the first time notify_svc hears of it."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from notify_svc.models import Template
from notify_svc.templates.defaults import DEFAULTS, LOCALE
from shared.db.base import dialect_insert, utcnow
from shared.ids import new_id


async def ensure_default_templates(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Every default (key, channel) the group lacks as a group-wide zh-CN template; what it has (edited,
    disabled, or deleted and re-created) is left alone. Runs in the caller's transaction; repeat-safe.

    Existing keys are read first because SQLite (embedded mode) treats the NULL ``store_id`` of group-wide rows
    as distinct in the unique key; ON CONFLICT DO NOTHING still settles a race between two workers on Postgres,
    where the key treats NULLs as equal."""
    have = set((await session.execute(sa.select(Template.key, Template.channel).where(
        Template.tenant_id == tenant_id, Template.store_id.is_(None), Template.locale == LOCALE))).all())
    now = utcnow()
    rows = [dict(id=new_id(), tenant_id=tenant_id, store_id=None, key=key, channel=channel, locale=LOCALE,
                 purpose=tpl.purpose, title=tpl.title, body=tpl.body(channel), variables=list(tpl.variables),
                 sign_name=None, provider_codes={}, provider_params=tpl.provider_params(channel), status="approved",
                 version=1, created_at=now, updated_at=now)
            for key, tpl in DEFAULTS.items() for channel in tpl.channels if (key, channel) not in have]
    if rows:
        await session.execute(dialect_insert(session)(Template.__table__).values(rows).on_conflict_do_nothing())
