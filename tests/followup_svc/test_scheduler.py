"""The scheduler with several replicas and a crashed worker: every due occurrence is carried out exactly once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg
import sqlalchemy as sa

from followup_svc.app import FollowupRuntime
from followup_svc.clock import Clock
from followup_svc.models import CustomerView, FollowUp, Rule, Task
from followup_svc.scheduling.scheduler import Scheduler
from shared.auth.roles import Role
from shared.events.catalog.followup import MessageRequested
from shared.ids import new_id
from shared.testing.waiting import eventually
from tests.conftest import Group, Infra
from tests.customer_svc.factories import new_customer, staff_id
from tests.followup_svc.conftest import advance, followups, tasks


async def due_rows(client, runtime: FollowupRuntime, group: Group, rule_key: str, count: int,  # type: ignore[no-untyped-def]
                   due_in: timedelta = timedelta(minutes=-1)) -> uuid.UUID:
    """``count`` occurrences of ``rule_key`` due at now + ``due_in`` (default: a minute ago), for a new customer."""
    customer = await new_customer(client, group, relationship_type="owner")
    cid = uuid.UUID(customer["id"])

    async def known():  # type: ignore[no-untyped-def]
        async with runtime.sessionmaker() as s:
            return await s.get(CustomerView, cid)
    await eventually(known)
    now = runtime.clock.now()
    async with runtime.sessionmaker() as s, s.begin():
        rule = await s.scalar(sa.select(Rule).where(Rule.tenant_id == group.tenant_id, Rule.key == rule_key,
                                                    Rule.retired_at.is_(None)))
        await s.execute(sa.insert(FollowUp.__table__), [dict(
            id=new_id(), tenant_id=group.tenant_id, store_id=group.store_a, rule_id=rule.id, rule_key=rule_key,
            occurrence_key=f"{rule_key}:visit:{uuid.uuid4()}:v:0", subject_type="visit", subject_id=uuid.uuid4(),
            customer_id=cid, vehicle_id=None, anchor_at=now - timedelta(hours=3), step=0,
            due_at=now + due_in, state="scheduled", attempts=0, purpose="service",
            context={"series": "v"}, created_at=now, updated_at=now) for _ in range(count)])
    return cid


async def test_replicas_fire_each_occurrence_exactly_once(client, followup_runtime: FollowupRuntime,
                                                          fgroup: Group) -> None:
    cid = await due_rows(client, followup_runtime, fgroup, "rework_callback", 300)
    replicas = [Scheduler(followup_runtime.sessionmaker, followup_runtime.outbox, followup_runtime.clock, 40,
                          daily_task_cap=10_000) for _ in range(3)]

    async def drain(s: Scheduler) -> int:
        total = 0
        while (n := await s.fire_due()) > 0:
            total += n
        return total

    await asyncio.gather(*(drain(s) for s in replicas))

    async def settled():  # type: ignore[no-untyped-def]
        # A replica stops when everything left is locked by another (the service's own worker is a fourth).
        await replicas[0].fire_due()
        rows = await followups(followup_runtime, fgroup.tenant_id, customer_id=cid, rule_key="rework_callback")
        return rows if all(r.state != "scheduled" for r in rows) else None
    rows = await eventually(settled)
    assert len(rows) == 300 and {(r.state, r.reason) for r in rows} == {("fired", None)}
    made = await tasks(followup_runtime, fgroup.tenant_id, customer_id=cid)
    assert len(made) == 300
    assert {t.occurrence_key for t in made} == {r.occurrence_key for r in rows}
    assert all(r.task_id in {t.id for t in made} for r in rows)


async def test_a_crashed_workers_claims_are_taken_over(client, followup_runtime: FollowupRuntime, fgroup: Group,
                                                       infra_env: Infra) -> None:
    cid = await due_rows(client, followup_runtime, fgroup, "service_thanks", 20, due_in=timedelta(hours=1))
    dsn = infra_env.database_url.replace("postgresql+asyncpg://", "postgresql://")
    crashed = await asyncpg.connect(dsn)
    # A worker claimed the rows and died mid-batch (its transaction still open, then its connection gone).
    tx = crashed.transaction()
    await tx.start()
    claimed = await crashed.fetch("SELECT id FROM followup.followup WHERE customer_id = $1 AND state = 'scheduled' "
                                  "AND rule_key = 'service_thanks' FOR UPDATE SKIP LOCKED", cid)
    assert len(claimed) == 20
    await advance(followup_runtime, timedelta(hours=2))
    await followup_runtime.scheduler.fire_due()
    locked = await followups(followup_runtime, fgroup.tenant_id, customer_id=cid, rule_key="service_thanks")
    assert [r.state for r in locked] == ["scheduled"] * 20
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", crashed.get_server_pid())
    finally:
        await admin.close()
    # Claimable again at once: the next turns (this one or the background worker's) carry them out, each once.

    async def all_fired():  # type: ignore[no-untyped-def]
        await followup_runtime.scheduler.fire_due()
        rows = await followups(followup_runtime, fgroup.tenant_id, customer_id=cid, rule_key="service_thanks")
        return rows if all(r.state == "fired" for r in rows) else None
    rows = await eventually(all_fired)
    assert len(rows) == 20
    async with followup_runtime.sessionmaker() as s:
        outbox = followup_runtime.messaging.outbox
        sent = (await s.scalars(sa.select(outbox.payload).where(outbox.event_type == MessageRequested.type))).all()
    keys = [p["data"]["idempotency_key"] for p in sent if p["data"]["customer_id"] == str(cid)]
    assert sorted(keys) == sorted(r.occurrence_key for r in rows)


async def test_one_failing_occurrence_does_not_stall_the_batch(client, followup_runtime: FollowupRuntime,
                                                               fgroup: Group) -> None:
    cid = await due_rows(client, followup_runtime, fgroup, "rework_callback", 5, due_in=timedelta(hours=1))
    async with followup_runtime.sessionmaker() as s, s.begin():
        # One occurrence points at a customer followup_svc has never heard of.
        row = await s.scalar(sa.select(FollowUp).where(FollowUp.customer_id == cid,
                                                       FollowUp.rule_key == "rework_callback").limit(1))
        row.customer_id = uuid.uuid4()
        broken = row.id
    await advance(followup_runtime, timedelta(hours=2))
    while await followup_runtime.scheduler.fire_due():
        pass
    rows = {r.id: r for r in await followups(followup_runtime, fgroup.tenant_id, customer_id=cid,
                                             rule_key="rework_callback")}
    assert len(rows) == 4 and all(r.state == "fired" for r in rows.values())
    async with followup_runtime.sessionmaker() as s:
        failing = await s.get(FollowUp, broken)
        made = await s.scalar(sa.select(sa.func.count()).select_from(Task).where(Task.followup_id == broken))
    assert failing.state == "scheduled" and failing.attempts == 1 and "read model" in failing.last_error
    assert failing.due_at > followup_runtime.clock.now()
    assert made == 0


async def test_a_persons_daily_cap_sends_the_overflow_to_the_team_queue(client, followup_runtime: FollowupRuntime,
                                                                       fgroup: Group) -> None:
    consultant = uuid.UUID(await staff_id(client, fgroup, Role.SALES_CONSULTANT))
    cid = await due_rows(client, followup_runtime, fgroup, "post_delivery_calls", 5, due_in=timedelta(hours=1))
    async with followup_runtime.sessionmaker() as s, s.begin():
        await s.execute(sa.update(CustomerView).where(CustomerView.id == cid).values(assigned_sales_id=consultant))
    # This scheduler alone sees the rows due: its clock runs two hours ahead of the service's (in memory only).
    ahead = Clock(enabled=True)
    ahead.offset = followup_runtime.clock.offset + timedelta(hours=2)
    capped = Scheduler(followup_runtime.sessionmaker, followup_runtime.outbox, ahead, 100, daily_task_cap=2)
    while await capped.fire_due():
        pass
    made = await tasks(followup_runtime, fgroup.tenant_id, customer_id=cid, rule_key="post_delivery_calls")
    assert len(made) == 5
    assert sum(t.assignee_id == consultant for t in made) == 2
    queued = [t for t in made if t.assignee_id is None]
    assert len(queued) == 3 and all(t.context["over_cap_of"] == str(consultant) for t in queued)
