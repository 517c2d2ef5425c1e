"""Case numbers ``C<yyyymm>-<seq>`` per store and store-local month: short enough to read out on the phone.

One upsert that increments and returns the counter: its row lock orders concurrent intakes, and it rolls
back with a failed intake, so numbers are unique and without gaps.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from survey_svc.models import CaseCounter, StoreView
from shared.calendar import zone
from shared.db.base import dialect_insert


async def next_number(session: AsyncSession, store_id: uuid.UUID, now: datetime) -> str:
    store = await session.get(StoreView, store_id)
    period = now.astimezone(zone(store.timezone if store else "Asia/Shanghai")).strftime("%Y%m")
    insert = dialect_insert(session)(CaseCounter).values(store_id=store_id, period=period, value=1)
    value = await session.scalar(insert.on_conflict_do_update(
        index_elements=[CaseCounter.store_id, CaseCounter.period],
        set_={"value": CaseCounter.value + 1}).returning(CaseCounter.value))
    return f"C{period}-{value:04d}"
