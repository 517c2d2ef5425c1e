"""The planned-touches API over real HTTP: what was planned for a customer and what became of it, store scoping,
hand cancels and reschedules, and the test clock (and its absence where it is disabled)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
import pytest

from followup_svc.app import FollowupRuntime, create_service_app
from followup_svc.playbooks.defaults import DEFAULT_RULES
from shared.auth.roles import Role
from shared.testing.events import EventTap
from tests.conftest import Group, Infra
from tests.followup_svc.conftest import advance, fire_all, followups, tasks
from tests.followup_svc.test_post_delivery import deliver, planned

FOLLOWUPS = "/api/v1/followups"
CLOCK = "/api/v1/test-clock"


async def all_pages(fc: httpx.AsyncClient, headers: dict, **params: object) -> list[dict]:
    items: list[dict] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        resp = await fc.get(FOLLOWUPS, params=query, headers=headers)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def test_every_planned_touch_of_a_customer_newest_due_first(
        client, followup_client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    customer, vehicle, _ = await deliver(client, fgroup)
    await planned(followup_runtime, fgroup, vehicle["id"], 17)
    # The customer's own touches (festivals...) were planned before the delivery's (the delivery needs the customer).
    rows = await followups(followup_runtime, fgroup.tenant_id, customer_id=uuid.UUID(customer["id"]))
    staff = fgroup.headers(Role.SALES_CONSULTANT)
    listed = await all_pages(followup_client, staff, customer_id=customer["id"], limit=5)
    assert sorted(i["id"] for i in listed) == sorted(str(r.id) for r in rows)
    assert [(i["due_at"], i["id"]) for i in listed] == sorted(((i["due_at"], i["id"]) for i in listed), reverse=True)
    one_page = (await followup_client.get(FOLLOWUPS, params={"customer_id": customer["id"], "limit": 200},
                                          headers=staff)).json()
    assert [i["id"] for i in one_page["items"]] == [i["id"] for i in listed] and one_page["next_cursor"] is None
    call = next(i for i in listed if i["rule_key"] == "post_delivery_call_3h")
    assert call["rule_version"] == 1 and call["rule_scope"] == "*" and call["state"] == "scheduled"
    assert call["rule_name"] == DEFAULT_RULES["post_delivery_call_3h"].name
    assert call["vehicle_id"] == vehicle["id"] and call["task_id"] is None and call["fired_at"] is None

    by_vehicle = await all_pages(followup_client, staff, vehicle_id=vehicle["id"], limit=200)
    assert {i["id"] for i in by_vehicle} <= {i["id"] for i in listed}
    assert await all_pages(followup_client, staff, customer_id=customer["id"], state="fired") == []
    soon = datetime.fromisoformat(call["due_at"]) + timedelta(days=1)
    early = await all_pages(followup_client, staff, customer_id=customer["id"], to=soon.isoformat())
    assert call["id"] in {i["id"] for i in early} and len(early) < len(listed)
    assert all(datetime.fromisoformat(i["due_at"]) < soon for i in early)
    got = await followup_client.get(f"{FOLLOWUPS}/{call['id']}", headers=staff)
    assert got.status_code == 200 and got.json() == call

    bad_cursor = await followup_client.get(FOLLOWUPS, params={"cursor": "nonsense"}, headers=staff)
    assert bad_cursor.status_code == 422 and bad_cursor.json()["errors"][0]["field"] == "query.cursor"
    backwards = await followup_client.get(FOLLOWUPS, params={"from": "2026-02-01T00:00:00+08:00",
                                                             "to": "2026-01-01T00:00:00+08:00"}, headers=staff)
    assert backwards.status_code == 422 and backwards.json()["errors"][0]["field"] == "query.to"
    naive = await followup_client.get(FOLLOWUPS, params={"from": "2026-02-01T00:00:00"}, headers=staff)
    assert naive.status_code == 422


async def test_planned_touches_are_store_scoped(client, followup_client, followup_runtime, fgroup: Group) -> None:
    customer, vehicle, _ = await deliver(client, fgroup)
    rows = await planned(followup_runtime, fgroup, vehicle["id"], 17)
    other = fgroup.headers(Role.SERVICE_MANAGER, "B")
    assert await all_pages(followup_client, other, customer_id=customer["id"]) == []
    assert (await followup_client.get(f"{FOLLOWUPS}/{rows[0].id}", headers=other)).status_code == 404
    cancel = await followup_client.post(f"{FOLLOWUPS}/{rows[0].id}/cancel", json={"reason": "not mine"},
                                        headers=other)
    assert cancel.status_code == 404
    director = await all_pages(followup_client, fgroup.headers(Role.CS_DIRECTOR, "B"), vehicle_id=vehicle["id"])
    assert {i["id"] for i in director} == {str(r.id) for r in await followups(
        followup_runtime, fgroup.tenant_id, vehicle_id=uuid.UUID(vehicle["id"]))}


async def test_a_manager_cancels_a_planned_touch_with_the_reason(
        client, followup_client, followup_runtime: FollowupRuntime, fgroup: Group, event_tap: EventTap) -> None:
    _, vehicle, _ = await deliver(client, fgroup)
    rows = await planned(followup_runtime, fgroup, vehicle["id"], 17)
    row = next(r for r in rows if r.rule_key == "post_delivery_calls" and r.step == 1)
    url = f"{FOLLOWUPS}/{row.id}/cancel"
    executor = await followup_client.post(url, json={"reason": "x"}, headers=fgroup.headers(Role.SALES_CONSULTANT))
    assert executor.status_code == 403
    blank = await followup_client.post(url, json={"reason": "   "}, headers=fgroup.headers(Role.SALES_MANAGER))
    assert blank.status_code == 422 and blank.json()["errors"][0]["field"] == "body.reason"
    resp = await followup_client.post(url, json={"reason": "客户要求本周不再来电"},
                                      headers=fgroup.headers(Role.SALES_MANAGER))
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"] == "cancelled" and resp.json()["reason"] == "cancelled by staff: 客户要求本周不再来电"
    skipped = await event_tap.wait_for("followup.occurrence.skipped.v1", subject=str(row.id))
    assert skipped[0].data["state"] == "cancelled" and skipped[0].data["occurrence_key"] == row.occurrence_key
    again = await followup_client.post(url, json={"reason": "again"}, headers=fgroup.headers(Role.SALES_MANAGER))
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]
    moved = await followup_client.post(f"{FOLLOWUPS}/{row.id}/reschedule", headers=fgroup.headers(Role.ADMIN), json={
        "due_at": (datetime.now().astimezone() + timedelta(days=1)).isoformat(), "reason": "revive"})
    assert moved.status_code == 409


async def test_cancelling_this_months_care_keeps_the_series(
        client, followup_client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    """A manager cancels one cycle of the monthly care: the next month's is planned at once, the rest follows."""
    _, vehicle, _ = await deliver(client, fgroup)
    rows = await planned(followup_runtime, fgroup, vehicle["id"], 17)
    first = max((r for r in rows if r.rule_key == "owner_monthly_care"), key=lambda r: r.step)  # the last planned
    resp = await followup_client.post(f"{FOLLOWUPS}/{first.id}/cancel", json={"reason": "本月不发"},
                                      headers=fgroup.headers(Role.SALES_MANAGER))
    assert resp.status_code == 200, resp.text
    after = [r for r in await followups(followup_runtime, fgroup.tenant_id, vehicle_id=uuid.UUID(vehicle["id"]))
             if r.rule_key == "owner_monthly_care"]
    [following] = [r for r in after if r.state == "scheduled" and r.step > first.step]
    assert following.step == first.step + 1
    assert timedelta(days=27) < following.due_at - first.due_at < timedelta(days=40)


