"""Alembic, one history per service, with its version table inside the service's own schema.

Each service keeps ``migrations/`` beside its code; its ``env.py`` is two lines calling
:func:`run_env`. Embedded mode (SQLite) builds the same models with ``create_all`` instead.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.db.base import UTCDateTime
from shared.settings import ServiceSettings


def alembic_config(settings: ServiceSettings, migrations_dir: Path) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", settings.effective_database_url.replace("%", "%%"))
    cfg.attributes["schema"] = settings.schema_name
    return cfg


def upgrade(settings: ServiceSettings, migrations_dir: Path, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings, migrations_dir), revision)


def downgrade(settings: ServiceSettings, migrations_dir: Path, revision: str = "base") -> None:
    command.downgrade(alembic_config(settings, migrations_dir), revision)


async def current_revisions(settings: ServiceSettings) -> set[str]:
    """The revisions in the service's version table (in its own schema); empty before its first migration."""
    engine = create_async_engine(settings.effective_database_url)
    try:
        async with engine.connect() as conn:
            heads = await conn.run_sync(lambda c: MigrationContext.configure(
                c, opts={"version_table_schema": settings.schema_name}).get_current_heads())
    finally:
        await engine.dispose()
    return set(heads)


def is_migrated(current: set[str], settings: ServiceSettings, migrations_dir: Path) -> bool:
    """``current`` (:func:`current_revisions`) is the head of ``migrations_dir``, or past it: a revision this code
    does not know comes from a newer release (this one rolled back after its migration ran), and migrations keep the
    release before them working, as they must for the old pods of any rolling update."""
    script = ScriptDirectory.from_config(alembic_config(settings, migrations_dir))
    known = {rev.revision for rev in script.walk_revisions()}
    return bool(current) and (set(script.get_heads()) <= current or not current <= known)


def migration_engine(url: str) -> AsyncEngine:
    """The engine a migration runs on. Without the services' statement and lock timeouts, which
    ``deploy/postgres/roles.sql`` also sets on their roles: an index build or a backfill on a big table takes as
    long as it takes, rather than failing at 30 s on every retry of the migrate Job."""
    if make_url(url).get_backend_name() != "postgresql":
        return create_async_engine(url)
    return create_async_engine(url, connect_args={"server_settings": {"statement_timeout": "0", "lock_timeout": "0"}})


def run_env(metadata: sa.MetaData) -> None:
    """Body of every service's ``migrations/env.py``."""
    cfg = context.config
    schema = cfg.attributes["schema"]
    url = cfg.get_main_option("sqlalchemy.url")

    def include_name(name: str | None, type_: str, parent_names: dict) -> bool:  # noqa: ARG001
        return name == schema if type_ == "schema" else True

    def render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
        # Our UTC TypeDecorator is a plain timestamptz in the database: keep migrations free of app imports.
        if type_ == "type" and isinstance(obj, UTCDateTime):
            return "sa.DateTime(timezone=True)"
        return False

    def do_run(connection: sa.Connection) -> None:
        # Production: deploy/postgres/roles.sql creates the schema owned by the service's role, which has no
        # CREATE on the database, and Postgres checks that privilege even for CREATE SCHEMA IF NOT EXISTS.
        if not sa.inspect(connection).has_schema(schema):
            connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        # Alembic then owns the transactions: one per migration file, so a migration may build an index
        # CONCURRENTLY in an ``autocommit_block`` (which commits the files before it).
        connection.commit()
        context.configure(
            transaction_per_migration=True,
            connection=connection,
            target_metadata=metadata,
            version_table_schema=schema,
            include_schemas=True,
            include_name=include_name,
            compare_type=True,
            render_item=render_item,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = migration_engine(url)
        async with engine.connect() as conn:
            await conn.run_sync(do_run)
            await conn.commit()
        await engine.dispose()

    asyncio.run(main())


async def prepare_database(engine: AsyncEngine, metadata: sa.MetaData, settings: ServiceSettings, migrations_dir: Path) -> None:
    """Embedded start-up: SQLite gets the models' tables; Postgres is migrated with Alembic."""
    if engine.dialect.name == "sqlite":
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
    else:
        await asyncio.to_thread(upgrade, settings, migrations_dir)
