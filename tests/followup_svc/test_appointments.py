"""Service appointments end to end: customers and vehicles made in customer_svc, booked by plate in followup_svc
(real HTTP, Postgres, RabbitMQ), capacity with alternative slots, the reception workflow, and the D-3 parts check
and D-1 confirmation call that follow the appointment around."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, time, timedelta

import httpx
import sqlalchemy as sa

from followup_svc.app import FollowupRuntime
from followup_svc.models import AuditEntry, CustomerView, VehicleView
from shared.calendar import StoreCalendar
from shared.auth.roles import Role
from shared.testing.events import EventTap
from shared.testing.waiting import eventually
from tests.conftest import Group
from tests.customer_svc.factories import new_customer, new_vehicle, staff_id
from tests.followup_svc.conftest import advance, fire_all, followups, tasks

URL = "/api/v1/appointments"
SHANGHAI = StoreCalendar()  # the fixture stores: Asia/Shanghai, open 08:30–18:00 every day
RULES = {"appointment_parts_check", "appointment_confirm_call"}


_plates: set[str] = set()


def new_plate() -> str:
    """A made-up plate, unique within the test session."""
    while (plate := f"粤B{random.randrange(10**5):05d}") in _plates:
        pass
    _plates.add(plate)
    return plate


async def car(client: httpx.AsyncClient, runtime: FollowupRuntime, group: Group, store: str = "A",
              **customer_fields: object) -> tuple[dict, dict]:
    """A customer and their vehicle (with a plate) in customer_svc, once followup_svc's read model has both."""
    customer = await new_customer(client, group, store, **customer_fields)
    vehicle = await new_vehicle(client, group, customer["id"], store, plate=new_plate())

    async def known() -> bool:
        async with runtime.sessionmaker() as s:
            return (await s.get(VehicleView, uuid.UUID(vehicle["id"])) is not None
                    and await s.get(CustomerView, uuid.UUID(customer["id"])) is not None)

    await eventually(known)
    return customer, vehicle


def slot(runtime: FollowupRuntime, days_ahead: int = 4, at: time = time(10)) -> datetime:
    """``at`` store-local on the first working weekday at least ``days_ahead`` days after the clock's today."""
    day = SHANGHAI.local(runtime.clock.now()).date() + timedelta(days=days_ahead)
    while not (SHANGHAI.is_working_day(day) and day.weekday() < 5):
        day += timedelta(days=1)
    return SHANGHAI.at_local(day, at)


def local(at: datetime | str) -> datetime:
    return SHANGHAI.local(datetime.fromisoformat(at) if isinstance(at, str) else at)


async def book(fc: httpx.AsyncClient, group: Group, plate: str, start: datetime, role: Role = Role.SERVICE_ADVISOR,
               store: str = "A", headers: dict | None = None, **fields: object) -> httpx.Response:
    body = {"plate": plate, "slot_start": start.isoformat(), "content": "10,000 km maintenance", **fields}
    return await fc.post(URL, json=body, headers={**group.headers(role, store), **(headers or {})})


async def booked(fc: httpx.AsyncClient, group: Group, plate: str, start: datetime, **fields: object) -> dict:
    resp = await book(fc, group, plate, start, **fields)
    assert resp.status_code == 201, resp.text
    return resp.json()


async def planned(runtime: FollowupRuntime, group: Group, appointment_id: str) -> dict:
    rows = await followups(runtime, group.tenant_id, subject_id=uuid.UUID(appointment_id))
    return {r.rule_key: r for r in rows}


async def etag(fc: httpx.AsyncClient, group: Group, appointment_id: str) -> str:
    resp = await fc.get(f"{URL}/{appointment_id}", headers=group.headers(Role.SERVICE_ADVISOR))
    assert resp.status_code == 200, resp.text
    return resp.headers["ETag"]


async def move(fc: httpx.AsyncClient, group: Group, appointment_id: str, to: str, **body: object
               ) -> httpx.Response:
    headers = {**group.headers(Role.SERVICE_ADVISOR), "If-Match": await etag(fc, group, appointment_id)}
    return await fc.post(f"{URL}/{appointment_id}/transition", json={"to": to, **body}, headers=headers)


def field_of(resp: httpx.Response) -> str:
    assert resp.status_code == 422, resp.text
    return resp.json()["errors"][0]["field"]


