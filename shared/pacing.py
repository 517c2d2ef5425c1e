"""Long CPU-bound loops in an event loop that also waits on I/O.

A pipelined writer (the import worker) validates and encodes one batch while the batch before it sends its rows to
Postgres statement by statement: each statement's successor can only be sent once the event loop gets a turn.
A loop over a thousand records without an ``await`` holds that turn for tens of milliseconds, and Postgres idles
meanwhile; handing the loop over every hundred records keeps both sides busy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import TypeVar

T = TypeVar("T")
EVERY = 100


async def paced(items: Iterable[T], every: int = EVERY) -> AsyncIterator[T]:
    """``items``, giving other tasks a turn after each ``every`` of them."""
    for n, item in enumerate(items, 1):
        yield item
        if n % every == 0:
            await asyncio.sleep(0)
