"""The SLA watch over real Postgres and RabbitMQ: a task past its SLA goes to the supervisors of its store
(level 1), one more SLA period (at least a day) later to service quality (level 2); finished tasks never do."""

from __future__ import annotations

import uuid
from datetime import timedelta

from followup_svc.app import FollowupRuntime
from followup_svc.models import Task
from shared.auth.roles import Role
from shared.testing.events import EventTap
from tests.conftest import Group
from tests.customer_svc.factories import staff_id
from tests.followup_svc.conftest import advance, tasks
from tests.followup_svc.test_tasks import customer_in_followup, new_task


async def watch(runtime: FollowupRuntime) -> None:
    """Run the SLA watch until nothing is due (its background loop may have done part of it already)."""
    while await runtime.escalator.run_once():
        pass


async def one(runtime: FollowupRuntime, group: Group, task_id: str) -> Task:
    return (await tasks(runtime, group.tenant_id, id=uuid.UUID(task_id)))[0]


async def test_an_overdue_task_goes_up_the_chain_of_its_own_store(
        client, followup_client, followup_runtime: FollowupRuntime, fgroup: Group, event_tap: EventTap) -> None:
    customer = await customer_in_followup(client, followup_runtime, fgroup)
    consultant = await staff_id(client, fgroup, Role.SALES_CONSULTANT)
    created = await new_task(followup_client, fgroup, customer["id"], assignee=consultant, sla_hours=2,
                             due_at=(followup_runtime.clock.now() + timedelta(minutes=10)).isoformat())
    task = await one(followup_runtime, fgroup, created["id"])
    await watch(followup_runtime)
    assert (await one(followup_runtime, fgroup, created["id"])).escalation_level == 0  # not late yet

    # Past the SLA: overdue, and the sales and showroom managers of store A are told (not store B's).
    await advance(followup_runtime, task.sla_due_at - followup_runtime.clock.now() + timedelta(minutes=5))
    await watch(followup_runtime)
    late = await one(followup_runtime, fgroup, created["id"])
    assert late.escalation_level == 1 and late.overdue_at is not None and late.escalated_at is not None
    assert late.status == "open" and late.escalate_at >= late.overdue_at + timedelta(hours=24)
    overdue = (await event_tap.wait_for("followup.task.overdue.v1", subject=created["id"]))[0].data
    assert overdue["assignee_id"] == consultant and overdue["role"] == "sales_consultant"
    first = (await event_tap.wait_for("followup.task.escalated.v1", subject=created["id"]))[0].data
    assert first["level"] == 1 and set(first["to_roles"]) == {"sales_manager", "showroom_manager"}
    notified = set(first["notify_staff_ids"])
    assert await staff_id(client, fgroup, Role.SALES_MANAGER, "A") in notified
    assert await staff_id(client, fgroup, Role.SHOWROOM_MANAGER, "A") in notified
    assert await staff_id(client, fgroup, Role.SALES_MANAGER, "B") not in notified
    assert await staff_id(client, fgroup, Role.SERVICE_MANAGER, "A") not in notified
    # The API shows it as overdue; the manager's overdue filter finds it.
    resp = await followup_client.get("/api/v1/tasks", params={"overdue": "true", "customer_id": customer["id"]},
                                     headers=fgroup.headers(Role.SALES_MANAGER))
    assert [t["id"] for t in resp.json()["items"]] == [created["id"]] and resp.json()["items"][0]["overdue"]

    # Still open a day later (the second step waits at least 24 h): service quality, once.
    await advance(followup_runtime, timedelta(hours=25))
    await watch(followup_runtime)
    top = await one(followup_runtime, fgroup, created["id"])
    assert top.escalation_level == 2 and top.escalate_at is None
    second = await event_tap.wait_for("followup.task.escalated.v1", subject=created["id"], count=2)
    levels = {e.data["level"]: e.data for e in second}
    assert set(levels[2]["to_roles"]) == {"cs_manager", "cs_director"}
    assert await staff_id(client, fgroup, Role.CS_MANAGER, "A") in levels[2]["notify_staff_ids"]
    assert await staff_id(client, fgroup, Role.CS_MANAGER, "B") not in levels[2]["notify_staff_ids"]
    # The CS director's role is group-wide: the one whose record lists only store B hears of store A's task too.
    assert await staff_id(client, fgroup, Role.CS_DIRECTOR, "B") in levels[2]["notify_staff_ids"]
    await advance(followup_runtime, timedelta(days=3))
    await watch(followup_runtime)
    assert (await one(followup_runtime, fgroup, created["id"])).escalation_level == 2
    assert len(event_tap.matching("followup.task.escalated.v1", subject=created["id"])) == 2