# --- booking ---------------------------------------------------------------------------------------------------


async def test_booking_by_plate_plans_the_parts_check_and_the_confirmation_call(
        client, followup_client, followup_runtime: FollowupRuntime, fgroup: Group, event_tap: EventTap) -> None:
    advisor = await staff_id(client, fgroup, Role.SERVICE_ADVISOR)
    customer, vehicle = await car(client, followup_runtime, fgroup, assigned_advisor_id=advisor)
    start = slot(followup_runtime)
    # The plate is found however reception types it (lower case, spaces).
    typed = vehicle["plate"][:2].lower() + " " + vehicle["plate"][2:]
    resp = await book(followup_client, fgroup, typed, start, mileage_km=9800, estimate_amount="400.00",
                      is_rework=True, pickup={"address": "深圳福田区1号", "at": (start - timedelta(hours=1)).isoformat()},
                      headers={"Idempotency-Key": "book-1"})
    assert resp.status_code == 201, resp.text
    a = resp.json()
    assert resp.headers["ETag"] == 'W/"1"' and resp.headers["Location"] == f"{URL}/{a['id']}"
    assert a["customer_id"] == customer["id"] and a["vehicle_id"] == vehicle["id"] and a["plate"] == vehicle["plate"]
    assert a["advisor_id"] == advisor  # the customer's own advisor by default
    assert a["status"] == "booked" and a["kind"] == "passive" and a["is_rework"] is True
    assert datetime.fromisoformat(a["slot_start"]) == start
    assert datetime.fromisoformat(a["slot_end"]) - start == timedelta(minutes=60)
    assert a["pickup"]["address"] == "深圳福田区1号" and a["estimate_amount"] == "400.00"
    # A CS agent (no personal data) reads where the car is picked up masked, as the customer's address.
    agent = (await followup_client.get(f"{URL}/{a['id']}", headers=fgroup.headers(Role.CS_AGENT))).json()
    assert agent["pickup"]["address"] == "深圳福田区1****"

    # D-3 parts check (09:00) and D-1 confirmation call (10:00), store-local, before the slot.
    rows = await planned(followup_runtime, fgroup, a["id"])
    assert set(rows) == RULES
    assert all(r.state == "scheduled" and r.due_at < start and r.vehicle_id == uuid.UUID(vehicle["id"])
               for r in rows.values())
    parts, confirm = rows["appointment_parts_check"], rows["appointment_confirm_call"]
    assert local(parts.due_at).date() == local(start).date() - timedelta(days=3)
    assert local(parts.due_at).time() == time(9)
    assert local(confirm.due_at).date() == local(start).date() - timedelta(days=1)
    assert local(confirm.due_at).time() == time(10)
    assert confirm.context["advisor_id"] == advisor

    # A retry with the same key replays the booking; the key cannot be reused for another request.
    pickup = {"address": "深圳福田区1号", "at": (start - timedelta(hours=1)).isoformat()}
    replay = await book(followup_client, fgroup, vehicle["plate"], start, mileage_km=9800, estimate_amount="400.00",
                        is_rework=True, pickup=pickup, headers={"Idempotency-Key": "book-1"})
    assert replay.status_code == 201 and replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json()["id"] == a["id"]
    reused = await book(followup_client, fgroup, vehicle["plate"], start, headers={"Idempotency-Key": "book-1"})
    assert field_of(reused) == "header.Idempotency-Key"
    # Without a key, the car already has an active appointment.
    dup = await book(followup_client, fgroup, vehicle["plate"], start + timedelta(days=1))
    assert dup.status_code == 409 and dup.json()["existing_id"] == a["id"]

    event = (await event_tap.wait_for("followup.appointment.booked.v1", subject=a["id"]))[0]
    assert event.data["plate"] == vehicle["plate"] and event.data["advisor_id"] == advisor
    assert event.data["status"] == "booked"

    # Reading: by id (with the ETag), by store and day, by plate.
    got = await followup_client.get(f"{URL}/{a['id']}", headers=fgroup.headers(Role.CS_MANAGER))
    assert got.status_code == 200 and got.headers["ETag"] == 'W/"1"'
    day = local(start).date().isoformat()
    listed = await followup_client.get(URL, params={"store_id": str(fgroup.store_a), "day": day},
                                       headers=fgroup.headers(Role.SERVICE_ADVISOR))
    assert [x["id"] for x in listed.json()["items"]] == [a["id"]]
    other_day = await followup_client.get(URL, params={"store_id": str(fgroup.store_a),
                                                       "day": (local(start).date() + timedelta(days=1)).isoformat()},
                                          headers=fgroup.headers(Role.SERVICE_ADVISOR))
    assert other_day.json()["items"] == []
    by_plate = await followup_client.get(URL, params={"plate": typed}, headers=fgroup.headers(Role.SERVICE_ADVISOR))
    assert [x["id"] for x in by_plate.json()["items"]] == [a["id"]]
    no_store = await followup_client.get(URL, params={"day": day}, headers=fgroup.headers(Role.SERVICE_ADVISOR))
    assert field_of(no_store) == "query.store_id"


