"""Membership through the REST API: editable tiers, joining by vehicle, upgrade / renew / withdraw / delete,
and the points ledger (single and all-or-nothing batch adjustments with a named operator)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal

import httpx
import pytest
import sqlalchemy as sa

from customer_svc.models import Membership
from shared.auth.roles import Role
from shared.testing.events import EventTap
from tests.conftest import Group
from tests.customer_svc.factories import audit_actions, new_customer, new_vehicle, staff_id

CS = Role.CS_AGENT


async def new_tier(client: httpx.AsyncClient, group: Group, name: str, rate: str, fee: str, bonus: int) -> dict:
    resp = await client.post("/api/v1/membership-tiers", headers=group.headers(Role.SERVICE_MANAGER),
                             json={"name": name, "discount_rate": rate, "fee": fee, "bonus_points": bonus})
    assert resp.status_code == 201, resp.text
    return resp.json()


@pytest.fixture
async def tiers(client: httpx.AsyncClient, group: Group) -> dict[str, dict]:
    """The textbook's tiers: 普通 ¥1,000 -> 100 points, 金卡 ¥3,000 -> 300 points."""
    return {"normal": await new_tier(client, group, "普通会员", "0.95", "1000", 100),
            "gold": await new_tier(client, group, "金卡会员", "0.85", "3000", 300)}


async def join(client: httpx.AsyncClient, group: Group, tier: dict, vehicle: dict | None = None,
               store: str = "A", **fields: object) -> dict:
    vehicle = vehicle or await new_vehicle(client, group, store=store)
    resp = await client.post("/api/v1/memberships", headers=group.headers(CS, store), json={
        "card_no": f"VIP{uuid.uuid4().hex[:10]}", "vehicle_id": vehicle["id"], "tier_id": tier["id"], **fields})
    assert resp.status_code == 201, resp.text
    return resp.json()


async def patch(client: httpx.AsyncClient, group: Group, membership: dict, body: dict,
                role: Role = CS) -> httpx.Response:
    return await client.patch(f"/api/v1/memberships/{membership['id']}", json=body,
                              headers=group.headers(role, **{"If-Match": f'W/"{membership["version"]}"'}))


def field_of(resp: httpx.Response) -> str:
    assert resp.status_code == 422, resp.text
    return resp.json()["errors"][0]["field"]


class TestTiers:
    async def test_managers_edit_tiers_with_if_match(self, client: httpx.AsyncClient, group: Group) -> None:
        body = {"name": "银卡会员", "discount_rate": "0.9", "fee": "2000", "bonus_points": 200}
        denied = await client.post("/api/v1/membership-tiers", json=body, headers=group.headers(Role.SALES_CONSULTANT))
        assert denied.status_code == 403
        tier = await new_tier(client, group, **{"name": "银卡会员", "rate": "0.9", "fee": "2000", "bonus": 200})
        assert Decimal(tier["discount_rate"]) == Decimal("0.9") and tier["version"] == 1
        again = await client.post("/api/v1/membership-tiers", json=body, headers=group.headers(Role.ADMIN))
        assert again.status_code == 409 and again.json()["existing_id"] == tier["id"]

        url = f"/api/v1/membership-tiers/{tier['id']}"
        assert (await client.patch(url, json={"discount_rate": "0.88"}, headers=group.headers())).status_code == 428
        changed = await client.patch(url, json={"discount_rate": "0.88", "name": "银卡"},
                                     headers=group.headers(Role.CS_MANAGER, **{"If-Match": 'W/"1"'}))
        assert changed.status_code == 200, changed.text
        assert Decimal(changed.json()["discount_rate"]) == Decimal("0.88") and changed.headers["etag"] == 'W/"2"'
        stale = await client.patch(url, json={"fee": "1"}, headers=group.headers(**{"If-Match": 'W/"1"'}))
        assert stale.status_code == 412
        assert (await client.patch(url, json={"fee": "1"}, headers=group.headers(
            CS, **{"If-Match": 'W/"2"'}))).status_code == 403
        listed = (await client.get("/api/v1/membership-tiers", headers=group.headers(CS, "B"))).json()
        assert [t["name"] for t in listed] == ["银卡"]
        assert "update" in await audit_actions(client, group, tier["id"])

    @pytest.mark.parametrize(("body", "field"), [
        ({"name": "X", "discount_rate": "0"}, "body.discount_rate"),
        ({"name": "X", "discount_rate": "1.2"}, "body.discount_rate"),
        ({"name": "X", "discount_rate": "0.9555"}, "body.discount_rate"),
        ({"name": "X", "discount_rate": "0.9", "fee": "-1"}, "body.fee"),
        ({"name": "", "discount_rate": "0.9"}, "body.name"),
        ({"name": "X", "discount_rate": "0.9", "colour": "gold"}, "body.colour"),
    ])
    async def test_bad_tier_is_422(self, client: httpx.AsyncClient, group: Group, body: dict, field: str) -> None:
        assert field_of(await client.post("/api/v1/membership-tiers", json=body, headers=group.headers())) == field


