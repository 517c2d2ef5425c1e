"""Outbound webhooks end to end: endpoints through the API, fan-out of real events, signed deliveries to a real
local HTTP receiver (which checks every signature with ``signing.verify``), retries on the Standard Webhooks
schedule, dead letters, replays, 410 Gone, SSRF refusals, tenancy, and two workers racing for one batch.

The runtime's own webhook loop runs during these tests on the real clock. Tests that count attempts park their
deliveries far in the future (in the transaction that queues them) and drive their own ``WebhookDeliverer``
with a clock set there, so the background loop never touches them; tests that only need "it arrives" let
whichever worker is first deliver.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from notify_svc.app import NotifyRuntime
from notify_svc.models import AuditEntry, WebhookDelivery, WebhookEndpoint
from notify_svc.webhooks import signing
from notify_svc.webhooks.delivery import RETRY_SCHEDULE, USER_AGENT, WebhookDeliverer
from notify_svc.webhooks.fanout import PARTNER_EVENT_TYPES, fan_out
from notify_svc.webhooks.ssrf import UnsafeTarget, check_target, guarded_transport, refusal
from shared.auth.roles import Role
from shared.db.base import utcnow
from shared.events.catalog.customer import ServiceVisitCompleted, VehicleDelivered
from shared.events.envelope import CloudEvent, build_event
from shared.testing.events import EventTap
from shared.testing.waiting import eventually
from tests.conftest import Group, make_group
from tests.customer_svc.factories import new_vehicle

ENDPOINTS = "/api/v1/webhooks/endpoints"
DELIVERIES = "/api/v1/webhooks/deliveries"
DELIVERED = "customer.vehicle.delivered.v1"
VISIT = "customer.visit.completed.v1"


# --- a partner's receiver ----------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP server on a free local port, playing a partner: checks each request's signature with the
    secret it was given and answers per its script (a status code, ``"hang"`` or ``"redirect"``), 204 when the
    script is empty. A request with a bad signature gets 400 and does not use up the script."""

    secret: str | None = None
    script: list[int | str] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    delay: float = 0.0
    url: str = ""
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)

    def will(self, *steps: int | str) -> None:
        self.script.extend(steps)

    def ids(self) -> list[str]:
        return [r.webhook_id for r in self.requests]

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hooks/aftercare"
        return self

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            _, path, _ = head[0].split(" ", 2)
            headers = {}
            for line in head[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            try:
                signing.verify(self.secret or "whsec_", headers, body)
                verified = True
            except signing.WebhookVerificationError:
                verified = False
            self.requests.append(Received(path, headers, body, verified))
            step: int | str = (self.script.pop(0) if self.script else 204) if verified else 400
            extra = ""
            if step == "hang":
                await asyncio.sleep(30)
                step = 204
            elif step == "redirect":
                step, extra = 302, "Location: /hooks/elsewhere\r\n"
            elif step == 503:
                extra = "Retry-After: 900\r\n"
            if self.delay:
                await asyncio.sleep(self.delay)
            text = b"" if int(step) < 300 else b"partner says no"
            writer.write(f"HTTP/1.1 {step} Status\r\nContent-Length: {len(text)}\r\nConnection: close\r\n{extra}\r\n"
                         .encode() + text)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)


@asynccontextmanager
async def receiving(notify_runtime: NotifyRuntime, tenant_id: uuid.UUID) -> AsyncIterator[Receiver]:
    """A local webhook receiver for one test; afterwards the group's deliveries still pending are marked failed,
    so nothing is left due for later tests."""
    started = await Receiver().start()
    try:
        yield started
    finally:
        # The background deliverer may be recording outcomes of these rows meanwhile (several per transaction): the
        # rows are locked in id order, and a deadlock Postgres still picks this side for is tried again.
        for attempt in range(5):
            try:
                async with notify_runtime.sessionmaker() as session, session.begin():
                    pending = sa.select(WebhookDelivery.id).where(
                        WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.status == "pending")
                    ids = list(await session.scalars(pending.order_by(WebhookDelivery.id).with_for_update()))
                    await session.execute(sa.update(WebhookDelivery).where(WebhookDelivery.id.in_(ids))
                                          .values(status="failed", last_error="test over"))
                break
            except DBAPIError:
                if attempt == 4:
                    raise
        await started.close()


