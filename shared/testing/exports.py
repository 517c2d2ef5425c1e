"""Reading an export back in tests, whatever its format."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson


def parse_export(fmt: str, body: bytes) -> list[dict[str, Any]]:
    """The rows of a ``csv`` (UTF-8 with BOM), ``json`` (one array) or ``ndjson`` export body."""
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    if fmt == "json":
        return orjson.loads(body)
    return [orjson.loads(line) for line in body.splitlines()]
