"""Raw asyncpg for hot single-statement reads (Postgres only).

The ORM path costs about a millisecond of CPU per request (session, unit of work, row objects); a
prepared statement on a plain asyncpg pool costs a tenth of that. Only for reads that are one
statement (one snapshot, no transaction needed); every write still goes through the service layer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson
from sqlalchemy.engine import make_url

from shared.db.engine import POSTGRES_CONNECT_ARGS


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Nothing to reset: readers only run single SELECTs (asyncpg still rolls back an open transaction)."""


async def _json_codecs(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads,
                                  schema="pg_catalog")


class Reader:
    def __init__(self, database_url: str, max_size: int = 10) -> None:
        self.dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> asyncpg.Pool:
        async with self._lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.max_size,
                                                       reset=_keep_session, init=_json_codecs,
                                                       **POSTGRES_CONNECT_ARGS)
            return self._pool

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        pool = self._pool or await self._open()
        return await pool.fetchrow(sql, *args)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
