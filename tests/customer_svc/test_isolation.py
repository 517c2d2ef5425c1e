"""Store and tenant isolation (OWASP API1, BOLA): a user of store A never reads, finds or changes store B's
customers and vehicles; group-wide roles (admin, cs_director) see every store of their own group; nobody
sees anything of another dealer group. Hidden records answer exactly like records that do not exist."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest

from customer_svc.app import CustomerRuntime
from shared.auth.roles import TENANT_WIDE, Role
from tests.conftest import Group, customer_body, make_group, new_phone
from tests.customer_svc.sample_data import create_customer, create_vehicle, eventually, new_vin

#: Every role bound to its own stores (everything except the group-wide roles and integrations).
STORE_ROLES = [r for r in Role if r not in TENANT_WIDE and r is not Role.INTEGRATION]
STORE_MANAGERS = [Role.SHOWROOM_MANAGER, Role.SALES_MANAGER, Role.SERVICE_MANAGER, Role.CS_MANAGER]
GROUP_WIDE = [Role.ADMIN, Role.CS_DIRECTOR]
PROBLEM = "application/problem+json"


@dataclass
class World:
    """One customer with a vehicle in each store; the store-B ones carry unique search keys."""

    a_customer: dict
    a_vehicle: dict
    b_customer: dict
    b_vehicle: dict

    @property
    def b_searches(self) -> list[dict[str, str]]:
        """Every way of finding the store-B customer."""
        b, v = self.b_customer, self.b_vehicle
        return [{"q": b["name"]}, {"q": b["customer_no"]}, {"phone": b["phones"][0]["number"]},
                {"phone": b["phones"][0]["number"][3:]}, {"plate": v["plate"]}, {"vin": v["vin"]},
                {"customer_no": b["customer_no"]}, {"tag": b["tags"][0]}, {"store_id": b["store_id"]}, {}]


@pytest.fixture
async def world(client: httpx.AsyncClient, group: Group) -> World:
    key = uuid.uuid4().hex[:10].upper()
    a = await create_customer(client, group, group.store_a, name=f"甲店客户{key}", tags=[f"iso-{key}"])
    b = await create_customer(client, group, group.store_b, role=Role.SALES_CONSULTANT, role_store="B",
                              name=f"乙店客户{key}", customer_no=f"ISO{key}", tags=[f"iso-{key}"],
                              id_number="11010519491231002X")
    return World(a, await create_vehicle(client, group, a["id"]), b,
                 await create_vehicle(client, group, b["id"], role=Role.SERVICE_ADVISOR, role_store="B"))


def assert_not_found(resp: httpx.Response) -> None:
    assert resp.status_code == 404, resp.text
    assert resp.headers["content-type"] == PROBLEM
    assert resp.json()["code"] == "not_found"


async def ids(client: httpx.AsyncClient, url: str, headers: dict[str, str], **params: str) -> list[str]:
    resp = await client.get(url, params=params, headers=headers)
    assert resp.status_code == 200, resp.text
    return [x["id"] for x in resp.json()["items"]]


async def admin_view(client: httpx.AsyncClient, group: Group, url: str) -> dict:
    resp = await client.get(url, headers=group.headers(Role.ADMIN))
    assert resp.status_code == 200, resp.text
    return resp.json()


class TestStoreUserReads:
    @pytest.mark.parametrize("role", STORE_ROLES)
    async def test_store_b_customer_is_not_found(self, client: httpx.AsyncClient, group: Group, world: World,
                                                 role: Role) -> None:
        headers = group.headers(role, "A")
        b = world.b_customer["id"]
        assert_not_found(await client.get(f"/api/v1/customers/{b}", headers=headers))
        assert_not_found(await client.get(f"/api/v1/customers/{b}/timeline", headers=headers))
        # Exactly what an id that does not exist answers: no existence leak.
        missing = await client.get(f"/api/v1/customers/{uuid.uuid4()}", headers=headers)
        assert_not_found(missing)
        # ... while the store's own customer is there.
        own = await client.get(f"/api/v1/customers/{world.a_customer['id']}", headers=headers)
        assert own.status_code == 200, own.text

    @pytest.mark.parametrize("role", STORE_ROLES)
    async def test_searches_never_return_store_b(self, client: httpx.AsyncClient, group: Group, world: World,
                                                 role: Role) -> None:
        headers = group.headers(role, "A")
        for params in world.b_searches:
            # The search itself matches (the admin finds the record) ...
            assert world.b_customer["id"] in await ids(client, "/api/v1/customers", group.headers(), **params), params
            # ... but a store-A user never gets it.
            found = await ids(client, "/api/v1/customers", headers, **params)
            assert world.b_customer["id"] not in found, params
        tag = world.b_customer["tags"][0]
        assert await ids(client, "/api/v1/customers", headers, tag=tag) == [world.a_customer["id"]]

    async def test_store_b_and_its_staff_are_not_found(self, client: httpx.AsyncClient, group: Group) -> None:
        headers = group.headers(Role.SALES_MANAGER, "A")
        assert_not_found(await client.get(f"/api/v1/stores/{group.store_b}", headers=headers))
        stores = (await client.get("/api/v1/stores", headers=headers)).json()
        assert [s["id"] for s in stores] == [str(group.store_a)]
        b_agent = (await client.get("/api/v1/staff", params={"q": "cs_agent-B"},
                                    headers=group.headers())).json()["items"]
        assert len(b_agent) == 1
        assert_not_found(await client.get(f"/api/v1/staff/{b_agent[0]['id']}", headers=headers))
        listed = (await client.get("/api/v1/staff", params={"limit": 200}, headers=headers)).json()["items"]
        assert listed and all(s["store_ids"] == [str(group.store_a)] for s in listed)


class TestStoreUserWrites:
    async def test_patch_consent_and_lost_on_store_b_customer_are_404(self, client: httpx.AsyncClient, group: Group,
                                                                      world: World) -> None:
        b = world.b_customer["id"]
        url = f"/api/v1/customers/{b}"
        for role in STORE_ROLES:
            headers = group.headers(role, "A", **{"If-Match": "*"})
            assert_not_found(await client.patch(url, json={"name": "改名"}, headers=headers))
            assert_not_found(await client.put(f"{url}/consents", headers=headers, json={
                "channel": "sms", "purpose": "marketing", "granted": True, "source": "isolation test"}))
        assert_not_found(await client.post(f"{url}/lost", json={"reason": "bought elsewhere"},
                                           headers=group.headers(Role.SALES_MANAGER, "A")))
        after = await admin_view(client, group, url)
        assert (after["version"], after["name"], after["consents"], after["relationship_type"]) == (
            1, world.b_customer["name"], [], "prospect")
        log = (await client.get("/api/v1/audit", params={"record_id": b}, headers=group.headers())).json()
        assert [e["action"] for e in log["items"]] == ["create"]

    async def test_cannot_create_customer_in_store_b(self, client: httpx.AsyncClient, group: Group) -> None:
        phone = new_phone()
        resp = await client.post("/api/v1/customers", json=customer_body(group.store_b, phones=[{"number": phone}]),
                                 headers=group.headers(Role.SALES_CONSULTANT, "A"))
        assert_not_found(resp)
        assert await ids(client, "/api/v1/customers", group.headers(), phone=phone) == []


class TestStoreUserVehicles:
    @pytest.mark.parametrize("role", [Role.SERVICE_ADVISOR, Role.SALES_CONSULTANT, Role.SERVICE_MANAGER])
    async def test_store_b_vehicle_is_not_found(self, client: httpx.AsyncClient, group: Group, world: World,
                                                role: Role) -> None:
        headers = group.headers(role, "A", **{"If-Match": "*"})
        v = world.b_vehicle
        url = f"/api/v1/vehicles/{v['id']}"
        assert_not_found(await client.get(url, headers=headers))
        assert_not_found(await client.get(f"{url}/ownership", headers=headers))
        assert_not_found(await client.patch(url, json={"mileage_km": 12000}, headers=headers))
        assert_not_found(await client.post(f"{url}/delivery", json={"delivery_date": "2025-05-01"}, headers=headers))
        assert_not_found(await client.post(f"{url}/transfer", json={"customer_id": world.a_customer["id"]},
                                           headers=headers))
        for params in ({"vin": v["vin"]}, {"plate": v["plate"]}, {"customer_id": v["customer_id"]}, {}):
            assert v["id"] in await ids(client, "/api/v1/vehicles", group.headers(), **params), params
            assert v["id"] not in await ids(client, "/api/v1/vehicles", headers, **params), params
        after = await admin_view(client, group, url)
        assert (after["version"], after["mileage_km"], after["delivery_date"], after["customer_id"]) == (
            1, None, None, world.b_customer["id"])

    async def test_cannot_register_a_vehicle_for_store_b_customer(self, client: httpx.AsyncClient, group: Group,
                                                                  world: World) -> None:
        """The owner is named in the body: the answer is the one for a customer id that does not exist."""
        headers = group.headers(Role.SERVICE_ADVISOR, "A")
        hidden = await client.post("/api/v1/vehicles", headers=headers,
                                   json={"customer_id": world.b_customer["id"], "vin": new_vin()})
        missing = await client.post("/api/v1/vehicles", headers=headers,
                                    json={"customer_id": str(uuid.uuid4()), "vin": new_vin()})
        assert hidden.status_code == missing.status_code == 422, hidden.text
        assert hidden.headers["content-type"] == PROBLEM
        assert hidden.json()["errors"] == missing.json()["errors"]
        assert [e["field"] for e in hidden.json()["errors"]] == ["body.customer_id"]
        assert await ids(client, "/api/v1/vehicles", group.headers(), customer_id=world.b_customer["id"]) == [
            world.b_vehicle["id"]]

    async def test_cannot_transfer_own_vehicle_to_store_b_customer(self, client: httpx.AsyncClient, group: Group,
                                                                   world: World) -> None:
        url = f"/api/v1/vehicles/{world.a_vehicle['id']}"
        resp = await client.post(f"{url}/transfer", json={"customer_id": world.b_customer["id"]},
                                 headers=group.headers(Role.SERVICE_ADVISOR, "A"))
        assert resp.status_code == 422, resp.text
        assert [e["field"] for e in resp.json()["errors"]] == ["body.customer_id"]
        assert (await admin_view(client, group, url))["customer_id"] == world.a_customer["id"]


class TestStoreUserAudit:
    @pytest.mark.parametrize("role", STORE_MANAGERS)
    async def test_audit_of_store_b_records_is_absent(self, client: httpx.AsyncClient, group: Group, world: World,
                                                      role: Role) -> None:
        headers = group.headers(role, "A")
        for record in (world.b_customer["id"], world.b_vehicle["id"]):
            assert await ids(client, "/api/v1/audit", group.headers(), record_id=record), record
            assert await ids(client, "/api/v1/audit", headers, record_id=record) == [], record
        # By actor: the store-B consultant's work stays invisible too.
        b_consultant = (await client.get("/api/v1/staff", params={"q": "sales_consultant-B"},
                                         headers=group.headers())).json()["items"][0]["id"]
        assert await ids(client, "/api/v1/audit", group.headers(), actor_id=b_consultant)
        assert await ids(client, "/api/v1/audit", headers, actor_id=b_consultant) == []
        own = await ids(client, "/api/v1/audit", headers, record_id=world.a_customer["id"])
        assert len(own) == 1

    async def test_store_b_staff_and_api_key_changes_are_absent(self, client: httpx.AsyncClient,
                                                                 group: Group) -> None:
        """Staff and API-key entries carry no store: they must not open a side door to store B's staff."""
        admin = group.headers()
        staff = {}
        for store in ("A", "B"):
            member = (await client.get("/api/v1/staff", params={"q": f"cs_agent-{store}"}, headers=admin)).json()
            staff[store] = member["items"][0]["id"]
            resp = await client.patch(f"/api/v1/staff/{staff[store]}", json={"phone": new_phone()},
                                      headers=group.headers(**{"If-Match": "*"}))
            assert resp.status_code == 200, resp.text
        key = await client.post("/api/v1/api-keys", headers=admin, json={
            "name": "DMS", "scopes": ["customers:read"], "store_ids": [str(group.store_a)]})
        assert key.status_code == 201, key.text
        manager = group.headers(Role.CS_MANAGER, "A")
        assert await ids(client, "/api/v1/audit", admin, record_id=staff["B"])
        assert await ids(client, "/api/v1/audit", manager, record_id=staff["B"]) == []
        assert len(await ids(client, "/api/v1/audit", manager, record_id=staff["A"])) == 1
        assert await ids(client, "/api/v1/audit", manager, record_id=key.json()["id"]) == []
        admin_id = (await client.get("/api/v1/auth/me", headers=admin)).json()["subject"]
        seen = (await client.get("/api/v1/audit", params={"actor_id": admin_id}, headers=manager)).json()["items"]
        assert {(e["record_type"], e["record_id"]) for e in seen} == {("staff", staff["A"])}

    async def test_timeline_of_store_b_customer_is_hidden_once_it_exists(self, client: httpx.AsyncClient,
                                                                         group: Group, world: World) -> None:
        b = world.b_customer["id"]

        async def has_entries() -> bool:
            return bool(await ids(client, f"/api/v1/customers/{b}/timeline", group.headers()))

        await eventually(has_entries)
        assert_not_found(await client.get(f"/api/v1/customers/{b}/timeline", headers=group.headers(Role.CS_MANAGER)))


