"""Every service's Alembic history on real Postgres: up, down, up again; the version table lives in the
service's own schema; and the migrated schema is exactly what the models declare (no drift)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from aftercare.services import ServiceEntry, services
from shared.db import migrations
from shared.testing import infra

SERVICES = services()


@pytest.fixture
async def scratch_db() -> AsyncIterator[str]:
    name, url = await infra.create_database()
    yield url
    await infra.drop_database(name)


async def tables(url: str, schema: str) -> set[str]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names(schema=schema)))
    await engine.dispose()
    return names


@pytest.mark.parametrize("entry", SERVICES, ids=[s.name for s in SERVICES])
async def test_upgrade_downgrade_upgrade(entry: ServiceEntry, scratch_db: str) -> None:
    settings = entry.app.settings_class(database_url=scratch_db)
    schema = settings.schema_name
    await asyncio.to_thread(migrations.upgrade, settings, entry.app.MIGRATIONS)
    created = await tables(scratch_db, schema)
    assert {"alembic_version", "outbox_message", "inbox_message", "idempotency_key", "audit_log"} <= created
    assert "alembic_version" not in await tables(scratch_db, "public")

    await asyncio.to_thread(migrations.downgrade, settings, entry.app.MIGRATIONS, "base")
    assert await tables(scratch_db, schema) == {"alembic_version"}

    await asyncio.to_thread(migrations.upgrade, settings, entry.app.MIGRATIONS)
    assert await tables(scratch_db, schema) == created


@pytest.mark.parametrize("entry", SERVICES, ids=[s.name for s in SERVICES])
async def test_migrations_match_models(entry: ServiceEntry, scratch_db: str) -> None:
    settings = entry.app.settings_class(database_url=scratch_db)
    await asyncio.to_thread(migrations.upgrade, settings, entry.app.MIGRATIONS)
    metadata = entry.app.Base.metadata
    schema = settings.schema_name

    def diff(conn: sa.Connection) -> list:
        ctx = MigrationContext.configure(conn, opts={
            "include_schemas": True, "compare_type": True, "version_table_schema": schema,
            "include_name": lambda name, type_, parents: name == schema if type_ == "schema" else True,
        })
        return compare_metadata(ctx, metadata)

    engine = create_async_engine(scratch_db)
    async with engine.connect() as conn:
        changes = await conn.run_sync(diff)
    await engine.dispose()
    assert changes == [], f"models and migrations differ; generate a migration: {changes}"