async def test_a_booking_needs_a_known_plate_and_a_real_slot(client, followup_client, followup_runtime,
                                                             fgroup: Group) -> None:
    _, vehicle = await car(client, followup_runtime, fgroup)
    start = slot(followup_runtime)
    unknown = await book(followup_client, fgroup, new_plate(), start)
    assert field_of(unknown) == "body.plate"
    assert unknown.json()["errors"][0]["message"] == "no vehicle with this plate in your stores; register it first"
    assert field_of(await book(followup_client, fgroup, "ABC", start)) == "body.plate"
    plate = vehicle["plate"]
    for bad in (start + timedelta(minutes=30),                         # off the 60-minute grid
                SHANGHAI.at_local(local(start).date(), time(8)),       # before opening (08:30)
                SHANGHAI.at_local(local(start).date(), time(18)),      # at closing: no room for an hour
                followup_runtime.clock.now() - timedelta(days=1),      # the past
                start + timedelta(days=800)):                          # too far ahead
        assert field_of(await book(followup_client, fgroup, plate, bad)) == "body.slot_start", bad
    naive = await followup_client.post(URL, json={"plate": plate, "slot_start": "2030-01-07T10:00:00",
                                                  "content": "x"}, headers=fgroup.headers(Role.SERVICE_ADVISOR))
    assert field_of(naive) == "body.slot_start"
    by_id = {"slot_start": start.isoformat(), "content": "x"}
    headers = fgroup.headers(Role.SERVICE_ADVISOR)
    for body, field in (({**by_id, "vehicle_id": str(uuid.uuid4())}, "body.vehicle_id"),
                        ({**by_id, "vehicle_id": vehicle["id"], "plate": new_plate()}, "body.plate"),
                        (by_id, "body.plate")):
        assert field_of(await followup_client.post(URL, json=body, headers=headers)) == field
    sales = await staff_id(client, fgroup, Role.SALES_CONSULTANT)
    assert field_of(await book(followup_client, fgroup, plate, start, advisor_id=sales)) == "body.advisor_id"
    late_ready = await book(followup_client, fgroup, plate, start, promised_ready_at=start.isoformat())
    assert field_of(late_ready) == "body.promised_ready_at"
    # Sales consultants read appointments but do not book them.
    refused = await book(followup_client, fgroup, plate, start, role=Role.SALES_CONSULTANT)
    assert refused.status_code == 403
    # The call centre books for reception; an appointment without a known advisor stays unassigned.
    ok = await followup_client.post(URL, json={**by_id, "vehicle_id": vehicle["id"], "kind": "proactive"},
                                    headers=fgroup.headers(Role.CS_AGENT))
    assert ok.status_code == 201 and ok.json()["advisor_id"] is None and ok.json()["kind"] == "proactive"
    assert ok.json()["plate"] == plate


