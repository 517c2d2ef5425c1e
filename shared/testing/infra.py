"""Real infrastructure for tests: a fresh Postgres database and a fresh RabbitMQ vhost per test session,
so suites (and developers) running side by side never see each other's data or queues."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from urllib.parse import quote

import asyncpg

PG_ADMIN_DSN = os.environ.get("AFTERCARE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_BASE = os.environ.get("AFTERCARE_TEST_AMQP_BASE", "amqp://guest:guest@127.0.0.1:5672")


async def create_database() -> tuple[str, str]:
    """Returns (database name, SQLAlchemy asyncpg URL)."""
    name = f"aftercare_test_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return name, f"{base}/{name}"


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def rabbitmqctl(*args: str) -> str:
    exe = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    return subprocess.run([exe, *args], check=True, capture_output=True, text=True, timeout=120).stdout


def create_vhost() -> tuple[str, str]:
    """Returns (vhost, AMQP URL for it)."""
    vhost = f"aftercare-test-{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    return vhost, f"{AMQP_BASE}/{quote(vhost, safe='')}"


def delete_vhost(vhost: str) -> None:
    rabbitmqctl("delete_vhost", vhost)


async def broker_stop() -> None:
    """Stop the RabbitMQ application (the Erlang node stays up): every connection drops."""
    await asyncio.to_thread(rabbitmqctl, "stop_app")


async def broker_start() -> None:
    await asyncio.to_thread(rabbitmqctl, "start_app")
    await asyncio.to_thread(rabbitmqctl, "await_startup")