class TestJoin:
    async def test_join_takes_owner_store_default_year_and_bonus(
            self, client: httpx.AsyncClient, group: Group, tiers: dict, event_tap: EventTap) -> None:
        vehicle = await new_vehicle(client, group)
        m = await join(client, group, tiers["normal"], vehicle, joined_at="2026-01-01")
        assert (m["customer_id"], m["store_id"]) == (vehicle["customer_id"], str(group.store_a))
        assert (m["joined_at"], m["expires_at"], m["status"]) == ("2026-01-01", "2027-01-01", "active")
        assert m["tier"]["name"] == "普通会员" and Decimal(m["tier"]["discount_rate"]) == Decimal("0.95")
        assert m["points_balance"] == 100 and Decimal(m["fee_paid"]) == 1000
        ledger = (await client.get(f"/api/v1/memberships/{m['id']}/points", headers=group.headers(CS))).json()
        assert [(e["kind"], e["delta"], e["balance_after"]) for e in ledger["items"]] == [("bonus", 100, 100)]
        [event] = await event_tap.wait_for("customer.membership.changed.v1", subject=m["id"])
        assert (event.data["change"], event.data["points_balance"], event.data["tier"]) == ("joined", 100, "普通会员")
        by_card = (await client.get("/api/v1/memberships", params={"card_no": m["card_no"]},
                                    headers=group.headers(CS))).json()
        assert [x["id"] for x in by_card["items"]] == [m["id"]]

    async def test_fee_not_paid_in_full_earns_no_bonus(self, client: httpx.AsyncClient, group: Group,
                                                       tiers: dict) -> None:
        m = await join(client, group, tiers["normal"], fee_paid="500")
        assert m["points_balance"] == 0 and Decimal(m["fee_paid"]) == 500
        term = date.fromisoformat(m["expires_at"]) - date.fromisoformat(m["joined_at"])
        assert term in (timedelta(365), timedelta(366))

    async def test_card_and_vehicle_are_taken_once(self, client: httpx.AsyncClient, group: Group, tiers: dict) -> None:
        vehicle = await new_vehicle(client, group)
        m = await join(client, group, tiers["normal"], vehicle)
        other = await new_vehicle(client, group)
        same_card = await client.post("/api/v1/memberships", headers=group.headers(CS), json={
            "card_no": m["card_no"], "vehicle_id": other["id"], "tier_id": tiers["gold"]["id"]})
        assert same_card.status_code == 409 and same_card.json()["existing_id"] == m["id"]
        same_car = await client.post("/api/v1/memberships", headers=group.headers(CS), json={
            "card_no": "VIPOTHER1", "vehicle_id": vehicle["id"], "tier_id": tiers["gold"]["id"]})
        assert same_car.status_code == 409 and same_car.json()["existing_id"] == m["id"]

    async def test_bad_join_is_422(self, client: httpx.AsyncClient, group: Group, tiers: dict) -> None:
        vehicle = await new_vehicle(client, group)
        store_b_vehicle = await new_vehicle(client, group, store="B")
        ok = {"card_no": "VIP1", "vehicle_id": vehicle["id"], "tier_id": tiers["normal"]["id"]}
        cases = [
            ({**ok, "vehicle_id": str(uuid.uuid4())}, "body.vehicle_id"),
            ({**ok, "vehicle_id": store_b_vehicle["id"]}, "body.vehicle_id"),
            ({**ok, "tier_id": str(uuid.uuid4())}, "body.tier_id"),
            ({**ok, "card_no": "VIP 1"}, "body.card_no"),
            ({**ok, "joined_at": "2026-03-01", "expires_at": "2026-02-01"}, "body.expires_at"),
            ({**ok, "joined_at": "9999-12-31"}, "body.joined_at"),
            ({**ok, "joined_at": 1767225600}, "body.joined_at"),
            ({**ok, "fee_paid": "-5"}, "body.fee_paid"),
            ({**ok, "points": 5}, "body.points"),
        ]
        for body, field in cases:
            assert field_of(await client.post("/api/v1/memberships", json=body, headers=group.headers(CS))) == field


