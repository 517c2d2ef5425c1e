"""The service's notion of "now": real time, or real time plus an offset when the test clock is enabled.

Every time-dependent decision in followup_svc (what is due, what is overdue, "today") reads this clock,
so a demo or a test can move time forward and watch a month of follow-ups fire. The offset lives in
the database as well, so API and worker processes agree on it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.base import utcnow


class Clock:
    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self.offset = timedelta(0)
        # A reload must not overwrite a newer offset set in this process while it was reading.
        self._lock = asyncio.Lock()

    def now(self) -> datetime:
        return utcnow() + self.offset if self.enabled else utcnow()

    async def load(self, engine: AsyncEngine, table: sa.Table) -> None:
        """Pick up an offset another process set (the worker calls this each turn)."""
        if not self.enabled:
            return
        async with self._lock, engine.connect() as conn:
            seconds = await conn.scalar(sa.select(table.c.offset_seconds).where(table.c.id == 1))
            self.offset = timedelta(seconds=seconds or 0)

    async def set(self, engine: AsyncEngine, table: sa.Table, offset: timedelta) -> None:
        if not self.enabled:
            raise RuntimeError("the test clock is disabled")
        async with self._lock:
            async with engine.begin() as conn:
                updated = await conn.execute(sa.update(table).where(table.c.id == 1)
                                             .values(offset_seconds=offset.total_seconds()))
                if updated.rowcount == 0:
                    await conn.execute(sa.insert(table).values(id=1, offset_seconds=offset.total_seconds()))
            self.offset = offset

    async def advance(self, engine: AsyncEngine, table: sa.Table, by: timedelta) -> datetime:
        await self.load(engine, table)
        await self.set(engine, table, self.offset + by)
        return self.now()
