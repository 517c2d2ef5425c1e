"""Per-provider request rates shared by every worker: a token bucket row per provider in Postgres.

Taken inside the dispatcher's deciding transaction, so the row lock orders the workers' takes; a batch asks for
what it needs and gets what the bucket holds (burst = one second of the rate).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from notify_svc.models import RateBucket
from shared.db.base import dialect_insert


async def take(session: AsyncSession, provider: str, wanted: int, rate: float, now: datetime) -> int:
    """How many of ``wanted`` requests ``provider`` may get now (0 … wanted)."""
    if wanted <= 0:
        return 0
    capacity = max(rate, 1.0)  # below 1/s the bucket must still hold one whole request
    insert = dialect_insert(session)
    await session.execute(insert(RateBucket).values(key=provider, tokens=capacity, updated_at=now)
                          .on_conflict_do_nothing())
    bucket = RateBucket.__table__
    row = (await session.execute(sa.select(bucket.c.tokens, bucket.c.updated_at)
                                 .where(bucket.c.key == provider).with_for_update())).one()
    elapsed = max((now - row.updated_at).total_seconds(), 0.0)
    available = min(capacity, row.tokens + elapsed * rate)
    granted = max(0, min(wanted, int(available)))
    await session.execute(sa.update(bucket).where(bucket.c.key == provider)
                          .values(tokens=available - granted, updated_at=now))
    return granted