class TestChanges:
    async def test_a_sold_car_takes_its_previous_owners_membership_with_it(
            self, client: httpx.AsyncClient, group: Group, tiers: dict, event_tap: EventTap) -> None:
        """The card and its points were the previous owner's: the sale withdraws it (退会), the new owner joins
        with a card of their own, and a prospect who takes over a delivered car is an owner."""
        seller = await new_customer(client, group, relationship_type="owner")
        vehicle = await new_vehicle(client, group, seller["id"], purchase_date="2025-01-05",
                                    delivery_date="2025-01-10")
        m = await join(client, group, tiers["normal"], vehicle)
        buyer = await new_customer(client, group)
        assert buyer["relationship_type"] == "prospect"
        sold = await client.post(f"/api/v1/vehicles/{vehicle['id']}/transfer", json={"customer_id": buyer["id"]},
                                 headers=group.headers(Role.ADMIN))
        assert sold.status_code == 200, sold.text
        ended = (await client.get(f"/api/v1/memberships/{m['id']}", headers=group.headers(CS))).json()
        assert (ended["status"], ended["customer_id"], ended["points_balance"]) == ("withdrawn", seller["id"], 100)
        await event_tap.wait_for("customer.membership.changed.v1", subject=m["id"], where=lambda e: (
            e.data["change"], e.data["status"]) == ("status_changed", "withdrawn"))
        await join(client, group, tiers["normal"], vehicle)  # the car may hold the buyer's card now
        owner = (await client.get(f"/api/v1/customers/{buyer['id']}", headers=group.headers(Role.ADMIN))).json()
        assert owner["relationship_type"] == "owner"

    async def test_upgrade_renew_freeze_withdraw_delete(self, client: httpx.AsyncClient, group: Group, tiers: dict,
                                                        event_tap: EventTap) -> None:
        m = await join(client, group, tiers["normal"], joined_at=date.today().isoformat())
        assert (await client.patch(f"/api/v1/memberships/{m['id']}", json={"status": "frozen"},
                                   headers=group.headers(CS))).status_code == 428
        up = await patch(client, group, m, {"tier_id": tiers["gold"]["id"]})
        assert up.status_code == 200, up.text
        m = up.json()
        assert m["tier"]["name"] == "金卡会员" and m["points_balance"] == 400 and Decimal(m["fee_paid"]) == 4000
        renewed_to = (date.today() + timedelta(days=800)).isoformat()
        m = (await patch(client, group, m, {"expires_at": renewed_to})).json()
        assert m["expires_at"] == renewed_to
        m = (await patch(client, group, m, {"status": "frozen"})).json()
        operator = await staff_id(client, group, CS)
        frozen = await client.post(f"/api/v1/memberships/{m['id']}/points", headers=group.headers(CS),
                                   json={"delta": 10, "reason": "visit", "operator_id": operator})
        assert frozen.status_code == 422 and m["points_balance"] == 400

        not_yet = await client.delete(f"/api/v1/memberships/{m['id']}", headers=group.headers(Role.SERVICE_MANAGER))
        assert not_yet.status_code == 422
        m = (await patch(client, group, m, {"status": "withdrawn"})).json()
        assert field_of(await patch(client, group, m, {"fee_paid": "1"})) == "body.fee_paid"
        assert (await patch(client, group, m, {"status": "active"})).status_code == 422
        assert (await client.delete(f"/api/v1/memberships/{m['id']}", headers=group.headers(CS))).status_code == 403
        gone = await client.delete(f"/api/v1/memberships/{m['id']}", headers=group.headers(Role.SERVICE_MANAGER))
        assert gone.status_code == 204
        assert (await client.get(f"/api/v1/memberships/{m['id']}", headers=group.headers())).status_code == 404

        changes = [e.data["change"] for e in await event_tap.wait_for(
            "customer.membership.changed.v1", subject=m["id"], count=6)]
        assert changes == ["joined", "tier_changed", "renewed", "status_changed", "status_changed", "deleted"]
        assert await audit_actions(client, group, m["id"]) == ["delete", *["update"] * 4, "create"]

    async def test_renewing_an_expired_membership_reactivates_it(self, client: httpx.AsyncClient, group: Group,
                                                                 tiers: dict) -> None:
        m = await join(client, group, tiers["normal"], joined_at="2024-01-01")
        assert field_of(await patch(client, group, m, {"status": "expired", "expires_at": "2023-12-01"})) \
            == "body.expires_at"
        m = (await patch(client, group, m, {"status": "expired"})).json()
        assert field_of(await patch(client, group, m, {"status": "active"})) == "body.status"
        m = (await patch(client, group, m, {"expires_at": (date.today() + timedelta(days=30)).isoformat()})).json()
        assert m["status"] == "active"
        assert field_of(await patch(client, group, m, {"status": None})) == "body.status"


