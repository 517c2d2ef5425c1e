"""Optimistic concurrency: ``ETag`` from a row version, ``If-Match`` required on updates (412 when stale)."""

from __future__ import annotations

from typing import TypeVar

from fastapi import Response

from shared.errors import PreconditionFailed, PreconditionRequired

T = TypeVar("T")


def etag_for(version: int) -> str:
    return f'W/"{version}"'


def check_if_match(if_match: str | None, version: int) -> None:
    if if_match is None:
        raise PreconditionRequired("Send the ETag you read as If-Match, so concurrent edits are not lost.")
    tags = {t.strip() for t in if_match.split(",")}
    if "*" not in tags and etag_for(version) not in tags and f'"{version}"' not in tags:
        raise PreconditionFailed(f"Current version is {etag_for(version)}; re-read the record and retry.")


def tagged(response: Response, record: T) -> T:
    """Set the response's ETag from ``record.version`` and hand the record on (for ``response_model``)."""
    response.headers["ETag"] = etag_for(record.version)  # type: ignore[attr-defined]
    return record