async def test_odd_input_is_a_422_never_a_500(client, followup_client, followup_runtime, fgroup: Group) -> None:
    _, vehicle = await car(client, followup_runtime, fgroup)
    headers = fgroup.headers(Role.ADMIN)
    for when in ("2099-12-31T23:00:00-14:00", "2000-01-01T00:00:00+14:00", "9999-12-31T23:59:59-23:59",
                 "0001-01-01T00:00:00+23:59", "2030-01-07T10:00:00.5+08:00", "1700000000"):
        body = {"plate": vehicle["plate"], "slot_start": when, "content": "x"}
        resp = await followup_client.post(URL, json=body, headers=headers)
        assert field_of(resp) == "body.slot_start", when
        if "." in when:  # off the grid, but a fine pick-up time
            continue
        pickup = {"address": "x", "at": when}
        resp = await followup_client.post(URL, json={**body, "slot_start": slot(followup_runtime).isoformat(),
                                                     "pickup": pickup}, headers=headers)
        assert resp.status_code == 422 and resp.json()["errors"][0]["field"].startswith("body.pickup"), when
    store = str(fgroup.store_a)
    for params, field in (({"store_id": store, "day": "0001-01-01"}, "query.day"),
                          ({"store_id": store, "day": "9999-12-31"}, "query.day"),
                          ({"from": "0001-01-01T00:00:00+14:00"}, "query.from"),
                          ({"to": "9999-12-31T23:59:59-14:00"}, "query.to"),
                          ({"from": "2030-01-02T00:00:00Z", "to": "2030-01-01T00:00:00Z"}, "query.to"),
                          ({"plate": "nonsense"}, "query.plate"),
                          ({"cursor": "!!"}, "query.cursor")):
        assert field_of(await followup_client.get(URL, params=params, headers=headers)) == field, params
    edge = await followup_client.get(f"{URL}/slots", params={"store_id": store, "day": "2099-12-31"}, headers=headers)
    assert edge.status_code == 200 and len(edge.json()["slots"]) == 9
    assert field_of(await followup_client.get(f"{URL}/slots", params={"store_id": store, "day": "9999-12-31"},
                                              headers=headers)) == "query.day"


async def test_a_full_slot_answers_409_with_five_free_alternatives(client, followup_client, followup_runtime,
                                                                 fgroup: Group) -> None:
    start = slot(followup_runtime)
    cars = [(await car(client, followup_runtime, fgroup))[1] for _ in range(9)]
    for v in cars[:4]:
        await booked(followup_client, fgroup, v["plate"], start)
    for v in cars[4:8]:  # 11:00 is full as well
        await booked(followup_client, fgroup, v["plate"], start + timedelta(hours=1))

    resp = await book(followup_client, fgroup, cars[8]["plate"], start)
    assert resp.status_code == 409, resp.text
    problem = resp.json()
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == "slot_full" and "4 of 4" in problem["detail"]
    alternatives = problem["alternatives"]
    assert len(alternatives) == 5
    starts = [datetime.fromisoformat(x["start"]) for x in alternatives]
    assert starts == sorted(starts) and starts[0] == start + timedelta(hours=2)  # 11:00 is full too: 12:00
    assert all(x["free"] > 0 and x["bookable"] for x in alternatives)

    day = await followup_client.get(f"{URL}/slots", params={"store_id": str(fgroup.store_a),
                                                            "day": local(start).date().isoformat()},
                                    headers=fgroup.headers(Role.SALES_CONSULTANT))
    assert day.status_code == 200, day.text
    grid = {datetime.fromisoformat(s["start"]): s for s in day.json()["slots"]}
    assert day.json()["capacity"] == 4 and day.json()["timezone"] == "Asia/Shanghai"
    assert local(min(grid)).time() == time(9) and local(max(grid)).time() == time(17)  # 08:30–18:00, hourly
    assert grid[start]["booked"] == 4 and grid[start]["free"] == 0 and not grid[start]["bookable"]
    assert grid[start + timedelta(hours=1)]["free"] == 0
    for s in starts:
        if s in grid:
            assert grid[s]["free"] == 4
    # The first alternative is really free: the car books it.
    taken = await booked(followup_client, fgroup, cars[8]["plate"], starts[0])
    assert datetime.fromisoformat(taken["slot_start"]) == starts[0]


# --- changes -----------------------------------------------------------------------------------------------------