async def test_a_rescheduled_task_escalates_from_its_new_sla(client, followup_client, followup_runtime,
                                                             fgroup: Group) -> None:
    customer = await customer_in_followup(client, followup_runtime, fgroup)
    created = await new_task(followup_client, fgroup, customer["id"], role="cs_agent", sla_hours=2,
                             due_at=(followup_runtime.clock.now() + timedelta(minutes=10)).isoformat())
    resp = await followup_client.post(f"/api/v1/tasks/{created['id']}/reschedule", headers=fgroup.headers(
        Role.CS_MANAGER, **{"If-Match": '"1"'}), json={
        "due_at": (followup_runtime.clock.now() + timedelta(days=2)).isoformat(), "reason": "customer abroad"})
    assert resp.status_code == 200, resp.text
    await advance(followup_runtime, timedelta(hours=3))
    await watch(followup_runtime)
    assert (await one(followup_runtime, fgroup, created["id"])).escalation_level == 0
    await advance(followup_runtime, timedelta(days=2))
    await watch(followup_runtime)
    task = await one(followup_runtime, fgroup, created["id"])
    assert task.escalation_level == 1  # a CS agent's task goes to the CS manager first


async def test_a_finished_task_never_escalates(client, followup_client, followup_runtime: FollowupRuntime,
                                               fgroup: Group, event_tap: EventTap) -> None:
    customer = await customer_in_followup(client, followup_runtime, fgroup)
    consultant = await staff_id(client, fgroup, Role.SALES_CONSULTANT)
    done = await new_task(followup_client, fgroup, customer["id"], assignee=consultant, sla_hours=1,
                          due_at=(followup_runtime.clock.now() + timedelta(minutes=10)).isoformat())
    cancelled = await new_task(followup_client, fgroup, customer["id"], assignee=consultant, sla_hours=1,
                               due_at=(followup_runtime.clock.now() + timedelta(minutes=10)).isoformat())
    resp = await followup_client.post(f"/api/v1/tasks/{done['id']}/outcome", json={
        "reached": "reached", "satisfaction": "satisfied"}, headers=fgroup.headers(
        Role.SALES_CONSULTANT, **{"If-Match": '"1"'}))
    assert resp.status_code == 200 and resp.json()["status"] == "done"
    resp = await followup_client.post(f"/api/v1/tasks/{cancelled['id']}/cancel", json={"reason": "duplicate"},
                                      headers=fgroup.headers(Role.SALES_MANAGER))
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    cancel_event = (await event_tap.wait_for("followup.task.completed.v1", subject=cancelled["id"]))[0].data
    assert cancel_event["status"] == "cancelled"
    for by in (timedelta(hours=3), timedelta(days=2)):
        await advance(followup_runtime, by)
        await watch(followup_runtime)
    for task_id in (done["id"], cancelled["id"]):
        task = await one(followup_runtime, fgroup, task_id)
        assert task.escalation_level == 0 and task.overdue_at is None and task.escalate_at is None
        assert event_tap.matching("followup.task.overdue.v1", subject=task_id) == []
        assert event_tap.matching("followup.task.escalated.v1", subject=task_id) == []
