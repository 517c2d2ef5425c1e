"""Pruning: published outbox rows, old inbox ids and old idempotency keys do not pile up forever.

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
from shared.messaging.tables import MessagingModels

log = structlog.get_logger("housekeeping")


async def prune(sessionmaker: async_sessionmaker[AsyncSession], models: MessagingModels,
                outbox_keep: timedelta = timedelta(days=7), inbox_keep: timedelta = timedelta(days=30),
                idempotency_keep: timedelta = timedelta(days=1), batch: int = 5000) -> dict[str, int]:
    o, i, k = models.outbox.__table__, models.inbox.__table__, models.idempotency.__table__
    now = utcnow()
    async with sessionmaker() as session, session.begin():
        old_out = sa.select(o.c.id).where(o.c.published_at < now - outbox_keep).limit(batch)
        pruned_out = (await session.execute(sa.delete(o).where(o.c.id.in_(old_out.scalar_subquery())))).rowcount
        old_in = sa.select(i.c.event_id, i.c.consumer).where(i.c.received_at < now - inbox_keep).limit(batch)
        pruned_in = (await session.execute(sa.delete(i).where(
            sa.tuple_(i.c.event_id, i.c.consumer).in_(old_in)))).rowcount
        pruned_keys = (await session.execute(sa.delete(k).where(k.c.created_at < now - idempotency_keep))).rowcount
    return {"outbox": pruned_out or 0, "inbox": pruned_in or 0, "idempotency_keys": pruned_keys or 0}


async def run_housekeeping(sessionmaker: async_sessionmaker[AsyncSession], models: MessagingModels,
                           stop: asyncio.Event, every: timedelta = timedelta(minutes=10)) -> None:
    while not stop.is_set():
        try:
            pruned = await prune(sessionmaker, models)
            if any(pruned.values()):
                log.info("pruned", **pruned)
        except Exception:  # noqa: BLE001 - try again next round
            log.exception("housekeeping_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every.total_seconds())
