"""Streamed exports: one way to turn rows into CSV, JSON or NDJSON without holding them all in memory.

Rows come from an async iterator (usually :func:`stream_rows`, a server-side cursor in a read-only transaction)
and leave in chunks of about ``CHUNK_BYTES``: memory stays flat whatever the size of the export. The formats:

- ``csv``: UTF-8 with a BOM (Excel then opens Chinese text correctly), a header row, CRLF line ends; cells a
  spreadsheet would read as a formula (``=``, ``+``, ``-``, ``@``, tab, CR) are prefixed with ``'`` (CSV/formula
  injection). Booleans are ``true``/``false``, nulls empty, lists joined with ``;``.
- ``json``: one JSON array, written object by object.
- ``ndjson``: one JSON object per line (``application/x-ndjson``), for pipelines that read line by line.

An error after the first chunk cannot change the status any more: the connection is cut, so a client sees a
truncated file (a JSON array without its closing bracket) rather than a complete-looking one.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
import sqlalchemy as sa
from fastapi import Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

ExportFormat = Literal["csv", "json", "ndjson"]
FormatParam = Annotated[ExportFormat, Query(
    alias="format", description="`csv` (UTF-8 with BOM, opens in Excel), `json` (one array) or `ndjson` (one "
                                "object per line). Streamed: any size.")]
MEDIA_TYPES: dict[str, str] = {"csv": "text/csv; charset=utf-8", "json": "application/json",
                               "ndjson": "application/x-ndjson"}
#: Exports cover at most this many days (a year, leap day included): bigger pulls are made in several.
MAX_EXPORT_DAYS = 366
#: Rows are sent in chunks of about this size: few enough writes, small enough buffers.
CHUNK_BYTES = 64 * 1024
#: Rows fetched per round trip from the server-side cursor.
FETCH_ROWS = 1000
BOM = "\ufeff".encode()
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

Row = Mapping[str, Any] | BaseModel


def export_responses(description: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for an export route: the three media types of its 200."""
    text = {"schema": {"type": "string"}}
    return {200: {"description": description,
                  "content": {"text/csv": text, "application/json": {"schema": {"type": "array", "items": {
                      "type": "object"}}}, "application/x-ndjson": text}}}


# --- cells and lines ----------------------------------------------------------------------------------------


def csv_cell(value: Any) -> Any:
    """One CSV cell: numbers as they are, text made safe to open in a spreadsheet."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        value = ";".join(str(v) for v in value)
    elif isinstance(value, dict):
        value = orjson.dumps(value, default=_json_default).decode()
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_lines(rows: Iterable[Iterable[Any]]) -> bytes:
    """CSV lines (CRLF) of ``rows``, every cell through :func:`csv_cell`."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([csv_cell(v) for v in row] for row in rows)
    return out.getvalue().encode("utf-8")


def _json_default(value: Any) -> Any:
    """Beyond what orjson writes itself (str, numbers, bool, None, UUID, datetime, date, lists, dicts): money
    (``Decimal``) as a string, as the API's pydantic models write it, so no cent is lost."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _as_dict(row: Row) -> Mapping[str, Any]:
    return row.model_dump(mode="json") if isinstance(row, BaseModel) else row


# --- the response -------------------------------------------------------------------------------------------


def stream_export(name: str, fmt: ExportFormat, rows: AsyncIterator[Row],
                  columns: Sequence[str] | None = None) -> StreamingResponse:
    """The rows as a streamed download ``<name>.<fmt>``. CSV columns: ``columns``, else the first row's keys
    (JSON objects keep every key of each row)."""
    body = {"csv": _csv_body, "json": _json_body, "ndjson": _ndjson_body}[fmt]
    return StreamingResponse(
        _closing(body(rows, columns), rows), media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{_safe_name(name)}.{fmt}"',
                 "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


async def _closing(body: AsyncIterator[bytes], rows: AsyncIterator[Row]) -> AsyncIterator[bytes]:
    """The body, and the row source closed at once when it ends early (client gone, error): its cursor, session
    and transaction go back to the pool now, not whenever the abandoned generator is collected."""
    try:
        async for chunk in body:
            yield chunk
    finally:
        for gen in (body, rows):
            close = getattr(gen, "aclose", None)
            if close is not None:
                await close()


def _safe_name(name: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in name) or "export"


async def _csv_body(rows: AsyncIterator[Row], columns: Sequence[str] | None) -> AsyncIterator[bytes]:
    head = list(columns) if columns is not None else None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    yield BOM
    if head is not None:
        writer.writerow(head)
    async for row in rows:
        data = _as_dict(row)
        if head is None:
            head = list(data)
            writer.writerow(head)
        writer.writerow([csv_cell(data.get(c)) for c in head])
        if out.tell() >= CHUNK_BYTES:
            yield out.getvalue().encode("utf-8")
            out.seek(0)
            out.truncate()
    if out.tell():
        yield out.getvalue().encode("utf-8")


async def _json_body(rows: AsyncIterator[Row], columns: Sequence[str] | None) -> AsyncIterator[bytes]:
    chunk = bytearray(b"[")
    first = True
    async for row in rows:
        if not first:
            chunk += b","
        first = False
        chunk += orjson.dumps(_as_dict(row), default=_json_default)
        if len(chunk) >= CHUNK_BYTES:
            yield bytes(chunk)
            chunk = bytearray()
    chunk += b"]"
    yield bytes(chunk)


async def _ndjson_body(rows: AsyncIterator[Row], columns: Sequence[str] | None) -> AsyncIterator[bytes]:
    chunk = bytearray()
    async for row in rows:
        chunk += orjson.dumps(_as_dict(row), default=_json_default) + b"\n"
        if len(chunk) >= CHUNK_BYTES:
            yield bytes(chunk)
            chunk = bytearray()
    if chunk:
        yield bytes(chunk)


# --- reading ------------------------------------------------------------------------------------------------


async def stream_rows(sessionmaker: async_sessionmaker[AsyncSession], stmt: sa.Select[Any],
                      convert: Callable[[Any], Row], batch: int = FETCH_ROWS) -> AsyncIterator[Row]:
    """``stmt``'s rows through ``convert``, read with a server-side cursor ``batch`` rows at a time in a
    read-only transaction of its own session (the request's session is gone while the response streams)."""
    async with sessionmaker() as session, session.begin():
        if session.bind.dialect.name == "postgresql":
            await session.execute(sa.text("SET TRANSACTION READ ONLY"))
        result = await session.stream(stmt.execution_options(yield_per=batch))
        async for part in result.partitions():
            for row in part:
                yield convert(row)


def local_iso(at: datetime | None, zone: Any) -> str | None:
    """An instant as ISO 8601 in a store's time zone (what the dealer reads), to the second."""
    return at.astimezone(zone).isoformat(timespec="seconds") if at is not None else None


__all__ = ["BOM", "CHUNK_BYTES", "MAX_EXPORT_DAYS", "MEDIA_TYPES", "ExportFormat", "FormatParam", "csv_cell",
           "csv_lines", "export_responses", "local_iso", "stream_export", "stream_rows"]
