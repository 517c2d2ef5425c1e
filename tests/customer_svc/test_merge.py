"""Duplicates across a dealer group's stores, and merging two records of one person in a store."""

from __future__ import annotations

import uuid

import httpx

from shared.auth.roles import Role
from shared.testing.events import EventTap
from tests.conftest import Group, new_phone
from tests.customer_svc.factories import audit_actions, new_customer, new_vehicle

ID_NUMBER = "11010519491231002X"  # the check-digit example of GB 11643, not a real person's


def masked(e164: str) -> str:
    return f"{e164[3:6]}****{e164[-4:]}"


async def consent(client: httpx.AsyncClient, group: Group, customer: dict, channel: str, purpose: str,
                  granted: bool) -> None:
    resp = await client.put(f"/api/v1/customers/{customer['id']}/consents", headers=group.headers(), json={
        "channel": channel, "purpose": purpose, "granted": granted, "source": "test"})
    assert resp.status_code == 200, resp.text


async def merge(client: httpx.AsyncClient, group: Group, survivor: dict, duplicate: dict,
                role: Role = Role.SERVICE_MANAGER, etag: str | None = None) -> httpx.Response:
    headers = group.headers(role, **{"If-Match": etag or f'W/"{survivor["version"]}"'})
    return await client.post(f"/api/v1/customers/{survivor['id']}/merge", json={"duplicate_id": duplicate["id"]},
                             headers=headers)


class TestDuplicates:
    async def test_other_stores_show_only_keys_outside_your_stores(self, client: httpx.AsyncClient,
                                                                  group: Group) -> None:
        phone = new_phone()
        store_c = await client.post("/api/v1/stores", json={"code": "C", "name": "Store C"}, headers=group.headers())
        assert store_c.status_code == 201, store_c.text
        group.stores["C"] = uuid.UUID(store_c.json()["id"])
        me = await new_customer(client, group, "A", phones=[{"number": phone}], id_number=ID_NUMBER)
        by_both = await new_customer(client, group, "B", name="李四", phones=[{"number": phone}], id_number=ID_NUMBER)
        by_phone = await new_customer(client, group, "C", name="王五", phones=[{"number": phone}])
        await new_customer(client, group, "B")  # unrelated

        url = f"/api/v1/customers/{me['id']}/duplicates"
        resp = await client.get(url, headers=group.headers(Role.SALES_CONSULTANT, "A"))
        assert resp.status_code == 200, resp.text
        found = resp.json()
        assert [(d["id"], d["store_id"], sorted(d["matched"]), d["in_your_stores"]) for d in found] == [
            (by_both["id"], str(group.store_b), ["id_number", "phone"], False),
            (by_phone["id"], str(group.stores["C"]), ["phone"], False)]
        assert all(d["name"] is None and d["phone"] is None and d["customer_no"] is None for d in found)

        admin = (await client.get(url, headers=group.headers(Role.ADMIN))).json()
        assert [(d["name"], d["phone"], d["customer_no"]) for d in admin] == [
            ("李四", phone, by_both["customer_no"]), ("王五", phone, by_phone["customer_no"])]

        # A customer-service agent working in all three stores sees the records, masked (no PII permission).
        agent = await client.get("/api/v1/staff", params={"q": "cs_agent-A"}, headers=group.headers())
        token, _ = group.runtime.issuer.issue(subject=uuid.UUID(agent.json()["items"][0]["id"]),
                                              tenant_id=group.tenant_id, store_ids=list(group.stores.values()),
                                              roles=[Role.CS_AGENT.value])
        both = (await client.get(url, headers={"Authorization": f"Bearer {token}"})).json()
        assert [(d["name"], d["phone"], d["in_your_stores"]) for d in both] == [
            ("李*", masked(phone), True), ("王*", masked(phone), True)]

        assert (await client.get(f"/api/v1/customers/{by_both['id']}/duplicates",
                                 headers=group.headers(Role.SALES_CONSULTANT, "A"))).status_code == 404
        lonely = await new_customer(client, group, "A")
        assert (await client.get(f"/api/v1/customers/{lonely['id']}/duplicates", headers=group.headers())).json() == []


