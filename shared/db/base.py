"""Declarative bases and column types that behave the same on Postgres and SQLite."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from shared.ids import new_id

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """timestamptz on Postgres; on SQLite (no time zones) values are stored and read back as UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; attach a time zone")
        return value.astimezone(UTC) if dialect.name == "postgresql" else value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def Base_for_schema(schema: str) -> type[DeclarativeBase]:  # noqa: N802 - a class factory
    """A declarative base whose tables live in ``schema`` with stable constraint names."""

    class Base(DeclarativeBase):
        metadata = sa.MetaData(schema=schema, naming_convention=NAMING_CONVENTION)
        type_annotation_map = {
            datetime: UTCDateTime(),
            uuid.UUID: sa.Uuid(),
            dict[str, Any]: JSONType,
            list[str]: JSONType,
        }

    return Base


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TenantScopedMixin:
    """Every business row carries its dealer group (tenant) and store; all queries scope by both."""

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)

    @declared_attr
    def tenant_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(sa.Uuid(), index=True)

    @declared_attr
    def store_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(sa.Uuid(), index=True)


def contains_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, with the user's ``%``, ``_`` and ``\\`` taken literally.

    Use with ``column.like(contains_pattern(q), escape="\\\\")``.
    """
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def where_given(stmt: Any, *conditions: tuple[Any, Any]) -> Any:
    """Add ``column == value`` for each pair whose value was given (not None): the optional filters of a list."""
    for column, value in conditions:
        if value is not None:
            stmt = stmt.where(column == value)
    return stmt


async def advisory_locks(session: Any, keys: list[str], *, shared: bool = False) -> None:
    """Transaction-scoped Postgres advisory locks on ``keys`` (taken in sorted order, so no deadlocks), exclusive
    or ``shared`` (holders of a shared lock do not exclude each other, only the exclusive ones).

    For uniqueness rules no index can express; a no-op on SQLite, which runs one writer at a time anyway.
    """
    if session.bind.dialect.name != "postgresql" or not keys:
        return
    # One round trip: unnest yields the keys in the order given (sorted here), and each is locked in that order.
    lock = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    await session.execute(sa.text(f"SELECT count({lock}(hashtextextended(k, 0))) "
                                  "FROM unnest(CAST(:keys AS text[])) AS k"),
                          {"keys": sorted(set(keys))})


def dialect_insert(session: Any) -> Any:
    """``insert`` with ``on_conflict_do_*`` for the session's dialect (Postgres in production, SQLite embedded)."""
    return pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert


def in_values(session: Any, column: Any, values: Any) -> Any:
    """``column IN values`` for long lists: on Postgres one array parameter (``= ANY($1)``), so a batch of a
    thousand keys is one short statement, prepared once, instead of a thousand bind parameters; elsewhere ``IN``."""
    values = list(values)
    if session.bind.dialect.name != "postgresql":
        return column.in_(values)
    return column == sa.any_(sa.bindparam(None, values, type_=ARRAY(column.type)))
