"""The tasks API over real HTTP, Postgres and RabbitMQ: my day, queues and visibility, outcomes and retries,
reschedule / reassign with If-Match, bulk reassignment, notes, the calendar with planned work, workload."""

from __future__ import annotations

import uuid
from datetime import datetime, time, timedelta

import httpx

from followup_svc.app import FollowupRuntime
from followup_svc.models import CustomerView, StaffView, StoreView, Task, VehicleView
from followup_svc.scheduling.planner import calendar_of
from shared.auth.roles import Role
from shared.testing.events import EventTap
from shared.testing.waiting import eventually
from tests.conftest import Group
from tests.customer_svc.factories import new_customer, staff_id
from tests.followup_svc.conftest import advance, fire_all, followups, local_today, tasks
from tests.followup_svc.test_post_delivery import deliver, planned

REASON = "customer asked"


# --- helpers -------------------------------------------------------------------------------------------


async def known(runtime: FollowupRuntime, model: type, row_id: str) -> None:
    """Wait until followup_svc's read model has the row customer_svc just published."""
    async def there() -> bool:
        async with runtime.sessionmaker() as s:
            return await s.get(model, uuid.UUID(row_id)) is not None
    await eventually(there)


async def customer_in_followup(client: httpx.AsyncClient, runtime: FollowupRuntime, group: Group,
                               store: str = "A") -> dict:
    customer = await new_customer(client, group, store)
    await known(runtime, CustomerView, customer["id"])
    return customer


def soon(runtime: FollowupRuntime, hours: float = 1) -> str:
    return (runtime.clock.now() + timedelta(hours=hours)).isoformat()


async def new_task(fc: httpx.AsyncClient, group: Group, customer_id: str, *, role: str = "sales_consultant",
                   assignee: str | None = None, by: Role = Role.SALES_MANAGER, store: str = "A",
                   **fields: object) -> dict:
    body = {"customer_id": customer_id, "title": "回访", "role": role, "assignee_id": assignee,
            "due_at": fields.pop("due_at", None) or (datetime.now().astimezone() + timedelta(hours=1)).isoformat(),
            **fields}
    resp = await fc.post("/api/v1/tasks", json=body, headers=group.headers(by, store))
    assert resp.status_code == 201, resp.text
    return resp.json()


async def etag(fc: httpx.AsyncClient, group: Group, task_id: str, role: Role = Role.SALES_MANAGER) -> str:
    resp = await fc.get(f"/api/v1/tasks/{task_id}", headers=group.headers(role))
    assert resp.status_code == 200, resp.text
    return resp.headers["ETag"]


async def second_consultant(client: httpx.AsyncClient, runtime: FollowupRuntime, group: Group) -> tuple[str, dict]:
    """Another sales consultant of store A (the fixture has one per role and store) and their headers."""
    resp = await client.post("/api/v1/staff", headers=group.headers(Role.ADMIN), json={
        "employee_no": f"sc2-{uuid.uuid4().hex[:6]}", "name": "第二顾问", "roles": ["sales_consultant"],
        "store_ids": [str(group.store_a)], "password": "correct-horse-battery"})
    assert resp.status_code == 201, resp.text
    sid = resp.json()["id"]
    await known(runtime, StaffView, sid)
    token, _ = group.runtime.issuer.issue(subject=uuid.UUID(sid), tenant_id=group.tenant_id,
                                          store_ids=[group.store_a], roles=["sales_consultant"])
    return sid, {"Authorization": f"Bearer {token}"}


async def call_task(client: httpx.AsyncClient, runtime: FollowupRuntime, group: Group) -> tuple[Task, str, dict]:
    """The real flow: a delivery, a day later the 3-hour care call for the selling consultant."""
    customer, vehicle, consultant = await deliver(client, group)
    await planned(runtime, group, vehicle["id"], 17)
    await advance(runtime, timedelta(days=1))
    await fire_all(runtime)
    found = await tasks(runtime, group.tenant_id, vehicle_id=uuid.UUID(vehicle["id"]), rule_key="post_delivery_call_3h")
    assert len(found) == 1
    return found[0], consultant, vehicle


async def settled(runtime: FollowupRuntime, task_id: uuid.UUID) -> None:
    """The SLA watch runs in the background: wait until it has nothing left to do on this task, so the ETag a
    test reads next stays current."""
    async def quiet() -> bool:
        async with runtime.sessionmaker() as s:
            task = await s.get(Task, task_id)
            return task.escalate_at is None or task.escalate_at > runtime.clock.now()
    await eventually(quiet)


