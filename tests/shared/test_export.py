"""The export helper without a database: formats, CSV safety, and that rows leave before the source is exhausted."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest
from pydantic import BaseModel

from sqlalchemy.exc import DBAPIError
from starlette.requests import ClientDisconnect

from shared.errors import TooManyRequests, Unavailable
from shared.http.export import BOM, CHUNK_BYTES, MAX_CONCURRENT_EXPORTS, csv_cell, stream_export


class Item(BaseModel):
    name: str
    score: float | None


async def _body(response, on_chunk=None) -> list[bytes]:  # type: ignore[no-untyped-def]
    """The response's body as an ASGI server receives it, chunk by chunk (``on_chunk`` sees each one)."""
    chunks: list[bytes] = []

    async def receive() -> dict:
        await asyncio.Event().wait()  # the client never leaves by itself
        return {}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            chunks.append(message["body"])
            if on_chunk is not None:
                on_chunk(chunks)

    await response({"type": "http", "asgi": {"spec_version": "2.4"}, "method": "GET", "path": "/"}, receive, send)
    return chunks


async def _rows(n: int, seen: list[int] | None = None) -> AsyncIterator[dict]:
    for i in range(n):
        if seen is not None:
            seen.append(i)
        yield {"i": i, "text": f"行 {i} " + "x" * 200, "ok": i % 2 == 0, "none": None}


@pytest.mark.parametrize(("value", "cell"), [
    ("=1+1", "'=1+1"), ("+86 138", "'+86 138"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"),
    ("plain", "plain"), ("中文", "中文"), (-2, -2), (1.5, 1.5), (Decimal("3.10"), Decimal("3.10")), (None, ""),
    (True, "true"), (False, "false"), (["a", "b"], "a;b"), (["=x"], "'=x"),
    (datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), "2025-01-02T03:04:05+00:00")])
def test_cells(value, cell) -> None:  # type: ignore[no-untyped-def]
    assert csv_cell(value) == cell


async def test_the_three_formats_hold_the_same_rows() -> None:
    rows = [{"id": uuid.UUID(int=1), "name": "=cmd|' /C calc'!A0", "money": Decimal("1.50"), "n": None,
             "flags": ["a", "b"]}, Item(name="张三", score=9.5)]

    async def source() -> AsyncIterator:
        for row in rows:
            yield row

    csv_resp = await stream_export("t", "csv", source(), ["id", "name", "money", "n", "flags", "score"])
    assert csv_resp.media_type == "text/csv; charset=utf-8"
    assert csv_resp.headers["content-disposition"] == 'attachment; filename="t.csv"'
    body = b"".join(await _body(csv_resp))
    assert body.startswith(BOM)
    table = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert table == [{"id": str(uuid.UUID(int=1)), "name": "'=cmd|' /C calc'!A0", "money": "1.50", "n": "",
                      "flags": "a;b", "score": ""},
                     {"id": "", "name": "张三", "money": "", "n": "", "flags": "", "score": "9.5"}]

    json_resp = await stream_export("t", "json", source())
    assert json_resp.media_type == "application/json"
    assert orjson.loads(b"".join(await _body(json_resp))) == [
        {"id": str(uuid.UUID(int=1)), "name": "=cmd|' /C calc'!A0", "money": "1.50", "n": None, "flags": ["a", "b"]},
        {"name": "张三", "score": 9.5}]
    nd_resp = await stream_export("t", "ndjson", source())
    assert nd_resp.media_type == "application/x-ndjson"
    lines = b"".join(await _body(nd_resp)).splitlines()
    assert [orjson.loads(line) for line in lines] == orjson.loads(b"".join(await _body(
        await stream_export("t", "json", source()))))


async def test_empty_exports_are_valid() -> None:
    async def nothing() -> AsyncIterator:
        return
        yield

    assert b"".join(await _body(await stream_export("t", "json", nothing()))) == b"[]"
    assert b"".join(await _body(await stream_export("t", "ndjson", nothing()))) == b""
    assert b"".join(await _body(await stream_export("t", "csv", nothing(), ["a", "b"]))) == BOM + b"a,b\r\n"


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson"])
async def test_rows_leave_in_chunks_before_the_source_is_read(fmt) -> None:  # type: ignore[no-untyped-def]
    total, seen = 3000, []

    def on_chunk(chunks: list[bytes]) -> None:
        if len(chunks) == 3:
            # three chunks are out while most rows have not even been produced: nothing holds the whole export
            assert len(seen) < total / 2

    chunks = await _body(await stream_export("t", fmt, _rows(total, seen)), on_chunk)
    sizes = [len(c) for c in chunks]
    assert len(chunks) > 5 and max(sizes) < 2 * CHUNK_BYTES
    data = b"".join(chunks)
    if fmt == "json":
        assert len(orjson.loads(data)) == total
    elif fmt == "ndjson":
        assert len(data.splitlines()) == total
    else:
        assert len(list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))) == total


async def test_a_client_leaving_early_closes_the_source_at_once() -> None:
    closed = []

    async def source() -> AsyncIterator[dict]:
        try:
            async for row in _rows(5000):
                yield row
        finally:
            closed.append(True)  # where the cursor, session and transaction are released

    def gone(chunks: list[bytes]) -> None:
        raise OSError("the client closed the connection")

    with pytest.raises(ClientDisconnect):
        await _body(await stream_export("t", "ndjson", source()), gone)
    assert closed == [True]


async def test_exports_at_once_are_limited_and_their_slots_come_back() -> None:
    """Each export holds a database connection while it streams: past the limit, 429 with Retry-After."""
    gate = asyncio.Event()

    async def slow() -> AsyncIterator[dict]:
        yield {"a": 1}
        await gate.wait()
        yield {"a": 2}

    streaming = [asyncio.ensure_future(_body(await stream_export("t", "ndjson", slow())))
                 for _ in range(MAX_CONCURRENT_EXPORTS)]
    with pytest.raises(TooManyRequests) as refused:
        await stream_export("t", "ndjson", slow())
    assert refused.value.headers["Retry-After"] == "10"
    gate.set()
    for done in streaming:
        assert len((b"".join(await done)).splitlines()) == 2
    assert len(b"".join(await _body(await stream_export("t", "ndjson", slow()))).splitlines()) == 2


async def test_a_database_that_cannot_start_the_export_is_a_503_before_any_byte() -> None:
    closed = []

    async def failing() -> AsyncIterator[dict]:
        try:
            raise DBAPIError("SELECT", None, ConnectionRefusedError("the database is down"))
            yield {}
        finally:
            closed.append(True)

    with pytest.raises(Unavailable) as refused:
        await stream_export("t", "csv", failing())
    assert refused.value.status == 503 and refused.value.headers["Retry-After"] and closed == [True]
    # Its slot came back: as many exports as the limit still start.
    for _ in range(MAX_CONCURRENT_EXPORTS + 1):
        assert await _body(await stream_export("t", "ndjson", _rows(1)))
