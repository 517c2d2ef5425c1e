"""The NUL guard reads JSON bodies whole (to find U+0000 and name its field) and lets every other body stream:
an import's file reaches the app chunk by chunk, never held in memory whole."""

from __future__ import annotations

import json

from starlette.types import Message, Receive, Scope, Send

from shared.http.nul_guard import NulGuardMiddleware

CHUNKS = 50


def scope(content_type: bytes | None) -> Scope:
    headers = [(b"content-type", content_type)] if content_type else []
    return {"type": "http", "method": "POST", "path": "/x", "query_string": b"", "headers": headers}


class Client:
    """Sends the body in ``CHUNKS`` pieces, counting how many the server side has pulled."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.pulled = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        piece = self.pieces[self.pulled]
        self.pulled += 1
        return {"type": "http.request", "body": piece, "more_body": self.pulled < len(self.pieces)}

    async def send(self, message: Message) -> None:
        self.sent.append(message)


def recording_app(seen: list[tuple[int, int]], client: Client):  # type: ignore[no-untyped-def]
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        more = True
        while more:
            message = await receive()
            seen.append((len(message.get("body", b"")), client.pulled))
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    return app


async def test_a_file_upload_streams_through_chunk_by_chunk() -> None:
    client = Client([b"a,b,c\n" * 1000] * CHUNKS)
    seen: list[tuple[int, int]] = []
    await NulGuardMiddleware(recording_app(seen, client))(scope(b"text/csv"), client.receive, client.send)
    # the app got each chunk as the client sent it: never more than one pulled ahead
    assert len(seen) == CHUNKS and all(pulled == i + 1 for i, (_, pulled) in enumerate(seen))
    assert client.sent[0]["status"] == 204


async def test_json_bodies_are_read_whole_and_a_nul_is_refused_naming_the_field() -> None:
    body = json.dumps({"name": "张\u0000三"}).encode()
    client = Client([body[:5], body[5:]])
    seen: list[tuple[int, int]] = []
    await NulGuardMiddleware(recording_app(seen, client))(scope(b"application/json; charset=utf-8"),
                                                          client.receive, client.send)
    assert not seen and client.sent[0]["status"] == 422
    assert json.loads(client.sent[1]["body"])["errors"][0]["field"] == "body.name"

    client = Client([b'{"name": ', b'"ok"}'])
    await NulGuardMiddleware(recording_app(seen, client))(scope(None), client.receive, client.send)
    assert seen == [(len(b'{"name": "ok"}'), 2)]  # no content type: read as JSON, replayed whole


async def test_an_untyped_body_beyond_a_mebibyte_streams_on() -> None:
    """No content type: FastAPI would read JSON, so a small body is checked; a file sent without one is not held."""
    piece = b"x" * 100_000
    client = Client([piece] * CHUNKS)
    seen: list[tuple[int, int]] = []
    await NulGuardMiddleware(recording_app(seen, client))(scope(None), client.receive, client.send)
    assert sum(size for size, _ in seen) == len(piece) * CHUNKS
    first_pulled = seen[0][1]
    assert first_pulled <= 12  # ~1 MiB read ahead, then chunk by chunk
    assert [pulled for _, pulled in seen[first_pulled:]] == list(range(first_pulled + 1, CHUNKS + 1))


async def test_a_json_body_past_its_cap_is_refused_before_it_is_held_whole() -> None:
    """Before any credentials are looked at: a huge "JSON" body would otherwise be held in memory whole."""
    from shared.http.nul_guard import JSON_MAX

    piece = b" " * (1 << 20)
    client = Client([piece] * ((JSON_MAX >> 20) + 8))
    seen: list[tuple[int, int]] = []
    await NulGuardMiddleware(recording_app(seen, client))(scope(b"application/json"), client.receive, client.send)
    assert not seen and client.sent[0]["status"] == 413
    assert json.loads(client.sent[1]["body"])["code"] == "payload_too_large"
    assert client.pulled <= (JSON_MAX >> 20) + 2  # stopped reading just past the cap