class TestMerge:
    async def test_merge_folds_the_duplicate_into_the_survivor(self, client: httpx.AsyncClient, group: Group,
                                                               event_tap: EventTap) -> None:
        survivor = await new_customer(client, group, tags=["fleet"])
        dup = await new_customer(client, group, tags=["vip"], birthday="1980-05-06", occupation="teacher",
                                 relationship_type="owner", id_number=ID_NUMBER)
        await consent(client, group, dup, "sms", "service", True)
        await consent(client, group, survivor, "sms", "service", False)  # later: the survivor's answer stands
        await consent(client, group, survivor, "sms", "marketing", True)
        await consent(client, group, dup, "sms", "marketing", False)  # later: the duplicate's answer wins
        await consent(client, group, dup, "wechat", "service", True)  # only the duplicate has it
        survivor = (await client.get(f"/api/v1/customers/{survivor['id']}", headers=group.headers())).json()
        vehicle = await new_vehicle(client, group, dup["id"])
        tier = (await client.post("/api/v1/membership-tiers", headers=group.headers(), json={
            "name": "普通会员", "discount_rate": "0.95"})).json()
        membership = (await client.post("/api/v1/memberships", headers=group.headers(), json={
            "card_no": "VIPMERGE1", "vehicle_id": vehicle["id"], "tier_id": tier["id"]})).json()
        visit = (await client.post("/api/v1/visits", headers=group.headers(), json={
            "vehicle_id": vehicle["id"], "visit_type": "maintenance",
            "completed_at": "2026-01-05T10:00:00+08:00"})).json()

        resp = await merge(client, group, survivor, dup)
        assert resp.status_code == 200, resp.text
        merged = resp.json()
        assert [p["number"] for p in merged["phones"]] == [survivor["phones"][0]["number"], dup["phones"][0]["number"]]
        assert [p["primary"] for p in merged["phones"]] == [True, False]
        assert merged["tags"] == ["fleet", "vip"]
        assert {(c["channel"], c["purpose"]): c["granted"] for c in merged["consents"]} == {
            ("sms", "service"): False, ("sms", "marketing"): False, ("wechat", "service"): True}
        assert (merged["birthday"], merged["occupation"], merged["id_number"], merged["relationship_type"]) == (
            "1980-05-06", "teacher", ID_NUMBER, "owner")
        assert resp.headers["etag"] == f'W/"{survivor["version"] + 1}"'

        h = group.headers()
        assert (await client.get(f"/api/v1/customers/{dup['id']}", headers=h)).status_code == 404
        by_phone = (await client.get("/api/v1/customers", params={"phone": dup["phones"][0]["number"]},
                                     headers=h)).json()
        assert [c["id"] for c in by_phone["items"]] == [survivor["id"]]
        car = (await client.get(f"/api/v1/vehicles/{vehicle['id']}", headers=h)).json()
        assert car["customer_id"] == survivor["id"] and car["version"] == vehicle["version"] + 1
        owners = (await client.get(f"/api/v1/vehicles/{vehicle['id']}/ownership", headers=h)).json()
        assert [(o["customer_id"], o["ended_at"] is None) for o in owners] == [
            (dup["id"], False), (survivor["id"], True)]
        assert (await client.get(f"/api/v1/memberships/{membership['id']}", headers=h)).json()["customer_id"] \
            == survivor["id"]
        assert (await client.get(f"/api/v1/visits/{visit['id']}", headers=h)).json()["customer_id"] == survivor["id"]

        [event] = await event_tap.wait_for("customer.customer.merged.v1", subject=survivor["id"])
        assert event.data["merged_id"] == dup["id"]
        await event_tap.wait_for("customer.customer.updated.v1", subject=survivor["id"],
                                 where=lambda e: "phones" in e.data["changed"] and e.data["tags"] == ["fleet", "vip"])
        await event_tap.wait_for("customer.customer.consent_changed.v1", subject=survivor["id"],
                                 where=lambda e: e.data["channel"] == "wechat" and e.data["granted"] is True)
        await event_tap.wait_for("customer.membership.changed.v1", subject=membership["id"],
                                 where=lambda e: e.data["change"] == "customer_merged"
                                 and e.data["customer_id"] == survivor["id"])
        assert (await audit_actions(client, group, survivor["id"]))[0] == "merge"
        assert (await audit_actions(client, group, dup["id"]))[0] == "merged"

        again = await merge(client, group, survivor, dup)  # the old ETag: a retry of the same merge
        assert again.status_code == 200 and again.json()["version"] == merged["version"]
        other = await new_customer(client, group)
        assert (await merge(client, group, other, dup)).status_code == 422

    async def test_rules_and_permissions(self, client: httpx.AsyncClient, group: Group) -> None:
        survivor, dup = await new_customer(client, group), await new_customer(client, group)
        in_b = await new_customer(client, group, "B")
        url = f"/api/v1/customers/{survivor['id']}/merge"
        assert (await merge(client, group, survivor, dup, role=Role.SALES_CONSULTANT)).status_code == 403
        assert (await client.post(url, json={"duplicate_id": dup["id"]},
                                  headers=group.headers(Role.SALES_MANAGER))).status_code == 428
        assert (await merge(client, group, survivor, dup, etag='W/"7"')).status_code == 412
        for duplicate_id in (survivor["id"], in_b["id"], str(uuid.uuid4())):
            resp = await merge(client, group, survivor, {"id": duplicate_id}, role=Role.ADMIN)
            assert resp.status_code == 422, resp.text
            assert resp.json()["errors"][0]["field"] == "body.duplicate_id"
        bad = await client.post(url, json={"duplicate_id": "nope"},
                                headers=group.headers(Role.ADMIN, **{"If-Match": "*"}))
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.duplicate_id"
        assert (await merge(client, group, survivor, dup, role=Role.SERVICE_MANAGER)).status_code == 200
        b_manager = group.headers(Role.SERVICE_MANAGER, "B", **{"If-Match": "*"})
        assert (await client.post(url, json={"duplicate_id": dup["id"]}, headers=b_manager)).status_code == 404
        gone = await client.post(f"/api/v1/customers/{dup['id']}/merge", json={"duplicate_id": survivor["id"]},
                                 headers=group.headers(Role.ADMIN, **{"If-Match": "*"}))
        assert gone.status_code == 404