class TestPoints:
    async def test_single_adjustment_needs_an_operator_and_keeps_balance_non_negative(
            self, client: httpx.AsyncClient, group: Group, tiers: dict, event_tap: EventTap) -> None:
        m = await join(client, group, tiers["normal"])
        url = f"/api/v1/memberships/{m['id']}/points"
        operator = await staff_id(client, group, Role.SERVICE_ADVISOR)
        assert field_of(await client.post(url, json={"delta": 50, "reason": "spend"}, headers=group.headers(CS))) \
            == "body.operator_id"
        for body, field in (({"delta": 0, "reason": "x", "operator_id": operator}, "body.delta"),
                            ({"delta": 5, "reason": "", "operator_id": operator}, "body.reason"),
                            ({"delta": 5, "reason": "x", "operator_id": str(uuid.uuid4())}, "body.operator_id"),
                            ({"delta": -101, "reason": "redeem", "operator_id": operator}, "body.delta")):
            assert field_of(await client.post(url, json=body, headers=group.headers(CS))) == field
        resp = await client.post(url, json={"delta": -30, "reason": "redeemed a car wash", "operator_id": operator},
                                 headers=group.headers(CS))
        assert resp.status_code == 201, resp.text
        assert (resp.json()["delta"], resp.json()["balance_after"], resp.json()["operator_id"]) == (-30, 70, operator)
        current = (await client.get(f"/api/v1/memberships/{m['id']}", headers=group.headers(CS))).json()
        assert current["points_balance"] == 70 and current["version"] == m["version"] + 1
        ledger = (await client.get(url, headers=group.headers(CS))).json()["items"]
        assert [(e["delta"], e["balance_after"]) for e in ledger] == [(-30, 70), (100, 100)]
        await event_tap.wait_for("customer.membership.changed.v1", subject=m["id"], where=lambda e: (
            e.data["change"], e.data["points_balance"]) == ("points_adjusted", 70))
        assert (await audit_actions(client, group, m["id"]))[0] == "points"

    async def test_batch_is_all_or_nothing(self, client: httpx.AsyncClient, group: Group, tiers: dict) -> None:
        rich, poor = await join(client, group, tiers["gold"]), await join(client, group, tiers["normal"], fee_paid="0")
        operator = await staff_id(client, group, Role.CS_MANAGER)
        url = "/api/v1/memberships/points/batch"
        batch = {"operator_id": operator, "reason": "March spend",
                 "entries": [{"membership_id": rich["id"], "delta": 50}, {"membership_id": poor["id"], "delta": -1}]}
        assert field_of(await client.post(url, json=batch, headers=group.headers(CS))) == "body.entries.1.delta"
        unknown = {**batch, "entries": [{"membership_id": str(uuid.uuid4()), "delta": 5}]}
        assert field_of(await client.post(url, json=unknown, headers=group.headers(CS))) == \
            "body.entries.0.membership_id"
        empty = await client.post(url, json={**batch, "entries": []}, headers=group.headers(CS))
        assert field_of(empty) == "body.entries"
        for m, balance in ((rich, 300), (poor, 0)):
            current = (await client.get(f"/api/v1/memberships/{m['id']}", headers=group.headers(CS))).json()
            assert current["points_balance"] == balance

        batch["entries"] = [{"membership_id": rich["id"], "delta": 50}, {"membership_id": poor["id"], "delta": 20},
                            {"membership_id": poor["id"], "delta": -15}]
        resp = await client.post(url, json=batch, headers=group.headers(CS, **{"Idempotency-Key": str(uuid.uuid4())}))
        assert resp.status_code == 201, resp.text
        entries = resp.json()
        assert [(e["delta"], e["balance_after"]) for e in entries] == [(50, 350), (20, 20), (-15, 5)]
        assert len({e["batch_id"] for e in entries}) == 1 and entries[0]["batch_id"] is not None

        # A balance past what a card holds is the entry's 422, not a database error.
        async with group.runtime.sessionmaker() as session, session.begin():
            await session.execute(sa.update(Membership).where(Membership.id == uuid.UUID(rich["id"]))
                                  .values(points_balance=2**31 - 1_000))
        huge = {**batch, "entries": [{"membership_id": rich["id"], "delta": 1_000_000}]}
        assert field_of(await client.post(url, json=huge, headers=group.headers(CS))) == "body.entries.0.delta"