class TestGroupWideRoles:
    @pytest.mark.parametrize("role", GROUP_WIDE)
    async def test_see_both_stores(self, client: httpx.AsyncClient, group: Group, world: World, role: Role) -> None:
        headers = group.headers(role, "A")
        for customer in (world.a_customer, world.b_customer):
            resp = await client.get(f"/api/v1/customers/{customer['id']}", headers=headers)
            assert resp.status_code == 200, resp.text
        for vehicle in (world.a_vehicle, world.b_vehicle):
            assert (await client.get(f"/api/v1/vehicles/{vehicle['id']}", headers=headers)).status_code == 200
        found = await ids(client, "/api/v1/customers", headers, tag=world.b_customer["tags"][0])
        assert set(found) == {world.a_customer["id"], world.b_customer["id"]}
        assert await ids(client, "/api/v1/audit", headers, record_id=world.b_customer["id"])
        stores = {s["id"] for s in (await client.get("/api/v1/stores", headers=headers)).json()}
        assert stores == {str(group.store_a), str(group.store_b)}

    async def test_cs_director_updates_store_b_customer(self, client: httpx.AsyncClient, group: Group,
                                                        world: World) -> None:
        resp = await client.patch(f"/api/v1/customers/{world.b_customer['id']}", json={"intent_level": "H"},
                                  headers=group.headers(Role.CS_DIRECTOR, "A", **{"If-Match": 'W/"1"'}))
        assert resp.status_code == 200, resp.text
        assert resp.json()["intent_level"] == "H"