def field_of(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    return [e["field"] for e in resp.json()["errors"]]


# --- my day and visibility -------------------------------------------------------------------------------


async def test_my_tasks_today_holds_the_delivery_call_for_its_consultant_only(
        client, followup_client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    task, consultant, _ = await call_task(client, followup_runtime, fgroup)
    mine = await followup_client.get("/api/v1/tasks/mine", headers=fgroup.headers(Role.SALES_CONSULTANT))
    assert mine.status_code == 200, mine.text
    body = mine.json()
    assert str(task.id) in [t["id"] for t in body["items"]]
    store = await _store(followup_runtime, fgroup.store_a)
    assert body["day"] == calendar_of(store).local(followup_runtime.clock.now()).date().isoformat()
    item = next(t for t in body["items"] if t["id"] == str(task.id))
    assert item["assignee_id"] == consultant and item["overdue"] == (task.sla_due_at <= followup_runtime.clock.now())
    # Sorted by priority, then due time.
    keys = [(t["priority"], t["due_at"]) for t in body["items"]]
    assert keys == sorted(keys)
    # An earlier day does not include a task due later.
    earlier = await followup_client.get("/api/v1/tasks/mine", params={"day": "2020-01-01"},
                                        headers=fgroup.headers(Role.SALES_CONSULTANT))
    assert earlier.status_code == 200 and earlier.json()["items"] == []

    # Another consultant of the same store: not theirs, not a queue task of theirs: absent and 404.
    _, other = await second_consultant(client, followup_runtime, fgroup)
    theirs = await followup_client.get("/api/v1/tasks/mine", headers=other)
    assert str(task.id) not in [t["id"] for t in theirs.json()["items"]]
    assert (await followup_client.get(f"/api/v1/tasks/{task.id}", headers=other)).status_code == 404
    # Store B: not even the manager sees it.
    for role in (Role.SALES_CONSULTANT, Role.SALES_MANAGER):
        resp = await followup_client.get(f"/api/v1/tasks/{task.id}", headers=fgroup.headers(role, "B"))
        assert resp.status_code == 404, resp.text
    await settled(followup_runtime, task.id)
    tag = await etag(followup_client, fgroup, str(task.id), Role.SALES_CONSULTANT)
    resp = await followup_client.post(f"/api/v1/tasks/{task.id}/outcome", headers=fgroup.headers(
        Role.SALES_MANAGER, "B", **{"If-Match": tag}), json={"reached": "refused"})
    assert resp.status_code == 404
    # Store A's manager sees it, with its ETag.
    resp = await followup_client.get(f"/api/v1/tasks/{task.id}", headers=fgroup.headers(Role.SALES_MANAGER))
    assert resp.status_code == 200 and resp.headers["ETag"] == tag and resp.json()["notes"] == []


async def _store(runtime: FollowupRuntime, store_id: uuid.UUID) -> StoreView:
    async with runtime.sessionmaker() as s:
        return await s.get(StoreView, store_id)


async def test_queue_filters_and_who_sees_what(client, followup_client, followup_runtime, fgroup: Group) -> None:
    customer = await customer_in_followup(client, followup_runtime, fgroup)
    consultant = await staff_id(client, fgroup, Role.SALES_CONSULTANT)
    mine = await new_task(followup_client, fgroup, customer["id"], assignee=consultant, priority=1)
    cs_queue = await new_task(followup_client, fgroup, customer["id"], role="cs_agent")
    sales_queue = await new_task(followup_client, fgroup, customer["id"], role="sales_consultant")
    advisor_queue = await new_task(followup_client, fgroup, customer["id"], role="service_advisor")
    assert mine["occurrence_key"] == f"manual:{mine['id']}" and mine["escalate_at"] == mine["sla_due_at"]
    assert mine["sla_due_at"] > mine["due_at"] and cs_queue["assignee_id"] is None

    async def ids(who: Role, store: str = "A", **params: object) -> set[str]:
        resp = await followup_client.get("/api/v1/tasks", params=params, headers=fgroup.headers(who, store))
        assert resp.status_code == 200, resp.text
        return {t["id"] for t in resp.json()["items"]}

    everything = {mine["id"], cs_queue["id"], sales_queue["id"], advisor_queue["id"]}
    assert await ids(Role.SALES_MANAGER) >= everything
    assert await ids(Role.SALES_CONSULTANT) == {mine["id"], sales_queue["id"]}
    assert await ids(Role.CS_AGENT) == {cs_queue["id"]}
    assert await ids(Role.SALES_CONSULTANT, unassigned="true") == {sales_queue["id"]}
    assert await ids(Role.SALES_MANAGER, unassigned="true", role="cs_agent") == {cs_queue["id"]}
    assert await ids(Role.SALES_MANAGER, assignee_id=consultant) == {mine["id"]}
    assert await ids(Role.SALES_MANAGER, customer_id=customer["id"], status=["open", "in_progress"]) == everything
    assert await ids(Role.SALES_MANAGER, customer_id=customer["id"], status="done") == set()
    assert await ids(Role.SALES_MANAGER, customer_id=customer["id"], overdue="true") == set()
    assert await ids(Role.SALES_MANAGER, rule_key="post_delivery_call_3h") == set()
    assert await ids(Role.SALES_MANAGER, "B") == set()
    # A store outside your scope is not found; cursor pagination walks every row once.
    resp = await followup_client.get("/api/v1/tasks", params={"store_id": str(fgroup.store_b)},
                                     headers=fgroup.headers(Role.SALES_MANAGER))
    assert resp.status_code == 404
    seen, cursor = [], None
    while True:
        page = (await followup_client.get("/api/v1/tasks", params={"limit": 1, "customer_id": customer["id"],
                                                                   **({"cursor": cursor} if cursor else {})},
                                          headers=fgroup.headers(Role.SALES_MANAGER))).json()
        seen += [t["id"] for t in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert sorted(seen) == sorted(everything) and len(seen) == 4

    # The CS agent claims the queue task by starting it.
    resp = await followup_client.post(f"/api/v1/tasks/{cs_queue['id']}/start", headers=fgroup.headers(Role.CS_AGENT))
    assert resp.status_code == 200, resp.text
    agent = await staff_id(client, fgroup, Role.CS_AGENT)
    assert resp.json()["status"] == "in_progress" and resp.json()["assignee_id"] == agent
    assert resp.headers["ETag"] == f'W/"{resp.json()["version"]}"'
    # Executors cannot cancel; managers can, once.
    resp = await followup_client.post(f"/api/v1/tasks/{advisor_queue['id']}/cancel", json={"reason": REASON},
                                      headers=fgroup.headers(Role.SERVICE_ADVISOR))
    assert resp.status_code == 403
    for _ in range(2):
        resp = await followup_client.post(f"/api/v1/tasks/{advisor_queue['id']}/cancel", json={"reason": REASON},
                                          headers=fgroup.headers(Role.SERVICE_MANAGER))
        assert resp.status_code == 200 and resp.json()["status"] == "cancelled"


async def test_create_is_idempotent_and_validated(client, followup_client, followup_runtime, fgroup: Group,
                                                  event_tap: EventTap) -> None:
    customer = await customer_in_followup(client, followup_runtime, fgroup)
    body = {"customer_id": customer["id"], "title": "回访", "role": "cs_agent", "due_at": soon(followup_runtime),
            "sla_hours": 4, "priority": 2}
    headers = fgroup.headers(Role.CS_AGENT, **{"Idempotency-Key": uuid.uuid4().hex})
    first = await followup_client.post("/api/v1/tasks", json=body, headers=headers)
    again = await followup_client.post("/api/v1/tasks", json=body, headers=headers)
    assert first.status_code == again.status_code == 201, first.text
    assert first.json()["id"] == again.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    task = first.json()
    assert first.headers["Location"] == f"/api/v1/tasks/{task['id']}"
    assert datetime.fromisoformat(task["sla_due_at"]) - datetime.fromisoformat(task["due_at"]) == timedelta(hours=4)
    created = (await event_tap.wait_for("followup.task.created.v1", subject=task["id"]))[0].data
    assert created["occurrence_key"] == f"manual:{task['id']}" and created["role"] == "cs_agent"
    stored = (await tasks(followup_runtime, fgroup.tenant_id, id=uuid.UUID(task["id"])))[0]
    assert stored.escalate_at == stored.sla_due_at

    post = lambda **change: followup_client.post(  # noqa: E731
        "/api/v1/tasks", json={**body, **change}, headers=fgroup.headers(Role.SALES_MANAGER))
    assert field_of(await post(due_at="2026-03-16T10:00:00")) == ["body.due_at"]
    yesterday = (followup_runtime.clock.now() - timedelta(days=1)).isoformat()
    assert field_of(await post(due_at=yesterday)) == ["body.due_at"]
    assert field_of(await post(priority=0)) == ["body.priority"]
    assert field_of(await post(role="integration")) == ["body.role"]
    assert field_of(await post(customer_id=str(uuid.uuid4()))) == ["body.customer_id"]
    assert field_of(await post(vehicle_id=str(uuid.uuid4()))) == ["body.vehicle_id"]
    assert field_of(await post(assignee_id=await staff_id(client, fgroup, Role.SALES_CONSULTANT, "B"))) \
        == ["body.assignee_id"]
    # A store-B customer is out of a store-A user's reach.
    other = await customer_in_followup(client, followup_runtime, fgroup, "B")
    assert field_of(await post(customer_id=other["id"])) == ["body.customer_id"]


# --- outcomes --------------------------------------------------------------------------------------------


async def test_reached_outcome_completes_the_delivery_call(client, followup_client, followup_runtime, fgroup: Group,
                                                           event_tap: EventTap) -> None:
    task, consultant, _ = await call_task(client, followup_runtime, fgroup)
    await settled(followup_runtime, task.id)
    url = f"/api/v1/tasks/{task.id}/outcome"
    headers = lambda tag: fgroup.headers(Role.SALES_CONSULTANT, **{"If-Match": tag})  # noqa: E731
    outcome = {"reached": "reached", "satisfaction": "satisfied", "issue_categories": ["none"],
               "comment_type": "praise", "summary": "一切顺利", "willing_to_refer": True, "follow_on": "referral_lead",
               "preferred_next_contact": "周末下午", "call_rating": 10}
    bare = fgroup.headers(Role.SALES_CONSULTANT)
    assert (await followup_client.post(url, json=outcome, headers=bare)).status_code == 428
    assert (await followup_client.post(url, json=outcome, headers=headers('W/"999"'))).status_code == 412
    tag = await etag(followup_client, fgroup, str(task.id), Role.SALES_CONSULTANT)
    resp = await followup_client.post(url, json=outcome, headers=headers(tag))
    assert resp.status_code == 200, resp.text
    done = resp.json()
    assert done["status"] == "done" and done["completed_by"] == consultant and done["escalate_at"] is None
    assert done["outcome"]["satisfaction"] == "satisfied" and done["outcome"]["call_rating"] == 10
    assert [a["reached"] for a in done["outcome"]["attempts"]] == ["reached"]
    event = (await event_tap.wait_for("followup.task.completed.v1", subject=str(task.id)))[0].data
    assert event["status"] == "done" and event["outcome"]["comment_type"] == "praise"
    assert event["on_time"] == (datetime.fromisoformat(done["completed_at"]) <= task.sla_due_at)
    # Finished: again is a conflict, whatever the ETag.
    again = await followup_client.post(url, json=outcome, headers=headers(resp.headers["ETag"]))
    assert again.status_code == 409
    assert (await followup_client.post(url, json=outcome, headers=headers(tag))).status_code == 409


async def test_not_reached_three_times_fails_with_retries_in_business_hours(
        client, followup_client, followup_runtime, fgroup: Group, event_tap: EventTap) -> None:
    customer = await customer_in_followup(client, followup_runtime, fgroup)
    consultant = await staff_id(client, fgroup, Role.SALES_CONSULTANT)
    task = await new_task(followup_client, fgroup, customer["id"], assignee=consultant, due_at=soon(followup_runtime))
    cal = calendar_of(await _store(followup_runtime, fgroup.store_a))
    tag, attempts = f'W/"{task["version"]}"', []
    for n in (1, 2, 3):
        now = followup_runtime.clock.now()
        resp = await followup_client.post(f"/api/v1/tasks/{task['id']}/outcome", json={"reached": "not_reached"},
                                          headers=fgroup.headers(Role.SALES_CONSULTANT, **{"If-Match": tag}))
        assert resp.status_code == 200, resp.text
        body, tag = resp.json(), resp.headers["ETag"]
        attempts.append(body["outcome"]["attempt"])
        if n < 3:
            due = datetime.fromisoformat(body["due_at"])
            assert body["status"] == "open" and body["attempt"] == n + 1
            assert due >= now + timedelta(hours=4)
            assert cal.next_task_time(due) == due and cal.is_working_day(cal.local(due).date())  # business hours
            sla = datetime.fromisoformat(body["sla_due_at"])
            assert sla - due == timedelta(hours=48) and body["escalate_at"] is not None
    assert attempts == [1, 2, 3]
    assert body["status"] == "failed" and body["attempt"] == 3 and body["completed_at"] is not None
    assert [a["attempt"] for a in body["outcome"]["attempts"]] == [1, 2, 3]
    event = (await event_tap.wait_for("followup.task.completed.v1", subject=task["id"]))[0].data
    assert event["status"] == "failed"


async def test_refused_and_wrong_number_fail_the_task(client, followup_client, followup_runtime, fgroup) -> None:
    customer = await customer_in_followup(client, followup_runtime, fgroup)
    for reached in ("refused", "wrong_number"):
        task = await new_task(followup_client, fgroup, customer["id"], role="cs_agent")
        # An unassigned queue task: the agent recording its outcome takes it.
        resp = await followup_client.post(f"/api/v1/tasks/{task['id']}/outcome", json={"reached": reached},
                                          headers=fgroup.headers(Role.CS_AGENT, **{"If-Match": '"1"'}))
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "failed" and resp.json()["attempt"] == 1
        assert resp.json()["assignee_id"] == await staff_id(client, fgroup, Role.CS_AGENT)


async def test_outcome_inputs_are_checked_field_by_field(client, followup_client, followup_runtime, fgroup) -> None:
    customer = await customer_in_followup(client, followup_runtime, fgroup)
    task = await new_task(followup_client, fgroup, customer["id"], role="cs_agent")
    post = lambda body: followup_client.post(  # noqa: E731
        f"/api/v1/tasks/{task['id']}/outcome", json=body, headers=fgroup.headers(Role.CS_MANAGER, **{"If-Match": "*"}))
    assert field_of(await post({"reached": "reached"})) == ["body.satisfaction"]
    assert field_of(await post({"reached": "not_reached", "satisfaction": "satisfied"})) == ["body.satisfaction"]
    assert field_of(await post({"reached": "reached", "satisfaction": "satisfied", "call_rating": 11})) \
        == ["body.call_rating"]
    assert field_of(await post({"reached": "maybe"})) == ["body.reached"]
    assert field_of(await post({"reached": "reached", "satisfaction": "satisfied",
                                "issue_categories": ["none", "price"]})) == ["body.issue_categories"]
    assert field_of(await post({"reached": "reached", "satisfaction": "ok"})) == ["body.satisfaction"]
    assert field_of(await post({"reached": "reached", "satisfaction": "satisfied",
                                "preferred_next_contact": "2026-03-20T15:00:00"})) == ["body.preferred_next_contact"]
    assert field_of(await post({"reached": "reached", "satisfaction": "satisfied",
                                "serviced_elsewhere_on": "2026-01-01"})) == ["body.serviced_elsewhere_on"]
    assert field_of(await post({"reached": "reached", "satisfaction": "satisfied", "extra": 1})) == ["body.extra"]
    # None of this changed the task.
    assert (await followup_client.get(f"/api/v1/tasks/{task['id']}", headers=fgroup.headers(Role.CS_MANAGER))
            ).json()["version"] == 1


async def test_serviced_elsewhere_moves_the_maintenance_cycle_on(client, followup_client, followup_runtime,
                                                                fgroup: Group) -> None:
    customer, vehicle, consultant = await deliver(client, fgroup)
    await planned(followup_runtime, fgroup, vehicle["id"], 17)
    vid = uuid.UUID(vehicle["id"])
    before = [r for r in await followups(followup_runtime, fgroup.tenant_id, vehicle_id=vid,
                                         rule_key="maintenance_reminder") if r.state == "scheduled"]
    assert len(before) == 1 and ":c1:" in before[0].occurrence_key
    task = await new_task(followup_client, fgroup, customer["id"], assignee=consultant, vehicle_id=vehicle["id"])
    day = local_today() - timedelta(days=1)
    resp = await followup_client.post(f"/api/v1/tasks/{task['id']}/outcome", headers=fgroup.headers(
        Role.SALES_CONSULTANT, **{"If-Match": '"1"'}), json={
        "reached": "reached", "satisfaction": "not_fully_satisfied", "issue_categories": ["price"],
        "comment_type": "criticism", "serviced_elsewhere_on": day.isoformat()})
    assert resp.status_code == 200, resp.text
    async with followup_runtime.sessionmaker() as s:
        car = await s.get(VehicleView, vid)
    assert car.maintenance_count == 1 and car.last_maintenance_at is not None
    assert calendar_of(await _store(followup_runtime, fgroup.store_a)).local(car.last_maintenance_at).date() == day
    rows = await followups(followup_runtime, fgroup.tenant_id, vehicle_id=vid, rule_key="maintenance_reminder")
    by_state = {r.occurrence_key.split(":")[3]: r.state for r in rows}
    assert by_state == {"c1": "cancelled", "c2": "scheduled"}
    # A task about no vehicle cannot say so.
    plain = await new_task(followup_client, fgroup, customer["id"], assignee=consultant)
    resp = await followup_client.post(f"/api/v1/tasks/{plain['id']}/outcome", headers=fgroup.headers(
        Role.SALES_CONSULTANT, **{"If-Match": '"1"'}), json={"reached": "reached", "satisfaction": "satisfied",
                                                            "serviced_elsewhere_on": day.isoformat()})
    assert field_of(resp) == ["body.serviced_elsewhere_on"]


# --- reschedule, reassign, notes -------------------------------------------------------------------------


async def test_reschedule_and_reassign_need_a_current_etag(client, followup_client, followup_runtime, fgroup: Group,
                                                           event_tap: EventTap) -> None:
    customer = await customer_in_followup(client, followup_runtime, fgroup)
    consultant = await staff_id(client, fgroup, Role.SALES_CONSULTANT)
    task = await new_task(followup_client, fgroup, customer["id"], assignee=consultant, due_at=soon(followup_runtime))
    url = f"/api/v1/tasks/{task['id']}"
    manager = lambda tag=None: fgroup.headers(Role.SALES_MANAGER, **({"If-Match": tag} if tag else {}))  # noqa: E731
    new_due = followup_runtime.clock.now() + timedelta(days=2)
    move = {"due_at": new_due.isoformat(), "reason": REASON}
    assert (await followup_client.post(f"{url}/reschedule", json=move, headers=manager())).status_code == 428
    assert (await followup_client.post(f"{url}/reschedule", json=move, headers=manager('W/"7"'))).status_code == 412
    assert field_of(await followup_client.post(f"{url}/reschedule", json={"due_at": move["due_at"]},
                                               headers=manager('"1"'))) == ["body.reason"]
    past = {"due_at": (followup_runtime.clock.now() - timedelta(hours=2)).isoformat(), "reason": REASON}
    assert field_of(await followup_client.post(f"{url}/reschedule", json=past, headers=manager('"1"'))) \
        == ["body.due_at"]
    resp = await followup_client.post(f"{url}/reschedule", json=move, headers=manager('"1"'))
    assert resp.status_code == 200, resp.text
    moved = resp.json()
    delta = datetime.fromisoformat(moved["due_at"]) - datetime.fromisoformat(task["due_at"])
    assert datetime.fromisoformat(moved["due_at"]) == new_due
    assert datetime.fromisoformat(moved["sla_due_at"]) - datetime.fromisoformat(task["sla_due_at"]) == delta
    assert moved["escalate_at"] == moved["sla_due_at"] and moved["version"] == 2

    # Reassign: stale ETag, then to a colleague of the store (not one of store B), then back to the queue.
    other_id, other = await second_consultant(client, followup_runtime, fgroup)
    to_other = {"assignee_id": other_id, "reason": "holiday"}
    assert (await followup_client.post(f"{url}/reassign", json=to_other, headers=manager())).status_code == 428
    assert (await followup_client.post(f"{url}/reassign", json=to_other, headers=manager('"1"'))).status_code == 412
    b_consultant = await staff_id(client, fgroup, Role.SALES_CONSULTANT, "B")
    assert field_of(await followup_client.post(f"{url}/reassign", json={**to_other, "assignee_id": b_consultant},
                                               headers=manager(resp.headers["ETag"]))) == ["body.assignee_id"]
    # The consultant may hand back to the queue, but not give it to a colleague.
    assert (await followup_client.post(f"{url}/reassign", json=to_other, headers=fgroup.headers(
        Role.SALES_CONSULTANT, **{"If-Match": resp.headers["ETag"]}))).status_code == 403
    resp = await followup_client.post(f"{url}/reassign", json=to_other, headers=manager(resp.headers["ETag"]))
    assert resp.status_code == 200 and resp.json()["assignee_id"] == other_id
    event = (await event_tap.wait_for("followup.task.reassigned.v1", subject=task["id"]))[0].data
    assert event["from_id"] == consultant and event["to_id"] == other_id and event["reason"] == "holiday"
    resp = await followup_client.post(f"{url}/reassign", json={"assignee_id": None, "reason": "too busy"},
                                      headers={**other, "If-Match": resp.headers["ETag"]})
    assert resp.status_code == 200 and resp.json()["assignee_id"] is None
    # The reasons are on the task as notes.
    detail = (await followup_client.get(url, headers=manager())).json()
    assert [n["body"].split(":")[-1].strip() for n in detail["notes"]] == [REASON, "holiday", "too busy"]


async def test_notes_are_appended_and_read_back(client, followup_client, followup_runtime, fgroup: Group) -> None:
    customer = await customer_in_followup(client, followup_runtime, fgroup)
    task = await new_task(followup_client, fgroup, customer["id"], role="cs_agent")
    url = f"/api/v1/tasks/{task['id']}/notes"
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = await followup_client.post(url, json={"text": "客户说周末再联系"}, headers=fgroup.headers(Role.CS_AGENT, **key))
    again = await followup_client.post(url, json={"text": "客户说周末再联系"}, headers=fgroup.headers(Role.CS_AGENT, **key))
    assert first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]
    await followup_client.post(url, json={"text": "second"}, headers=fgroup.headers(Role.CS_MANAGER))
    assert field_of(await followup_client.post(url, json={"text": "x" * 2001}, headers=fgroup.headers(Role.CS_AGENT))) \
        == ["body.text"]
    assert (await followup_client.post(url, json={"text": "hi"}, headers=fgroup.headers(Role.CS_AGENT, "B"))
            ).status_code == 404
    detail = await followup_client.get(f"/api/v1/tasks/{task['id']}", headers=fgroup.headers(Role.CS_AGENT))
    assert [n["body"] for n in detail.json()["notes"]] == ["客户说周末再联系", "second"]
    assert detail.headers["ETag"] == 'W/"1"'  # notes do not change the task's version


async def test_bulk_reassign_moves_a_leavers_open_tasks_once(client, followup_client, followup_runtime,
                                                            fgroup: Group, event_tap: EventTap) -> None:
    customer = await customer_in_followup(client, followup_runtime, fgroup)
    consultant = await staff_id(client, fgroup, Role.SALES_CONSULTANT)
    open_ones = [await new_task(followup_client, fgroup, customer["id"], assignee=consultant) for _ in range(3)]
    finished = await new_task(followup_client, fgroup, customer["id"], assignee=consultant)
    await followup_client.post(f"/api/v1/tasks/{finished['id']}/cancel", json={"reason": REASON},
                               headers=fgroup.headers(Role.SALES_MANAGER))
    other_id, _ = await second_consultant(client, followup_runtime, fgroup)
    body = {"from_staff_id": consultant, "to_staff_id": other_id, "reason": "left the company"}
    assert (await followup_client.post("/api/v1/tasks/reassign-bulk", json=body,
                                       headers=fgroup.headers(Role.SALES_CONSULTANT))).status_code == 403
    b_consultant = await staff_id(client, fgroup, Role.SALES_CONSULTANT, "B")
    bulk = "/api/v1/tasks/reassign-bulk"
    assert field_of(await followup_client.post(bulk, json={**body, "to_staff_id": b_consultant},
                                               headers=fgroup.headers(Role.SALES_MANAGER))) == ["body.to_staff_id"]
    assert field_of(await followup_client.post(bulk, json={**body, "to_staff_id": consultant},
                                               headers=fgroup.headers(Role.SALES_MANAGER))) == ["body.to_staff_id"]
    resp = await followup_client.post(bulk, json=body, headers=fgroup.headers(Role.SALES_MANAGER))
    assert resp.status_code == 200, resp.text
    assert resp.json()["moved"] == 3 and set(resp.json()["task_ids"]) == {t["id"] for t in open_ones}
    for t in open_ones:
        event = (await event_tap.wait_for("followup.task.reassigned.v1", subject=t["id"]))[0].data
        assert event["to_id"] == other_id
    again = await followup_client.post(bulk, json=body, headers=fgroup.headers(Role.SALES_MANAGER))
    assert again.json() == {"moved": 0, "task_ids": []}
    rows = {str(t.id): t for t in await tasks(followup_runtime, fgroup.tenant_id,
                                              customer_id=uuid.UUID(customer["id"]))}
    assert {str(rows[t["id"]].assignee_id) for t in open_ones} == {other_id}
    assert str(rows[finished["id"]].assignee_id) == consultant and rows[finished["id"]].status == "cancelled"
    # Back to the queue.
    resp = await followup_client.post("/api/v1/tasks/reassign-bulk", headers=fgroup.headers(Role.SALES_MANAGER),
                                      json={"from_staff_id": other_id, "to_staff_id": None, "reason": "queue"})
    assert resp.json()["moved"] == 3


# --- calendar and workload -------------------------------------------------------------------------------


async def test_calendar_shows_tasks_and_planned_occurrences(client, followup_client, followup_runtime,
                                                           fgroup: Group) -> None:
    customer, vehicle, consultant = await deliver(client, fgroup)
    await planned(followup_runtime, fgroup, vehicle["id"], 17)
    cal = calendar_of(await _store(followup_runtime, fgroup.store_a))
    today = cal.local(followup_runtime.clock.now()).date()
    adhoc = await new_task(followup_client, fgroup, customer["id"], assignee=consultant,
                           due_at=cal.at_local(today + timedelta(days=2), time(10)).isoformat())
    params = {"from": today.isoformat(), "to": (today + timedelta(days=40)).isoformat()}
    resp = await followup_client.get("/api/v1/tasks/calendar", params=params,
                                     headers=fgroup.headers(Role.SALES_CONSULTANT))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    items = [i for d in body["days"] for i in d["items"]]
    planned_calls = [i for i in items if i["type"] == "planned" and i["rule_key"] == "post_delivery_calls"]
    assert len(planned_calls) == 4 and all(i["assignee_id"] == consultant for i in planned_calls)
    assert adhoc["id"] in {i["id"] for i in items if i["type"] == "task"}
    day2 = next(d for d in body["days"] if d["day"] == (today + timedelta(days=2)).isoformat())
    assert day2["open"] >= 1
    assert all(d["planned"] == sum(1 for i in d["items"] if i["type"] == "planned") for d in body["days"])
    # Messages and surveys are not task work: never on the calendar.
    assert not {i["rule_key"] for i in items} & {"post_delivery_thanks_sms", "post_delivery_survey"}

    # Another consultant's calendar does not show them; the manager sees them on the consultant's and the team's.
    _, other = await second_consultant(client, followup_runtime, fgroup)
    theirs = (await followup_client.get("/api/v1/tasks/calendar", params=params, headers=other)).json()
    assert not [i for d in theirs["days"] for i in d["items"] if i["customer_id"] == customer["id"]]
    for extra in ({"assignee_id": consultant}, {"team": "true"}):
        view = (await followup_client.get("/api/v1/tasks/calendar", params={**params, **extra},
                                          headers=fgroup.headers(Role.SALES_MANAGER))).json()
        assert len([i for d in view["days"] for i in d["items"] if i["rule_key"] == "post_delivery_calls"]) == 4
    # A group-wide role looks at one store's team at a time.
    director = fgroup.headers(Role.CS_DIRECTOR)
    whole = await followup_client.get("/api/v1/tasks/calendar", params={**params, "team": "true"}, headers=director)
    assert field_of(whole) == ["query.store_id"]
    one_store = await followup_client.get("/api/v1/tasks/calendar", headers=director,
                                          params={**params, "team": "true", "store_id": str(fgroup.store_a)})
    assert one_store.status_code == 200, one_store.text
    # Executors may not look at someone else's; spans and bad dates are refused with the field named.
    assert (await followup_client.get("/api/v1/tasks/calendar", params={**params, "assignee_id": consultant},
                                      headers=other)).status_code == 403
    too_long = {"from": today.isoformat(), "to": (today + timedelta(days=62)).isoformat()}
    assert field_of(await followup_client.get("/api/v1/tasks/calendar", params=too_long,
                                              headers=fgroup.headers(Role.SALES_CONSULTANT))) == ["query.to"]
    assert field_of(await followup_client.get("/api/v1/tasks/calendar", params={"from": "2026-02-30", "to": "x"},
                                              headers=fgroup.headers(Role.SALES_CONSULTANT))) \
        == ["query.from", "query.to"]


async def test_workload_counts_per_person_and_queue(client, followup_client, followup_runtime, fgroup: Group) -> None:
    customer = await customer_in_followup(client, followup_runtime, fgroup)
    consultant = await staff_id(client, fgroup, Role.SALES_CONSULTANT)
    cal = calendar_of(await _store(followup_runtime, fgroup.store_a))
    # Noon tomorrow (store time), so "later today" is always ahead whenever the test runs.
    now = followup_runtime.clock.now()
    today = cal.local(now).date() + timedelta(days=1)
    await advance(followup_runtime, cal.at_local(today, time(12)) - now)
    late_today = cal.at_local(today, time(23, 30))
    for _ in range(2):
        await new_task(followup_client, fgroup, customer["id"], assignee=consultant, due_at=late_today.isoformat())
    await new_task(followup_client, fgroup, customer["id"], role="cs_agent", due_at=late_today.isoformat())
    await new_task(followup_client, fgroup, customer["id"], role="cs_agent",
                   due_at=(late_today + timedelta(days=3)).isoformat())
    resp = await followup_client.get("/api/v1/tasks/workload", headers=fgroup.headers(Role.SALES_MANAGER))
    assert resp.status_code == 200, resp.text
    load = resp.json()
    assert load["day"] == today.isoformat() and load["cap"] == 40 and load["store_id"] == str(fgroup.store_a)
    person = next(p for p in load["people"] if p["staff_id"] == consultant)
    assert person["due"] == 2 and person["over_cap"] is False
    queue = next(q for q in load["queues"] if q["role"] == "cs_agent")
    assert queue == {"role": "cs_agent", "unassigned": 2, "due": 1}
    assert (await followup_client.get("/api/v1/tasks/workload", headers=fgroup.headers(Role.SALES_CONSULTANT))
            ).status_code == 403
    assert (await followup_client.get("/api/v1/tasks/workload", params={"store_id": str(fgroup.store_b)},
                                      headers=fgroup.headers(Role.SALES_MANAGER))).status_code == 404
    assert field_of(await followup_client.get("/api/v1/tasks/workload", params={"day": "1999-12-31"},
                                              headers=fgroup.headers(Role.SALES_MANAGER))) == ["query.day"]


async def test_list_query_inputs_name_their_field(followup_client, fgroup: Group) -> None:
    get = lambda **params: followup_client.get("/api/v1/tasks", params=params,  # noqa: E731
                                                headers=fgroup.headers(Role.SALES_MANAGER))
    assert field_of(await get(status="closed")) == ["query.status.0"]
    assert field_of(await get(due_from="2026-01-01T00:00:00")) == ["query.due_from"]
    assert field_of(await get(due_from="2026-02-01T00:00:00Z", due_to="2026-01-01T00:00:00Z")) == ["query.due_to"]
    assert field_of(await get(unassigned="true", assignee_id=str(uuid.uuid4()))) == ["query.unassigned"]
    assert field_of(await get(cursor="!!")) == ["query.cursor"]
    assert (await followup_client.get("/api/v1/tasks")).status_code == 401
    assert (await followup_client.get(f"/api/v1/tasks/{uuid.uuid4()}", headers=fgroup.headers())).status_code == 404