class TestIsolation:
    async def test_store_b_gets_404_on_store_a_memberships(self, client: httpx.AsyncClient, group: Group,
                                                           tiers: dict) -> None:
        m = await join(client, group, tiers["normal"])
        operator = await staff_id(client, group, CS, "B")
        b = group.headers(CS, "B")
        url = f"/api/v1/memberships/{m['id']}"
        assert (await client.get(url, headers=b)).status_code == 404
        assert (await client.patch(url, json={"status": "frozen"}, headers={**b, "If-Match": "*"})).status_code == 404
        assert (await client.get(f"{url}/points", headers=b)).status_code == 404
        assert (await client.post(f"{url}/points", json={"delta": 5, "reason": "x", "operator_id": operator},
                                  headers=b)).status_code == 404
        batch = {"operator_id": operator, "reason": "x", "entries": [{"membership_id": m["id"], "delta": 5}]}
        assert field_of(await client.post("/api/v1/memberships/points/batch", json=batch, headers=b)) == \
            "body.entries.0.membership_id"
        listed = (await client.get("/api/v1/memberships", params={"customer_id": m["customer_id"]}, headers=b)).json()
        assert listed["items"] == []
        assert (await client.get(url, headers=group.headers(CS, "A"))).json()["points_balance"] == 100
