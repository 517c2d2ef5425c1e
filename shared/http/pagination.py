"""Cursor pagination over UUIDv7 ids (time ordered, newest first): stable under inserts, no OFFSET scans."""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field
from sqlalchemy import Select

from shared.errors import InvalidField

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page; null on the last page.")


class PageParams(BaseModel):
    cursor: str | None = None
    limit: int = 50


def page_params(
    cursor: Annotated[str | None, Query(max_length=64, description="Opaque cursor from the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Page size (1-200).")] = 50,
) -> PageParams:
    return PageParams(cursor=cursor, limit=limit)


def encode_cursor(last_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(last_id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str) -> uuid.UUID:
    try:
        return uuid.UUID(bytes=base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise InvalidField("query.cursor", "not a cursor returned by this API") from exc


def paginate(stmt: Select[Any], id_column: Any, params: PageParams) -> Select[Any]:
    if params.cursor:
        stmt = stmt.where(id_column < decode_cursor(params.cursor))
    return stmt.order_by(id_column.desc()).limit(params.limit + 1)


def make_page(rows: list[Any], params: PageParams, convert: Any = None) -> dict[str, Any]:
    more = len(rows) > params.limit
    rows = rows[: params.limit]
    return {
        "items": [convert(r) for r in rows] if convert else rows,
        "next_cursor": encode_cursor(rows[-1].id) if more and rows else None,
    }
