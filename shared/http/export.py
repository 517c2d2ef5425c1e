"""Streamed exports: one way to turn rows into CSV, JSON or NDJSON without holding them all in memory.

Rows come from an async iterator (usually :func:`stream_rows`, a server-side cursor in a read-only transaction)
and leave in chunks of about ``CHUNK_BYTES``: memory stays flat whatever the size of the export. The formats:

- ``csv``: UTF-8 with a BOM (Excel then opens Chinese text correctly), a header row, CRLF line ends; cells a
  spreadsheet would read as a formula (``=``, ``+``, ``-``, ``@``, tab, CR) are prefixed with ``'`` (CSV/formula
  injection). Booleans are ``true``/``false``, nulls empty, lists joined with ``;``.
- ``json``: one JSON array, written object by object.
- ``ndjson``: one JSON object per line (``application/x-ndjson``), for pipelines that read line by line.

The first row is read before the response starts, so a database that is down, or a query that cannot start,
answers a problem+json (503) instead of a 200 cut short. An error after that cannot change the status any more:
the connection is cut, so a client sees a truncated file (a JSON array without its closing bracket, a chunked body
without its last chunk) rather than a complete-looking one.

Each export holds a pooled connection and a transaction until its last row is sent: at most
``MAX_CONCURRENT_EXPORTS`` run at once per process, and the next one is told to retry (429 with ``Retry-After``)
rather than taking the pool the process's other requests need.
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
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.errors import TooManyRequests, Unavailable, problem_responses

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
#: Exports streaming at once per process (each holds one of its pool's connections: 10, plus 10 overflow).
MAX_CONCURRENT_EXPORTS = 4
#: An export's statements may run this long (the roles' limit is set for requests: 30 s), just under the driver's
#: own 60 s command timeout (``shared.db.engine``), which asyncpg applies to each cursor fetch: a year of a big
#: dealer group's answers is sorted before the first row (300,000 rows sort in well under a second).
EXPORT_STATEMENT_TIMEOUT = "55s"
#: And its transaction may wait this long on a reader that is slow to take the rows.
EXPORT_IDLE_TIMEOUT = "10min"
BOM = "\ufeff".encode()
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

Row = Mapping[str, Any] | BaseModel


def export_responses(description: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for an export route: the three media types of its 200."""
    text = {"schema": {"type": "string"}}
    return {**problem_responses(429, 503), 200: {"description": description,
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


def sections_csv_doc(model: type[BaseModel], sections: str = "") -> dict[int | str, dict[str, Any]]:
    """The OpenAPI answer of a report route that also answers :func:`sections_csv` (``sections``: what its
    ``section`` column holds)."""
    return {200: {"model": model, "content": {"text/csv": {"schema": {"type": "string"}}},
                  "description": f"The report (JSON), or as CSV: a `section` column{sections}, then the JSON "
                                 "fields."}}


async def sections_csv(name: str, sections: list[tuple[str, list[BaseModel]]]) -> StreamingResponse:
    """A report's sections as one CSV table (the reports' ``format=csv``): ``section`` first, then the union of the
    rows' fields, every cell made safe as in the exports. The rows are in memory already: no export slot."""
    dumped = [{"section": label, **row.model_dump(mode="json")} for label, items in sections for row in items]
    columns: list[str] = ["section"]
    for row in dumped:
        columns += [k for k in row if k not in columns]

    async def rows() -> AsyncIterator[dict[str, Any]]:
        for row in dumped:
            yield row

    return await stream_export(name, "csv", rows(), columns, holds_connection=False)


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


class _Slots:
    """Exports under way in this process (one event loop: a counter is enough)."""

    active = 0


async def stream_export(name: str, fmt: ExportFormat, rows: AsyncIterator[Row], columns: Sequence[str] | None = None,
                        *, holds_connection: bool = True) -> StreamingResponse:
    """The rows as a streamed download ``<name>.<fmt>``. CSV columns: ``columns``, else the first row's keys
    (JSON objects keep every key of each row). Reads the first row before answering (see the module's notes).
    ``holds_connection=False``: rows already in memory, which take no export slot."""
    slot = 1 if holds_connection else 0
    if slot and _Slots.active >= MAX_CONCURRENT_EXPORTS:
        await _close(rows)
        raise TooManyRequests(f"{MAX_CONCURRENT_EXPORTS} exports are already streaming from this server; "
                              "retry shortly", retry_after=10)
    _Slots.active += slot
    try:
        first = await anext(rows, None)
    except BaseException as exc:
        _Slots.active -= slot
        await _close(rows)
        if isinstance(exc, (DBAPIError, sa.exc.TimeoutError, OSError)) and not isinstance(exc, IntegrityError):
            raise Unavailable("The database could not start this export now; retry shortly, or ask for a "
                              "shorter period.") from exc
        raise
    body = {"csv": _csv_body, "json": _json_body, "ndjson": _ndjson_body}[fmt]
    return _ExportResponse(
        body(_from(first, rows), columns), rows, slot, media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{_safe_name(name)}.{fmt}"',
                 "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


async def _from(first: Row | None, rows: AsyncIterator[Row]) -> AsyncIterator[Row]:
    if first is None:
        return
    yield first
    async for row in rows:
        yield row


async def _close(gen: Any) -> None:
    close = getattr(gen, "aclose", None)
    if close is not None:
        await close()


class _ExportResponse(StreamingResponse):
    """A streamed export that gives its slot back and closes its row source as soon as the response ends, however
    it ends (done, error, client gone): the cursor, session and transaction go back to the pool then, not whenever
    an abandoned generator is collected."""

    def __init__(self, body: AsyncIterator[bytes], rows: AsyncIterator[Row], slot: int, **kwargs: Any) -> None:
        super().__init__(body, **kwargs)
        self._rows = rows
        self._slot = slot

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            _Slots.active -= self._slot
            for gen in (self.body_iterator, self._rows):
                await _close(gen)


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
            await session.execute(sa.text("SELECT set_config('statement_timeout', :run, true), "
                                          "set_config('idle_in_transaction_session_timeout', :idle, true)"),
                                  {"run": EXPORT_STATEMENT_TIMEOUT, "idle": EXPORT_IDLE_TIMEOUT})
        result = await session.stream(stmt.execution_options(yield_per=batch))
        async for part in result.partitions():
            for row in part:
                yield convert(row)


def local_iso(at: datetime | None, zone: Any) -> str | None:
    """An instant as ISO 8601 in a store's time zone (what the dealer reads), to the second."""
    return at.astimezone(zone).isoformat(timespec="seconds") if at is not None else None


__all__ = ["BOM", "CHUNK_BYTES", "MAX_CONCURRENT_EXPORTS", "MAX_EXPORT_DAYS", "MEDIA_TYPES", "ExportFormat",
           "FormatParam", "csv_cell", "csv_lines", "export_responses", "local_iso", "sections_csv", "sections_csv_doc",
           "stream_export", "stream_rows"]