async def test_moving_the_slot_moves_the_confirmation_call(client, followup_client, followup_runtime,
                                                          fgroup: Group, event_tap: EventTap) -> None:
    _, vehicle = await car(client, followup_runtime, fgroup)
    start = slot(followup_runtime)
    a = await booked(followup_client, fgroup, vehicle["plate"], start)
    before = await planned(followup_runtime, fgroup, a["id"])
    url, advisor = f"{URL}/{a['id']}", fgroup.headers(Role.SERVICE_ADVISOR)
    later = start + timedelta(days=1, hours=2)

    unconditional = await followup_client.patch(url, json={"slot_start": later.isoformat()}, headers=advisor)
    assert unconditional.status_code == 428
    stale = await followup_client.patch(url, json={"slot_start": later.isoformat()},
                                        headers={**advisor, "If-Match": 'W/"7"'})
    assert stale.status_code == 412
    off_grid = await followup_client.patch(url, json={"slot_start": (later + timedelta(minutes=5)).isoformat()},
                                           headers={**advisor, "If-Match": 'W/"1"'})
    assert field_of(off_grid) == "body.slot_start"
    assert field_of(await followup_client.patch(url, json={"content": None},
                                                headers={**advisor, "If-Match": 'W/"1"'})) == "body.content"

    resp = await followup_client.patch(url, json={"slot_start": later.isoformat(), "notes": "bring the service book"},
                                       headers={**advisor, "If-Match": 'W/"1"'})
    assert resp.status_code == 200, resp.text
    assert resp.headers["ETag"] == 'W/"2"' and resp.json()["notes"] == "bring the service book"
    assert datetime.fromisoformat(resp.json()["slot_end"]) == later + timedelta(hours=1)
    rows = await followups(followup_runtime, fgroup.tenant_id, subject_id=uuid.UUID(a["id"]), state="scheduled")
    after = {r.rule_key: r for r in rows}
    assert set(after) == RULES and len(rows) == 2
    for key in RULES:
        assert after[key].due_at == before[key].due_at + timedelta(days=1)  # same local time, one day later
        assert after[key].due_at < later
    changed = await event_tap.wait_for("followup.appointment.changed.v1", subject=a["id"])
    assert changed[0].data["change"] == "moved"

    # Sending what is on record changes nothing.
    same = await followup_client.patch(url, json={"slot_start": later.isoformat()},
                                       headers={**advisor, "If-Match": 'W/"2"'})
    assert same.status_code == 200 and same.headers["ETag"] == 'W/"2"'


async def test_moving_into_a_full_slot_offers_alternatives(client, followup_client, followup_runtime,
                                                           fgroup: Group) -> None:
    start = slot(followup_runtime)
    cars = [(await car(client, followup_runtime, fgroup))[1] for _ in range(5)]
    for v in cars[:4]:
        await booked(followup_client, fgroup, v["plate"], start)
    a = await booked(followup_client, fgroup, cars[4]["plate"], start + timedelta(hours=3))
    resp = await followup_client.patch(f"{URL}/{a['id']}", json={"slot_start": start.isoformat()},
                                       headers={**fgroup.headers(Role.SERVICE_MANAGER), "If-Match": 'W/"1"'})
    assert resp.status_code == 409 and len(resp.json()["alternatives"]) == 5
    # The appointment's own place is free to offer: 11:00 and 12:00 come first.
    firsts = [datetime.fromisoformat(x["start"]) for x in resp.json()["alternatives"][:2]]
    assert firsts == [start + timedelta(hours=1), start + timedelta(hours=2)]


async def test_cancelling_cancels_the_pending_follow_ups(client, followup_client, followup_runtime,
                                                         fgroup: Group) -> None:
    _, vehicle = await car(client, followup_runtime, fgroup)
    a = await booked(followup_client, fgroup, vehicle["plate"], slot(followup_runtime))
    assert a["advisor_id"] is None
    # Naming the advisor later routes the D-3/D-1 tasks to them.
    advisor = await staff_id(client, fgroup, Role.SERVICE_ADVISOR)
    named = await followup_client.patch(f"{URL}/{a['id']}", json={"advisor_id": advisor},
                                        headers={**fgroup.headers(Role.CS_AGENT), "If-Match": 'W/"1"'})
    assert named.status_code == 200 and named.json()["advisor_id"] == advisor
    rows = await planned(followup_runtime, fgroup, a["id"])
    assert all(r.context["advisor_id"] == advisor and r.state == "scheduled" for r in rows.values())
    assert field_of(await move(followup_client, fgroup, a["id"], "cancelled")) == "body.reason"
    assert field_of(await move(followup_client, fgroup, a["id"], "cancelled", reason="x", satisfaction=3)) \
        == "body.satisfaction"
    resp = await move(followup_client, fgroup, a["id"], "cancelled", reason="customer travels")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "cancelled" and resp.json()["cancel_reason"] == "customer travels"
    rows = await planned(followup_runtime, fgroup, a["id"])
    assert set(rows) == RULES
    assert all(r.state == "cancelled" and r.reason == "appointment cancelled" for r in rows.values())
    later = await move(followup_client, fgroup, a["id"], "arrived")
    assert later.status_code == 409 and "cancelled" in later.json()["detail"]
    patched = await followup_client.patch(f"{URL}/{a['id']}", json={"notes": "x"},
                                          headers={**fgroup.headers(Role.SERVICE_ADVISOR), "If-Match": "*"})
    assert patched.status_code == 409
    # The car may book again once its appointment is cancelled.
    await booked(followup_client, fgroup, vehicle["plate"], slot(followup_runtime, 6))


