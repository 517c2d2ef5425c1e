"""Async engine per service. SQLite (embedded mode) maps the service schema away and serialises writers."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import orjson
from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from shared.settings import ServiceSettings


def json_dumps(value: object) -> str:
    """JSON/JSONB columns through orjson (several times faster than the stdlib on the scheduler's and relay's
    paths); non-string keys become strings, as with the stdlib encoder."""
    return orjson.dumps(value, default=_as_text, option=orjson.OPT_NON_STR_KEYS).decode()


def _as_text(value: object) -> str:
    """Values orjson does not know natively: asyncpg's own UUID type (ids read from the database), Decimal."""
    if isinstance(value, (uuid.UUID, Decimal)) or type(value).__name__ == "UUID":
        return str(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def create_engine(settings: ServiceSettings, **kw: object) -> AsyncEngine:
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url,
            hide_parameters=True,
            connect_args={"timeout": 30},
            execution_options={"schema_translate_map": {settings.schema_name: None}},
            json_serializer=json_dumps,  # as on Postgres: JSON values may hold UUIDs, dates and times
            json_deserializer=orjson.loads,
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        hide_parameters=True,  # error messages (and so logs) never carry the values: they are personal data
        connect_args=POSTGRES_CONNECT_ARGS,
        json_serializer=json_dumps,
        json_deserializer=orjson.loads,
        **kw,  # type: ignore[arg-type]
    )
    ping_when_idle(engine)
    return engine


#: No statement, lock wait or forgotten transaction may hang a request or a worker loop for ever.
POSTGRES_CONNECT_ARGS = {
    "timeout": 10,
    "command_timeout": 60,
    "server_settings": {"statement_timeout": "30s", "lock_timeout": "10s",
                        "idle_in_transaction_session_timeout": "120s"},
}

#: A pooled connection checked in less than this long ago is not pinged again on checkout.
PING_AFTER_IDLE_SECONDS = 1.0


def ping_when_idle(engine: AsyncEngine, idle_seconds: float = PING_AFTER_IDLE_SECONDS) -> None:
    """``pool_pre_ping``, skipped for connections that were in use moments ago (HikariCP's "alive bypass window").

    SQLAlchemy's pre-ping on asyncpg costs three round trips (BEGIN, ``;``, ROLLBACK) on every checkout, more than
    a whole primary-key read. Here a connection is pinged the same way (and on failure the pool is invalidated, as
    with pre-ping) only when it sat idle for ``idle_seconds`` or more; a busy connection is only checked locally
    (the driver noticed the server closing it, as on a database restart). A connection that dies unnoticed inside
    the window fails its statement once and is then discarded, as one dying between ping and statement would.
    """
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "connect")
    def _connected(dbapi_conn, record):  # type: ignore[no-untyped-def]
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(dbapi_conn, record):  # type: ignore[no-untyped-def]
        if record is not None:
            record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_conn, record, proxy):  # type: ignore[no-untyped-def]
        driver = getattr(dbapi_conn, "driver_connection", None)
        if driver is not None and driver.is_closed():
            raise exc.InvalidatePoolError("connection closed by the server")
        returned = record.info.get("returned_at")
        if returned is not None and time.monotonic() - returned < idle_seconds:
            return
        if not dialect._do_ping_w_event(dbapi_conn):
            raise exc.InvalidatePoolError("pre-ping failed")


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
