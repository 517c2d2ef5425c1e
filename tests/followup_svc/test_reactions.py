"""The plan follows the customer's life: visits produce callbacks and advance maintenance, edits reschedule,
transfers, lost customers and opt-outs cancel pending work with the reason (real services, real broker)."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from followup_svc.app import FollowupRuntime
from followup_svc.models import CustomerView, FollowUp, VehicleView
from shared.auth.roles import Role
from shared.testing.waiting import eventually
from tests.conftest import Group
from tests.customer_svc.factories import new_customer, new_vehicle, staff_id
from tests.followup_svc.conftest import advance, fire_all, followups, local_today, tasks
from tests.followup_svc.test_post_delivery import deliver, planned


async def rows_where(runtime: FollowupRuntime, group: Group, predicate, **where) -> list[FollowUp]:  # type: ignore[no-untyped-def]
    async def check():  # type: ignore[no-untyped-def]
        rows = await followups(runtime, group.tenant_id, **where)
        return rows if predicate(rows) else None
    try:
        return await eventually(check)
    except AssertionError:  # show what was there instead
        for r in await followups(runtime, group.tenant_id, **where):
            print(r.rule_key, r.occurrence_key[-12:], r.state, r.reason, file=sys.stderr)
        raise


def by_rule(rows: list[FollowUp], key: str, state: str | None = None) -> list[FollowUp]:
    return [r for r in rows if r.rule_key == key and (state is None or r.state == state)]


async def record_visit(client: httpx.AsyncClient, group: Group, vehicle_id: str, visit_type: str, **fields) -> dict:  # type: ignore[no-untyped-def]
    body = {"vehicle_id": vehicle_id, "visit_type": visit_type,
            "completed_at": datetime.now(UTC).isoformat(), **fields}
    resp = await client.post("/api/v1/visits", json=body, headers=group.headers(Role.ADMIN))
    assert resp.status_code == 201, resp.text
    return resp.json()


async def test_maintenance_visit_produces_callbacks_and_advances_the_reminder(
        client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    _, vehicle, _ = await deliver(client, fgroup)
    vid = uuid.UUID(vehicle["id"])
    rows = await planned(followup_runtime, fgroup, vehicle["id"], 17)
    first = by_rule(rows, "maintenance_reminder", "scheduled")
    assert [r.occurrence_key.rsplit(":", 2)[-2] for r in first] == ["c1"]
    advisor = await staff_id(client, fgroup, Role.SERVICE_ADVISOR)
    visit = await record_visit(client, fgroup, vehicle["id"], "first_maintenance", mileage_km=2600, advisor_id=advisor,
                               items=[{"name": "Brake fluid replacement", "kind": "labour", "declined": True}])
    visit_rows = await rows_where(followup_runtime, fgroup, lambda rs: len(rs) >= 3, subject_id=uuid.UUID(visit["id"]))
    assert {r.rule_key for r in visit_rows} == {"service_callback", "service_survey", "service_thanks"}
    rows = await rows_where(followup_runtime, fgroup,
                            lambda rs: by_rule(rs, "maintenance_reminder", "cancelled"), vehicle_id=vid)
    cancelled = by_rule(rows, "maintenance_reminder", "cancelled")[0]
    assert cancelled.occurrence_key.endswith(":c1:0") and "maintenance done" in cancelled.reason
    second = by_rule(rows, "maintenance_reminder", "scheduled")
    assert len(second) == 1 and second[0].occurrence_key.endswith(":c2:0")
    async with followup_runtime.sessionmaker() as s:
        seen = await s.get(VehicleView, vid)
        # The declined job rides along on the next reminder (its message variables carry the vehicle's list).
        assert seen.declined_items == ["Brake fluid replacement"] and seen.maintenance_count == 1
        assert seen.mileage_readings[-1][1] == 2600
    # The callback (spread over days 2-5, in business hours) goes to the advisor of the visit.
    callback_row = next(r for r in visit_rows if r.rule_key == "service_callback")
    assert timedelta(days=1) < callback_row.due_at - callback_row.anchor_at < timedelta(days=9)
    await advance(followup_runtime, callback_row.due_at - followup_runtime.clock.now() + timedelta(minutes=1))
    await fire_all(followup_runtime)
    callback = await tasks(followup_runtime, fgroup.tenant_id, rule_key="service_callback", vehicle_id=vid)
    assert len(callback) == 1 and str(callback[0].assignee_id) == advisor and callback[0].role == "service_advisor"


async def test_minor_repair_callbacks_sample_deterministically(client, followup_runtime, fgroup: Group) -> None:
    from followup_svc.scheduling.timing import sampled
    _, vehicle, _ = await deliver(client, fgroup)
    visits = [await record_visit(client, fgroup, vehicle["id"], "minor_repair") for _ in range(6)]
    for visit in visits:
        rows = await rows_where(followup_runtime, fgroup, lambda rs: len(rs) >= 1, subject_id=uuid.UUID(visit["id"]))
        has_callback = any(r.rule_key == "minor_repair_callback" for r in rows)
        assert has_callback == sampled(uuid.UUID(visit["id"]), 35)


async def test_birthday_edit_reschedules_the_greeting(client, followup_runtime, fgroup: Group) -> None:
    soon = local_today() + timedelta(days=20)
    customer = await new_customer(client, fgroup, relationship_type="owner", birthday=soon.replace(year=1985).isoformat())
    cid = uuid.UUID(customer["id"])
    rows = await rows_where(followup_runtime, fgroup, lambda rs: by_rule(rs, "birthday_greeting"), customer_id=cid)
    greeting = by_rule(rows, "birthday_greeting", "scheduled")[0]
    assert soon.isoformat() in greeting.occurrence_key
    later = soon + timedelta(days=10)
    resp = await client.patch(f"/api/v1/customers/{cid}", json={"birthday": later.replace(year=1985).isoformat()},
                              headers=fgroup.headers(Role.ADMIN, **{"If-Match": 'W/"1"'}))
    assert resp.status_code == 200, resp.text
    rows = await rows_where(followup_runtime, fgroup, lambda rs: by_rule(rs, "birthday_greeting", "cancelled"),
                            customer_id=cid)
    assert "birthday changed" in by_rule(rows, "birthday_greeting", "cancelled")[0].reason
    assert later.isoformat() in by_rule(rows, "birthday_greeting", "scheduled")[0].occurrence_key


async def test_marketing_needs_consent_and_an_opt_out_cancels_it(client, followup_runtime, fgroup: Group) -> None:
    _, vehicle, _ = await deliver(client, fgroup)
    vid = uuid.UUID(vehicle["id"])
    rows = await planned(followup_runtime, fgroup, vehicle["id"], 17)
    care = by_rule(rows, "owner_monthly_care", "scheduled")[0]
    # No marketing consent on record: the monthly care message is skipped at its time, with the reason. (Its time
    # depends on today's date: the Spring Festival defers it; so the clock moves to it, not a fixed two months.)
    await advance(followup_runtime, care.due_at - followup_runtime.clock.now() + timedelta(minutes=1))
    await fire_all(followup_runtime)
    rows = {r.id: r for r in await followups(followup_runtime, fgroup.tenant_id, vehicle_id=vid)}
    assert rows[care.id].state == "skipped" and "no marketing consent" in rows[care.id].reason
    # A skipped cycle does not end the series: next month's is planned (and checked again when due).
    later = [r for r in rows.values() if r.rule_key == "owner_monthly_care" and r.step == care.step + 1]
    assert len(later) == 1 and later[0].state == "scheduled"
    assert timedelta(days=27) < later[0].due_at - rows[care.id].due_at < timedelta(days=33)


async def test_opt_out_cancels_pending_marketing(client, followup_runtime, fgroup: Group) -> None:
    soon = local_today() + timedelta(days=30)
    customer = await new_customer(client, fgroup, relationship_type="owner", birthday=soon.replace(year=1990).isoformat())
    cid = customer["id"]
    for grant in (True, False):
        resp = await client.put(f"/api/v1/customers/{cid}/consents", headers=fgroup.headers(Role.ADMIN),
                                json={"channel": "sms", "purpose": "marketing", "granted": grant, "source": "test"})
        assert resp.status_code == 200, resp.text
    rows = await rows_where(followup_runtime, fgroup, lambda rs: by_rule(rs, "birthday_greeting", "cancelled"),
                            customer_id=uuid.UUID(cid))
    assert "opted out" in by_rule(rows, "birthday_greeting", "cancelled")[0].reason


async def test_transfer_cancels_the_old_owners_plan_and_plans_for_the_new(client, followup_runtime, fgroup) -> None:
    old_owner, vehicle, _ = await deliver(client, fgroup)
    vid = uuid.UUID(vehicle["id"])
    await planned(followup_runtime, fgroup, vehicle["id"], 17)
    await advance(followup_runtime, timedelta(days=1))
    await fire_all(followup_runtime)  # the 3-hour call is in the consultant's queue
    [call] = await tasks(followup_runtime, fgroup.tenant_id, rule_key="post_delivery_call_3h", vehicle_id=vid)
    assert call.status == "open"
    new_owner = await new_customer(client, fgroup, relationship_type="owner")
    resp = await client.post(f"/api/v1/vehicles/{vid}/transfer", json={"customer_id": new_owner["id"]},
                             headers=fgroup.headers(Role.ADMIN))
    assert resp.status_code == 200, resp.text
    rows = await rows_where(followup_runtime, fgroup,
                            lambda rs: any(r.customer_id == uuid.UUID(new_owner["id"]) for r in rs), vehicle_id=vid)
    old = [r for r in rows if r.customer_id == uuid.UUID(old_owner["id"])]
    assert old and all(r.state != "scheduled" for r in old)
    assert all("transferred" in r.reason for r in old if r.state == "cancelled")
    new = [r for r in rows if r.customer_id == uuid.UUID(new_owner["id"]) and r.state == "scheduled"]
    assert {r.rule_key for r in new} >= {"maintenance_reminder"}
    # Nobody calls the previous owner about the car he sold.
    [call] = await tasks(followup_runtime, fgroup.tenant_id, id=call.id)
    assert call.status == "cancelled" and call.outcome == {"reason": "vehicle transferred to another owner"}


async def test_do_not_call_takes_the_calls_already_queued_off(client, followup_runtime, fgroup) -> None:
    owner, vehicle, _ = await deliver(client, fgroup)
    await planned(followup_runtime, fgroup, vehicle["id"], 17)
    await advance(followup_runtime, timedelta(days=1))
    await fire_all(followup_runtime)
    [call] = await tasks(followup_runtime, fgroup.tenant_id, rule_key="post_delivery_call_3h",
                         vehicle_id=uuid.UUID(vehicle["id"]))
    etag = (await client.get(f"/api/v1/customers/{owner['id']}", headers=fgroup.headers(Role.ADMIN))).headers["ETag"]
    resp = await client.patch(f"/api/v1/customers/{owner['id']}", json={"do_not_call": True},
                              headers=fgroup.headers(Role.ADMIN, **{"If-Match": etag}))
    assert resp.status_code == 200, resp.text

    async def taken_off() -> bool:
        [row] = await tasks(followup_runtime, fgroup.tenant_id, id=call.id)
        return row.status == "cancelled" and row.outcome == {"reason": "customer asked not to be called"}

    await eventually(taken_off)


async def test_prospect_cadence_follows_the_intent_level_and_stops_when_lost(
        client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    consultant = await staff_id(client, fgroup, Role.SALES_CONSULTANT)
    customer = await new_customer(client, fgroup, intent_level="H", assigned_sales_id=consultant)
    cid = uuid.UUID(customer["id"])
    rows = await rows_where(followup_runtime, fgroup, lambda rs: by_rule(rs, "prospect_cadence_h"), customer_id=cid)
    assert by_rule(rows, "prospect_intent_confirm", "scheduled") and by_rule(rows, "prospect_thanks_sms")
    h = by_rule(rows, "prospect_cadence_h", "scheduled")[0]
    assert timedelta(days=1) < h.due_at - h.anchor_at < timedelta(days=4)
    resp = await client.patch(f"/api/v1/customers/{cid}", json={"intent_level": "C"},
                              headers=fgroup.headers(Role.ADMIN, **{"If-Match": 'W/"1"'}))
    assert resp.status_code == 200, resp.text
    rows = await rows_where(followup_runtime, fgroup, lambda rs: by_rule(rs, "prospect_cadence_c"), customer_id=cid)
    assert by_rule(rows, "prospect_cadence_h")[0].state == "cancelled"
    c = by_rule(rows, "prospect_cadence_c", "scheduled")[0]
    assert timedelta(days=14) < c.due_at - c.anchor_at < timedelta(days=18)
    # The intent confirmation call fires for the assigned consultant; then the manager confirms the prospect lost.
    await advance(followup_runtime, timedelta(days=1))
    await fire_all(followup_runtime)
    confirm = await tasks(followup_runtime, fgroup.tenant_id, customer_id=cid, rule_key="prospect_intent_confirm")
    assert len(confirm) == 1 and str(confirm[0].assignee_id) == consultant
    resp = await client.post(f"/api/v1/customers/{cid}/lost", json={"reason": "bought a competitor model"},
                             headers=fgroup.headers(Role.SALES_MANAGER))
    assert resp.status_code == 200, resp.text
    rows = await rows_where(followup_runtime, fgroup,
                            lambda rs: not [r for r in rs if r.state == "scheduled"], customer_id=cid)
    assert "customer lost" in by_rule(rows, "prospect_cadence_c")[0].reason
    assert (await tasks(followup_runtime, fgroup.tenant_id, customer_id=cid))[0].status == "cancelled"

    # The customer comes back and buys here after all: the delivery makes them an owner, no longer lost, and the
    # delivery's follow-ups are planned and fire.
    vehicle = await new_vehicle(client, fgroup, customer["id"], purchase_date=local_today().isoformat())
    delivered = await client.post(f"/api/v1/vehicles/{vehicle['id']}/delivery",
                                  json={"delivery_date": local_today().isoformat()}, headers=fgroup.headers(Role.ADMIN))
    assert delivered.status_code == 200, delivered.text
    back = (await client.get(f"/api/v1/customers/{cid}", headers=fgroup.headers(Role.ADMIN))).json()
    assert (back["relationship_type"], back["lost_reason"], back["lost_at"]) == ("owner", None, None)

    async def resumed() -> bool:
        async with followup_runtime.sessionmaker() as s:
            return not (await s.get(CustomerView, cid)).lost

    await eventually(resumed)
    rows = await rows_where(followup_runtime, fgroup, lambda rs: by_rule(rs, "post_delivery_call_3h"),
                            vehicle_id=uuid.UUID(vehicle["id"]))
    await advance(followup_runtime, timedelta(days=1))
    await fire_all(followup_runtime)
    [call] = await tasks(followup_runtime, fgroup.tenant_id, rule_key="post_delivery_call_3h",
                         vehicle_id=uuid.UUID(vehicle["id"]))
    assert call.status == "open"


async def test_insurance_date_plans_reminders_and_a_change_moves_them(client, followup_runtime, fgroup) -> None:
    expiry = local_today() + timedelta(days=90)
    customer = await new_customer(client, fgroup, relationship_type="owner")
    vehicle = await new_vehicle(client, fgroup, customer["id"], insurance_expiry=expiry.isoformat())
    vid = uuid.UUID(vehicle["id"])
    rows = await rows_where(followup_runtime, fgroup, lambda rs: len(by_rule(rs, "insurance_renewal")) == 2,
                            vehicle_id=vid)
    assert all(expiry.isoformat() in r.occurrence_key for r in by_rule(rows, "insurance_renewal"))
    assert all(r.due_at.date() < expiry for r in rows)
    moved = expiry + timedelta(days=30)
    resp = await client.patch(f"/api/v1/vehicles/{vid}", json={"insurance_expiry": moved.isoformat()},
                              headers=fgroup.headers(Role.ADMIN, **{"If-Match": 'W/"1"'}))
    assert resp.status_code == 200, resp.text
    rows = await rows_where(followup_runtime, fgroup,
                            lambda rs: len(by_rule(rs, "insurance_renewal", "cancelled")) == 2, vehicle_id=vid)
    assert all(moved.isoformat() in r.occurrence_key for r in by_rule(rows, "insurance_renewal", "scheduled"))


async def test_a_contact_made_early_moves_the_next_cadence_cycle(client, followup_client: httpx.AsyncClient,
                                                                 followup_runtime: FollowupRuntime,
                                                                 fgroup: Group) -> None:
    consultant = await staff_id(client, fgroup, Role.SALES_CONSULTANT)
    customer = await new_customer(client, fgroup, intent_level="B", assigned_sales_id=consultant)
    cid = uuid.UUID(customer["id"])
    rows = await rows_where(followup_runtime, fgroup, lambda rs: by_rule(rs, "prospect_cadence_b"), customer_id=cid)
    first = by_rule(rows, "prospect_cadence_b")[0]
    await advance(followup_runtime, first.due_at - followup_runtime.clock.now() + timedelta(minutes=1))
    await fire_all(followup_runtime)
    task = (await tasks(followup_runtime, fgroup.tenant_id, customer_id=cid, rule_key="prospect_cadence_b"))[0]
    planned_next = by_rule(await followups(followup_runtime, fgroup.tenant_id, customer_id=cid), "prospect_cadence_b",
                           "scheduled")
    assert [r.step for r in planned_next] == [1]
    assert timedelta(days=6) < planned_next[0].due_at - followup_runtime.clock.now() < timedelta(days=9)
    # The consultant reaches the customer two days late: the next weekly contact counts from this call.
    await advance(followup_runtime, timedelta(days=2))
    headers = fgroup.headers(Role.SALES_CONSULTANT, **{"If-Match": f'W/"{task.version}"'})
    resp = await followup_client.post(f"/api/v1/tasks/{task.id}/outcome", headers=headers,
                                      json={"reached": "reached", "satisfaction": "satisfied"})
    assert resp.status_code == 200, resp.text
    moved = by_rule(await followups(followup_runtime, fgroup.tenant_id, customer_id=cid), "prospect_cadence_b",
                    "scheduled")[0]
    assert moved.id == planned_next[0].id and "previous contact" in moved.reason
    assert moved.due_at - planned_next[0].due_at > timedelta(days=1)
    assert timedelta(days=6) < moved.due_at - followup_runtime.clock.now() < timedelta(days=9)
    # When it fires, the cycle after it counts from it (not from the old grid): no double call.
    await advance(followup_runtime, moved.due_at - followup_runtime.clock.now() + timedelta(minutes=1))
    await fire_all(followup_runtime)
    series = by_rule(await followups(followup_runtime, fgroup.tenant_id, customer_id=cid), "prospect_cadence_b")
    nxt = [r for r in series if r.state == "scheduled"]
    assert [r.step for r in nxt] == [2] and timedelta(days=6) < nxt[0].due_at - moved.due_at < timedelta(days=9)
    assert len(await tasks(followup_runtime, fgroup.tenant_id, customer_id=cid, rule_key="prospect_cadence_b")) == 2


async def test_yearly_greetings_continue_and_a_same_day_update_keeps_next_year(
        client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    soon = local_today() + timedelta(days=3)
    customer = await new_customer(client, fgroup, relationship_type="owner", birthday=soon.replace(year=1988).isoformat())
    cid = uuid.UUID(customer["id"])
    resp = await client.put(f"/api/v1/customers/{cid}/consents", headers=fgroup.headers(Role.ADMIN),
                            json={"channel": "sms", "purpose": "marketing", "granted": True, "source": "test"})
    assert resp.status_code == 200, resp.text
    rows = await rows_where(followup_runtime, fgroup, lambda rs: by_rule(rs, "birthday_greeting"), customer_id=cid)
    this_year = by_rule(rows, "birthday_greeting", "scheduled")[0]

    async def consented():  # type: ignore[no-untyped-def]
        async with followup_runtime.sessionmaker() as s:
            return (await s.get(CustomerView, cid)).consents.get("sms:marketing")
    await eventually(consented)
    await advance(followup_runtime, this_year.due_at - followup_runtime.clock.now() + timedelta(minutes=5))
    await fire_all(followup_runtime)
    rows = by_rule(await followups(followup_runtime, fgroup.tenant_id, customer_id=cid), "birthday_greeting")
    assert {r.state for r in rows if r.id == this_year.id} == {"fired"}
    next_year = [r for r in rows if r.state == "scheduled"]
    assert len(next_year) == 1 and soon.replace(year=soon.year + 1).isoformat() in next_year[0].occurrence_key
    # The same day, another consent change re-plans personal dates: next year's greeting stays.
    resp = await client.put(f"/api/v1/customers/{cid}/consents", headers=fgroup.headers(Role.ADMIN),
                            json={"channel": "wechat", "purpose": "marketing", "granted": True, "source": "test"})
    assert resp.status_code == 200, resp.text
    await eventually(lambda: followups(followup_runtime, fgroup.tenant_id, customer_id=cid))
    await fire_all(followup_runtime)
    rows = by_rule(await followups(followup_runtime, fgroup.tenant_id, customer_id=cid), "birthday_greeting")
    assert [r.state for r in rows if r.id == next_year[0].id] == ["scheduled"]
    assert sum(r.state == "fired" for r in rows) == 1


async def test_a_marketing_opt_out_cancels_this_cycle_not_the_series(
        client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    """Opting out cancels what is planned; the monthly care goes on being planned (and skipped for want of
    consent when due), so a customer who opts back in gets it again."""
    customer, vehicle, _ = await deliver(client, fgroup)
    cid, vid = uuid.UUID(customer["id"]), uuid.UUID(vehicle["id"])
    await planned(followup_runtime, fgroup, vehicle["id"], 17)
    for granted in (True, False):
        resp = await client.put(f"/api/v1/customers/{cid}/consents", headers=fgroup.headers(Role.ADMIN),
                                json={"channel": "sms", "purpose": "marketing", "granted": granted, "source": "test"})
        assert resp.status_code == 200, resp.text
    rows = await rows_where(followup_runtime, fgroup,
                            lambda rs: any("opted out" in (r.reason or "") for r in rs), vehicle_id=vid)
    care = by_rule(rows, "owner_monthly_care")
    cancelled = [r for r in care if r.state == "cancelled"]
    assert cancelled and all("opted out of marketing" in (r.reason or "") for r in cancelled)
    last = max(r.step for r in cancelled)
    assert [r.step for r in care if r.state == "scheduled"] == [last + 1]


async def test_a_merge_moves_the_duplicates_cars_and_their_plans_to_the_survivor(
        client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    duplicate, vehicle, _ = await deliver(client, fgroup)
    vid = uuid.UUID(vehicle["id"])
    await planned(followup_runtime, fgroup, vehicle["id"], 17)
    survivor = await new_customer(client, fgroup, relationship_type="owner")
    resp = await client.post(f"/api/v1/customers/{survivor['id']}/merge", json={"duplicate_id": duplicate["id"]},
                             headers=fgroup.headers(Role.SALES_MANAGER, **{"If-Match": 'W/"1"'}))
    assert resp.status_code == 200, resp.text
    sid = uuid.UUID(survivor["id"])
    rows = await rows_where(followup_runtime, fgroup,
                            lambda rs: rs and all(r.customer_id == sid for r in rs if r.state == "scheduled"),
                            vehicle_id=vid)
    pending = [r for r in rows if r.state == "scheduled"]
    assert {r.rule_key for r in pending} >= {"post_delivery_calls", "maintenance_reminder", "owner_anniversary_calls"}
    async with followup_runtime.sessionmaker() as s:
        assert (await s.get(VehicleView, vid)).customer_id == sid


async def test_maintenance_reminder_fires_with_its_due_day(client, followup_runtime: FollowupRuntime, fgroup: Group,
                                                            event_tap) -> None:  # type: ignore[no-untyped-def]
    """The reminder names the day the maintenance falls due (DOMAIN §7.4), computed when it fires from the car's
    delivery and odometer: a regression of the scheduler reading only some of the vehicle's columns."""
    _, vehicle, _ = await deliver(client, fgroup)
    await planned(followup_runtime, fgroup, vehicle["id"], 17)
    await advance(followup_runtime, timedelta(days=50))  # reminded 14 days ahead of day 62
    await fire_all(followup_runtime)
    [sent] = await event_tap.wait_for("followup.message.requested.v1", where=lambda e: e.data[
        "rule_key"] == "maintenance_reminder" and e.data.get("vehicle_id") == vehicle["id"])
    due = datetime.fromisoformat(sent.data["variables"]["date"]).date()
    # 2,500 km at 40 km a day after delivery (62 days), the first maintenance's mileage before its 3 months.
    assert due == local_today() + timedelta(days=62)
    rows = await followups(followup_runtime, fgroup.tenant_id, vehicle_id=uuid.UUID(vehicle["id"]),
                           rule_key="maintenance_reminder")
    assert [r.state for r in rows if r.state != "scheduled"] == ["fired"], [(r.state, r.reason) for r in rows]
