"""Many rows into one table inside the caller's transaction: Postgres ``COPY`` (binary, through asyncpg), else a
multi-row ``INSERT`` (SQLite in embedded mode). For batch writers (bulk imports) where per-row INSERTs, let alone
ORM objects, would cost more than the work itself."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.engine import json_dumps


@cache
def _defaults(table: sa.Table) -> tuple[dict[str, Any], tuple[tuple[str, Callable[[Any], Any]], ...]]:
    """A table's Python-side column defaults: constants (None where there is none) and the callables."""
    constants: dict[str, Any] = {}
    callables: list[tuple[str, Callable[[Any], Any]]] = []
    for column in table.columns:
        default = column.default
        if default is not None and default.is_callable:  # type: ignore[attr-defined]
            callables.append((column.key, default.arg))  # type: ignore[attr-defined]
        else:
            constants[column.key] = default.arg if default is not None else None  # type: ignore[attr-defined]
    return constants, tuple(callables)


def with_defaults(table: sa.Table, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` completed with the columns' Python-side defaults (``COPY`` applies none of them)."""
    constants, callables = _defaults(table)
    full = {**constants, **row}
    for key, make in callables:
        if key not in row:
            full[key] = make(None)
    return full


@cache
def _json_columns(table: sa.Table, dialect: Any) -> frozenset[str]:
    return frozenset(c.key for c in table.columns if isinstance(c.type.dialect_impl(dialect), sa.JSON))


@dataclass(frozen=True)
class EncodedRows:
    """Rows of one table made ready to write (:func:`encode_rows`): for ``COPY``, tuples in ``columns`` order with
    JSON already serialised; elsewhere, dicts for an ``INSERT``. Encoding is CPU work a pipelined writer does while
    an earlier transaction still holds the connection's turn, leaving only the round trip for :func:`write_rows`."""

    table: sa.Table
    columns: list[str]
    records: list[Any]
    copy: bool


def encode_rows(dialect: Any, table: sa.Table, rows: Sequence[dict[str, Any]]) -> EncodedRows | None:
    """``rows`` (dicts keyed by column, all with the same keys, e.g. from :func:`with_defaults`) encoded for
    ``dialect``; None when there are none. JSON values may hold UUIDs, dates and times (serialised by orjson)."""
    if not rows:
        return None
    json_columns = _json_columns(table, dialect)
    columns = list(rows[0])
    if dialect.name != "postgresql":
        fixed = [{k: (orjson.loads(json_dumps(v)) if k in json_columns and v is not None else v)
                  for k, v in r.items()} for r in rows]
        return EncodedRows(table, columns, fixed, copy=False)
    getter = operator.itemgetter(*columns)
    records: list[Any] = [getter(r) for r in rows] if len(columns) > 1 else [(r[columns[0]],) for r in rows]
    positions = [i for i, c in enumerate(columns) if c in json_columns]
    if positions:
        for n, record in enumerate(records):
            values = list(record)
            for i in positions:
                if values[i] is not None:
                    values[i] = json_dumps(values[i])
            records[n] = values
    return EncodedRows(table, columns, records, copy=True)


async def write_rows(session: AsyncSession, rows: EncodedRows | None) -> None:
    """Insert encoded rows in the session's transaction. No conflict handling: a duplicate key fails the statement
    (``IntegrityError``, as for an INSERT)."""
    if rows is None:
        return
    if not rows.copy:
        await session.execute(sa.insert(rows.table), rows.records)
        return
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    table = rows.table
    try:
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            table.name, records=rows.records, columns=rows.columns, schema_name=table.schema)
    except asyncpg.IntegrityConstraintViolationError as exc:
        # As SQLAlchemy raises it for an INSERT (the driver's own error escapes a raw COPY), so callers handle a
        # conflict one way whichever statement met it.
        raise sa.exc.IntegrityError(f"COPY {table.fullname}", None, exc) from exc
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise sa.exc.DBAPIError(f"COPY {table.fullname}", None, exc) from exc