# --- reception workflow ------------------------------------------------------------------------------------------


async def test_reception_workflow_refuses_check_in_until_the_mandatory_fields_are_filled(
        client, followup_client, followup_runtime, fgroup: Group, event_tap: EventTap) -> None:
    _, vehicle = await car(client, followup_runtime, fgroup)  # no advisor of their own
    a = await booked(followup_client, fgroup, vehicle["plate"], slot(followup_runtime), mileage_km=9000)
    assert a["advisor_id"] is None
    skip = await move(followup_client, fgroup, a["id"], "in_workshop", mileage_km=10_000)
    assert skip.status_code == 409 and "arrived" in skip.json()["detail"]
    assert (await move(followup_client, fgroup, a["id"], "arrived")).json()["status"] == "arrived"
    rows = await planned(followup_runtime, fgroup, a["id"])
    assert all(r.state == "cancelled" and r.reason == "appointment arrived" for r in rows.values())

    assert field_of(await move(followup_client, fgroup, a["id"], "in_workshop")) == "body.mileage_km"
    assert field_of(await move(followup_client, fgroup, a["id"], "in_workshop", mileage_km=10_000)) \
        == "body.advisor_id"
    advisor = await staff_id(client, fgroup, Role.SERVICE_ADVISOR)
    checked_in = await move(followup_client, fgroup, a["id"], "in_workshop", mileage_km=10_000, advisor_id=advisor)
    assert checked_in.status_code == 200, checked_in.text
    assert checked_in.json()["mileage_km"] == 10_000 and checked_in.json()["advisor_id"] == advisor
    assert (await move(followup_client, fgroup, a["id"], "settled")).json()["status"] == "settled"
    assert field_of(await move(followup_client, fgroup, a["id"], "closed")) == "body.satisfaction"
    assert field_of(await move(followup_client, fgroup, a["id"], "closed", satisfaction=6)) == "body.satisfaction"
    closed = await move(followup_client, fgroup, a["id"], "closed", satisfaction=5)
    assert closed.status_code == 200 and closed.json()["status"] == "closed" and closed.json()["satisfaction"] == 5
    assert closed.headers["ETag"] == 'W/"5"'
    # Asking again for the status it has changes nothing.
    again = await move(followup_client, fgroup, a["id"], "closed", satisfaction=5)
    assert again.status_code == 200 and again.headers["ETag"] == 'W/"5"'

    changes = await event_tap.wait_for("followup.appointment.changed.v1", subject=a["id"], count=4)
    by_change = {e.data["change"]: e.data for e in changes}
    assert set(by_change) == {"arrived", "in_workshop", "settled", "closed"}
    assert by_change["closed"]["satisfaction"] == 5 and by_change["closed"]["service_date"] is not None
    listed = await followup_client.get(URL, params={"status": "closed"}, headers=fgroup.headers(Role.SERVICE_ADVISOR))
    assert [x["id"] for x in listed.json()["items"]] == [a["id"]]
    async with followup_runtime.sessionmaker() as s:
        actions = (await s.scalars(sa.select(AuditEntry.action).where(
            AuditEntry.tenant_id == fgroup.tenant_id, AuditEntry.record_id == uuid.UUID(a["id"]))
            .order_by(AuditEntry.at))).all()
    assert actions == ["create", "arrived", "in_workshop", "settled", "closed"]


