"""Pruning: published outbox rows and old inbox ids do not pile up forever.

Inbox ids are kept longer than any redelivery can come back (broker retention plus parked-message
replays), so a late duplicate is still recognised. Bounded deletes, safe with several replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.base import utcnow

log = structlog.get_logger("housekeeping")


async def prune(sessionmaker: async_sessionmaker[AsyncSession], outbox: type, inbox: type,
                outbox_keep: timedelta = timedelta(days=7), inbox_keep: timedelta = timedelta(days=30),
                batch: int = 5000) -> tuple[int, int]:
    o, i = outbox.__table__, inbox.__table__
    now = utcnow()
    async with sessionmaker() as session, session.begin():
        old_out = sa.select(o.c.id).where(o.c.published_at < now - outbox_keep).limit(batch).scalar_subquery()
        pruned_out = (await session.execute(sa.delete(o).where(o.c.id.in_(old_out)))).rowcount
        old_in = sa.select(i.c.event_id).where(i.c.received_at < now - inbox_keep).limit(batch).scalar_subquery()
        pruned_in = (await session.execute(sa.delete(i).where(i.c.event_id.in_(old_in)))).rowcount
    return pruned_out or 0, pruned_in or 0


async def run_housekeeping(sessionmaker: async_sessionmaker[AsyncSession], outbox: type, inbox: type,
                           stop: asyncio.Event, every: timedelta = timedelta(minutes=10)) -> None:
    while not stop.is_set():
        try:
            out, inb = await prune(sessionmaker, outbox, inbox)
            if out or inb:
                log.info("pruned", outbox=out, inbox=inb)
        except Exception:  # noqa: BLE001 - try again next round
            log.exception("housekeeping_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every.total_seconds())
