"""Service visits through the REST API: recording moves the odometer, DMS re-posts are idempotent, store scoping."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import sqlalchemy as sa

from customer_svc.models import MileageReading
from shared.auth.roles import Role
from shared.testing.events import EventTap
from tests.conftest import Group
from tests.customer_svc.factories import (audit_actions, integration_headers, new_customer, new_vehicle,
                                          staff_id)

ADVISOR = Role.SERVICE_ADVISOR


def visit_body(vehicle_id: str, **fields: object) -> dict:
    body: dict = {"vehicle_id": vehicle_id, "visit_type": "maintenance", "ro_number": "RO-TEST-1",
                  "completed_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}
    body.update(fields)
    return body


async def post_visit(client: httpx.AsyncClient, group: Group, body: dict, role: Role = ADVISOR,
                     store: str = "A", **headers: str) -> httpx.Response:
    return await client.post("/api/v1/visits", json=body, headers=group.headers(role, store, **headers))


async def visits_of(client: httpx.AsyncClient, group: Group, vehicle: dict, store: str = "A") -> list[str]:
    resp = await client.get("/api/v1/visits", params={"vehicle_id": vehicle["id"]},
                            headers=group.headers(ADVISOR, store))
    assert resp.status_code == 200, resp.text
    return [v["id"] for v in resp.json()["items"]]


class TestRecord:
    async def test_visit_takes_owner_and_store_moves_odometer_and_publishes(
            self, client: httpx.AsyncClient, group: Group, event_tap: EventTap) -> None:
        vehicle = await new_vehicle(client, group, mileage_km=1000)
        advisor = await staff_id(client, group, ADVISOR)
        resp = await post_visit(client, group, visit_body(
            vehicle["id"], visit_type="first_maintenance", mileage_km=5000, advisor_id=advisor,
            symptoms="Noise from the front left wheel",
            items=[{"code": "OIL", "name": "Oil change", "kind": "labour", "quantity": "1.5", "amount": "120.00"},
                   {"name": "Oil filter", "kind": "part", "quantity": 1}]))
        assert resp.status_code == 201, resp.text
        visit = resp.json()
        assert resp.headers["location"] == f"/api/v1/visits/{visit['id']}"
        assert (visit["customer_id"], visit["store_id"]) == (vehicle["customer_id"], str(group.store_a))
        assert [(i["kind"], Decimal(i["quantity"]), i["amount"] and Decimal(i["amount"])) for i in visit["items"]] == [
            ("labour", Decimal("1.5"), Decimal(120)), ("part", Decimal(1), None)]

        car = (await client.get(f"/api/v1/vehicles/{vehicle['id']}", headers=group.headers())).json()
        assert car["mileage_km"] == 5000 and car["version"] == vehicle["version"] + 1
        async with group.runtime.sessionmaker() as session:
            readings = (await session.execute(sa.select(MileageReading.km, MileageReading.source).where(
                MileageReading.vehicle_id == uuid.UUID(vehicle["id"])).order_by(MileageReading.km))).all()
        assert [tuple(r) for r in readings] == [(1000, "registration"), (5000, "visit")]

        [event] = await event_tap.wait_for("customer.visit.completed.v1", subject=visit["id"])
        assert event.data["mileage_km"] == 5000 and event.data["visit_type"] == "first_maintenance"
        assert event.data["customer_id"] == vehicle["customer_id"] and event.storeid == str(group.store_a)
        await event_tap.wait_for("customer.vehicle.updated.v1", subject=vehicle["id"],
                                 where=lambda e: e.data["mileage_km"] == 5000)
        assert await audit_actions(client, group, visit["id"]) == ["create"]

    async def test_mileage_below_last_reading_is_422_and_changes_nothing(
            self, client: httpx.AsyncClient, group: Group) -> None:
        vehicle = await new_vehicle(client, group, mileage_km=8000)
        resp = await post_visit(client, group, visit_body(vehicle["id"], mileage_km=7999))
        assert resp.status_code == 422
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["errors"][0]["field"] == "body.mileage_km"
        car = (await client.get(f"/api/v1/vehicles/{vehicle['id']}", headers=group.headers())).json()
        assert car["mileage_km"] == 8000 and car["version"] == vehicle["version"]
        assert await visits_of(client, group, vehicle) == []

    async def test_same_external_id_returns_the_recorded_visit(self, client: httpx.AsyncClient, group: Group) -> None:
        vehicle = await new_vehicle(client, group)
        body = visit_body(vehicle["id"], external_id="DMS-RO-77", mileage_km=3000)
        first = await post_visit(client, group, body)
        assert first.status_code == 201, first.text
        again = await post_visit(client, group, {**body, "ro_number": "RO-CHANGED", "mileage_km": 3100})
        assert again.status_code == 200, again.text
        assert again.json() == first.json()
        assert await visits_of(client, group, vehicle) == [first.json()["id"]]
        car = (await client.get(f"/api/v1/vehicles/{vehicle['id']}", headers=group.headers())).json()
        assert car["mileage_km"] == 3000

        other = await new_vehicle(client, group)
        clash = await post_visit(client, group, visit_body(other["id"], external_id="DMS-RO-77"))
        assert clash.status_code == 409 and clash.json()["existing_id"] == first.json()["id"]

    async def test_idempotency_key_replays_first_response(self, client: httpx.AsyncClient, group: Group) -> None:
        vehicle = await new_vehicle(client, group)
        key = {"Idempotency-Key": str(uuid.uuid4())}
        body = visit_body(vehicle["id"])
        first = await post_visit(client, group, body, **key)
        again = await post_visit(client, group, body, **key)
        assert first.status_code == again.status_code == 201
        assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
        assert len(await visits_of(client, group, vehicle)) == 1

    async def test_bad_input_is_422_naming_the_field(self, client: httpx.AsyncClient, group: Group) -> None:
        vehicle = await new_vehicle(client, group)
        store_b_vehicle = await new_vehicle(client, group, store="B")
        inactive = await staff_id(client, group, Role.CS_AGENT)
        deactivate = await client.patch(f"/api/v1/staff/{inactive}", json={"active": False},
                                        headers=group.headers(**{"If-Match": "*"}))
        assert deactivate.status_code == 200, deactivate.text
        future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        cases = {
            "body.completed_at": visit_body(vehicle["id"], completed_at="2026-01-05T10:00:00"),
            "body.visit_type": visit_body(vehicle["id"], visit_type="car_wash"),
            "body.items.0.kind": visit_body(vehicle["id"], items=[{"name": "Wash", "kind": "service"}]),
            "body.items.0.quantity": visit_body(vehicle["id"], items=[{"name": "Filter", "kind": "part",
                                                                       "quantity": 0}]),
            "body.mileage_km": visit_body(vehicle["id"], mileage_km=-1),
            "body.colour": visit_body(vehicle["id"], colour="red"),
            "body.advisor_id": visit_body(vehicle["id"], advisor_id=str(uuid.uuid4())),
            "body.vehicle_id": visit_body(store_b_vehicle["id"]),
        }
        for field, body in cases.items():
            resp = await post_visit(client, group, body)
            assert resp.status_code == 422, (field, resp.text)
            assert resp.json()["errors"][0]["field"] == field, (field, resp.json())
        for when in (future, "0001-01-01T00:00:00+14:00", 1767225600, "1767225600"):
            resp = await post_visit(client, group, visit_body(vehicle["id"], completed_at=when))
            assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "body.completed_at", when
        by_inactive = await post_visit(client, group, visit_body(vehicle["id"], advisor_id=inactive))
        assert by_inactive.status_code == 422 and by_inactive.json()["errors"][0]["field"] == "body.advisor_id"

    async def test_who_may_record(self, client: httpx.AsyncClient, group: Group) -> None:
        vehicle = await new_vehicle(client, group)
        assert (await post_visit(client, group, visit_body(vehicle["id"]), role=Role.CS_AGENT)).status_code == 403
        dms = await client.post("/api/v1/visits", json=visit_body(vehicle["id"], external_id="DMS-9"),
                                headers=integration_headers(group, ["visits:write"]))
        assert dms.status_code == 201, dms.text
        url = f"/api/v1/visits/{dms.json()['id']}"
        assert (await client.get(url, headers=integration_headers(group, ["visits:read"]))).status_code == 200
        assert (await client.get(url, headers=integration_headers(group, ["visits:read"], "B"))).status_code == 404
        read_only = await client.post("/api/v1/visits", json=visit_body(vehicle["id"]),
                                      headers=integration_headers(group, ["customers:read"]))
        assert read_only.status_code == 403


class TestRead:
    async def test_store_b_cannot_see_store_a_visits(self, client: httpx.AsyncClient, group: Group) -> None:
        vehicle = await new_vehicle(client, group)
        visit = (await post_visit(client, group, visit_body(vehicle["id"]))).json()
        url = f"/api/v1/visits/{visit['id']}"
        assert (await client.get(url, headers=group.headers(ADVISOR, "A"))).status_code == 200
        hidden = await client.get(url, headers=group.headers(ADVISOR, "B"))
        assert hidden.status_code == 404 and hidden.headers["content-type"] == "application/problem+json"
        assert await visits_of(client, group, vehicle, "B") == []
        assert (await post_visit(client, group, visit_body(vehicle["id"]), store="B")).status_code == 422
        assert (await client.get(f"/api/v1/visits/{uuid.uuid4()}", headers=group.headers())).status_code == 404

    async def test_filters_and_cursor_pages(self, client: httpx.AsyncClient, group: Group) -> None:
        customer = await new_customer(client, group)
        car1 = await new_vehicle(client, group, customer["id"])
        car2 = await new_vehicle(client, group, customer["id"])
        now = datetime.now(UTC)
        made = {}
        for name, car, kind, days_ago in (("old", car1, "maintenance", 40), ("repair", car1, "minor_repair", 10),
                                          ("recent", car2, "maintenance", 2)):
            when = (now - timedelta(days=days_ago)).isoformat()
            resp = await post_visit(client, group, visit_body(car["id"], visit_type=kind, completed_at=when))
            assert resp.status_code == 201, resp.text
            made[name] = resp.json()["id"]

        async def ids(**params: str) -> set[str]:
            resp = await client.get("/api/v1/visits", params=params, headers=group.headers())
            assert resp.status_code == 200, resp.text
            return {v["id"] for v in resp.json()["items"]}

        assert await ids(customer_id=customer["id"]) == set(made.values())
        assert await ids(vehicle_id=car1["id"]) == {made["old"], made["repair"]}
        assert await ids(customer_id=customer["id"], visit_type="maintenance") == {made["old"], made["recent"]}
        assert await ids(customer_id=customer["id"], completed_from=(now - timedelta(days=15)).isoformat(),
                         completed_to=(now - timedelta(days=5)).isoformat()) == {made["repair"]}

        seen, cursor = [], None
        while True:
            page = (await client.get("/api/v1/visits", headers=group.headers(), params={
                "customer_id": customer["id"], "limit": 1, **({"cursor": cursor} if cursor else {})})).json()
            seen += [v["id"] for v in page["items"]]
            if (cursor := page["next_cursor"]) is None:
                break
        assert sorted(seen) == sorted(made.values())

        for bad in ("2026-01-01T00:00:00", "0001-01-01T00:00:00+14:00", "1767225600"):
            resp = await client.get("/api/v1/visits", params={"completed_from": bad}, headers=group.headers())
            assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "query.completed_from", bad
        backwards = await client.get("/api/v1/visits", headers=group.headers(), params={
            "completed_from": now.isoformat(), "completed_to": (now - timedelta(days=1)).isoformat()})
        assert backwards.status_code == 422 and backwards.json()["errors"][0]["field"] == "query.completed_to"
        bad_type = await client.get("/api/v1/visits", params={"visit_type": "wash"}, headers=group.headers())
        assert bad_type.status_code == 422