async def test_no_show_only_once_the_slot_has_started(client, followup_client, followup_runtime: FollowupRuntime,
                                                      fgroup: Group) -> None:
    _, vehicle = await car(client, followup_runtime, fgroup)
    start = slot(followup_runtime)
    a = await booked(followup_client, fgroup, vehicle["plate"], start)
    early = await move(followup_client, fgroup, a["id"], "no_show")
    assert early.status_code == 409 and "not started" in early.json()["detail"]
    await advance(followup_runtime, start - followup_runtime.clock.now() + timedelta(minutes=20))
    late = await move(followup_client, fgroup, a["id"], "no_show", reason="did not come, no answer")
    assert late.status_code == 200 and late.json()["status"] == "no_show"


async def test_other_stores_see_nothing(client, followup_client, followup_runtime, fgroup: Group) -> None:
    _, vehicle = await car(client, followup_runtime, fgroup)
    a = await booked(followup_client, fgroup, vehicle["plate"], slot(followup_runtime))
    b = fgroup.headers(Role.SERVICE_ADVISOR, "B")
    assert (await followup_client.get(f"{URL}/{a['id']}", headers=b)).status_code == 404
    assert (await followup_client.patch(f"{URL}/{a['id']}", json={"notes": "x"},
                                        headers={**b, "If-Match": "*"})).status_code == 404
    assert (await followup_client.post(f"{URL}/{a['id']}/transition", json={"to": "arrived"},
                                       headers={**b, "If-Match": "*"})).status_code == 404
    assert (await followup_client.get(URL, headers=b)).json()["items"] == []
    assert (await followup_client.get(URL, params={"store_id": str(fgroup.store_a)}, headers=b)).status_code == 404
    assert (await followup_client.get(f"{URL}/slots", params={"store_id": str(fgroup.store_a), "day": "2030-01-07"},
                                      headers=b)).status_code == 404
    # Store A's plate is unknown in store B.
    assert field_of(await book(followup_client, fgroup, vehicle["plate"], slot(followup_runtime, 8),
                               store="B")) == "body.plate"
    # The group's CS director sees every store.
    director = await followup_client.get(f"{URL}/{a['id']}", headers=fgroup.headers(Role.CS_DIRECTOR))
    assert director.status_code == 200


# --- the D-1 confirmation call fires for the advisor -----------------------------------------------------------


async def test_the_day_before_the_advisor_gets_the_confirmation_call(
        client, followup_client, followup_runtime: FollowupRuntime, fgroup: Group, event_tap: EventTap) -> None:
    advisor = await staff_id(client, fgroup, Role.SERVICE_ADVISOR)
    _, vehicle = await car(client, followup_runtime, fgroup)
    a = await booked(followup_client, fgroup, vehicle["plate"], slot(followup_runtime), advisor_id=advisor)
    rows = await planned(followup_runtime, fgroup, a["id"])
    parts, confirm = rows["appointment_parts_check"], rows["appointment_confirm_call"]
    # D-3: the parts check; D-1: the confirmation call (each fired on its day).
    for row in (parts, confirm):
        await advance(followup_runtime, row.due_at - followup_runtime.clock.now() + timedelta(minutes=1))
        await fire_all(followup_runtime)

    async def fired() -> list:
        return await tasks(followup_runtime, fgroup.tenant_id, followup_id=confirm.id)

    task = (await eventually(fired))[0]
    assert task.rule_key == "appointment_confirm_call" and str(task.assignee_id) == advisor
    assert task.role == "service_advisor" and task.status == "open"
    assert task.customer_id == uuid.UUID(a["customer_id"]) and task.vehicle_id == uuid.UUID(a["vehicle_id"])
    checks = await tasks(followup_runtime, fgroup.tenant_id, followup_id=parts.id)
    assert len(checks) == 1 and checks[0].rule_key == "appointment_parts_check"
    assert str(checks[0].assignee_id) == advisor
    rows = await planned(followup_runtime, fgroup, a["id"])
    assert {r.state for r in rows.values()} == {"fired"}

    # The customer cancels on the call: the appointment's open tasks are closed with the reason.
    resp = await move(followup_client, fgroup, a["id"], "cancelled", reason="car sold")
    assert resp.status_code == 200, resp.text
    for t in (task, checks[0]):
        done = (await tasks(followup_runtime, fgroup.tenant_id, id=t.id))[0]
        assert done.status == "cancelled" and done.outcome["cancel_reason"] == "appointment cancelled: car sold"
    completed = await event_tap.wait_for("followup.task.completed.v1", subject=str(task.id))
    assert completed[0].data["status"] == "cancelled"