class TestOtherTenant:
    @pytest.fixture
    async def other(self, customer_runtime: CustomerRuntime) -> Group:
        return await make_group(customer_runtime)

    @pytest.mark.parametrize("role", [*GROUP_WIDE, Role.SALES_MANAGER])
    async def test_sees_nothing(self, client: httpx.AsyncClient, group: Group, world: World, other: Group,
                                role: Role) -> None:
        headers = other.headers(role, "A", **{"If-Match": "*"})
        for customer in (world.a_customer, world.b_customer):
            url = f"/api/v1/customers/{customer['id']}"
            assert_not_found(await client.get(url, headers=headers))
            assert_not_found(await client.get(f"{url}/timeline", headers=headers))
            assert_not_found(await client.patch(url, json={"notes": "x"}, headers=headers))
            assert_not_found(await client.put(f"{url}/consents", headers=headers, json={
                "channel": "sms", "purpose": "service", "granted": False, "source": "other tenant"}))
            assert await ids(client, "/api/v1/audit", headers, record_id=customer["id"]) == []
        if role is Role.SALES_MANAGER:
            assert_not_found(await client.post(f"/api/v1/customers/{world.b_customer['id']}/lost",
                                               json={"reason": "other tenant"}, headers=headers))
        for params in world.b_searches[:-1]:  # the unfiltered search is the other group's own, and empty
            assert await ids(client, "/api/v1/customers", headers, **params) == [], params
        assert await ids(client, "/api/v1/customers", headers) == []
        for vehicle in (world.a_vehicle, world.b_vehicle):
            url = f"/api/v1/vehicles/{vehicle['id']}"
            assert_not_found(await client.get(url, headers=headers))
            assert_not_found(await client.get(f"{url}/ownership", headers=headers))
            assert_not_found(await client.patch(url, json={"mileage_km": 1}, headers=headers))
            assert_not_found(await client.post(f"{url}/delivery", json={"delivery_date": "2025-01-02"},
                                               headers=headers))
            assert await ids(client, "/api/v1/vehicles", headers, vin=vehicle["vin"]) == []
        for store in (group.store_a, group.store_b):
            assert_not_found(await client.get(f"/api/v1/stores/{store}", headers=headers))
        theirs = (await client.get("/api/v1/staff", params={"q": "admin-A"}, headers=group.headers())).json()["items"]
        assert_not_found(await client.get(f"/api/v1/staff/{theirs[0]['id']}", headers=headers))
        # Nothing was changed by any of it.
        after = await admin_view(client, group, f"/api/v1/customers/{world.b_customer['id']}")
        assert (after["version"], after["consents"], after["notes"]) == (1, [], None)

    async def test_cannot_write_into_the_group(self, client: httpx.AsyncClient, group: Group, world: World,
                                               other: Group) -> None:
        headers = other.headers(Role.ADMIN, "A")
        phone = new_phone()
        assert_not_found(await client.post("/api/v1/customers", headers=headers,
                                           json=customer_body(group.store_a, phones=[{"number": phone}])))
        vehicle = await client.post("/api/v1/vehicles", headers=headers,
                                    json={"customer_id": world.a_customer["id"], "vin": new_vin()})
        assert vehicle.status_code == 422 and vehicle.json()["errors"][0]["field"] == "body.customer_id"
        staff = await client.post("/api/v1/staff", headers=headers, json={
            "employee_no": "X1", "name": "越界", "roles": ["admin"], "store_ids": [str(group.store_a)],
            "password": "long-enough-password"})
        assert staff.status_code == 422 and staff.json()["errors"][0]["field"] == "body.store_ids.0"
        key = await client.post("/api/v1/api-keys", headers=headers, json={
            "name": "cross", "scopes": ["customers:read"], "store_ids": [str(group.store_a)]})
        assert key.status_code == 422 and key.json()["errors"][0]["field"] == "body.store_ids.0"
        assert_not_found(await client.patch(f"/api/v1/stores/{group.store_a}", json={"name": "taken over"},
                                            headers=other.headers(Role.ADMIN, "A", **{"If-Match": "*"})))
        assert await ids(client, "/api/v1/customers", group.headers(), phone=phone) == []
        assert await ids(client, "/api/v1/vehicles", group.headers(), customer_id=world.a_customer["id"]) == [
            world.a_vehicle["id"]]
        assert (await admin_view(client, group, f"/api/v1/stores/{group.store_a}"))["name"] == "Store A"


