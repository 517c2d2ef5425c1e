"""Response helpers and the network-level faults every fake provider shares."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from starlette.responses import Response

from notify_svc.sandbox.state import Fault


def json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def request_id() -> str:
    return str(uuid.uuid4()).upper()


async def network_fault(fault: Fault | None) -> Response | None:
    """``timeout``: hold the answer past the client's timeout (nothing recorded); ``http_500``: a bare server
    error; ``outage``: 503 from the provider's front end. None for faults that act after authentication."""
    if fault is None:
        return None
    if fault.mode == "timeout":
        await asyncio.sleep(fault.delay)
        return Response(b"upstream timed out", status_code=504)
    if fault.mode == "http_500":
        return Response(b"Internal Server Error", status_code=500)
    if fault.mode == "outage":
        return Response(b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>", status_code=503,
                        media_type="text/html")
    return None


async def hold(fault: Fault | None) -> None:
    """``accept_then_timeout``: the message is already recorded; the answer comes too late for the client."""
    if fault is not None and fault.mode == "accept_then_timeout":
        await asyncio.sleep(fault.delay)
