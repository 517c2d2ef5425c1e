"""A delivery recorded through customer_svc produces the whole post-delivery plan, and the plan fires as
tasks for the right people and commands for notify_svc and survey_svc (real Postgres, real RabbitMQ)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import httpx

from followup_svc.app import FollowupRuntime
from shared.auth.roles import Role
from shared.testing.events import EventTap
from shared.testing.waiting import eventually
from tests.conftest import Group
from tests.customer_svc.factories import new_customer, new_vehicle, staff_id
from tests.followup_svc.conftest import advance, fire_all, followups, local_today, tasks


async def deliver(client: httpx.AsyncClient, group: Group, day: date | None = None, **customer_fields: object
                  ) -> tuple[dict, dict, str]:
    consultant = await staff_id(client, group, Role.SALES_CONSULTANT)
    customer = await new_customer(client, group, relationship_type="owner", **customer_fields)
    vehicle = await new_vehicle(client, group, customer["id"], selling_consultant_id=consultant)
    resp = await client.post(f"/api/v1/vehicles/{vehicle['id']}/delivery",
                             json={"delivery_date": (day or local_today()).isoformat()},
                             headers=group.headers(Role.ADMIN))
    assert resp.status_code == 200, resp.text
    return customer, vehicle, consultant


async def planned(runtime: FollowupRuntime, group: Group, vehicle_id: str, minimum: int) -> list:
    async def enough():  # type: ignore[no-untyped-def]
        rows = await followups(runtime, group.tenant_id, vehicle_id=uuid.UUID(vehicle_id))
        return rows if len(rows) >= minimum else None
    return await eventually(enough)


async def test_delivery_produces_the_whole_post_delivery_plan(client, followup_runtime, fgroup: Group) -> None:
    _, vehicle, _ = await deliver(client, fgroup)
    rows = await planned(followup_runtime, fgroup, vehicle["id"], 17)
    keys = {(r.rule_key, r.step) for r in rows}
    expected = {("post_delivery_call_3h", 0), ("post_delivery_thanks_sms", 0), ("post_delivery_survey", 0),
                ("owner_monthly_care", 0), ("first_maintenance_notice", 0), ("owner_quarterly_visit", 0),
                *{("post_delivery_calls", s) for s in range(4)}, *{("owner_anniversary_calls", s) for s in range(5)}}
    assert expected <= keys
    assert {r.rule_key for r in rows} >= {"maintenance_reminder", "owner_lapsed_win_back", "owner_lost_plan"}
    assert all(r.state == "scheduled" for r in rows)
    by_key = {(r.rule_key, r.step): r for r in rows}
    # Offsets count from the delivery: 3 days, 1 week, half a month, 1 month (calendar month).
    day3, week1 = by_key[("post_delivery_calls", 0)], by_key[("post_delivery_calls", 1)]
    assert timedelta(days=2) < day3.due_at - day3.anchor_at < timedelta(days=6)
    assert timedelta(days=6) < week1.due_at - week1.anchor_at < timedelta(days=10)
    years = [by_key[("owner_anniversary_calls", s)].due_at for s in range(5)]
    assert [y.year - years[0].year for y in years] == [0, 1, 2, 3, 4]


async def test_redelivered_event_does_not_double_the_plan(client, followup_runtime, fgroup: Group) -> None:
    _, vehicle, _ = await deliver(client, fgroup)
    first = await planned(followup_runtime, fgroup, vehicle["id"], 17)
    # The same delivery posted again publishes another event: same occurrence keys, nothing new.
    resp = await client.post(f"/api/v1/vehicles/{vehicle['id']}/delivery",
                             json={"delivery_date": local_today().isoformat()}, headers=fgroup.headers(Role.ADMIN))
    assert resp.status_code == 200
    await fire_all(followup_runtime)
    again = await followups(followup_runtime, fgroup.tenant_id, vehicle_id=uuid.UUID(vehicle["id"]))
    assert sorted(r.occurrence_key for r in again) == sorted(r.occurrence_key for r in first)


async def test_the_plan_fires_tasks_for_the_consultant_and_commands_for_notify_and_survey(
        client, followup_runtime: FollowupRuntime, fgroup: Group, event_tap: EventTap) -> None:
    customer, vehicle, consultant = await deliver(client, fgroup)
    await planned(followup_runtime, fgroup, vehicle["id"], 17)
    vid = uuid.UUID(vehicle["id"])

    # Next day: the 3-hour call (moved into business hours) and the thank-you SMS (out of quiet hours).
    await advance(followup_runtime, timedelta(days=1))
    await fire_all(followup_runtime)
    call = (await tasks(followup_runtime, fgroup.tenant_id, vehicle_id=vid, rule_key="post_delivery_call_3h"))[0]
    assert str(call.assignee_id) == consultant and call.role == "sales_consultant" and call.status == "open"
    assert call.sla_due_at - call.due_at == timedelta(hours=8)
    created = await event_tap.wait_for("followup.task.created.v1", subject=str(call.id))
    assert created[0].data["occurrence_key"] == call.occurrence_key
    assert created[0].data["customer_id"] == customer["id"]
    rows = {(r.rule_key, r.step): r for r in await followups(followup_runtime, fgroup.tenant_id, vehicle_id=vid)}
    thanks = rows[("post_delivery_thanks_sms", 0)]
    assert thanks.state == "fired"
    message = (await event_tap.wait_for("followup.message.requested.v1", subject=str(thanks.id)))[0].data
    assert message["template"] == "purchase_thanks" and message["idempotency_key"] == thanks.occurrence_key
    assert message["purpose"] == "service" and message["customer_id"] == customer["id"]

    # A week on: the day-3 and week-1 calls and the sales-satisfaction survey about this delivery.
    await advance(followup_runtime, timedelta(days=7))
    await fire_all(followup_runtime)
    calls = await tasks(followup_runtime, fgroup.tenant_id, vehicle_id=vid, rule_key="post_delivery_calls")
    assert len(calls) == 2 and all(str(t.assignee_id) == consultant for t in calls)
    rows = {(r.rule_key, r.step): r for r in await followups(followup_runtime, fgroup.tenant_id, vehicle_id=vid)}
    survey = rows[("post_delivery_survey", 0)]
    assert survey.state == "fired"
    requested = (await event_tap.wait_for("followup.survey.requested.v1", subject=str(survey.id)))[0].data
    assert requested["idempotency_key"] == survey.occurrence_key and requested["survey"] == "sales_satisfaction"
    assert requested["about_type"] == "delivery" and requested["staff_id"] == consultant
    # Nothing beyond the week has fired.
    assert rows[("post_delivery_calls", 2)].state == "scheduled"
    assert rows[("first_maintenance_notice", 0)].state == "scheduled"


async def test_imported_history_is_recorded_as_stale_not_sent(client, followup_runtime, fgroup: Group) -> None:
    _, vehicle, _ = await deliver(client, fgroup, day=local_today() - timedelta(days=400))
    rows = await planned(followup_runtime, fgroup, vehicle["id"], 10)
    by_key = {(r.rule_key, r.step): r for r in rows}
    for key in (("post_delivery_call_3h", 0), ("post_delivery_thanks_sms", 0), ("post_delivery_calls", 3),
                ("owner_anniversary_calls", 0)):
        assert by_key[key].state == "skipped" and "stale" in by_key[key].reason, key
    # Month 24 is still ahead: it stays planned.
    assert by_key[("owner_anniversary_calls", 1)].state == "scheduled"
    await fire_all(followup_runtime)
    assert await tasks(followup_runtime, fgroup.tenant_id, vehicle_id=uuid.UUID(vehicle["id"]),
                       rule_key="post_delivery_call_3h") == []