class Clock:
    """The test deliverers' scheduling clock: starts where the test parked its deliveries."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


@dataclass
class Harness:
    runtime: NotifyRuntime
    api: httpx.AsyncClient
    group: Group
    receiver: Receiver
    clock: Clock
    deliverers: list[WebhookDeliverer] = field(default_factory=list)

    def deliverer(self, *, clock: Callable[[], datetime] | None = None, **settings: Any) -> WebhookDeliverer:
        """A deliverer of its own (``clock`` defaults to the parked one), with settings overridden as given."""
        made = WebhookDeliverer(self.runtime.sessionmaker, self.runtime.settings.model_copy(update=settings),
                                clock=clock or self.clock)
        self.deliverers.append(made)
        return made

    async def endpoint(self, group: Group | None = None, **overrides: Any) -> dict[str, Any]:
        group = group or self.group
        body = {"partner": "OEM DMS", "url": self.receiver.url, "event_types": [DELIVERED, VISIT], **overrides}
        resp = await self.api.post(ENDPOINTS, json=body, headers=group.headers(Role.ADMIN))
        assert resp.status_code == 201, resp.text
        self.receiver.secret = resp.json()["secret"]
        return resp.json()

    async def queue(self, event: CloudEvent, *, park: bool = True) -> list[WebhookDelivery]:
        """Fan ``event`` out; parked deliveries are due only on the harness clock (never on the real one)."""
        async with self.runtime.sessionmaker() as session, session.begin():
            await fan_out(session, event)
            if park:
                await session.execute(sa.update(WebhookDelivery).where(WebhookDelivery.event_id == event.id)
                                      .values(next_attempt_at=self.clock.at))
        return await self.deliveries(event_id=event.id)

    async def deliveries(self, **where: Any) -> list[WebhookDelivery]:
        async with self.runtime.sessionmaker() as session:
            stmt = sa.select(WebhookDelivery).where(WebhookDelivery.tenant_id == self.group.tenant_id)
            for name, value in where.items():
                stmt = stmt.where(getattr(WebhookDelivery, name) == value)
            return list((await session.scalars(stmt.order_by(WebhookDelivery.id))).all())

    async def delivery(self, delivery_id: uuid.UUID) -> WebhookDelivery:
        async with self.runtime.sessionmaker() as session:
            found = await session.get(WebhookDelivery, delivery_id)
            assert found is not None
            return found

    async def endpoint_row(self, endpoint_id: str) -> WebhookEndpoint | None:
        async with self.runtime.sessionmaker() as session:
            return await session.get(WebhookEndpoint, uuid.UUID(endpoint_id))


def vehicle_delivered(group: Group, store: str = "A") -> CloudEvent:
    return build_event(VehicleDelivered(vehicle_id=uuid.uuid4(), customer_id=uuid.uuid4(),
                                        delivery_date=date(2026, 3, 16)),
                       source="customer_svc", tenant_id=group.tenant_id, store_id=group.stores[store])


def visit_completed(group: Group, store: str = "A") -> CloudEvent:
    return build_event(ServiceVisitCompleted(visit_id=uuid.uuid4(), vehicle_id=uuid.uuid4(), customer_id=uuid.uuid4(),
                                             visit_type="maintenance", completed_at=utcnow()),
                       source="customer_svc", tenant_id=group.tenant_id, store_id=group.stores[store])


async def _harness(runtime: NotifyRuntime, api: httpx.AsyncClient, group: Group) -> AsyncIterator[Harness]:
    receiver = await Receiver().start()
    harness = Harness(runtime, api, group, receiver, Clock(utcnow() + timedelta(days=365)))
    try:
        yield harness
    finally:
        # Nothing of this test stays due for the next one's deliverers.
        async with runtime.sessionmaker() as session, session.begin():
            await session.execute(sa.update(WebhookDelivery).where(
                WebhookDelivery.tenant_id == group.tenant_id, WebhookDelivery.status == "pending")
                .values(status="failed", last_error="test over"))
        for deliverer in harness.deliverers:
            await deliverer.aclose()
        await receiver.close()


@pytest.fixture
async def hooks(notify_runtime: NotifyRuntime, notify_client: httpx.AsyncClient,
                group: Group) -> AsyncIterator[Harness]:
    async for harness in _harness(notify_runtime, notify_client, group):
        yield harness


@pytest.fixture
async def nhooks(notify_runtime: NotifyRuntime, notify_client: httpx.AsyncClient,
                 ngroup: Group) -> AsyncIterator[Harness]:
    """Like ``hooks``, for a group whose stores notify_svc already knows (store filters)."""
    async for harness in _harness(notify_runtime, notify_client, ngroup):
        yield harness


# --- signatures --------------------------------------------------------------------------------------------


def test_signature_matches_the_standard_webhooks_reference_vector() -> None:
    # The vector of the reference implementation's test suite (standard-webhooks, libraries/python).
    secret, msg_id, stamp, body = ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                                   1614265330, b'{"test": 2432232314}')
    assert signing.sign(secret, msg_id, stamp, body) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = signing.signed_headers(secret, msg_id, stamp, body)
    signing.verify(secret, headers, body, now=stamp + 10)
    # Several signatures (key rotation): any matching v1 one is enough, other schemes are skipped.
    other = signing.sign(signing.new_secret(), msg_id, stamp, body)
    signing.verify(secret, {**headers, "webhook-signature": f"v1a,AAAA {other} {headers['webhook-signature']}"},
                   body, now=stamp)


@pytest.mark.parametrize("tamper", ["body", "secret", "id", "stale", "future", "missing", "v2"])
def test_verify_refuses_anything_altered_or_stale(tamper: str) -> None:
    secret, body, now = signing.new_secret(), b'{"type":"customer.vehicle.delivered.v1"}', int(time.time())
    headers = signing.signed_headers(secret, "d1", now, body)
    kwargs: dict[str, Any] = {}
    if tamper == "body":
        body = body.replace(b"delivered", b"Delivered")
    elif tamper == "secret":
        secret = signing.new_secret()
    elif tamper == "id":
        headers["webhook-id"] = "d2"
    elif tamper == "stale":
        kwargs["now"] = now + 301
    elif tamper == "future":
        kwargs["now"] = now - 301
    elif tamper == "missing":
        del headers["webhook-timestamp"]
    elif tamper == "v2":
        headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v2,")
    with pytest.raises(signing.WebhookVerificationError):
        signing.verify(secret, headers, body, **kwargs)


def test_secrets_are_whsec_base64_of_32_random_bytes() -> None:
    secrets = {signing.new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32


# --- SSRF --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "why"), [
    ("http://93.184.216.34/hook", "https"),
    ("ftp://93.184.216.34/hook", "http(s)"),
    ("https://partner:pw@93.184.216.34/hook", "user name"),
    ("https://127.0.0.1/hook", "loopback"),
    ("https://localhost:8443/hook", "loopback"),
    ("https://2130706433/hook", "loopback"),  # 127.0.0.1 written as one number
    ("https://[::1]/hook", "loopback"),
    ("https://[::ffff:127.0.0.1]/hook", "loopback"),
    ("https://10.1.2.3/hook", "private"),
    ("https://192.168.1.10/hook", "private"),
    ("https://[::ffff:192.168.1.10]/hook", "private"),
    ("https://169.254.169.254/latest/meta-data/", "link-local"),
    ("https://100.64.0.7/hook", "carrier-grade NAT"),
    ("https://224.0.0.251/hook", "multicast"),
    ("https://0.0.0.0/hook", "unspecified"),
    ("https://240.0.0.1/hook", "reserved"),
    ("https://[fe80::1]/hook", "link-local"),
    ("https://[2002:a00:1::1]/hook", "private"),  # 6to4 wrapping 10.0.0.1
])
async def test_ssrf_refuses_non_public_targets(url: str, why: str) -> None:
    with pytest.raises(UnsafeTarget) as refused:
        await check_target(url, allow_private=False)
    assert refused.value.field_errors[0].field == "body.url"
    assert why in refused.value.reason


async def test_ssrf_allows_public_https_and_private_only_when_allowed() -> None:
    await check_target("https://93.184.216.34/hook", allow_private=False)  # an IP literal: no DNS needed
    await check_target("http://127.0.0.1:9/hook", allow_private=True)
    with pytest.raises(UnsafeTarget, match="http"):
        await check_target("gopher://127.0.0.1/", allow_private=True)
    with pytest.raises(UnsafeTarget, match="user name"):
        await check_target("http://a:b@127.0.0.1/", allow_private=True)
    nat64 = refusal(ipaddress.ip_address("64:ff9b::a9fe:a9fe"))  # the metadata address in NAT64 form
    assert nat64 is not None and nat64.startswith("link-local") and "169.254.169.254" in nat64
    assert refusal(ipaddress.ip_address("93.184.216.34")) is None


async def test_the_guarded_client_vets_each_connection(hooks: Harness) -> None:
    """DNS rebinding: even a URL that passed the check cannot connect to a private address."""
    port = httpx.URL(hooks.receiver.url).port
    async with httpx.AsyncClient(transport=guarded_transport(allow_private=False)) as client:
        with pytest.raises(UnsafeTarget, match="loopback"):
            await client.post(f"http://localhost:{port}/hooks/x", content=b"{}")
    assert hooks.receiver.requests == []
    async with httpx.AsyncClient(transport=guarded_transport(allow_private=True)) as client:
        assert (await client.post(f"http://localhost:{port}/hooks/x", content=b"{}")).status_code == 400
    assert len(hooks.receiver.requests) == 1  # reached (and refused, unsigned) when private targets are allowed


async def test_delivery_refuses_a_private_target_when_not_allowed(hooks: Harness) -> None:
    """Targets are checked again before every attempt (DNS may have changed since the endpoint was saved)."""
    # Test settings allow private targets, so these could be registered; a production deliverer refuses them.
    loopback = await hooks.endpoint(url=hooks.receiver.url.replace("http://", "https://"))
    metadata = await hooks.endpoint(url="https://169.254.169.254/latest/meta-data/")
    queued = await hooks.queue(vehicle_delivered(hooks.group))
    assert len(queued) == 2
    await hooks.deliverer(webhook_allow_private=False).run_once()
    assert hooks.receiver.requests == []
    errors = {}
    for row in [await hooks.delivery(d.id) for d in queued]:
        assert row.status == "pending" and row.attempts == 1 and row.last_status_code is None
        errors[str(row.endpoint_id)] = row.last_error
    assert errors == {
        loopback["id"]: "refused: 127.0.0.1 is a loopback address; webhooks go to public addresses only",
        metadata["id"]: "refused: 169.254.169.254 is a link-local (cloud metadata lives there) address; webhooks go "
                        "to public addresses only"}


async def test_api_refuses_bad_urls(hooks: Harness) -> None:
    admin = hooks.group.headers(Role.ADMIN)
    for url in ("ftp://127.0.0.1/hook", "http://partner:secret@127.0.0.1/hook", "https://no-such-host.invalid/x"):
        resp = await hooks.api.post(ENDPOINTS, headers=admin,
                                    json={"partner": "OEM", "url": url, "event_types": [DELIVERED]})
        assert resp.status_code == 422, resp.text
        assert resp.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in resp.json()["errors"]] == ["body.url"]


# --- endpoints API -----------------------------------------------------------------------------------------


async def test_create_endpoint_shows_the_secret_once(hooks: Harness) -> None:
    admin = hooks.group.headers(Role.ADMIN, **{"Idempotency-Key": f"wh-{uuid.uuid4()}"})
    body = {"partner": "OEM DMS", "url": hooks.receiver.url, "event_types": [DELIVERED, DELIVERED, VISIT]}
    resp = await hooks.api.post(ENDPOINTS, json=body, headers=admin)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["secret"].startswith("whsec_") and created["active"] is True
    assert created["event_types"] == [DELIVERED, VISIT] and created["store_ids"] == []
    assert resp.headers["Location"] == f"{ENDPOINTS}/{created['id']}" and resp.headers["ETag"]

    again = await hooks.api.post(ENDPOINTS, json=body, headers=admin)  # the same Idempotency-Key
    assert again.status_code == 201 and again.json()["id"] == created["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"

    listed = await hooks.api.get(ENDPOINTS, headers=hooks.group.headers(Role.CS_DIRECTOR))
    assert listed.status_code == 200
    assert [e["id"] for e in listed.json()["items"]] == [created["id"]]
    one = await hooks.api.get(f"{ENDPOINTS}/{created['id']}", headers=hooks.group.headers(Role.ADMIN))
    assert one.status_code == 200 and one.headers["ETag"] == resp.headers["ETag"]
    for shown in (listed.text, one.text):
        assert "secret" not in shown and created["secret"] not in shown

    async with hooks.runtime.sessionmaker() as session:
        audit = (await session.scalars(sa.select(AuditEntry).where(AuditEntry.record_id == uuid.UUID(created["id"]))
                                       )).all()
    assert [a.action for a in audit] == ["create"]
    assert created["secret"] not in json.dumps(audit[0].after) and audit[0].after["url"] == hooks.receiver.url


async def test_only_admins_and_cs_directors_manage_webhooks(hooks: Harness) -> None:
    for role in (Role.CS_MANAGER, Role.CS_AGENT, Role.SERVICE_MANAGER):
        resp = await hooks.api.get(ENDPOINTS, headers=hooks.group.headers(role))
        assert resp.status_code == 403, role
    assert (await hooks.api.get(ENDPOINTS)).status_code == 401


async def test_event_types_and_stores_are_validated(nhooks: Harness, group: Group) -> None:
    admin = nhooks.group.headers(Role.ADMIN)
    base = {"partner": "OEM", "url": nhooks.receiver.url}
    bad_type = await nhooks.api.post(ENDPOINTS, headers=admin, json={**base, "event_types": [DELIVERED, "x.y.v1"]})
    assert bad_type.status_code == 422
    assert [e["field"] for e in bad_type.json()["errors"]] == ["body.event_types.1"]
    survey = await nhooks.api.post(ENDPOINTS, headers=admin,
                                   json={**base, "event_types": ["customer.customer.created.v1"]})
    assert survey.status_code == 422  # personal data events are not in the partner catalog
    none = await nhooks.api.post(ENDPOINTS, headers=admin, json={**base, "event_types": []})
    assert none.status_code == 422 and none.json()["errors"][0]["field"] == "body.event_types"

    foreign = await nhooks.api.post(ENDPOINTS, headers=admin, json={
        **base, "event_types": [DELIVERED], "store_ids": [str(nhooks.group.store_a), str(group.store_a)]})
    assert foreign.status_code == 422
    assert [e["field"] for e in foreign.json()["errors"]] == ["body.store_ids.1"]
    ok = await nhooks.endpoint(store_ids=[str(nhooks.group.store_b)])
    assert ok["store_ids"] == [str(nhooks.group.store_b)]


async def test_patch_rotate_and_delete(hooks: Harness) -> None:
    admin = hooks.group.headers(Role.ADMIN)
    created = await hooks.endpoint()
    url = f"{ENDPOINTS}/{created['id']}"
    etag = (await hooks.api.get(url, headers=admin)).headers["ETag"]

    assert (await hooks.api.patch(url, json={"active": False}, headers=admin)).status_code == 428
    assert (await hooks.api.patch(url, json={"active": False},
                                  headers={**admin, "If-Match": 'W/"1"'})).status_code == 412
    bad = await hooks.api.patch(url, json={"url": "ftp://127.0.0.1/x"}, headers={**admin, "If-Match": etag})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.url"
    null = await hooks.api.patch(url, json={"event_types": None}, headers={**admin, "If-Match": etag})
    assert null.status_code == 422 and null.json()["errors"][0]["field"] == "body.event_types"
    changed = await hooks.api.patch(url, json={"event_types": [VISIT], "partner": "OEM CRM"},
                                    headers={**admin, "If-Match": etag})
    assert changed.status_code == 200, changed.text
    assert changed.json()["event_types"] == [VISIT] and changed.json()["partner"] == "OEM CRM"
    assert changed.headers["ETag"] != etag
    assert (await hooks.api.patch(url, json={"active": False},
                                  headers={**admin, "If-Match": etag})).status_code == 412  # the old ETag

    rotate = f"{url}/rotate-secret"
    assert (await hooks.api.post(rotate, headers=admin)).status_code == 428
    rotated = await hooks.api.post(rotate, headers={**admin, "If-Match": changed.headers["ETag"]})
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != created["secret"]
    assert (await hooks.api.post(rotate, headers={**admin, "If-Match": changed.headers["ETag"]})).status_code == 412
    row = await hooks.endpoint_row(created["id"])
    assert row is not None and row.secret == new_secret

    # During the overlap (24 h by default) each request carries both signatures: the partner switches whenever
    # it deploys the new secret.
    assert rotated.json()["previous_secret_until"] is not None
    [queued] = await hooks.queue(visit_completed(hooks.group))
    hooks.receiver.secret = created["secret"]
    await hooks.deliverer().run_once()
    assert [r.verified for r in hooks.receiver.requests] == [True]
    assert len(hooks.receiver.requests[0].headers["webhook-signature"].split(" ")) == 2
    assert (await hooks.delivery(queued.id)).status == "delivered"

    # Rotated again without an overlap (the secret leaked): only the newest signs.
    again = await hooks.api.post(rotate, json={"overlap_hours": 0}, headers={**admin, "If-Match": rotated.headers["ETag"]})
    assert again.status_code == 200 and again.json()["previous_secret_until"] is None, again.text
    [queued] = await hooks.queue(visit_completed(hooks.group))
    hooks.receiver.secret = new_secret
    await hooks.deliverer().run_once()
    assert [r.verified for r in hooks.receiver.requests] == [True, False]
    hooks.receiver.secret = again.json()["secret"]
    hooks.clock.advance(seconds=10)
    await hooks.deliverer().run_once()
    assert [r.verified for r in hooks.receiver.requests] == [True, False, True]
    assert (await hooks.delivery(queued.id)).status == "delivered"

    gone = await hooks.api.delete(url, headers=admin)
    assert gone.status_code == 204
    assert (await hooks.api.get(url, headers=admin)).status_code == 404
    assert (await hooks.api.delete(url, headers=admin)).status_code == 404
    assert await hooks.deliveries() == []  # the history goes with the endpoint
    async with hooks.runtime.sessionmaker() as session:
        actions = (await session.scalars(sa.select(AuditEntry.action).where(
            AuditEntry.record_id == uuid.UUID(created["id"])).order_by(AuditEntry.at))).all()
    assert actions == ["create", "update", "rotate_secret", "rotate_secret", "delete"]


# --- fan-out and delivery ----------------------------------------------------------------------------------


async def test_a_real_event_is_fanned_out_signed_and_delivered_once(hooks: Harness, client: httpx.AsyncClient,
                                                                   event_tap: EventTap) -> None:
    created = await hooks.endpoint(event_types=[DELIVERED])
    vehicle = await new_vehicle(client, hooks.group)
    handover = await client.post(f"/api/v1/vehicles/{vehicle['id']}/delivery", json={"delivery_date": "2026-03-16"},
                                 headers=hooks.group.headers(Role.ADMIN))
    assert handover.status_code == 200, handover.text
    [event] = await event_tap.wait_for(DELIVERED, subject=vehicle["id"])
    # The worker's "webhooks" subscription fans it out too; a second fan-out of one event adds nothing.
    await hooks.queue(event, park=False)
    await hooks.queue(event, park=False)
    mine = hooks.deliverer(clock=utcnow)

    async def delivered() -> list[WebhookDelivery]:
        await mine.run_once()
        return [d for d in await hooks.deliveries(event_id=event.id) if d.status == "delivered"]

    [delivery] = await eventually(delivered)
    assert len(await hooks.deliveries()) == 1
    await asyncio.sleep(0.3)
    await mine.run_once()
    [request] = hooks.receiver.requests  # exactly once, whichever worker sent it
    assert request.verified and request.path == "/hooks/aftercare"
    assert request.webhook_id == str(delivery.id) and str(delivery.endpoint_id) == created["id"]
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == USER_AGENT
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
    body = request.json()
    assert body == event.model_dump(mode="json") == delivery.payload
    assert body["type"] == DELIVERED and body["data"]["vehicle_id"] == vehicle["id"]
    assert body["tenantid"] == str(hooks.group.tenant_id)
    assert delivery.attempts == 1 and delivery.last_status_code == 204 and delivery.delivered_at is not None


async def test_fan_out_follows_types_stores_and_state(nhooks: Harness) -> None:
    group = nhooks.group
    store_a = await nhooks.endpoint(event_types=[DELIVERED], store_ids=[str(group.store_a)])
    everywhere = await nhooks.endpoint(event_types=[VISIT])
    paused = await nhooks.endpoint(event_types=[DELIVERED, VISIT])
    etag = (await nhooks.api.get(f"{ENDPOINTS}/{paused['id']}", headers=group.headers())).headers["ETag"]
    assert (await nhooks.api.patch(f"{ENDPOINTS}/{paused['id']}", json={"active": False},
                                   headers=group.headers(**{"If-Match": etag}))).status_code == 200

    def to(rows: list[WebhookDelivery]) -> set[str]:
        return {str(r.endpoint_id) for r in rows}

    assert to(await nhooks.queue(vehicle_delivered(group, "A"))) == {store_a["id"]}
    assert to(await nhooks.queue(vehicle_delivered(group, "B"))) == set()
    assert to(await nhooks.queue(visit_completed(group, "B"))) == {everywhere["id"]}
    other = await make_group(group.runtime)
    assert to(await nhooks.queue(vehicle_delivered(other, "A"))) == set()
    assert set(PARTNER_EVENT_TYPES) >= {DELIVERED, VISIT}


async def test_failures_are_retried_on_the_schedule_until_delivered(hooks: Harness) -> None:
    await hooks.endpoint()
    hooks.receiver.will(500, 503)  # the 503 carries Retry-After: 900
    [queued] = await hooks.queue(vehicle_delivered(hooks.group))
    deliverer = hooks.deliverer()

    start = hooks.clock.at
    await deliverer.run_once()
    first = await hooks.delivery(queued.id)
    assert (first.status, first.attempts, first.last_status_code) == ("pending", 1, 500)
    assert first.last_error == "HTTP 500: partner says no"
    assert first.next_attempt_at is not None
    assert RETRY_SCHEDULE[0] <= (first.next_attempt_at - start).total_seconds() <= RETRY_SCHEDULE[0] * 1.1 + 0.01

    hooks.clock.at = first.next_attempt_at - timedelta(seconds=1)  # not due yet
    await deliverer.run_once()
    assert len(hooks.receiver.requests) == 1

    hooks.clock.at = first.next_attempt_at
    await deliverer.run_once()
    second = await hooks.delivery(queued.id)
    assert (second.status, second.attempts, second.last_status_code) == ("pending", 2, 503)
    assert second.next_attempt_at is not None
    # The schedule says 5 min after the 2nd failure; the partner's Retry-After (15 min) wins.
    assert (second.next_attempt_at - hooks.clock.at).total_seconds() == pytest.approx(900, abs=0.01)

    hooks.clock.at = second.next_attempt_at
    await deliverer.run_once()
    done = await hooks.delivery(queued.id)
    assert (done.status, done.attempts, done.last_status_code, done.last_error) == ("delivered", 3, 204, None)
    assert done.next_attempt_at is None and done.delivered_at is not None
    ids = hooks.receiver.ids()
    assert ids == [str(queued.id)] * 3 and all(r.verified for r in hooks.receiver.requests)


async def test_failed_attempts_leave_the_endpoints_etag_as_it_was(hooks: Harness) -> None:
    """A partner fixing its failing endpoint keeps its If-Match: failures and cooling are not changes of it."""
    made = await hooks.endpoint()
    url = f"{ENDPOINTS}/{made['id']}"
    etag = (await hooks.api.get(url, headers=hooks.group.headers(Role.ADMIN))).headers["ETag"]
    hooks.receiver.will(500, 500)
    for _ in range(2):
        await hooks.queue(vehicle_delivered(hooks.group))
        await hooks.deliverer().run_once()
        hooks.clock.advance(seconds=60)
    row = await hooks.endpoint_row(made["id"])
    assert row is not None and row.failures == 2 and row.cool_until is not None
    ping = await hooks.api.post(f"{url}/ping", headers=hooks.group.headers(Role.ADMIN))  # ends the cooling
    assert ping.status_code == 202, ping.text
    fixed = await hooks.api.patch(url, json={"url": hooks.receiver.url + "?v=2"},
                                  headers=hooks.group.headers(Role.ADMIN, **{"If-Match": etag}))
    assert fixed.status_code == 200, fixed.text
    assert fixed.headers["ETag"] != etag


async def test_dead_after_max_attempts_then_replayable(hooks: Harness) -> None:
    created = await hooks.endpoint()
    hooks.receiver.will(500, 502, 500)
    [queued] = await hooks.queue(vehicle_delivered(hooks.group))
    deliverer = hooks.deliverer(webhook_max_attempts=3)
    for _ in range(3):
        await deliverer.run_once()
        hooks.clock.advance(days=2)
    dead = await hooks.delivery(queued.id)
    assert (dead.status, dead.attempts, dead.next_attempt_at) == ("failed", 3, None)
    assert dead.last_error == "dead after 3 attempts; last: HTTP 500: partner says no"
    await deliverer.run_once()
    assert len(hooks.receiver.requests) == 3

    admin = hooks.group.headers(Role.ADMIN)
    failed = await hooks.api.get(DELIVERIES, params={"endpoint_id": created["id"], "status": "failed"},
                                 headers=admin)
    assert failed.status_code == 200
    assert [d["id"] for d in failed.json()["items"]] == [str(queued.id)]
    assert "payload" not in failed.json()["items"][0]

    replayed = await hooks.api.post(f"{DELIVERIES}/{queued.id}/replay", headers=admin)
    assert replayed.status_code == 202, replayed.text
    assert (replayed.json()["status"], replayed.json()["attempts"]) == ("pending", 0)
    mine = hooks.deliverer(clock=utcnow)

    async def delivered() -> bool:
        await mine.run_once()
        return (await hooks.delivery(queued.id)).status == "delivered"

    await eventually(delivered)
    assert hooks.receiver.ids() == [str(queued.id)] * 4  # the same webhook-id: the partner can dedupe
    assert hooks.receiver.requests[-1].verified
    assert (await hooks.delivery(queued.id)).attempts == 1


async def test_replay_of_a_delivered_delivery_sends_it_again(hooks: Harness) -> None:
    await hooks.endpoint()
    [queued] = await hooks.queue(visit_completed(hooks.group))
    await hooks.deliverer().run_once()
    assert (await hooks.delivery(queued.id)).status == "delivered"
    admin = hooks.group.headers(Role.ADMIN)

    detail = await hooks.api.get(f"{DELIVERIES}/{queued.id}", headers=admin)
    assert detail.status_code == 200 and detail.json()["payload"]["type"] == VISIT

    first = await hooks.api.post(f"{DELIVERIES}/{queued.id}/replay", headers=admin)
    assert first.status_code == 202 and first.json()["status"] == "pending"
    second = await hooks.api.post(f"{DELIVERIES}/{queued.id}/replay", headers=admin)  # still pending: no change
    assert second.status_code == 202 and second.json()["updated_at"] == first.json()["updated_at"]
    mine = hooks.deliverer(clock=utcnow)

    async def again() -> bool:
        await mine.run_once()
        return (await hooks.delivery(queued.id)).status == "delivered"

    await eventually(again)
    assert hooks.receiver.ids() == [str(queued.id)] * 2
    assert all(r.verified for r in hooks.receiver.requests)
    assert hooks.receiver.requests[0].body == hooks.receiver.requests[1].body
    async with hooks.runtime.sessionmaker() as session:
        actions = (await session.scalars(sa.select(AuditEntry.action).where(AuditEntry.record_id == queued.id))).all()
    assert list(actions) == ["replay"]


async def test_410_gone_disables_the_endpoint(hooks: Harness) -> None:
    created = await hooks.endpoint()
    hooks.receiver.will(410)
    [first] = await hooks.queue(vehicle_delivered(hooks.group))
    deliverer = hooks.deliverer()
    await deliverer.run_once()
    gone = await hooks.delivery(first.id)
    assert (gone.status, gone.last_status_code, gone.next_attempt_at) == ("failed", 410, None)
    endpoint = await hooks.endpoint_row(created["id"])
    assert endpoint is not None and endpoint.active is False
    shown = await hooks.api.get(f"{ENDPOINTS}/{created['id']}", headers=hooks.group.headers())
    assert shown.json()["active"] is False

    # Nothing new is queued for it, and what was already pending fails without a request.
    assert await hooks.queue(visit_completed(hooks.group)) == []
    async with hooks.runtime.sessionmaker() as session, session.begin():
        waiting = WebhookDelivery(tenant_id=hooks.group.tenant_id, endpoint_id=uuid.UUID(created["id"]),
                                  event_id=uuid.uuid4(), event_type=VISIT, payload={"type": VISIT},
                                  next_attempt_at=hooks.clock.at)
        session.add(waiting)
    await deliverer.run_once()
    assert len(hooks.receiver.requests) == 1
    stopped = await hooks.delivery(waiting.id)
    assert (stopped.status, stopped.last_error) == ("failed", "endpoint disabled")
    replay = await hooks.api.post(f"{DELIVERIES}/{first.id}/replay", headers=hooks.group.headers())
    assert replay.status_code == 422

    async with hooks.runtime.sessionmaker() as session:
        audit = (await session.scalars(sa.select(AuditEntry).where(
            AuditEntry.record_id == uuid.UUID(created["id"]), AuditEntry.action == "disable"))).one()
    assert audit.actor_kind == "system" and audit.after == {"active": False}


async def test_timeouts_and_redirects_are_failed_attempts(hooks: Harness) -> None:
    await hooks.endpoint()
    hooks.receiver.will("hang", "redirect")
    [queued] = await hooks.queue(vehicle_delivered(hooks.group))
    deliverer = hooks.deliverer(webhook_timeout_seconds=0.5)
    started = time.monotonic()
    await deliverer.run_once()
    assert time.monotonic() - started < 5
    hung = await hooks.delivery(queued.id)
    assert (hung.status, hung.last_status_code, hung.last_error) == ("pending", None, "no answer within 0.5 s")

    hooks.clock.advance(minutes=1)
    await deliverer.run_once()
    redirected = await hooks.delivery(queued.id)
    assert redirected.last_status_code == 302 and redirected.attempts == 2
    assert redirected.last_error is not None and "redirects are not followed" in redirected.last_error
    assert [r.path for r in hooks.receiver.requests] == ["/hooks/aftercare"] * 2  # /hooks/elsewhere never called


async def test_ping_and_the_delivery_log(hooks: Harness) -> None:
    created = await hooks.endpoint()
    admin = hooks.group.headers(Role.ADMIN)
    pings = []
    for _ in range(2):
        resp = await hooks.api.post(f"{ENDPOINTS}/{created['id']}/ping", headers=admin)
        assert resp.status_code == 202, resp.text
        assert resp.json()["event_type"] == "webhook.ping" and resp.json()["status"] == "pending"
        pings.append(resp.json()["id"])
    mine = hooks.deliverer(clock=utcnow)

    async def both_delivered() -> bool:
        await mine.run_once()
        return all(d.status == "delivered" for d in await hooks.deliveries()) and len(hooks.receiver.requests) == 2

    await eventually(both_delivered)
    assert sorted(hooks.receiver.ids()) == sorted(pings)
    body = hooks.receiver.requests[0].json()
    assert body["type"] == "webhook.ping" and body["data"]["endpoint_id"] == created["id"]
    assert all(r.verified for r in hooks.receiver.requests)

    page1 = await hooks.api.get(DELIVERIES, params={"limit": 1}, headers=admin)
    assert page1.status_code == 200 and [d["id"] for d in page1.json()["items"]] == [pings[1]]  # newest first
    page2 = await hooks.api.get(DELIVERIES, params={"limit": 1, "cursor": page1.json()["next_cursor"]},
                                headers=admin)
    assert [d["id"] for d in page2.json()["items"]] == [pings[0]] and page2.json()["next_cursor"] is None


async def test_another_dealer_group_sees_and_replays_nothing(hooks: Harness) -> None:
    created = await hooks.endpoint()
    [queued] = await hooks.queue(vehicle_delivered(hooks.group))
    await hooks.deliverer().run_once()
    other = (await make_group(hooks.group.runtime)).headers(Role.ADMIN)
    endpoint_url = f"{ENDPOINTS}/{created['id']}"
    assert (await hooks.api.get(ENDPOINTS, headers=other)).json()["items"] == []
    assert (await hooks.api.get(DELIVERIES, headers=other)).json()["items"] == []
    assert (await hooks.api.get(DELIVERIES, params={"endpoint_id": created["id"]}, headers=other)).status_code == 404
    assert (await hooks.api.get(endpoint_url, headers=other)).status_code == 404
    assert (await hooks.api.patch(endpoint_url, json={"active": False},
                                  headers={**other, "If-Match": "*"})).status_code == 404
    rotate = await hooks.api.post(f"{endpoint_url}/rotate-secret", headers={**other, "If-Match": "*"})
    assert rotate.status_code == 404
    assert (await hooks.api.post(f"{endpoint_url}/ping", headers=other)).status_code == 404
    assert (await hooks.api.delete(endpoint_url, headers=other)).status_code == 404
    assert (await hooks.api.get(f"{DELIVERIES}/{queued.id}", headers=other)).status_code == 404
    assert (await hooks.api.post(f"{DELIVERIES}/{queued.id}/replay", headers=other)).status_code == 404
    still = await hooks.delivery(queued.id)
    assert still.status == "delivered" and len(hooks.receiver.requests) == 1
    assert (await hooks.endpoint_row(created["id"])) is not None


# --- several workers ---------------------------------------------------------------------------------------


async def test_two_deliverers_never_deliver_one_delivery_twice(hooks: Harness) -> None:
    await hooks.endpoint()
    hooks.receiver.delay = 0.3
    queued = [d for _ in range(120) for d in await hooks.queue(vehicle_delivered(hooks.group))]
    one, two = hooks.deliverer(webhook_endpoint_concurrency=50), hooks.deliverer(webhook_endpoint_concurrency=50)
    # The second worker claims while the first one's batch is in flight (claimed, committed, not yet recorded).
    first = asyncio.create_task(one.run_once())
    await eventually(lambda: asyncio.sleep(0, result=bool(hooks.receiver.requests)))
    assert await two.run_once() == 50 and await first == 50  # each a batch of its own
    # And both at once, until nothing is left.
    while sum(await asyncio.gather(one.run_once(), two.run_once())):
        pass
    ids = hooks.receiver.ids()
    assert sorted(ids) == sorted(str(d.id) for d in queued)  # every one, and none twice
    assert all(d.status == "delivered" and d.attempts == 1 for d in await hooks.deliveries())


async def test_a_claim_lost_with_its_worker_is_retried_after_the_lease(hooks: Harness) -> None:
    await hooks.endpoint()
    hooks.receiver.will("hang")
    [queued] = await hooks.queue(vehicle_delivered(hooks.group))
    crashing = hooks.deliverer()
    attempt = asyncio.create_task(crashing.run_once())
    await eventually(lambda: asyncio.sleep(0, result=bool(hooks.receiver.requests)))
    attempt.cancel()  # the worker dies mid-request: its claim stays, unrecorded
    await asyncio.gather(attempt, return_exceptions=True)

    survivor = hooks.deliverer()
    await survivor.run_once()  # still leased to the dead worker: not taken
    assert len(hooks.receiver.requests) == 1
    hooks.clock.advance(seconds=hooks.runtime.settings.webhook_timeout_seconds + 31)
    await survivor.run_once()
    done = await hooks.delivery(queued.id)
    assert (done.status, done.attempts) == ("delivered", 2)  # the lost attempt counts towards the cap
    assert hooks.receiver.ids() == [str(queued.id)] * 2


async def visits_to(hooks: Harness, receiver: Receiver, partner: str) -> httpx.Response:
    """A second partner's endpoint for visits at ``receiver``; the harness's own one then takes deliveries."""
    made = await hooks.api.post(ENDPOINTS, headers=hooks.group.headers(Role.ADMIN), json={
        "partner": partner, "url": receiver.url, "event_types": [VISIT]})
    assert made.status_code == 201, made.text
    receiver.secret = made.json()["secret"]
    await hooks.endpoint(event_types=[DELIVERED])
    return made


async def test_a_failing_endpoint_cools_down_and_is_probed_so_it_never_holds_the_others_up(hooks: Harness) -> None:
    """Failures in a row cool an endpoint (5 s doubling): its deliveries wait while the others go; then one probe
    is tried before the rest, and a success ends the cooling."""
    down = await Receiver().start()
    try:
        made = await visits_to(hooks, down, "OEM down")
        down.will(500, 500)
        first = [(await hooks.queue(visit_completed(hooks.group)))[0] for _ in range(2)]
        deliverer = hooks.deliverer()
        await deliverer.run_once()
        assert len(down.requests) == 2
        # Two attempts claimed together failed together: one failure, 5 s of cooling.
        row = await hooks.endpoint_row(made.json()["id"])
        assert row is not None and row.failures == 1 and row.cool_until == hooks.clock.at + timedelta(seconds=5)

        # Its new deliveries are due at once, but it cools: only the other endpoint's delivery goes.
        later = [(await hooks.queue(visit_completed(hooks.group)))[0] for _ in range(2)]
        [other] = await hooks.queue(vehicle_delivered(hooks.group))
        hooks.clock.advance(seconds=3)
        await deliverer.run_once()
        assert len(down.requests) == 2 and (await hooks.delivery(other.id)).status == "delivered"

        # Cooled: one probe of its four due deliveries; it answers, so the rest go next.
        hooks.clock.advance(seconds=3)
        await deliverer.run_once()
        assert len(down.requests) == 3
        row = await hooks.endpoint_row(made.json()["id"])
        assert row is not None and (row.failures, row.cool_until) == (0, None)
        await deliverer.run_once()
        assert {(await hooks.delivery(d.id)).status for d in [*first, *later]} == {"delivered"}
        assert len(down.requests) == 6
    finally:
        await down.close()


async def test_a_slow_partner_holds_only_its_share_of_the_workers_attempts(hooks: Harness) -> None:
    """The worker loop keeps attempts in flight and claims more as each ends: a partner answering slowly gets at
    most its share (``webhook_endpoint_concurrency``) at once, and the other partners' deliveries go meanwhile."""
    slow = await Receiver(delay=2.0).start()
    try:
        await visits_to(hooks, slow, "OEM slow")
        backlog = [(await hooks.queue(visit_completed(hooks.group)))[0] for _ in range(4)]
        deliverer = hooks.deliverer(webhook_endpoint_concurrency=3)
        woke = asyncio.Event()
        deliverer.wake = woke.set  # the worker loop's nudge
        assert await deliverer.step() == 3  # its share; nothing else was due, so the loop would pause
        [other] = await hooks.queue(vehicle_delivered(hooks.group))
        assert await deliverer.step() == 1  # the slow partner's fourth waits for one of its three
        await eventually(lambda: _status(hooks, other.id, "delivered"), timeout=1.5)
        assert len(slow.requests) == 3
        assert [(await hooks.delivery(d.id)).status for d in backlog] == ["pending"] * 4

        assert not woke.is_set()
        assert await deliverer.run_once() == 0  # waits for the three (the fourth is still held back)
        assert woke.is_set()  # the loop is woken to claim the fourth at once, not at its next poll
        assert await deliverer.run_once() == 1
        assert {(await hooks.delivery(d.id)).status for d in backlog} == {"delivered"}
        assert sorted(slow.ids()) == sorted(str(d.id) for d in backlog)
    finally:
        await slow.close()


async def _status(hooks: Harness, delivery_id: uuid.UUID, status: str) -> bool:
    return (await hooks.delivery(delivery_id)).status == status


async def test_responses_are_asked_for_uncompressed(hooks: Harness) -> None:
    """A partner's error page is read as sent, never inflated (a small gzip body can inflate to gigabytes)."""
    await hooks.endpoint()
    await hooks.queue(visit_completed(hooks.group))
    await hooks.deliverer().run_once()
    assert hooks.receiver.requests[0].headers["accept-encoding"] == "identity"


async def test_an_invalid_international_host_is_a_422(hooks: Harness) -> None:
    resp = await hooks.api.post(ENDPOINTS, headers=hooks.group.headers(Role.ADMIN), json={
        "partner": "x", "url": "https://xn--zz/hooks", "event_types": [VISIT]})
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "body.url", resp.text
