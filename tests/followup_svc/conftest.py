"""Fixtures of the follow-up tests: customer_svc and followup_svc both running on the real broker, the test
clock reset around each test, and helpers that read followup_svc's tables."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo
from typing import Any

import pytest
import sqlalchemy as sa

from followup_svc.app import FollowupRuntime
from followup_svc.models import FollowUp, Rule, StaffView, StoreView, Task, TestClock
from shared.testing.waiting import eventually
from tests.conftest import Group, make_group


@pytest.fixture
async def clock(followup_runtime: FollowupRuntime) -> AsyncIterator[FollowupRuntime]:
    """The test clock at real time for this test, and back at real time afterwards."""
    table = TestClock.__table__
    await followup_runtime.clock.set(followup_runtime.engine, table, timedelta(0))
    yield followup_runtime
    await followup_runtime.clock.set(followup_runtime.engine, table, timedelta(0))


def local_today() -> date:
    """Today in the fixture stores' time zone (Asia/Shanghai): what a dealer enters as "today"."""
    return datetime.now(ZoneInfo("Asia/Shanghai")).date()


async def advance(runtime: FollowupRuntime, by: timedelta) -> None:
    await runtime.clock.advance(runtime.engine, TestClock.__table__, by)


@pytest.fixture
async def fgroup(customer_runtime, followup_runtime: FollowupRuntime, clock) -> Group:  # type: ignore[no-untyped-def]
    """A dealer group whose stores, staff and default playbook followup_svc already knows."""
    group = await make_group(customer_runtime)
    await followup_knows(followup_runtime, group)
    return group


async def followup_knows(followup_runtime: FollowupRuntime, group: Group) -> None:
    """Wait until followup_svc has the group's stores, staff and default playbook."""

    async def known() -> bool:
        async with followup_runtime.sessionmaker() as s:
            stores = await s.scalar(sa.select(sa.func.count()).select_from(StoreView)
                                    .where(StoreView.tenant_id == group.tenant_id))
            staff = await s.scalar(sa.select(sa.func.count()).select_from(StaffView)
                                   .where(StaffView.tenant_id == group.tenant_id))
            rules = await s.scalar(sa.select(sa.func.count()).select_from(Rule).where(Rule.tenant_id == group.tenant_id))
        return stores == 2 and staff >= 18 and rules > 0

    await eventually(known)


async def rows_of(runtime: FollowupRuntime, model: Any, tenant_id: uuid.UUID, **where: object) -> list[Any]:
    """Rows of ``model`` in one dealer group, filtered by column equality, oldest due first."""
    async with runtime.sessionmaker() as s:
        stmt = sa.select(model).where(model.tenant_id == tenant_id)
        for name, value in where.items():
            stmt = stmt.where(getattr(model, name) == value)
        return list((await s.scalars(stmt.order_by(model.due_at))).all())


async def followups(runtime: FollowupRuntime, tenant_id: uuid.UUID, **where: object) -> list[FollowUp]:
    return await rows_of(runtime, FollowUp, tenant_id, **where)


async def tasks(runtime: FollowupRuntime, tenant_id: uuid.UUID, **where: object) -> list[Task]:
    return await rows_of(runtime, Task, tenant_id, **where)


async def fire_all(runtime: FollowupRuntime) -> int:
    """Run the scheduler until nothing is due (the background loop does the same; this makes tests deterministic).
    Rows the background loop has claimed at this moment are skipped by this claim (``SKIP LOCKED``): they are
    waited for until that loop has committed them, so the caller reads their outcome."""
    total = 0
    deadline = time.monotonic() + 10
    while True:
        n = await runtime.scheduler.fire_due()
        total += n
        if n:
            continue
        async with runtime.sessionmaker() as s:
            due = await s.scalar(sa.select(sa.func.count()).select_from(FollowUp).where(
                FollowUp.state == "scheduled", FollowUp.due_at <= runtime.clock.now()))
        if not due or time.monotonic() > deadline:
            return total
        await asyncio.sleep(0.02)
