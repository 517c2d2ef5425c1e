"""Which database failures a consumer retries without using up an event's attempts, provoked for real against
Postgres: a lock timeout and an exhausted pool are contention, not a bad event; a bug, or a statement timeout (the
query itself may be too slow), counts as an attempt."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from shared.messaging.amqp import is_transient
from tests.conftest import Infra


async def failure(coro) -> BaseException:  # type: ignore[no-untyped-def]
    try:
        await coro
    except Exception as exc:  # noqa: BLE001 - the point is which one
        return exc
    raise AssertionError("did not fail")


async def test_contention_is_transient_and_a_bug_is_not(infra_env: Infra) -> None:
    engine = create_async_engine(infra_env.database_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    other = create_async_engine(infra_env.database_url)
    try:
        async with other.connect() as holder:
            await holder.execute(sa.text("SELECT pg_advisory_lock(424242)"))

            async def wait_for_lock() -> None:
                async with engine.begin() as conn:
                    await conn.execute(sa.text("SET LOCAL lock_timeout = '50ms'"))
                    await conn.execute(sa.text("SELECT pg_advisory_xact_lock(424242)"))
            lock = await failure(wait_for_lock())
            await holder.execute(sa.text("SELECT pg_advisory_unlock(424242)"))
        assert isinstance(lock, DBAPIError) and lock.orig.sqlstate == "55P03" and is_transient(lock)  # type: ignore

        async def slow() -> None:
            async with engine.begin() as conn:
                await conn.execute(sa.text("SET LOCAL statement_timeout = '50ms'"))
                await conn.execute(sa.text("SELECT pg_sleep(1)"))
        statement = await failure(slow())  # may be the query itself: counted, then parked, never retried for ever
        assert isinstance(statement, DBAPIError) and statement.orig.sqlstate == "57014"  # type: ignore[union-attr]
        assert not is_transient(statement)

        async with engine.connect() as busy:  # the pool's only connection
            await busy.execute(sa.text("SELECT 1"))
            pool = await failure(asyncio.wait_for(engine.connect().__aenter__(), 5))
        assert is_transient(pool), type(pool)

        async def bug() -> None:
            async with engine.begin() as conn:
                await conn.execute(sa.text("SELECT no_such_column FROM pg_class"))
        assert not is_transient(await failure(bug()))
    finally:
        await engine.dispose()
        await other.dispose()


@pytest.mark.parametrize("error", [ValueError("bad payload"), KeyError("field")])
def test_a_handler_bug_is_not_transient(error: Exception) -> None:
    assert not is_transient(error)
