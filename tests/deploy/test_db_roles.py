"""deploy/postgres/roles.sql on a fresh database: each service's role owns its schema, migrates it, and can
touch nothing else. Roles are cluster-wide and may be in use by other runs: they are reused, never dropped."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from aftercare import dbroles
from aftercare.services import services
from shared.testing import infra

ROOT = dbroles.ROOT


@dataclass
class RolesDb:
    name: str
    url: str  # superuser, SQLAlchemy form
    passwords: dict[str, str]

    def role_url(self, service: str) -> str:
        return dbroles.service_url(self.url, service, self.passwords[service])

    async def connect(self, service: str | None = None) -> asyncpg.Connection:
        return await asyncpg.connect(dbroles.libpq_dsn(self.role_url(service) if service else self.url))


@pytest.fixture(scope="module")
async def roles_db() -> AsyncIterator[RolesDb]:
    name, url = await infra.create_database()
    passwords = {s: dbroles.new_password() for s in dbroles.SERVICE_SCHEMAS}
    try:
        await asyncio.to_thread(dbroles.apply_roles, url, passwords)
        env = {**os.environ, "CUSTOMER_DATABASE_URL": dbroles.service_url(url, "customer_svc", passwords["customer_svc"])}
        env.pop("AFTERCARE_DATABASE_URL", None)
        migrate = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "customer_svc", "migrate"], cwd=ROOT,
                                          env=env, capture_output=True, text=True, timeout=120)
        assert migrate.returncode == 0, migrate.stderr
        # another service's schema with data in it, created by its own role
        conn = await asyncpg.connect(dbroles.libpq_dsn(dbroles.service_url(url, "followup_svc", passwords["followup_svc"])))
        try:
            await conn.execute("CREATE TABLE followup.task (id uuid PRIMARY KEY, title text NOT NULL)")
            await conn.execute("INSERT INTO followup.task VALUES ($1, 'call back')", uuid.uuid4())
        finally:
            await conn.close()
        yield RolesDb(name, url, passwords)
    finally:
        await infra.drop_database(name)


def test_roles_sql_lists_every_service() -> None:
    """roles.sql, the Python mirror and the services that exist agree on role and schema names."""
    text = dbroles.ROLES_SQL.read_text()
    rows = dict(re.findall(r"\('(\w+_svc)',\s*'(\w+)',\s*:'\w+'\)", text))
    assert rows == dbroles.SERVICE_SCHEMAS
    for service in dbroles.SERVICE_SCHEMAS:
        assert f"\\getenv {service}_password {dbroles.password_env(service)}" in text
    for entry in services():
        assert dbroles.SERVICE_SCHEMAS[entry.name] == entry.app.settings_class.schema_name


async def test_migrated_as_the_service_role(roles_db: RolesDb) -> None:
    conn = await roles_db.connect()
    try:
        owners = {r["tablename"]: r["tableowner"]
                  for r in await conn.fetch("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'customer'")}
        schemas = dict(await conn.fetch("SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace "
                                        "WHERE nspname = ANY($1::text[])", list(dbroles.SERVICE_SCHEMAS.values())))
        public_connect = await conn.fetchval("SELECT has_database_privilege('public', current_database(), 'CONNECT')")
    finally:
        await conn.close()
    assert {"alembic_version", "tenant", "customer", "outbox_message"} <= set(owners)
    assert set(owners.values()) == {"customer_svc"}
    assert schemas == {schema: role for role, schema in dbroles.SERVICE_SCHEMAS.items()}
    assert public_connect is False


async def test_service_role_reads_and_writes_its_own_schema(roles_db: RolesDb) -> None:
    conn = await roles_db.connect("customer_svc")
    try:
        assert await conn.fetchval("SELECT current_user") == "customer_svc"
        tenant = uuid.uuid4()
        async with conn.transaction():
            await conn.execute("INSERT INTO customer.tenant (id, code, name, created_at, updated_at) "
                               "VALUES ($1, $2, 'Roles test', now(), now())", tenant, f"roles-{tenant.hex[:8]}")
            await conn.execute("UPDATE customer.tenant SET name = 'Renamed' WHERE id = $1", tenant)
        assert await conn.fetchval("SELECT name FROM customer.tenant WHERE id = $1", tenant) == "Renamed"
        # unqualified names resolve to the service's own schema (search_path set per role and database)
        assert await conn.fetchval("SELECT count(*) FROM tenant WHERE id = $1", tenant) == 1
        await conn.execute("DELETE FROM customer.tenant WHERE id = $1", tenant)
        # it owns the schema, so its migrations may create and drop what they need there
        await conn.execute("CREATE TABLE customer.scratch (id int PRIMARY KEY)")
        await conn.execute("DROP TABLE customer.scratch")
    finally:
        await conn.close()


@pytest.mark.parametrize("statement", [
    "SELECT * FROM followup.task",
    "INSERT INTO followup.task VALUES (gen_random_uuid(), 'sneaky')",
    "CREATE TABLE followup.sneaky (id int)",
    "CREATE TABLE public.sneaky (id int)",
    "SET search_path = public; CREATE TABLE sneaky (id int)",
    "CREATE SCHEMA sneaky",
    "ALTER SCHEMA followup OWNER TO customer_svc",
    "CREATE TEMPORARY TABLE sneaky (id int)",
])
async def test_service_role_cannot_touch_anything_else(roles_db: RolesDb, statement: str) -> None:
    conn = await roles_db.connect("customer_svc")
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied|must be owner"):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_other_services_cannot_read_customer_data(roles_db: RolesDb) -> None:
    for service in ("followup_svc", "notify_svc", "survey_svc"):
        conn = await roles_db.connect(service)
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for schema customer"):
                await conn.fetch("SELECT * FROM customer.customer")
        finally:
            await conn.close()


async def test_roles_sql_is_idempotent_and_hands_over_foreign_objects(roles_db: RolesDb) -> None:
    """Running it again changes nothing that works; a table a superuser made in a service schema is handed over."""
    admin = await roles_db.connect()
    try:
        await admin.execute("CREATE TABLE customer.made_by_superuser (id int)")
        await admin.execute("CREATE TYPE customer.made_by_superuser_kind AS ENUM ('a', 'b')")
    finally:
        await admin.close()
    roles_db.passwords["customer_svc"] = dbroles.new_password()  # a rotated password takes effect
    await asyncio.to_thread(dbroles.apply_roles, roles_db.url, roles_db.passwords)
    await asyncio.to_thread(dbroles.apply_roles, roles_db.url, roles_db.passwords)
    conn = await roles_db.connect("customer_svc")
    try:
        await conn.execute("ALTER TABLE customer.made_by_superuser ADD COLUMN kind customer.made_by_superuser_kind")
        await conn.execute("DROP TABLE customer.made_by_superuser")
        await conn.execute("DROP TYPE customer.made_by_superuser_kind")
        assert await conn.fetchval("SELECT count(*) FROM customer.tenant") >= 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM followup.task")
    finally:
        await conn.close()


async def test_roles_carry_the_services_timeouts(roles_db: RolesDb) -> None:
    """Set on the roles as well as on connect, so a pooler that drops startup parameters keeps them."""
    for service in dbroles.SERVICE_SCHEMAS:
        own = await roles_db.connect(service)  # a plain session, as a pooler opens it: none of our parameters
        try:
            assert await own.fetchval("SHOW statement_timeout") == "30s"
            assert await own.fetchval("SHOW lock_timeout") == "10s"
            assert await own.fetchval("SHOW idle_in_transaction_session_timeout") == "2min"
        finally:
            await own.close()


async def test_migrations_run_without_the_roles_timeouts(roles_db: RolesDb) -> None:
    """An index build or backfill on a big table must not fail at the services' 30 s on every retry."""
    import sqlalchemy as sa

    from shared.db.migrations import migration_engine

    engine = migration_engine(roles_db.role_url("customer_svc"))
    try:
        async with engine.connect() as conn:
            assert (await conn.scalar(sa.text("SHOW statement_timeout"))) == "0"
            assert (await conn.scalar(sa.text("SHOW lock_timeout"))) == "0"
    finally:
        await engine.dispose()