async def test_a_manager_reschedules_a_planned_touch_and_it_fires_then(
        client, followup_client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    _, vehicle, _ = await deliver(client, fgroup)
    rows = await planned(followup_runtime, fgroup, vehicle["id"], 17)
    row = next(r for r in rows if r.rule_key == "first_maintenance_notice")
    url = f"{FOLLOWUPS}/{row.id}/reschedule"
    manager = fgroup.headers(Role.SERVICE_MANAGER)
    now = followup_runtime.clock.now()
    past = await followup_client.post(url, json={"due_at": (now - timedelta(hours=1)).isoformat(), "reason": "x"},
                                      headers=manager)
    assert past.status_code == 422 and past.json()["errors"][0]["field"] == "body.due_at"
    naive = await followup_client.post(url, json={"due_at": "2030-01-01T10:00:00", "reason": "x"}, headers=manager)
    assert naive.status_code == 422 and naive.json()["errors"][0]["field"] == "body.due_at"
    far = await followup_client.post(url, json={"due_at": "2099-01-01T10:00:00+08:00", "reason": "x"},
                                     headers=manager)
    assert far.status_code == 422
    due = now + timedelta(days=2)
    resp = await followup_client.post(url, json={"due_at": due.isoformat(), "reason": "客户下周出差"}, headers=manager)
    assert resp.status_code == 200, resp.text
    assert datetime.fromisoformat(resp.json()["due_at"]) == due and resp.json()["state"] == "scheduled"
    assert resp.json()["reason"] == "rescheduled by staff: 客户下周出差"
    await advance(followup_runtime, timedelta(days=2, hours=1))
    await fire_all(followup_runtime)
    fired = (await followups(followup_runtime, fgroup.tenant_id, id=row.id))[0]
    assert fired.state == "fired" and fired.task_id is not None
    task = (await tasks(followup_runtime, fgroup.tenant_id, id=fired.task_id))[0]
    assert task.rule_key == "first_maintenance_notice"
    shown = (await followup_client.get(f"{FOLLOWUPS}/{row.id}", headers=manager)).json()
    assert shown["state"] == "fired" and shown["task_id"] == str(task.id) and shown["fired_at"] is not None
    late = await followup_client.post(url, json={"due_at": (followup_runtime.clock.now() + timedelta(days=1))
                                                 .isoformat(), "reason": "x"}, headers=manager)
    assert late.status_code == 409


async def test_the_test_clock(followup_client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    admin = fgroup.headers(Role.ADMIN)
    read = await followup_client.get(CLOCK, headers=admin)
    assert read.status_code == 200 and read.json()["enabled"] is True and read.json()["offset_seconds"] == 0
    assert (await followup_client.get(CLOCK, headers=fgroup.headers(Role.CS_DIRECTOR))).status_code == 403
    moved = await followup_client.put(CLOCK, json={"advance_seconds": 3600}, headers=admin)
    assert moved.status_code == 200 and moved.json()["offset_seconds"] == 3600
    assert followup_runtime.clock.offset == timedelta(hours=1)
    ahead = datetime.fromisoformat(moved.json()["now"]) - datetime.now().astimezone()
    assert timedelta(minutes=59) < ahead < timedelta(minutes=61)
    moved = await followup_client.put(CLOCK, json={"advance_seconds": 1800}, headers=admin)
    assert moved.json()["offset_seconds"] == 5400
    for bad, field in (({"advance_seconds": -6000}, "body.advance_seconds"), ({"offset_seconds": -1}, None),
                       ({}, None), ({"offset_seconds": 1, "advance_seconds": 1}, None),
                       ({"offset_seconds": 10 ** 10}, None)):
        resp = await followup_client.put(CLOCK, json=bad, headers=admin)
        assert resp.status_code == 422, bad
        if field:
            assert resp.json()["errors"][0]["field"] == field
    reset = await followup_client.put(CLOCK, json={"offset_seconds": 0}, headers=admin)
    assert reset.status_code == 200 and reset.json()["offset_seconds"] == 0


@pytest.fixture
async def no_clock_client(infra_env: Infra) -> httpx.AsyncClient:
    runtime = FollowupRuntime(infra_env.followup_settings(test_clock=False))
    app = create_service_app(runtime)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://followup.test") as c:
            yield c
    finally:
        await runtime.dispose()


async def test_the_test_clock_does_not_exist_where_it_is_disabled(no_clock_client, fgroup: Group) -> None:
    admin = fgroup.headers(Role.ADMIN)
    read = await no_clock_client.get(CLOCK, headers=admin)
    assert read.status_code == 404 and read.headers["content-type"].startswith("application/problem+json")
    assert (await no_clock_client.put(CLOCK, json={"offset_seconds": 60}, headers=admin)).status_code == 404
    # The rest of the service is there.
    assert (await no_clock_client.get(FOLLOWUPS, headers=admin)).status_code == 200


async def test_unknown_followups_are_not_found(followup_client, fgroup: Group) -> None:
    missing = uuid.uuid4()
    assert (await followup_client.get(f"{FOLLOWUPS}/{missing}", headers=fgroup.headers())).status_code == 404
    resp = await followup_client.post(f"{FOLLOWUPS}/{missing}/cancel", json={"reason": "x"},
                                      headers=fgroup.headers())
    assert resp.status_code == 404
