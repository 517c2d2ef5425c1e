"""Customers through the REST API: create, read, update with ETags, duplicates, idempotency, search, masking."""

from __future__ import annotations

import uuid

import httpx

from shared.auth.roles import Role
from tests.conftest import Group, customer_body, new_phone
from tests.customer_svc.factories import new_vin


async def create(client: httpx.AsyncClient, group: Group, store: uuid.UUID | None = None, role: Role = Role.ADMIN,
                 **fields: object) -> dict:
    resp = await client.post("/api/v1/customers", json=customer_body(store or group.store_a, **fields),
                             headers=group.headers(role))
    assert resp.status_code == 201, resp.text
    return resp.json()


class TestCreate:
    async def test_created_with_normalised_phone_and_etag(self, client: httpx.AsyncClient, group: Group) -> None:
        phone = new_phone()
        local = phone[3:]
        resp = await client.post("/api/v1/customers", headers=group.headers(Role.SALES_CONSULTANT),
                                 json=customer_body(group.store_a, phones=[{"number": f"{local[:3]} {local[3:7]} {local[7:]}"}],
                                                    name="王五", birthday="1966-02-16", tags=["vip", " fleet "]))
        assert resp.status_code == 201, resp.text
        body = resp.json()
        assert body["phones"] == [{"number": phone, "label": None, "primary": True}]
        assert body["tags"] == ["fleet", "vip"]
        assert body["relationship_type"] == "prospect"
        assert resp.headers["etag"] == 'W/"1"'
        assert resp.headers["location"] == f"/api/v1/customers/{body['id']}"

    async def test_same_phone_in_same_store_is_409_with_existing_id(self, client: httpx.AsyncClient, group: Group) -> None:
        first = await create(client, group)
        resp = await client.post("/api/v1/customers", headers=group.headers(),
                                 json=customer_body(group.store_a, phones=[{"number": first["phones"][0]["number"]}]))
        assert resp.status_code == 409
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["existing_id"] == first["id"]

    async def test_same_phone_in_another_store_is_allowed(self, client: httpx.AsyncClient, group: Group) -> None:
        first = await create(client, group)
        second = await create(client, group, store=group.store_b, phones=[{"number": first["phones"][0]["number"]}])
        assert second["id"] != first["id"]

    async def test_idempotency_key_replays_first_response(self, client: httpx.AsyncClient, group: Group) -> None:
        body = customer_body(group.store_a)
        headers = group.headers(**{"Idempotency-Key": str(uuid.uuid4())})
        first = await client.post("/api/v1/customers", json=body, headers=headers)
        again = await client.post("/api/v1/customers", json=body, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["idempotent-replayed"] == "true"
        other = await client.post("/api/v1/customers", json=customer_body(group.store_a), headers=headers)
        assert other.status_code == 422
        assert other.json()["errors"][0]["field"] == "header.Idempotency-Key"

    async def test_a_stale_claim_is_taken_over_by_one_retry_only(self, group: Group) -> None:
        """The first attempt died holding the key (past its lease); two retries arrive together: one runs the
        request, the other is told it is in progress, never both."""
        import asyncio
        from datetime import timedelta

        import sqlalchemy as sa

        from customer_svc.models import messaging
        from shared.auth import Principal
        from shared.db.base import utcnow
        from shared.errors import Conflict

        runtime, key, runs = group.runtime, str(uuid.uuid4()), []
        principal = Principal(subject=uuid.uuid4(), tenant_id=group.tenant_id, store_ids=frozenset({group.store_a}),
                              roles=frozenset({Role.ADMIN}))

        async def create():  # type: ignore[no-untyped-def]
            runs.append(1)
            await asyncio.sleep(0.2)
            return {"ok": True}, {}

        first = asyncio.create_task(runtime.idempotency.run(principal, key, "POST /x", {"a": 1}, create))
        while not runs:
            await asyncio.sleep(0.01)
        first.cancel()  # dies mid-request, holding the claim
        await asyncio.gather(first, return_exceptions=True)
        table = messaging.idempotency.__table__
        async with runtime.sessionmaker() as session, session.begin():
            await session.execute(sa.update(table).where(table.c.key == key).values(
                created_at=utcnow() - timedelta(minutes=2)))
        results = await asyncio.gather(*(runtime.idempotency.run(principal, key, "POST /x", {"a": 1}, create)
                                         for _ in range(2)), return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["Conflict", "JSONResponse"], results
        assert any(isinstance(r, Conflict) for r in results) and len(runs) == 2  # the dead attempt, and one retry

    async def test_failed_create_releases_idempotency_key(self, client: httpx.AsyncClient, group: Group) -> None:
        existing = await create(client, group)
        key = {"Idempotency-Key": str(uuid.uuid4())}
        body = customer_body(group.store_a, phones=[{"number": existing["phones"][0]["number"]}])
        assert (await client.post("/api/v1/customers", json=body, headers=group.headers(**key))).status_code == 409
        body["phones"] = [{"number": new_phone()}]
        # Same key, different body: the failed attempt left nothing behind, so this is a fresh request.
        assert (await client.post("/api/v1/customers", json=body, headers=group.headers(**key))).status_code == 201


class TestUpdate:
    async def test_if_match_required_and_checked(self, client: httpx.AsyncClient, group: Group) -> None:
        c = await create(client, group)
        url = f"/api/v1/customers/{c['id']}"
        assert (await client.patch(url, json={"name": "新名字"}, headers=group.headers())).status_code == 428
        ok = await client.patch(url, json={"name": "新名字"}, headers=group.headers(**{"If-Match": 'W/"1"'}))
        assert ok.status_code == 200, ok.text
        assert ok.json()["name"] == "新名字" and ok.headers["etag"] == 'W/"2"'
        stale = await client.patch(url, json={"name": "又一个"}, headers=group.headers(**{"If-Match": 'W/"1"'}))
        assert stale.status_code == 412
        assert (await client.get(url, headers=group.headers())).json()["name"] == "新名字"

    async def test_a_new_primary_number_or_label_is_a_change(self, client: httpx.AsyncClient, group: Group) -> None:
        """The same numbers with another one primary (where messages go) bump the version and are audited."""
        c = await create(client, group)
        first, other = c["phones"][0]["number"], new_phone()
        url = f"/api/v1/customers/{c['id']}"
        added = await client.patch(url, json={"phones": [{"number": first, "primary": True}, {"number": other}]},
                                   headers=group.headers(**{"If-Match": 'W/"1"'}))
        assert added.status_code == 200 and added.headers["etag"] == 'W/"2"', added.text
        switched = await client.patch(url, json={"phones": [{"number": first}, {"number": other, "primary": True}]},
                                      headers=group.headers(**{"If-Match": 'W/"2"'}))
        assert switched.status_code == 200 and switched.headers["etag"] == 'W/"3"', switched.text
        labelled = await client.patch(url, json={"phones": [{"number": first, "label": "office"},
                                                            {"number": other, "primary": True}]},
                                      headers=group.headers(**{"If-Match": 'W/"3"'}))
        assert labelled.status_code == 200 and labelled.headers["etag"] == 'W/"4"', labelled.text
        stale = await client.patch(url, json={"phones": [{"number": first, "primary": True}, {"number": other}]},
                                   headers=group.headers(**{"If-Match": 'W/"3"'}))
        assert stale.status_code == 412
        log = (await client.get(f"/api/v1/audit?record_id={c['id']}", headers=group.headers(Role.ADMIN))).json()
        update = log["items"][1]
        assert (update["before"]["primary_phone"], update["after"]["primary_phone"]) == (first, other)

    async def test_update_is_audited_with_before_and_after(self, client: httpx.AsyncClient, group: Group) -> None:
        c = await create(client, group, intent_level="C")
        await client.patch(f"/api/v1/customers/{c['id']}", json={"intent_level": "H"},
                           headers=group.headers(Role.SALES_CONSULTANT, **{"If-Match": 'W/"1"'}))
        log = (await client.get(f"/api/v1/audit?record_id={c['id']}", headers=group.headers(Role.SALES_MANAGER))).json()
        actions = [e["action"] for e in log["items"]]
        assert actions == ["update", "create"]
        update = log["items"][0]
        assert update["before"] == {"intent_level": "C", "version": 1} or update["before"]["intent_level"] == "C"
        assert update["after"]["intent_level"] == "H"


class TestSearch:
    async def test_phone_in_any_format_plate_tag_and_number(self, client: httpx.AsyncClient, group: Group) -> None:
        c = await create(client, group, tags=["key-account"])
        e164 = c["phones"][0]["number"]
        local = e164[3:]
        for fmt in (local, f"+86 {local[:3]}-{local[3:7]}-{local[7:]}", f"0086{local}"):
            page = (await client.get("/api/v1/customers", params={"phone": fmt}, headers=group.headers())).json()
            assert [x["id"] for x in page["items"]] == [c["id"]], fmt
        by_tag = (await client.get("/api/v1/customers", params={"tag": "key-account"}, headers=group.headers())).json()
        assert [x["id"] for x in by_tag["items"]] == [c["id"]]
        by_no = (await client.get("/api/v1/customers", params={"customer_no": c["customer_no"]}, headers=group.headers())).json()
        assert [x["id"] for x in by_no["items"]] == [c["id"]]

    async def test_cursor_pagination_walks_everything_once(self, client: httpx.AsyncClient, group: Group) -> None:
        made = {(await create(client, group, tags=["page-walk"]))["id"] for _ in range(5)}
        seen, cursor = [], None
        while True:
            params = {"tag": "page-walk", "limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/api/v1/customers", params=params, headers=group.headers())).json()
            seen += [x["id"] for x in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == 5 and set(seen) == made

    async def test_birthday_range_solar_and_lunar(self, client: httpx.AsyncClient, group: Group) -> None:
        solar = await create(client, group, birthday="1980-03-05", tags=["bday"])
        # Lunar 1st month 16th falls on 2026-03-04 (the 2026 lunar new year is 2026-02-17).
        lunar = await create(client, group, birthday="1975-01-16", birthday_calendar="lunar", tags=["bday"])
        other = await create(client, group, birthday="1980-07-01", tags=["bday"])
        page = (await client.get("/api/v1/customers", headers=group.headers(),
                                 params={"tag": "bday", "birthday_from": "2026-03-01", "birthday_to": "2026-03-07"})).json()
        ids = {x["id"] for x in page["items"]}
        assert ids == {solar["id"], lunar["id"]} and other["id"] not in ids


class TestMasking:
    async def test_cs_agent_sees_masked_phone_manager_sees_number(self, client: httpx.AsyncClient, group: Group) -> None:
        c = await create(client, group, id_number="11010519491231002X")
        e164 = c["phones"][0]["number"]
        agent = (await client.get(f"/api/v1/customers/{c['id']}", headers=group.headers(Role.CS_AGENT))).json()
        manager = (await client.get(f"/api/v1/customers/{c['id']}", headers=group.headers(Role.SERVICE_MANAGER))).json()
        assert agent["phones"][0]["number"] == f"{e164[3:6]}****{e164[-4:]}"
        assert agent["id_number"] == "1101**********002X" and agent["pii_masked"] is True
        assert agent["name"] == "测***" and manager["name"] == "测试客户"
        assert manager["phones"][0]["number"] == e164 and manager["id_number"] == "11010519491231002X"


class TestLost:
    async def test_only_sales_manager_marks_lost_with_reason(self, client: httpx.AsyncClient, group: Group) -> None:
        c = await create(client, group)
        url = f"/api/v1/customers/{c['id']}/lost"
        body = {"reason": "Bought a competitor model", "kind": "defeated"}
        assert (await client.post(url, json=body, headers=group.headers(Role.SALES_CONSULTANT))).status_code == 403
        assert (await client.post(url, json={"kind": "defeated"}, headers=group.headers(Role.SALES_MANAGER))).status_code == 422
        resp = await client.post(url, json=body, headers=group.headers(Role.SALES_MANAGER))
        assert resp.status_code == 200, resp.text
        assert resp.json()["relationship_type"] == "lost" and resp.json()["lost_reason"] == body["reason"]
        assert (await client.post(url, json=body, headers=group.headers(Role.SALES_MANAGER))).status_code == 422


class TestConsent:
    async def test_consent_is_recorded_with_source(self, client: httpx.AsyncClient, group: Group) -> None:
        c = await create(client, group)
        resp = await client.put(f"/api/v1/customers/{c['id']}/consents", headers=group.headers(Role.CS_AGENT),
                                json={"channel": "sms", "purpose": "marketing", "granted": True, "source": "phone call"})
        assert resp.status_code == 200
        consents = resp.json()["consents"]
        assert [(x["channel"], x["purpose"], x["granted"], x["source"]) for x in consents] == [
            ("sms", "marketing", True, "phone call")]

    async def test_a_new_customer_is_announced_before_its_consents(self, client: httpx.AsyncClient,
                                                                   group: Group) -> None:
        """Consumers keep consents per customer: the customer's event comes first, so none waits for it."""
        import sqlalchemy as sa

        from customer_svc.models import messaging

        c = await create(client, group, consents=[
            {"channel": "sms", "purpose": "marketing", "granted": True, "source": "contact card"}])
        outbox = messaging.outbox.__table__
        async with group.runtime.sessionmaker() as session:
            types = list(await session.scalars(sa.select(outbox.c.event_type).where(
                outbox.c.payload["subject"].as_string() == c["id"]).order_by(outbox.c.occurred_at, outbox.c.id)))
        assert types[:2] == ["customer.customer.created.v1", "customer.customer.consent_changed.v1"], types


class TestVehicleDates:
    async def test_patch_cannot_put_purchase_after_delivery(self, client: httpx.AsyncClient, group: Group) -> None:
        c = await create(client, group)
        v = (await client.post("/api/v1/vehicles", headers=group.headers(), json={
            "customer_id": c["id"], "vin": "1M8GDM9AXKP042788", "purchase_date": "2026-01-05",
            "delivery_date": "2026-01-10"})).json()
        resp = await client.patch(f"/api/v1/vehicles/{v['id']}", json={"purchase_date": "2026-02-01"},
                                  headers=group.headers(**{"If-Match": 'W/"1"'}))
        assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "body.purchase_date"
        assert (await client.get(f"/api/v1/vehicles/{v['id']}", headers=group.headers())).json()["purchase_date"] == "2026-01-05"

    async def test_an_odometer_reading_cannot_be_unset(self, client: httpx.AsyncClient, group: Group) -> None:
        c = await create(client, group)
        v = (await client.post("/api/v1/vehicles", headers=group.headers(), json={
            "customer_id": c["id"], "vin": new_vin(), "mileage_km": 50_000})).json()
        url = f"/api/v1/vehicles/{v['id']}"
        resp = await client.patch(url, json={"mileage_km": None}, headers=group.headers(**{"If-Match": 'W/"1"'}))
        assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "body.mileage_km"
        lower = await client.patch(url, json={"mileage_km": 5_000}, headers=group.headers(**{"If-Match": 'W/"1"'}))
        assert lower.status_code == 422
        assert (await client.get(url, headers=group.headers())).json()["mileage_km"] == 50_000


class TestConcurrentCreates:
    async def test_same_person_at_the_same_moment_is_created_once(self, client: httpx.AsyncClient, group: Group) -> None:
        import asyncio

        phone = new_phone()
        responses = await asyncio.gather(*(client.post("/api/v1/customers", headers=group.headers(),
                                                       json=customer_body(group.store_a, phones=[{"number": phone}]))
                                           for _ in range(4)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201, 409, 409, 409], [r.text for r in responses]
        created = next(r.json()["id"] for r in responses if r.status_code == 201)
        assert all(r.json().get("existing_id") == created for r in responses if r.status_code == 409)

    async def test_racing_unique_numbers_conflict_instead_of_failing(self, client: httpx.AsyncClient,
                                                                     group: Group) -> None:
        import asyncio

        owner = await create(client, group)
        dms_no = f"DMS{new_phone()[-8:]}"
        customers = await asyncio.gather(*(client.post("/api/v1/customers", headers=group.headers(),
                                                       json=customer_body(group.store_a, customer_no=dms_no))
                                           for _ in range(4)))
        vehicles = await asyncio.gather(*(client.post("/api/v1/vehicles", headers=group.headers(), json={
            "customer_id": owner["id"], "vin": "1M8GDM9AXKP042788"}) for _ in range(4)))
        for batch in (customers, vehicles):
            statuses = sorted(r.status_code for r in batch)
            assert statuses.count(201) == 1 and set(statuses) <= {201, 409, 422}, [r.text for r in batch]


def c_etag(c: dict) -> str:
    return f'W/"{c["version"]}"'


class TestTimelinePrivacy:
    async def test_timeline_masks_personal_data_for_roles_without_pii(self, client: httpx.AsyncClient,
                                                                      group: Group) -> None:
        from shared.testing.waiting import eventually

        c = await create(client, group, name="张三丰")
        phone = c["phones"][0]["number"]

        async def entries(role: Role) -> list | None:
            page = (await client.get(f"/api/v1/customers/{c['id']}/timeline", headers=group.headers(role))).json()
            return page["items"] or None

        [agent] = await eventually(lambda: entries(Role.CS_AGENT))
        [manager] = await entries(Role.SALES_MANAGER)
        assert agent["data"]["name"] == "张**" and "****" in agent["data"]["primary_phone"]
        assert phone not in str(agent) and manager["data"]["primary_phone"] == phone
        # A number staff typed in the notes is masked in the record too.
        noted = await client.patch(f"/api/v1/customers/{c['id']}", json={"notes": "白天打 13912345678"},
                                   headers=group.headers(**{"If-Match": c_etag(c)}))
        assert noted.status_code == 200, noted.text
        shown = (await client.get(f"/api/v1/customers/{c['id']}", headers=group.headers(Role.CS_AGENT))).json()
        assert shown["notes"] == "白天打 139****5678"


    async def test_an_integration_key_reads_only_what_its_scopes_and_stores_read(self, client: httpx.AsyncClient,
                                                                                 group: Group) -> None:
        """``customers:read`` opens the customer's own events, not the visits, calls, answers and complaints that
        need their own scopes elsewhere; nor another store's events, nor the same person in another store."""
        from datetime import UTC, datetime

        from customer_svc.models import TimelineEntry
        from shared.ids import new_id
        from tests.customer_svc.factories import integration_headers

        c = await create(client, group)
        twin = await client.post("/api/v1/customers", headers=group.headers(), json=customer_body(
            group.store_b, phones=[{"number": c["phones"][0]["number"]}]))
        assert twin.status_code == 201, twin.text
        kinds = ["customer.customer.updated.v1", "customer.visit.completed.v1", "followup.task.completed.v1",
                 "survey.response.answered.v1", "survey.complaint.opened.v1", "notify.message.delivered.v1"]
        async with group.runtime.sessionmaker() as session, session.begin():
            session.add_all([TimelineEntry(id=new_id(), tenant_id=group.tenant_id, store_id=group.store_a,
                                           customer_id=uuid.UUID(c["id"]), event_type=kind, source="test",
                                           occurred_at=datetime.now(UTC), data={"customer_id": c["id"]})
                             for kind in kinds])
            session.add(TimelineEntry(id=new_id(), tenant_id=group.tenant_id, store_id=group.store_b,
                                      customer_id=uuid.UUID(c["id"]), event_type="customer.customer.lost.v1",
                                      source="test", occurred_at=datetime.now(UTC), data={}))

        async def types(headers: dict[str, str]) -> set[str]:
            page = await client.get(f"/api/v1/customers/{c['id']}/timeline", params={"limit": 100}, headers=headers)
            assert page.status_code == 200, page.text
            return {e["event_type"] for e in page.json()["items"] if e["source"] == "test"}

        assert await types(group.headers()) == {*kinds, "customer.customer.lost.v1"}  # store B's too
        assert await types(integration_headers(group, ["customers:read"])) == {"customer.customer.updated.v1"}
        assert await types(integration_headers(group, ["customers:read", "surveys:read", "visits:read"])) == {
            "customer.customer.updated.v1", "survey.response.answered.v1", "customer.visit.completed.v1"}
        assert await types(integration_headers(group, ["customers:read", "complaints:read", "followups:read"])) == {
            "customer.customer.updated.v1", "survey.complaint.opened.v1", "followup.task.completed.v1",
            "notify.message.delivered.v1"}

        staff = await client.get(f"/api/v1/customers/{c['id']}/duplicates", headers=group.headers())
        assert [d["id"] for d in staff.json()] == [twin.json()["id"]]
        key = await client.get(f"/api/v1/customers/{c['id']}/duplicates",
                               headers=integration_headers(group, ["customers:read"]))
        assert key.status_code == 200 and key.json() == []


class TestAuditIsAppendOnly:
    async def test_database_refuses_to_change_or_delete_audit_entries(self, client: httpx.AsyncClient, group: Group,
                                                                      customer_runtime) -> None:  # type: ignore[no-untyped-def]
        import pytest
        import sqlalchemy as sa
        from sqlalchemy.exc import DBAPIError

        from customer_svc.models import AuditEntry

        c = await create(client, group)
        for statement in (sa.update(AuditEntry).where(AuditEntry.record_id == uuid.UUID(c["id"])).values(action="x"),
                          sa.delete(AuditEntry).where(AuditEntry.record_id == uuid.UUID(c["id"]))):
            async with customer_runtime.sessionmaker() as session:
                with pytest.raises(DBAPIError, match="append-only"):
                    await session.execute(statement)
        log = (await client.get("/api/v1/audit", params={"record_id": c["id"]}, headers=group.headers())).json()
        assert [e["action"] for e in log["items"]] == ["create"]