class TestIntegrationScopedToStoreA:
    async def test_api_key_for_store_a_does_not_see_store_b(self, client: httpx.AsyncClient, group: Group,
                                                            world: World) -> None:
        created = await client.post("/api/v1/api-keys", headers=group.headers(), json={
            "name": "DMS store A", "scopes": ["customers:read", "vehicles:read"], "store_ids": [str(group.store_a)]})
        assert created.status_code == 201, created.text
        token = (await client.post("/api/v1/auth/token", json={"api_key": created.json()["api_key"]})).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        assert_not_found(await client.get(f"/api/v1/customers/{world.b_customer['id']}", headers=headers))
        assert_not_found(await client.get(f"/api/v1/vehicles/{world.b_vehicle['id']}", headers=headers))
        assert (await client.get(f"/api/v1/customers/{world.a_customer['id']}", headers=headers)).status_code == 200
        tag = world.b_customer["tags"][0]
        assert await ids(client, "/api/v1/customers", headers, tag=tag) == [world.a_customer["id"]]
        assert await ids(client, "/api/v1/vehicles", headers, vin=world.b_vehicle["vin"]) == []


async def test_integration_tokens_cannot_list_staff(client, group) -> None:  # type: ignore[no-untyped-def]
    from shared.auth.roles import Role

    created = await client.post("/api/v1/api-keys", headers=group.headers(Role.ADMIN),
                                json={"name": "dms", "scopes": ["customers:read"], "store_ids": [str(group.store_a)]})
    token = (await client.post("/api/v1/auth/token", json={"api_key": created.json()["api_key"]})).json()["access_token"]
    resp = await client.get("/api/v1/staff", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 403


async def test_search_treats_like_wildcards_literally(client, group) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import customer_body

    await client.post("/api/v1/customers", json=customer_body(group.store_a, name="王小明"), headers=group.headers())
    for q in ("%", "_", "王%"):
        page = (await client.get("/api/v1/customers", params={"q": q}, headers=group.headers())).json()
        assert page["items"] == [], q
    page = (await client.get("/api/v1/customers", params={"q": "小"}, headers=group.headers())).json()
    assert [c["name"] for c in page["items"]] == ["王小明"]
