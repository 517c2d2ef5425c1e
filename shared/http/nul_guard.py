"""Refuses U+0000 in query strings and JSON bodies with a 422 naming the field.

Postgres text and JSONB cannot hold the NUL character, so it would otherwise surface as a database
error. A pure ASGI middleware rather than a FastAPI dependency: a dependency node on every route costs
more than the check (only JSON bodies of POST/PUT/PATCH are read here, and replayed to the app unchanged; one
over ``JSON_MAX`` is refused, 413).
Other bodies (an import's CSV or JSON Lines file, up to the gateway's 512 MB) stream through untouched: read
here, a file would be held in memory whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import PROBLEM_BASE, PROBLEM_JSON
from shared.observability.context import request_id_var

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _nul_locations(value: Any, loc: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, str):
        if "\x00" in value:
            yield loc
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                yield (*loc, key)
            yield from _nul_locations(item, (*loc, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _nul_locations(item, (*loc, i))


_UNTYPED_MAX = 1 << 20
#: A JSON request body larger than this is refused (413) before the app or the caller's credentials are looked at:
#: read whole here, a bigger one could exhaust the process's memory (the gateway lets 512 MiB through for
#: imports, which come as CSV or JSON Lines, never as application/json).
JSON_MAX = 16 << 20


def _json_body(scope: Scope) -> bool | None:
    """Whether the body is JSON (``application/json``, ``…+json``); None when it says nothing (FastAPI then reads
    it as JSON, but it may be a file uploaded without a content type)."""
    for key, value in scope.get("headers", ()):
        if key == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return None


class NulGuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        locations: list[tuple[Any, ...]] = []
        query = scope.get("query_string", b"")
        if b"%00" in query or b"\x00" in query:
            locations += [("query", k) for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
                          if "\x00" in k + v]
        json_body = _json_body(scope) if scope["method"] in _BODY_METHODS else False
        if json_body is not False:
            # Without a content type, a body beyond ``_UNTYPED_MAX`` is no API request (a file sent without one):
            # what was read is replayed and the rest streams.
            limit = _UNTYPED_MAX if json_body is None else JSON_MAX
            chunks, more, first, size = [], True, None, 0
            while more and (limit is None or size <= limit):
                message = await receive()
                if message["type"] != "http.request":
                    first = message  # a disconnect: hand it on as it came
                    break
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                more = message.get("more_body", False)
            pending: list[Message] = [first] if first else []
            if more and first is None and json_body:
                await self._too_large(scope, send)
                return
            if more and first is None:  # cut short: hand the chunks on as they came
                pending = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
            else:
                body = b"".join(chunks)
                if b"\\u0000" in body:
                    try:
                        locations += _nul_locations(json.loads(body), ("body",))
                    except ValueError:
                        pass  # not JSON: the route's own body validation reports it
                pending = pending or [{"type": "http.request", "body": body, "more_body": False}]

            async def replay() -> Message:
                return pending.pop(0) if pending else await receive()

            app_receive: Receive = replay
        else:
            app_receive = receive
        if locations:
            await self._refuse(scope, send, locations)
            return
        await self.app(scope, app_receive, send)

    @staticmethod
    async def _too_large(scope: Scope, send: Send) -> None:
        await _problem(scope, send, 413, "payload_too_large", "Request body too large",
                       f"a JSON body may hold at most {JSON_MAX >> 20} MiB")

    @staticmethod
    async def _refuse(scope: Scope, send: Send, locations: list[tuple[Any, ...]]) -> None:
        message = "must not contain the NUL character (U+0000)"
        errors = [{"field": ".".join(str(p) for p in loc), "message": message, "type": "string_nul"} for loc in locations]
        await _problem(scope, send, 422, "validation_error", "Request validation failed",
                       "; ".join(f"{e['field']}: {message}" for e in errors[:5]), errors=errors)


async def _problem(scope: Scope, send: Send, status: int, code: str, title: str, detail: str,
                   **extra: Any) -> None:
    """A problem+json answer the middleware gives itself, before the app (and its error handlers) saw the request."""
    body = json.dumps({
        "type": PROBLEM_BASE + code.replace("_", "-"), "title": title, "status": status, "detail": detail,
        "instance": scope.get("path"), "code": code, "request_id": request_id_var.get(), **extra,
    }, ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
