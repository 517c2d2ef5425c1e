"""Authentication and authorisation through the real endpoints: argon2 logins, lockout, refresh-token rotation,
logout, deactivation, token verification, API keys exchanged for scoped integration tokens, and role checks."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

import httpx
import jwt
import pytest
import sqlalchemy as sa

from customer_svc.models import ApiKey, AuditEntry, RefreshToken, Staff
from shared.auth.roles import Role
from shared.auth.tokens import TokenIssuer, generate_keypair
from shared.db.base import utcnow
from tests.conftest import PASSWORD, Group, customer_body, make_group

PROBLEM = "application/problem+json"
LOGIN = "/api/v1/auth/login"


def creds(group: Group, role: Role = Role.SALES_CONSULTANT, store: str = "A", password: str = PASSWORD) -> dict:
    return {"tenant": group.code, "employee_no": f"{role.value}-{store}", "password": password}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM
    body = resp.json()
    assert body["status"] == status
    if status == 401:
        assert resp.headers["www-authenticate"] == "Bearer"
    return body


async def login(client: httpx.AsyncClient, group: Group, role: Role = Role.SALES_CONSULTANT, store: str = "A") -> dict:
    resp = await client.post(LOGIN, json=creds(group, role, store))
    assert resp.status_code == 200, resp.text
    return resp.json()


async def staff_row(group: Group, employee_no: str) -> Staff:
    async with group.runtime.sessionmaker() as session:
        staff = await session.scalar(sa.select(Staff).where(Staff.tenant_id == group.tenant_id,
                                                            Staff.employee_no == employee_no))
        assert staff is not None
        return staff


class TestLogin:
    async def test_password_login_gives_working_tokens(self, client: httpx.AsyncClient, group: Group) -> None:
        pair = await login(client, group, Role.SERVICE_ADVISOR, "B")
        assert pair["token_type"] == "Bearer" and pair["expires_in"] == 15 * 60
        assert pair["refresh_token"] and pair["refresh_token"] not in pair["access_token"]
        me = await client.get("/api/v1/auth/me", headers=bearer(pair["access_token"]))
        assert me.status_code == 200, me.text
        staff = await staff_row(group, "service_advisor-B")
        assert me.json() == {"subject": str(staff.id), "tenant_id": str(group.tenant_id),
                             "store_ids": [str(group.store_b)], "roles": ["service_advisor"], "scopes": [],
                             "kind": "staff"}
        assert staff.password_hash.startswith("$argon2id$") and PASSWORD not in staff.password_hash
        # The access token reaches the API with the store it carries.
        resp = await client.post("/api/v1/customers", json=customer_body(group.store_b),
                                 headers=bearer(pair["access_token"]))
        assert resp.status_code == 201, resp.text

    async def test_wrong_password_and_unknown_account_look_the_same(self, client: httpx.AsyncClient,
                                                                    group: Group) -> None:
        wrong = assert_problem(await client.post(LOGIN, json=creds(group, password="not-the-password")), 401)
        unknown = assert_problem(await client.post(LOGIN, json={**creds(group), "employee_no": "nobody"}), 401)
        other_tenant = assert_problem(await client.post(LOGIN, json={**creds(group), "tenant": "no-such-group"}), 401)
        assert wrong["detail"] == unknown["detail"] == other_tenant["detail"]
        assert "access_token" not in wrong

    async def test_repeated_failures_lock_the_account(self, client: httpx.AsyncClient, group: Group) -> None:
        limit = group.runtime.settings.login_max_failures
        lock_seconds = group.runtime.settings.login_lock_minutes * 60
        bad = creds(group, Role.CS_AGENT, password="guessing-wrong")
        for _ in range(limit):
            assert_problem(await client.post(LOGIN, json=bad), 401)
        # Locked: even the right password is refused, with a Retry-After.
        locked = await client.post(LOGIN, json=creds(group, Role.CS_AGENT))
        assert_problem(locked, 429)
        assert 0 < int(locked.headers["retry-after"]) <= lock_seconds + 1
        assert_problem(await client.post(LOGIN, json=bad), 429)
        # Only that account: a colleague still logs in.
        await login(client, group, Role.CS_MANAGER)
        # When the lock has run out, the right password works again.
        async with group.runtime.sessionmaker() as session, session.begin():
            await session.execute(sa.update(Staff).where(Staff.tenant_id == group.tenant_id,
                                                         Staff.employee_no == "cs_agent-A")
                                  .values(locked_until=utcnow() - timedelta(seconds=1)))
        await login(client, group, Role.CS_AGENT)

    async def test_a_success_resets_the_failure_count(self, client: httpx.AsyncClient, group: Group) -> None:
        limit = group.runtime.settings.login_max_failures
        bad = creds(group, Role.SALES_MANAGER, password="guessing-wrong")
        for _ in range(limit - 1):
            assert_problem(await client.post(LOGIN, json=bad), 401)
        await login(client, group, Role.SALES_MANAGER)
        for _ in range(limit - 1):
            assert_problem(await client.post(LOGIN, json=bad), 401)
        await login(client, group, Role.SALES_MANAGER)
        assert (await staff_row(group, "sales_manager-A")).locked_until is None


class TestRefreshAndLogout:
    async def test_refresh_rotates_and_the_old_token_stops_working(self, client: httpx.AsyncClient,
                                                                   group: Group) -> None:
        first = await login(client, group)
        resp = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert resp.status_code == 200, resp.text
        second = resp.json()
        assert second["refresh_token"] != first["refresh_token"]
        assert (await client.get("/api/v1/auth/me", headers=bearer(second["access_token"]))).status_code == 200
        assert_problem(await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}), 401)
        third = await client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
        assert third.status_code == 200, third.text

    async def test_only_a_hash_of_the_refresh_token_is_stored(self, client: httpx.AsyncClient, group: Group) -> None:
        pair = await login(client, group, Role.CS_DIRECTOR)
        staff = await staff_row(group, "cs_director-A")
        async with group.runtime.sessionmaker() as session:
            hashes = list((await session.scalars(sa.select(RefreshToken.token_hash).where(
                RefreshToken.staff_id == staff.id))).all())
        assert hashes == [hashlib.sha256(pair["refresh_token"].encode()).hexdigest()]

    async def test_logout_revokes_the_refresh_token(self, client: httpx.AsyncClient, group: Group) -> None:
        pair = await login(client, group)
        other = await login(client, group)  # a second device stays signed in
        resp = await client.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
        assert resp.status_code == 204 and resp.content == b""
        assert_problem(await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}), 401)
        again = await client.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
        assert again.status_code == 204
        still = await client.post("/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
        assert still.status_code == 200, still.text

    async def test_expired_refresh_token_is_refused(self, client: httpx.AsyncClient, group: Group) -> None:
        pair = await login(client, group)
        async with group.runtime.sessionmaker() as session, session.begin():
            await session.execute(sa.update(RefreshToken).where(
                RefreshToken.token_hash == hashlib.sha256(pair["refresh_token"].encode()).hexdigest())
                .values(expires_at=utcnow() - timedelta(seconds=1)))
        assert_problem(await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}), 401)


class TestDeactivation:
    async def _patch_staff(self, client: httpx.AsyncClient, group: Group, staff_id: uuid.UUID, body: dict) -> dict:
        url = f"/api/v1/staff/{staff_id}"
        etag = (await client.get(url, headers=group.headers())).headers["etag"]
        resp = await client.patch(url, json=body, headers=group.headers(**{"If-Match": etag}))
        assert resp.status_code == 200, resp.text
        return resp.json()

    async def test_deactivation_revokes_sessions_and_blocks_login(self, client: httpx.AsyncClient,
                                                                  group: Group) -> None:
        phone = await login(client, group, Role.SERVICE_ADVISOR)
        laptop = await login(client, group, Role.SERVICE_ADVISOR)
        staff = await staff_row(group, "service_advisor-A")
        assert (await self._patch_staff(client, group, staff.id, {"active": False}))["active"] is False
        for pair in (phone, laptop):
            refused = await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
            assert_problem(refused, 401)
        assert_problem(await client.post(LOGIN, json=creds(group, Role.SERVICE_ADVISOR)), 401)
        async with group.runtime.sessionmaker() as session:
            live = await session.scalar(sa.select(sa.func.count()).select_from(RefreshToken).where(
                RefreshToken.staff_id == staff.id, RefreshToken.revoked_at.is_(None)))
        assert live == 0
        # Reactivated, the same password works again (and old sessions stay dead).
        await self._patch_staff(client, group, staff.id, {"active": True})
        await login(client, group, Role.SERVICE_ADVISOR)
        assert_problem(await client.post("/api/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]}), 401)

    async def test_password_change_revokes_sessions(self, client: httpx.AsyncClient, group: Group) -> None:
        pair = await login(client, group, Role.SHOWROOM_MANAGER)
        staff = await staff_row(group, "showroom_manager-A")
        await self._patch_staff(client, group, staff.id, {"password": "a-brand-new-passphrase"})
        assert_problem(await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}), 401)
        assert_problem(await client.post(LOGIN, json=creds(group, Role.SHOWROOM_MANAGER)), 401)
        resp = await client.post(LOGIN, json=creds(group, Role.SHOWROOM_MANAGER, password="a-brand-new-passphrase"))
        assert resp.status_code == 200, resp.text


class TestAccessTokens:
    async def test_expired_token(self, client: httpx.AsyncClient, group: Group) -> None:
        staff = await staff_row(group, "admin-A")
        token, _ = group.runtime.issuer.issue(subject=staff.id, tenant_id=group.tenant_id, store_ids=[group.store_a],
                                              roles=["admin"], ttl=timedelta(seconds=-5))
        body = assert_problem(await client.get("/api/v1/stores", headers=bearer(token)), 401)
        assert "expired" in body["detail"]

    async def test_a_token_from_a_pod_whose_clock_runs_ahead_is_accepted(self, client: httpx.AsyncClient,
                                                                         group: Group) -> None:
        """Issued "in the future" by a few seconds (another pod's clock): accepted; its expiry still counts."""
        import jwt

        staff = await staff_row(group, "admin-A")
        issuer = group.runtime.issuer
        token, _ = issuer.issue(subject=staff.id, tenant_id=group.tenant_id, store_ids=[group.store_a],
                                roles=["admin"])
        claims = jwt.decode(token, options={"verify_signature": False})
        ahead = jwt.encode({**claims, "iat": claims["iat"] + 20}, issuer.key, algorithm="EdDSA")
        assert (await client.get("/api/v1/stores", headers=bearer(ahead))).status_code == 200

    @pytest.mark.parametrize("header", [
        "Bearer not-a-token", "Bearer a.b.c", "Bearer ", "Basic YWRtaW46cGFzc3dvcmQ=", "Token abc", "",
    ])
    async def test_garbage_or_missing_credentials(self, client: httpx.AsyncClient, header: str) -> None:
        headers = {"Authorization": header} if header else {}
        assert_problem(await client.get("/api/v1/customers", headers=headers), 401)

    async def test_wrongly_signed_or_misaddressed_tokens(self, client: httpx.AsyncClient, group: Group) -> None:
        staff = await staff_row(group, "admin-A")
        settings = group.runtime.settings
        claims = dict(subject=staff.id, tenant_id=group.tenant_id, store_ids=[group.store_a], roles=["admin"])
        foreign_key, _ = generate_keypair()
        forged = TokenIssuer(foreign_key, settings.jwt_issuer, settings.jwt_audience).issue(**claims)[0]
        wrong_aud = TokenIssuer(settings.jwt_private_key, settings.jwt_issuer, "someone-else").issue(**claims)[0]
        wrong_iss = TokenIssuer(settings.jwt_private_key, "evil", settings.jwt_audience).issue(**claims)[0]
        payload = jwt.decode(group.tokens[("admin", "A")], options={"verify_signature": False})
        unsigned = jwt.encode(payload, key=None, algorithm="none")
        hs256 = jwt.encode(payload, key="a-guessable-shared-secret-of-32-bytes!", algorithm="HS256")
        for token in (forged, wrong_aud, wrong_iss, unsigned, hs256):
            assert_problem(await client.get("/api/v1/stores", headers=bearer(token)), 401)
        # The genuine token for the same claims is accepted.
        assert (await client.get("/api/v1/stores", headers=group.headers())).status_code == 200


class TestApiKeys:
    async def _create(self, client: httpx.AsyncClient, group: Group, scopes: list[str],
                      stores: tuple[str, ...] = ("A",)) -> dict:
        resp = await client.post("/api/v1/api-keys", headers=group.headers(), json={
            "name": "OEM feed", "scopes": scopes, "store_ids": [str(group.stores[s]) for s in stores]})
        assert resp.status_code == 201, resp.text
        return resp.json()

    async def _exchange(self, client: httpx.AsyncClient, api_key: str) -> dict[str, str]:
        resp = await client.post("/api/v1/auth/token", json={"api_key": api_key})
        assert resp.status_code == 200, resp.text
        assert resp.json()["refresh_token"] is None
        return bearer(resp.json()["access_token"])

    async def test_secret_is_shown_once_and_only_its_hash_is_stored(self, client: httpx.AsyncClient,
                                                                    group: Group) -> None:
        created = await self._create(client, group, ["customers:read"])
        api_key = created["api_key"]
        prefix, _, secret = api_key.partition(".")
        assert prefix == created["prefix"] and len(secret) >= 32
        listed = (await client.get("/api/v1/api-keys", headers=group.headers())).json()
        mine = [k for k in listed if k["id"] == created["id"]]
        assert len(mine) == 1 and "api_key" not in mine[0] and secret not in str(listed)
        async with group.runtime.sessionmaker() as session:
            row = await session.get(ApiKey, uuid.UUID(created["id"]))
            assert row is not None
            columns = {c.key: getattr(row, c.key) for c in sa.inspect(ApiKey).column_attrs}
            audit = list((await session.scalars(sa.select(AuditEntry).where(
                AuditEntry.record_id == row.id))).all())
        assert secret not in str(columns)
        assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert len(audit) == 1 and secret not in str(audit[0].after) and row.key_hash not in str(audit[0].after)

    async def test_scopes_gate_what_the_integration_may_do(self, client: httpx.AsyncClient, group: Group) -> None:
        reader = await self._exchange(client, (await self._create(client, group, ["customers:read"]))["api_key"])
        writer = await self._exchange(client, (await self._create(client, group, ["customers:write"]))["api_key"])
        me = (await client.get("/api/v1/auth/me", headers=reader)).json()
        assert me["kind"] == "integration" and me["roles"] == ["integration"] and me["scopes"] == ["customers:read"]
        assert me["store_ids"] == [str(group.store_a)]

        assert (await client.get("/api/v1/customers", headers=reader)).status_code == 200
        assert_problem(await client.post("/api/v1/customers", json=customer_body(group.store_a), headers=reader), 403)
        assert_problem(await client.get("/api/v1/vehicles", headers=reader), 403)

        created = await client.post("/api/v1/customers", json=customer_body(group.store_a), headers=writer)
        assert created.status_code == 201, created.text
        assert created.json()["pii_masked"] is True  # no pii:read scope
        assert_problem(await client.get("/api/v1/customers", headers=writer), 403)
        # The key's stores bound it like a staff member's.
        assert_problem(await client.post("/api/v1/customers", json=customer_body(group.store_b), headers=writer), 404)
        # Integrations never reach administration.
        for headers in (reader, writer):
            assert_problem(await client.get("/api/v1/api-keys", headers=headers), 403)
            assert_problem(await client.post("/api/v1/stores", json={"code": "X1", "name": "x"}, headers=headers), 403)

    async def test_exchange_records_last_use(self, client: httpx.AsyncClient, group: Group) -> None:
        created = await self._create(client, group, ["vehicles:read"])
        assert created["last_used_at"] is None
        await self._exchange(client, created["api_key"])
        listed = (await client.get("/api/v1/api-keys", headers=group.headers())).json()
        assert next(k for k in listed if k["id"] == created["id"])["last_used_at"] is not None

    async def test_revoked_or_tampered_key_stops_working(self, client: httpx.AsyncClient, group: Group) -> None:
        created = await self._create(client, group, ["customers:read"])
        await self._exchange(client, created["api_key"])
        tampered = created["api_key"][:-1] + ("A" if created["api_key"][-1] != "A" else "B")
        assert_problem(await client.post("/api/v1/auth/token", json={"api_key": tampered}), 401)
        resp = await client.delete(f"/api/v1/api-keys/{created['id']}", headers=group.headers())
        assert resp.status_code == 204
        assert_problem(await client.post("/api/v1/auth/token", json={"api_key": created["api_key"]}), 401)
        listed = (await client.get("/api/v1/api-keys", headers=group.headers())).json()
        assert next(k for k in listed if k["id"] == created["id"])["revoked_at"] is not None
        # Revoking twice is harmless.
        assert (await client.delete(f"/api/v1/api-keys/{created['id']}", headers=group.headers())).status_code == 204

    @pytest.mark.parametrize("role", [Role.CS_DIRECTOR, Role.SALES_MANAGER, Role.CS_AGENT])
    async def test_only_admins_manage_keys(self, client: httpx.AsyncClient, group: Group, role: Role) -> None:
        created = await self._create(client, group, ["customers:read"])
        headers = group.headers(role)
        assert_problem(await client.post("/api/v1/api-keys", headers=headers, json={
            "name": "sneaky", "scopes": ["customers:read"], "store_ids": [str(group.store_a)]}), 403)
        assert_problem(await client.get("/api/v1/api-keys", headers=headers), 403)
        assert_problem(await client.delete(f"/api/v1/api-keys/{created['id']}", headers=headers), 403)
        listed = (await client.get("/api/v1/api-keys", headers=group.headers())).json()
        assert [k["name"] for k in listed] == ["OEM feed"] and listed[0]["revoked_at"] is None

    async def test_keys_of_another_group_cannot_be_revoked(self, client: httpx.AsyncClient, group: Group) -> None:
        other = await make_group(group.runtime)
        created = await self._create(client, group, ["customers:read"])
        assert_problem(await client.delete(f"/api/v1/api-keys/{created['id']}", headers=other.headers()), 404)
        theirs = (await client.get("/api/v1/api-keys", headers=other.headers())).json()
        assert created["id"] not in {k["id"] for k in theirs}
        await self._exchange(client, created["api_key"])


class TestRoles:
    @pytest.mark.parametrize("role", [Role.CS_AGENT, Role.SALES_MANAGER, Role.CS_DIRECTOR])
    async def test_non_admins_cannot_create_or_change_stores_and_staff(self, client: httpx.AsyncClient, group: Group,
                                                                       role: Role) -> None:
        headers = group.headers(role, **{"If-Match": "*"})
        assert_problem(await client.post("/api/v1/stores", headers=headers, json={"code": "C", "name": "Store C"}), 403)
        assert_problem(await client.patch(f"/api/v1/stores/{group.store_a}", headers=headers,
                                          json={"name": "renamed"}), 403)
        assert_problem(await client.post("/api/v1/staff", headers=headers, json={
            "employee_no": "NEW-1", "name": "新员工", "roles": ["admin"], "store_ids": [str(group.store_a)],
            "password": "long-enough-password"}), 403)
        me = (await client.get("/api/v1/auth/me", headers=headers)).json()["subject"]
        assert_problem(await client.patch(f"/api/v1/staff/{me}", headers=headers, json={"roles": ["admin"]}), 403)
        stores = (await client.get("/api/v1/stores", headers=group.headers())).json()
        assert sorted(s["code"] for s in stores) == ["A", "B"] and all(s["name"].startswith("Store") for s in stores)
        staff = (await client.get("/api/v1/staff", params={"q": "NEW-1"}, headers=group.headers())).json()["items"]
        assert staff == []
        assert (await client.get(f"/api/v1/staff/{me}", headers=group.headers())).json()["roles"] == [role.value]

    async def test_admin_creates_staff_who_can_then_log_in(self, client: httpx.AsyncClient, group: Group) -> None:
        resp = await client.post("/api/v1/staff", headers=group.headers(), json={
            "employee_no": "S1001", "name": "王晓明", "roles": ["cs_agent"], "store_ids": [str(group.store_b)],
            "password": "first-day-password"})
        assert resp.status_code == 201, resp.text
        pair = (await client.post(LOGIN, json={"tenant": group.code, "employee_no": "S1001",
                                               "password": "first-day-password"})).json()
        me = (await client.get("/api/v1/auth/me", headers=bearer(pair["access_token"]))).json()
        assert me["roles"] == ["cs_agent"] and me["store_ids"] == [str(group.store_b)]
