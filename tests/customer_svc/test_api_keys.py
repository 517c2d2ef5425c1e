"""Integration keys (issue 6): rotation with an overlap, changes, last use, revocation, and every call audited in
the audit log of the service that served it."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from customer_svc.models import ApiKey, AuditEntry
from followup_svc.models import AuditEntry as FollowupAudit
from notify_svc.models import AuditEntry as NotifyAudit
from shared.db.base import utcnow
from shared.runtime import ServiceRuntime
from survey_svc.models import AuditEntry as SurveyAudit
from tests.conftest import Group, customer_body
from tests.customer_svc.test_auth import assert_problem, bearer

KEYS = "/api/v1/api-keys"


async def create_key(client: httpx.AsyncClient, group: Group, scopes: list[str], stores: tuple[str, ...] = ("A",),
                     name: str = "OEM feed") -> dict:
    resp = await client.post(KEYS, headers=group.headers(), json={
        "name": name, "scopes": scopes, "store_ids": [str(group.stores[s]) for s in stores]})
    assert resp.status_code == 201, resp.text
    return resp.json()


async def exchange(client: httpx.AsyncClient, api_key: str, status: int = 200) -> httpx.Response:
    resp = await client.post("/api/v1/auth/token", json={"api_key": api_key})
    assert resp.status_code == status, resp.text
    return resp


async def token_for(client: httpx.AsyncClient, api_key: str) -> dict[str, str]:
    return bearer((await exchange(client, api_key)).json()["access_token"])


async def rotate(client: httpx.AsyncClient, group: Group, key_id: str, **body: Any) -> dict:
    resp = await client.post(f"{KEYS}/{key_id}/rotate", headers=group.headers(), json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def listed(client: httpx.AsyncClient, group: Group, key_id: str) -> dict:
    keys = (await client.get(KEYS, headers=group.headers())).json()
    return next(k for k in keys if k["id"] == key_id)


async def set_columns(group: Group, key_id: str, **values: Any) -> None:
    async with group.runtime.sessionmaker() as session, session.begin():
        await session.execute(sa.update(ApiKey).where(ApiKey.id == uuid.UUID(key_id)).values(**values))


def secret_of(api_key: str) -> str:
    return api_key.partition(".")[2]


class TestRotation:
    async def test_both_secrets_work_during_the_overlap_and_the_old_one_stops_after(
            self, client: httpx.AsyncClient, group: Group) -> None:
        created = await create_key(client, group, ["customers:read"])
        old = created["api_key"]
        await exchange(client, old)
        rotated = await rotate(client, group, created["id"], overlap_hours=2)
        new = rotated["api_key"]
        # Same key, same prefix: only the secret changes.
        assert rotated["id"] == created["id"] and rotated["prefix"] == created["prefix"] and new != old
        assert new.partition(".")[0] == old.partition(".")[0]
        until = rotated["previous_valid_until"]
        assert until is not None and rotated["rotated_at"] is not None
        assert rotated["previous_last_used_at"] is not None  # the old secret's use carries over
        assert rotated["current_last_used_at"] is None

        await exchange(client, old)
        me = (await client.get("/api/v1/auth/me", headers=await token_for(client, new))).json()
        assert me["subject"] == created["id"] and me["scopes"] == ["customers:read"]
        view = await listed(client, group, created["id"])
        assert view["current_last_used_at"] is not None and view["previous_valid_until"] == until

        await set_columns(group, created["id"], previous_valid_until=utcnow() - timedelta(seconds=1))
        assert_problem(await client.post("/api/v1/auth/token", json={"api_key": old}), 401)
        await exchange(client, new)

        # The rotation is audited without any secret or hash.
        async with group.runtime.sessionmaker() as session:
            key = await session.get(ApiKey, uuid.UUID(created["id"]))
            rows = list((await session.scalars(sa.select(AuditEntry).where(
                AuditEntry.record_id == uuid.UUID(created["id"]), AuditEntry.action == "rotate"))).all())
        assert key is not None and len(rows) == 1
        text = str(rows[0].after)
        assert rows[0].after["overlap_hours"] == 2 and rows[0].actor_kind == "staff"
        for secret in (secret_of(old), secret_of(new), key.key_hash, key.previous_key_hash):
            assert secret is not None and secret not in text

    async def test_zero_overlap_stops_the_old_secret_at_once(self, client: httpx.AsyncClient, group: Group) -> None:
        created = await create_key(client, group, ["customers:read"])
        rotated = await rotate(client, group, created["id"], overlap_hours=0)
        assert rotated["previous_valid_until"] is None
        assert_problem(await client.post("/api/v1/auth/token", json={"api_key": created["api_key"]}), 401)
        await exchange(client, rotated["api_key"])

    async def test_default_overlap_is_a_day(self, client: httpx.AsyncClient, group: Group) -> None:
        created = await create_key(client, group, ["customers:read"])
        resp = await client.post(f"{KEYS}/{created['id']}/rotate", headers=group.headers())
        assert resp.status_code == 200, resp.text
        async with group.runtime.sessionmaker() as session:
            key = await session.get(ApiKey, uuid.UUID(created["id"]))
        assert key is not None and key.previous_valid_until is not None and key.rotated_at is not None
        assert timedelta(hours=23, minutes=59) < key.previous_valid_until - key.rotated_at <= timedelta(hours=24)

    async def test_second_rotation_keeps_the_secret_in_use(self, client: httpx.AsyncClient, group: Group) -> None:
        created = await create_key(client, group, ["customers:read"])
        s0 = created["api_key"]
        s1 = (await rotate(client, group, created["id"]))["api_key"]
        # s1 was never used (its response lost, say): rotating again drops s1, and s0 keeps working.
        s2 = (await rotate(client, group, created["id"]))["api_key"]
        await exchange(client, s0)
        assert_problem(await client.post("/api/v1/auth/token", json={"api_key": s1}), 401)
        await exchange(client, s2)
        # s2 is in use now: the next rotation keeps s2 as the previous secret and s0 stops at once.
        s3 = (await rotate(client, group, created["id"]))["api_key"]
        assert_problem(await client.post("/api/v1/auth/token", json={"api_key": s0}), 401)
        await exchange(client, s2)
        await exchange(client, s3)

    async def test_bad_rotations(self, client: httpx.AsyncClient, group: Group) -> None:
        created = await create_key(client, group, ["customers:read"])
        for body, field in (({"overlap_hours": 169}, "body.overlap_hours"),
                            ({"overlap_hours": -1}, "body.overlap_hours"), ({"overlap": 3}, "body.overlap")):
            problem = assert_problem(await client.post(f"{KEYS}/{created['id']}/rotate", headers=group.headers(),
                                                       json=body), 422)
            assert problem["errors"][0]["field"] == field
        assert_problem(await client.post(f"{KEYS}/{uuid.uuid4()}/rotate", headers=group.headers(), json={}), 404)
        assert_problem(await client.post(f"{KEYS}/{created['id']}/rotate", headers=group.headers("cs_director"),
                                         json={}), 403)
        await exchange(client, created["api_key"])  # nothing of the above changed the key


class TestRevocation:
    async def test_revoked_key_is_refused_with_every_secret(self, client: httpx.AsyncClient, group: Group) -> None:
        created = await create_key(client, group, ["customers:read"])
        new = (await rotate(client, group, created["id"]))["api_key"]
        await exchange(client, created["api_key"])
        await exchange(client, new)
        assert (await client.delete(f"{KEYS}/{created['id']}", headers=group.headers())).status_code == 204
        for api_key in (created["api_key"], new):
            assert_problem(await client.post("/api/v1/auth/token", json={"api_key": api_key}), 401)
        assert_problem(await client.post(f"{KEYS}/{created['id']}/rotate", headers=group.headers(), json={}), 409)
        assert_problem(await client.patch(f"{KEYS}/{created['id']}", json={"name": "x"},
                                          headers=group.headers(**{"If-Match": "*"})), 409)


class TestChanges:
    async def test_patch_scopes_and_stores_take_effect_at_the_next_exchange(self, client: httpx.AsyncClient,
                                                                           group: Group) -> None:
        created = await create_key(client, group, ["customers:read"])
        before = await token_for(client, created["api_key"])
        resp = await client.get(f"{KEYS}/{created['id']}", headers=group.headers())
        assert resp.status_code == 200 and resp.json()["version"] == 1
        etag = resp.headers["ETag"]
        resp = await client.patch(f"{KEYS}/{created['id']}", headers=group.headers(**{"If-Match": etag}), json={
            "scopes": ["vehicles:read", "vehicles:read"], "store_ids": [str(group.store_b)], "name": "DMS"})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["scopes"] == ["vehicles:read"] and body["store_ids"] == [str(group.store_b)]
        assert body["name"] == "DMS" and resp.headers["ETag"] != etag and "api_key" not in body

        after = await token_for(client, created["api_key"])
        me = (await client.get("/api/v1/auth/me", headers=after)).json()
        assert me["scopes"] == ["vehicles:read"] and me["store_ids"] == [str(group.store_b)]
        assert (await client.get("/api/v1/vehicles", headers=after)).status_code == 200
        assert_problem(await client.get("/api/v1/customers", headers=after), 403)
        # The token issued before keeps its scopes until it expires (documented).
        assert (await client.get("/api/v1/customers", headers=before)).status_code == 200

        # Stale or missing If-Match, bad values: refused, nothing changes.
        assert_problem(await client.patch(f"{KEYS}/{created['id']}", headers=group.headers(**{"If-Match": etag}),
                                          json={"name": "late"}), 412)
        assert_problem(await client.patch(f"{KEYS}/{created['id']}", headers=group.headers(), json={"name": "x"}), 428)
        star = group.headers(**{"If-Match": "*"})
        for patch, field in (({"scopes": ["vehicles:read", "nope:write"]}, "body.scopes.1"),
                             ({"scopes": []}, "body.scopes"),
                             ({"store_ids": [str(uuid.uuid4())]}, "body.store_ids.0"),
                             ({"name": None}, "body.name"), ({"prefix": "ak_mine"}, "body.prefix")):
            problem = assert_problem(await client.patch(f"{KEYS}/{created['id']}", headers=star, json=patch), 422)
            assert problem["errors"][0]["field"] == field, problem
        assert_problem(await client.patch(f"{KEYS}/{uuid.uuid4()}", headers=star, json={"name": "x"}), 404)
        assert_problem(await client.patch(f"{KEYS}/{created['id']}", headers=group.headers("sales_manager", **{
            "If-Match": "*"}), json={"name": "x"}), 403)
        assert (await listed(client, group, created["id"]))["name"] == "DMS"

        async with group.runtime.sessionmaker() as session:
            rows = list((await session.scalars(sa.select(AuditEntry).where(
                AuditEntry.record_id == uuid.UUID(created["id"]), AuditEntry.action == "update"))).all())
        assert len(rows) == 1
        assert rows[0].before["scopes"] == ["customers:read"] and rows[0].after["scopes"] == ["vehicles:read"]
        assert "key_hash" not in rows[0].after and secret_of(created["api_key"]) not in str(rows[0].after)


class TestLastUse:
    async def test_last_use_is_recorded_per_secret_at_most_once_a_minute(self, client: httpx.AsyncClient,
                                                                         group: Group) -> None:
        created = await create_key(client, group, ["customers:read"])
        await exchange(client, created["api_key"])
        first = await listed(client, group, created["id"])
        assert first["last_used_at"] is not None and first["current_last_used_at"] == first["last_used_at"]
        await exchange(client, created["api_key"])
        assert (await listed(client, group, created["id"]))["last_used_at"] == first["last_used_at"]  # throttled

        await set_columns(group, created["id"], current_last_used_at=utcnow() - timedelta(minutes=2),
                          last_used_at=utcnow() - timedelta(minutes=2))
        await exchange(client, created["api_key"])
        assert (await listed(client, group, created["id"]))["last_used_at"] > first["last_used_at"]

        # After a rotation the admin sees which secret the partner uses.
        new = (await rotate(client, group, created["id"]))["api_key"]
        view = await listed(client, group, created["id"])
        assert view["current_last_used_at"] is None and view["previous_last_used_at"] is not None
        await exchange(client, new)
        view = await listed(client, group, created["id"])
        assert view["current_last_used_at"] is not None and view["last_used_at"] == view["current_last_used_at"]


def api_call_rows(model: type) -> Any:
    return sa.select(model).where(model.record_type == "api_call").order_by(model.id)


async def calls_of(runtime: ServiceRuntime, model: type, actor: uuid.UUID) -> list:
    await runtime.call_audit.flush()
    async with runtime.sessionmaker() as session:
        return list((await session.scalars(api_call_rows(model).where(model.actor_id == actor))).all())


class TestCallAudit:
    async def test_customer_calls_are_audited_once_each(self, client: httpx.AsyncClient, group: Group) -> None:
        created = await create_key(client, group, ["customers:read"])
        key_id = uuid.UUID(created["id"])
        headers = {**await token_for(client, created["api_key"]), "X-Forwarded-For": "203.0.113.9"}
        assert (await client.get("/api/v1/customers?limit=5&q=13900001111", headers=headers)).status_code == 200
        customer_id = uuid.uuid4()
        assert_problem(await client.get(f"/api/v1/customers/{customer_id}", headers=headers), 404)
        assert_problem(await client.post("/api/v1/customers", json=customer_body(group.store_a), headers=headers), 403)
        # Staff calls and calls without a valid token leave no call entry.
        assert (await client.get("/api/v1/customers", headers=group.headers("cs_agent"))).status_code == 200
        assert_problem(await client.get("/api/v1/customers", headers=bearer("x.y.z")), 401)

        # A refused exchange naming the key is in its log too (a rotated-out or leaked secret being tried).
        prefix = created["api_key"].partition(".")[0]
        assert_problem(await client.post("/api/v1/auth/token", json={"api_key": f"{prefix}.wrong"}), 401)

        rows = await calls_of(group.runtime, AuditEntry, key_id)
        assert [(r.after["method"], r.after["route"], r.after["status"]) for r in rows] == [
            ("POST", "/api/v1/auth/token", 200), ("GET", "/api/v1/customers", 200),
            ("GET", "/api/v1/customers/{customer_id}", 404), ("POST", "/api/v1/customers", 403),
            ("POST", "/api/v1/auth/token", 401)]
        assert secret_of(created["api_key"]) not in str([r.after for r in rows])
        rows = rows[1:4]
        first = rows[0]
        assert first.actor_kind == "integration" and first.action == "call" and first.record_id == key_id
        assert first.tenant_id == group.tenant_id and first.request_id
        assert first.after["path"] == "/api/v1/customers" and "13900001111" not in str(first.after)  # no query
        assert first.after["forwarded_for"] == "203.0.113.9" and first.after["duration_ms"] >= 0
        assert rows[1].after["path"] == f"/api/v1/customers/{customer_id}"
        async with group.runtime.sessionmaker() as session:
            staff_calls = await session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(
                AuditEntry.tenant_id == group.tenant_id, AuditEntry.record_type == "api_call",
                AuditEntry.actor_kind != "integration"))
        assert staff_calls == 0

        # The admin reads them, newest first, per key and through the audit query; others do not.
        page = (await client.get(f"{KEYS}/{key_id}/calls?limit=3", headers=group.headers())).json()
        assert [c["status"] for c in page["items"]] == [401, 403, 404] and page["next_cursor"]
        assert page["items"][1]["api_key_id"] == str(key_id) and page["items"][1]["route"] == "/api/v1/customers"
        rest = (await client.get(f"{KEYS}/{key_id}/calls?limit=3&cursor={page['next_cursor']}",
                                 headers=group.headers())).json()
        assert [c["status"] for c in rest["items"]] == [200, 200] and rest["next_cursor"] is None
        audit = (await client.get(f"/api/v1/audit?actor_id={key_id}", headers=group.headers())).json()
        assert [(e["action"], e["record_type"]) for e in audit["items"]] == [("call", "api_call")] * 5
        manager = (await client.get(f"/api/v1/audit?actor_id={key_id}", headers=group.headers("sales_manager"))).json()
        assert manager["items"] == []
        assert_problem(await client.get(f"{KEYS}/{key_id}/calls", headers=group.headers("cs_director")), 403)
        assert_problem(await client.get(f"{KEYS}/{uuid.uuid4()}/calls", headers=group.headers()), 404)
        assert_problem(await client.get(f"{KEYS}/{key_id}/calls", headers=headers), 403)  # not for the key itself

    async def test_calls_to_other_services_land_in_their_own_audit_log(
            self, client: httpx.AsyncClient, group: Group, followup_client: httpx.AsyncClient,
            followup_runtime: ServiceRuntime, survey_client: httpx.AsyncClient, survey_runtime: ServiceRuntime,
            notify_client: httpx.AsyncClient, notify_runtime: ServiceRuntime) -> None:
        created = await create_key(client, group, ["appointments:read", "surveys:read"])
        key_id = uuid.UUID(created["id"])
        headers = await token_for(client, created["api_key"])
        assert (await followup_client.get("/api/v1/appointments", headers=headers)).status_code == 200
        survey_status = (await survey_client.get("/api/v1/surveys/reports/satisfaction", headers=headers)).status_code
        assert survey_status in (200, 404)
        # No scope for it: refused, and still recorded.
        assert_problem(await notify_client.get("/api/v1/messages", headers=headers), 403)
        # Staff calls leave nothing.
        assert (await followup_client.get("/api/v1/appointments", headers=group.headers())).status_code == 200
        assert (await notify_client.get("/api/v1/messages", headers=group.headers())).status_code == 200

        for runtime, model, expected in (
                (followup_runtime, FollowupAudit, ("GET", "/api/v1/appointments", 200)),
                (survey_runtime, SurveyAudit, ("GET", "/api/v1/surveys/reports/satisfaction", survey_status)),
                (notify_runtime, NotifyAudit, ("GET", "/api/v1/messages", 403))):
            rows = await calls_of(runtime, model, key_id)
            assert [(r.after["method"], r.after["route"], r.after["status"]) for r in rows] == [expected], runtime.name
            assert rows[0].actor_kind == "integration" and rows[0].tenant_id == group.tenant_id
            assert secret_of(created["api_key"]) not in str(rows[0].after)
            async with runtime.sessionmaker() as session:
                others = await session.scalar(sa.select(sa.func.count()).select_from(model).where(
                    model.tenant_id == group.tenant_id, model.record_type == "api_call", model.actor_id != key_id))
            assert others == 0, runtime.name
        # customer_svc saw only the token exchange: in the key's call log too.
        assert [(r.after["route"], r.after["status"]) for r in await calls_of(group.runtime, AuditEntry, key_id)] \
            == [("/api/v1/auth/token", 200)]

        # Each service serves its own share to admins.
        for svc_client, prefix, route in ((followup_client, "/api/v1/followups", "/api/v1/appointments"),
                                          (survey_client, "/api/v1/surveys", "/api/v1/surveys/reports/satisfaction"),
                                          (notify_client, "/api/v1/notify", "/api/v1/messages")):
            url = f"{prefix}/integration-calls?api_key_id={key_id}"
            page = await svc_client.get(url, headers=group.headers())
            assert page.status_code == 200, page.text
            assert [c["route"] for c in page.json()["items"]] == [route]
            assert_problem(await svc_client.get(url, headers=group.headers("cs_agent")), 403)
            assert_problem(await svc_client.get(f"{prefix}/integration-calls", headers=group.headers()), 422)
            other_tenant = (await svc_client.get(f"{prefix}/integration-calls?api_key_id={uuid.uuid4()}",
                                                 headers=group.headers())).json()
            assert other_tenant["items"] == []


class TestNoSecrets:
    async def test_no_secret_or_hash_in_any_response(self, client: httpx.AsyncClient, group: Group) -> None:
        created = await create_key(client, group, ["customers:read"])
        rotated = await rotate(client, group, created["id"])
        await exchange(client, created["api_key"])
        async with group.runtime.sessionmaker() as session:
            key = await session.get(ApiKey, uuid.UUID(created["id"]))
            audit = list((await session.scalars(sa.select(AuditEntry).where(
                AuditEntry.tenant_id == group.tenant_id))).all())
        assert key is not None
        secrets = [secret_of(created["api_key"]), secret_of(rotated["api_key"]), key.key_hash, key.previous_key_hash]
        responses = [await client.get(KEYS, headers=group.headers()),
                     await client.get(f"{KEYS}/{created['id']}", headers=group.headers()),
                     await client.get(f"/api/v1/audit?record_id={created['id']}", headers=group.headers())]
        for resp in responses:
            assert resp.status_code == 200
            for secret in secrets:
                assert secret and secret not in resp.text
        for row in audit:
            for secret in secrets:
                assert secret not in str(row.before) and secret not in str(row.after)


@pytest.mark.parametrize("path", [f"{KEYS}/not-a-uuid/calls", f"{KEYS}/not-a-uuid/rotate", f"{KEYS}/not-a-uuid"])
async def test_bad_key_ids_name_the_field(client: httpx.AsyncClient, group: Group, path: str) -> None:
    method = "POST" if path.endswith("rotate") else "GET"
    problem = assert_problem(await client.request(method, path, headers=group.headers(), json={}
                                                   if method == "POST" else None), 422)
    assert problem["errors"][0]["field"] == "path.key_id"
