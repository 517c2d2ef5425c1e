"""The export helper without a database: formats, CSV safety, and that rows leave before the source is exhausted."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest
from pydantic import BaseModel

from shared.http.export import BOM, CHUNK_BYTES, csv_cell, stream_export


class Item(BaseModel):
    name: str
    score: float | None


async def _body(response) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [chunk async for chunk in response.body_iterator]


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

    csv_resp = stream_export("t", "csv", source(), ["id", "name", "money", "n", "flags", "score"])
    assert csv_resp.media_type == "text/csv; charset=utf-8"
    assert csv_resp.headers["content-disposition"] == 'attachment; filename="t.csv"'
    body = b"".join(await _body(csv_resp))
    assert body.startswith(BOM)
    table = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert table == [{"id": str(uuid.UUID(int=1)), "name": "'=cmd|' /C calc'!A0", "money": "1.50", "n": "",
                      "flags": "a;b", "score": ""},
                     {"id": "", "name": "张三", "money": "", "n": "", "flags": "", "score": "9.5"}]

    json_resp = stream_export("t", "json", source())
    assert json_resp.media_type == "application/json"
    assert orjson.loads(b"".join(await _body(json_resp))) == [
        {"id": str(uuid.UUID(int=1)), "name": "=cmd|' /C calc'!A0", "money": "1.50", "n": None, "flags": ["a", "b"]},
        {"name": "张三", "score": 9.5}]
    nd_resp = stream_export("t", "ndjson", source())
    assert nd_resp.media_type == "application/x-ndjson"
    lines = b"".join(await _body(nd_resp)).splitlines()
    assert [orjson.loads(line) for line in lines] == orjson.loads(b"".join(await _body(
        stream_export("t", "json", source()))))


async def test_empty_exports_are_valid() -> None:
    async def nothing() -> AsyncIterator:
        return
        yield

    assert b"".join(await _body(stream_export("t", "json", nothing()))) == b"[]"
    assert b"".join(await _body(stream_export("t", "ndjson", nothing()))) == b""
    assert b"".join(await _body(stream_export("t", "csv", nothing(), ["a", "b"]))) == BOM + b"a,b\r\n"


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson"])
async def test_rows_leave_in_chunks_before_the_source_is_read(fmt) -> None:  # type: ignore[no-untyped-def]
    total, seen = 3000, []
    body = stream_export("t", fmt, _rows(total, seen)).body_iterator
    chunks = []
    async for chunk in body:
        chunks.append(chunk)
        if len(chunks) == 3:
            # three chunks are out while most rows have not even been produced: nothing holds the whole export
            assert len(seen) < total / 2
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

    body = stream_export("t", "ndjson", source()).body_iterator
    assert await body.__anext__()
    await body.aclose()
    assert closed == [True]
