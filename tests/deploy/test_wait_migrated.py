"""``python -m <svc> wait-migrated``, the init container of every api and worker pod (deploy/k8s), on real Postgres:
it fails (after its timeout) while the schema is behind this code's migrations, and passes once it is at their head,
or past it (an image rolled back after its migration ran)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from customer_svc.app import MIGRATIONS
from customer_svc.settings import CustomerSettings
from shared.cli import wait_migrated
from shared.db import migrations
from shared.testing import infra


@pytest.fixture
async def scratch_db() -> AsyncIterator[str]:
    name, url = await infra.create_database()
    yield url
    await infra.drop_database(name)


def run_command(url: str, cwd: Path, timeout: float) -> tuple[int, float, str]:
    """The container's command line, with nothing of this machine's service settings in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AFTERCARE_", "CUSTOMER_"))}
    env.update(CUSTOMER_DATABASE_URL=url, AFTERCARE_ENVIRONMENT="prod", AFTERCARE_LOG_JSON="true")
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "customer_svc", "wait-migrated", "--timeout", str(timeout)],
                         env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    return out.returncode, time.monotonic() - t0, out.stdout + out.stderr


async def test_the_command_fails_before_the_migration_and_passes_after(scratch_db: str, tmp_path: Path) -> None:
    code, took, output = await asyncio.to_thread(run_command, scratch_db, tmp_path, 1)
    assert code == 1, output
    assert took < 30, took  # the timeout, plus starting Python
    assert "schema_not_migrated" in output

    await asyncio.to_thread(migrations.upgrade, CustomerSettings(database_url=scratch_db), MIGRATIONS)
    code, _, output = await asyncio.to_thread(run_command, scratch_db, tmp_path, 30)
    assert code == 0, output
    assert "schema_migrated" in output
    assert not list(tmp_path.iterdir())  # writes nothing (the pod's root filesystem is read-only)


def test_without_a_database_url_it_refuses(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AFTERCARE_", "CUSTOMER_"))}
    out = subprocess.run([sys.executable, "-m", "customer_svc", "wait-migrated", "--timeout", "1"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode != 0 and "database URL" in out.stderr
    assert not list(tmp_path.iterdir())  # no embedded SQLite made on the way


async def test_it_returns_once_the_migration_lands(scratch_db: str) -> None:
    settings = CustomerSettings(database_url=scratch_db)
    waiting = asyncio.create_task(wait_migrated(settings, MIGRATIONS, timeout=60, every=0.1))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    await asyncio.to_thread(migrations.upgrade, settings, MIGRATIONS)
    assert await asyncio.wait_for(waiting, 10) is True


async def test_behind_the_head_waits_and_past_it_passes(scratch_db: str) -> None:
    settings = CustomerSettings(database_url=scratch_db)
    await asyncio.to_thread(migrations.upgrade, settings, MIGRATIONS)
    await asyncio.to_thread(migrations.downgrade, settings, MIGRATIONS, "-1")  # the release before the newest
    current = await migrations.current_revisions(settings)
    assert current and not migrations.is_migrated(current, settings, MIGRATIONS)
    assert await wait_migrated(settings, MIGRATIONS, timeout=0.3, every=0.1) is False

    await asyncio.to_thread(migrations.upgrade, settings, MIGRATIONS)
    assert await wait_migrated(settings, MIGRATIONS, timeout=0.3) is True

    # a newer release migrated it further, then its image was rolled back: this code does not know the revision
    conn = await asyncpg.connect(scratch_db.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f"UPDATE {settings.schema_name}.alembic_version SET version_num = 'from_a_newer_release'")
    finally:
        await conn.close()
    assert await migrations.current_revisions(settings) == {"from_a_newer_release"}
    assert await wait_migrated(settings, MIGRATIONS, timeout=0.3) is True


async def test_an_unreachable_database_is_waited_for_until_the_timeout() -> None:
    settings = CustomerSettings(database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none")
    t0 = time.monotonic()
    assert await wait_migrated(settings, MIGRATIONS, timeout=1, every=0.2) is False
    assert 0.9 <= time.monotonic() - t0 < 5
