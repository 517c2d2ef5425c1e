"""Partner webhooks through integration keys: a partner with a ``webhooks:manage`` key subscribes its own endpoint,
receives signed deliveries of real broker events of its key's stores only, lists and replays its deliveries, and
cannot see another key's; store filters stay within the key; admins still see every endpoint of the group.

Events travel the real path: published on RabbitMQ, fanned out by notify_svc's consumer, delivered by the
runtime's webhook loop to a local receiver that verifies each signature (``Receiver`` of ``test_webhooks``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from notify_svc.app import NotifyRuntime
from notify_svc.models import WebhookDelivery, WebhookEndpoint, messaging
from notify_svc.webhooks.fanout import EVENT_SCOPES, PARTNER_EVENT_TYPES, wants
from shared.auth.roles import Role
from shared.db.base import utcnow
from shared.events.catalog.customer import ServiceVisitCompleted
from shared.events.catalog.survey import ComplaintOpened, SurveyLowScore
from shared.events import catalog
from shared.events.envelope import CloudEvent, build_event, registry
from shared.messaging.amqp import AmqpPublisher
from shared.testing.waiting import eventually
from tests.conftest import Group, make_group
from tests.notify_svc.test_webhooks import Receiver, receiving

ENDPOINTS = "/api/v1/webhooks/endpoints"
DELIVERIES = "/api/v1/webhooks/deliveries"
LOW = "survey.response.low_score.v1"
OPENED = "survey.complaint.opened.v1"
SCOPE = "webhooks:manage"
#: What a partner feed's key holds: webhooks, and reading what its subscribed events carry.
FEED = (SCOPE, *sorted(set(EVENT_SCOPES.values())))


@dataclass
class Partner:
    key_id: uuid.UUID
    headers: dict[str, str]


async def real_key(client: httpx.AsyncClient, group: Group, stores: Sequence[str],
                   scopes: Sequence[str] = FEED) -> Partner:
    """An integration key made by the group's admin in customer_svc and exchanged for a token, as a partner does."""
    created = await client.post("/api/v1/api-keys", headers=group.headers(Role.ADMIN), json={
        "name": "OEM feedback feed", "scopes": list(scopes), "store_ids": [str(group.stores[s]) for s in stores]})
    assert created.status_code == 201, created.text
    token = await client.post("/api/v1/auth/token", json={"api_key": created.json()["api_key"]})
    assert token.status_code == 200, token.text
    return Partner(uuid.UUID(created.json()["id"]), {"Authorization": f"Bearer {token.json()['access_token']}"})


def minted(group: Group, stores: Sequence[str], scopes: Sequence[str] = FEED) -> Partner:
    """A token as customer_svc issues it for a key (the key itself is not needed by notify_svc)."""
    key_id = uuid.uuid4()
    token, _ = group.runtime.issuer.issue(subject=key_id, tenant_id=group.tenant_id,
                                          store_ids=[group.stores[s] for s in stores], roles=["integration"],
                                          scopes=list(scopes), kind="integration")
    return Partner(key_id, {"Authorization": f"Bearer {token}"})


def low_score(group: Group, store: str = "A") -> CloudEvent:
    data = SurveyLowScore(invitation_id=uuid.uuid4(), survey="service_satisfaction", survey_version=1,
                          customer_id=uuid.uuid4(), about_type="visit", about_id=uuid.uuid4(),
                          response_id=uuid.uuid4(), satisfaction_index=40.0, nps_score=3, reasons=["q1: 25"],
                          answered_at=utcnow())
    return build_event(data, source="survey_svc", tenant_id=group.tenant_id, store_id=group.stores[store])


def complaint_opened(group: Group, store: str = "A") -> CloudEvent:
    now = utcnow()
    data = ComplaintOpened(complaint_id=uuid.uuid4(), number="C202612-0001", channel="phone", category="service",
                           severity="medium", nature="attitude", kind="complaint", status="ongoing", opened_at=now,
                           first_response_due=now + timedelta(hours=1), resolution_due=now + timedelta(days=3))
    return build_event(data, source="survey_svc", tenant_id=group.tenant_id, store_id=group.stores[store])


def visit_completed(group: Group, store: str = "A") -> CloudEvent:
    data = ServiceVisitCompleted(visit_id=uuid.uuid4(), vehicle_id=uuid.uuid4(), customer_id=uuid.uuid4(),
                                 visit_type="maintenance", completed_at=utcnow())
    return build_event(data, source="customer_svc", tenant_id=group.tenant_id, store_id=group.stores[store])


async def publish(runtime: NotifyRuntime, *events: CloudEvent) -> None:
    """Publish on the real broker, as the other services' relays do."""
    publisher = AmqpPublisher(runtime.settings.amqp_url or "", runtime.settings.exchange)
    try:
        assert await publisher.publish_batch(list(events)) == [None] * len(events)
    finally:
        await publisher.close()


async def handled(runtime: NotifyRuntime, *events: CloudEvent) -> None:
    """Wait until notify_svc's webhook fan-out has consumed every one of ``events`` (its inbox rows)."""
    inbox = messaging.inbox
    ids = [e.id for e in events]

    async def done() -> bool:
        async with runtime.sessionmaker() as s:
            seen = set((await s.scalars(sa.select(inbox.event_id).where(
                inbox.event_id.in_(ids), inbox.consumer.like("%.webhooks")))).all())
        return seen == set(ids)

    await eventually(done)


async def deliveries(runtime: NotifyRuntime, group: Group, **where: object) -> list[WebhookDelivery]:
    async with runtime.sessionmaker() as s:
        stmt = sa.select(WebhookDelivery).where(WebhookDelivery.tenant_id == group.tenant_id)
        for name, value in where.items():
            stmt = stmt.where(getattr(WebhookDelivery, name) == value)
        return list((await s.scalars(stmt.order_by(WebhookDelivery.id))).all())


@pytest.fixture
async def receiver(notify_runtime: NotifyRuntime, group: Group) -> AsyncIterator[Receiver]:
    async with receiving(notify_runtime, group.tenant_id) as started:
        yield started


async def subscribe(api: httpx.AsyncClient, partner: Partner, receiver: Receiver, **overrides: object) -> dict:
    body = {"partner": "OEM quality", "url": receiver.url, "event_types": [LOW, OPENED], **overrides}
    resp = await api.post(ENDPOINTS, json=body, headers=partner.headers)
    assert resp.status_code == 201, resp.text
    receiver.secret = resp.json()["secret"]
    return resp.json()


# --- the partner's own subscription, end to end ------------------------------------------------------------


async def test_a_partner_key_subscribes_receives_its_stores_events_signed_and_replays_one(
        client: httpx.AsyncClient, notify_client: httpx.AsyncClient, notify_runtime: NotifyRuntime, group: Group,
        receiver: Receiver) -> None:
    partner = await real_key(client, group, stores=["A"])
    created = await subscribe(notify_client, partner, receiver)
    # No store filter given: the key's stores, stored explicitly (never "the whole group").
    assert created["store_ids"] == [str(group.store_a)]
    assert created["api_key_id"] == str(partner.key_id) and created["event_types"] == [LOW, OPENED]

    # Store B's events and a type it did not subscribe to go through the same consumer first.
    elsewhere = [low_score(group, "B"), complaint_opened(group, "B"), visit_completed(group, "A")]
    await publish(notify_runtime, *elsewhere)
    await handled(notify_runtime, *elsewhere)
    mine = [low_score(group, "A"), complaint_opened(group, "A")]
    await publish(notify_runtime, *mine)

    async def arrived() -> bool:
        return len(receiver.requests) >= 2 and all(d.status == "delivered" for d in
                                                   await deliveries(notify_runtime, group))

    await eventually(arrived, timeout=20)
    assert all(r.verified for r in receiver.requests)
    assert sorted(r.json()["id"] for r in receiver.requests) == sorted(str(e.id) for e in mine)
    assert {r.json()["type"] for r in receiver.requests} == {LOW, OPENED}
    assert {r.json()["storeid"] for r in receiver.requests} == {str(group.store_a)}
    rows = await deliveries(notify_runtime, group)
    assert sorted(r.event_id for r in rows) == sorted(e.id for e in mine)  # nothing queued for store B
    assert sorted(receiver.ids()) == sorted(str(r.id) for r in rows)

    # The partner reads its delivery log and replays one: sent again with the same webhook-id.
    listed = await notify_client.get(DELIVERIES, headers=partner.headers)
    assert listed.status_code == 200, listed.text
    assert sorted(d["id"] for d in listed.json()["items"]) == sorted(str(r.id) for r in rows)
    low = next(r for r in rows if r.event_type == LOW)
    detail = await notify_client.get(f"{DELIVERIES}/{low.id}", headers=partner.headers)
    assert detail.status_code == 200 and detail.json()["payload"]["type"] == LOW
    replayed = await notify_client.post(f"{DELIVERIES}/{low.id}/replay", headers=partner.headers)
    assert replayed.status_code == 202, replayed.text
    assert (replayed.json()["id"], replayed.json()["status"]) == (str(low.id), "pending")

    async def again() -> bool:
        return receiver.ids().count(str(low.id)) == 2 and all(
            d.status == "delivered" for d in await deliveries(notify_runtime, group))

    await eventually(again, timeout=20)
    assert len(receiver.requests) == 3 and receiver.requests[-1].verified

    # Admins still see the partner's endpoint, and whose it is.
    shown = await notify_client.get(ENDPOINTS, headers=group.headers(Role.CS_DIRECTOR))
    assert [(e["id"], e["api_key_id"]) for e in shown.json()["items"]] == [(created["id"], str(partner.key_id))]


async def test_another_key_neither_sees_nor_replays_a_partners_endpoint(
        notify_client: httpx.AsyncClient, notify_runtime: NotifyRuntime, group: Group, receiver: Receiver) -> None:
    owner, stranger = minted(group, ["A", "B"]), minted(group, ["A", "B"])
    created = await subscribe(notify_client, owner, receiver)
    ping = await notify_client.post(f"{ENDPOINTS}/{created['id']}/ping", headers=owner.headers)
    assert ping.status_code == 202, ping.text
    delivery_id = ping.json()["id"]

    async def delivered() -> bool:
        return [d.status for d in await deliveries(notify_runtime, group, id=uuid.UUID(delivery_id))] == ["delivered"]

    await eventually(delivered, timeout=20)
    theirs = (await notify_client.post(ENDPOINTS, headers=stranger.headers, json={
        "partner": "Another OEM", "url": receiver.url.replace("/hooks/", "/other/"), "event_types": [OPENED]})).json()

    endpoint_url, other = f"{ENDPOINTS}/{created['id']}", stranger.headers
    assert [e["id"] for e in (await notify_client.get(ENDPOINTS, headers=other)).json()["items"]] == [theirs["id"]]
    assert (await notify_client.get(DELIVERIES, headers=other)).json()["items"] == []
    assert (await notify_client.get(DELIVERIES, params={"endpoint_id": created["id"]},
                                    headers=other)).status_code == 404
    assert (await notify_client.get(endpoint_url, headers=other)).status_code == 404
    assert (await notify_client.patch(endpoint_url, json={"active": False},
                                      headers={**other, "If-Match": "*"})).status_code == 404
    assert (await notify_client.post(f"{endpoint_url}/rotate-secret",
                                     headers={**other, "If-Match": "*"})).status_code == 404
    assert (await notify_client.post(f"{endpoint_url}/ping", headers=other)).status_code == 404
    assert (await notify_client.delete(endpoint_url, headers=other)).status_code == 404
    assert (await notify_client.get(f"{DELIVERIES}/{delivery_id}", headers=other)).status_code == 404
    assert (await notify_client.post(f"{DELIVERIES}/{delivery_id}/replay", headers=other)).status_code == 404
    assert [d.status for d in await deliveries(notify_runtime, group, id=uuid.UUID(delivery_id))] == ["delivered"]
    assert len(receiver.requests) == 1

    # The owner sees only its own; an admin sees both, each with its key.
    mine = await notify_client.get(ENDPOINTS, headers=owner.headers)
    assert [e["id"] for e in mine.json()["items"]] == [created["id"]]
    assert [d["id"] for d in (await notify_client.get(DELIVERIES, headers=owner.headers)).json()["items"]] == [
        delivery_id]
    admin = await notify_client.get(ENDPOINTS, headers=group.headers(Role.ADMIN))
    assert {e["id"]: e["api_key_id"] for e in admin.json()["items"]} == {
        created["id"]: str(owner.key_id), theirs["id"]: str(stranger.key_id)}
    assert (await notify_client.get(f"{DELIVERIES}/{delivery_id}", headers=group.headers(Role.ADMIN))
            ).status_code == 200

    # A key of another dealer group (even one with the same key id) sees nothing either.
    foreign = await make_group(group.runtime)
    token, _ = foreign.runtime.issuer.issue(subject=owner.key_id, tenant_id=foreign.tenant_id,
                                            store_ids=[foreign.store_a], roles=["integration"], scopes=[SCOPE],
                                            kind="integration")
    impostor = {"Authorization": f"Bearer {token}"}
    assert (await notify_client.get(endpoint_url, headers=impostor)).status_code == 404
    assert (await notify_client.get(ENDPOINTS, headers=impostor)).json()["items"] == []

    # The owner manages its endpoint: pause, then delete.
    etag = (await notify_client.get(endpoint_url, headers=owner.headers)).headers["ETag"]
    paused = await notify_client.patch(endpoint_url, json={"active": False},
                                       headers={**owner.headers, "If-Match": etag})
    assert paused.status_code == 200 and paused.json()["active"] is False
    assert (await notify_client.delete(endpoint_url, headers=owner.headers)).status_code == 204


async def test_a_key_without_the_scope_is_refused(client: httpx.AsyncClient, notify_client: httpx.AsyncClient,
                                                  group: Group, receiver: Receiver) -> None:
    real = await real_key(client, group, stores=["A"], scopes=["surveys:read", "complaints:read"])
    for partner in (real, minted(group, ["A"], scopes=["customers:write"])):
        assert (await notify_client.get(ENDPOINTS, headers=partner.headers)).status_code == 403
        assert (await notify_client.get(DELIVERIES, headers=partner.headers)).status_code == 403
        refused = await notify_client.post(ENDPOINTS, headers=partner.headers, json={
            "partner": "OEM", "url": receiver.url, "event_types": [LOW]})
        assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"


# --- stores stay within the key ----------------------------------------------------------------------------


async def test_a_partners_stores_must_be_its_keys(notify_client: httpx.AsyncClient, group: Group,
                                                  receiver: Receiver) -> None:
    partner = minted(group, ["A"])
    base = {"partner": "OEM", "url": receiver.url, "event_types": [LOW]}
    for stores, field in (([group.store_b], "body.store_ids.0"), ([group.store_a, group.store_b], "body.store_ids.1"),
                          ([uuid.uuid4()], "body.store_ids.0")):
        resp = await notify_client.post(ENDPOINTS, headers=partner.headers,
                                        json={**base, "store_ids": [str(s) for s in stores]})
        assert resp.status_code == 422, resp.text
        assert resp.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in resp.json()["errors"]] == [field]

    created = await subscribe(notify_client, partner, receiver, store_ids=[str(group.store_a)])
    url = f"{ENDPOINTS}/{created['id']}"
    etag = (await notify_client.get(url, headers=partner.headers)).headers["ETag"]
    widened = await notify_client.patch(url, json={"store_ids": [str(group.store_b)]},
                                        headers={**partner.headers, "If-Match": etag})
    assert widened.status_code == 422 and widened.json()["errors"][0]["field"] == "body.store_ids.0"
    emptied = await notify_client.patch(url, json={"store_ids": []}, headers={**partner.headers, "If-Match": etag})
    assert emptied.status_code == 200 and emptied.json()["store_ids"] == [str(group.store_a)]


async def test_admins_may_narrow_a_partners_stores_but_not_widen_them(notify_client: httpx.AsyncClient,
                                                                      group: Group, receiver: Receiver) -> None:
    partner = minted(group, ["A", "B"])
    created = await subscribe(notify_client, partner, receiver)
    assert sorted(created["store_ids"]) == sorted([str(group.store_a), str(group.store_b)])
    url, admin = f"{ENDPOINTS}/{created['id']}", group.headers(Role.ADMIN)

    def at(etag: str) -> dict[str, str]:
        return {**admin, "If-Match": etag}

    etag = (await notify_client.get(url, headers=admin)).headers["ETag"]
    whole_group = await notify_client.patch(url, json={"store_ids": []}, headers=at(etag))
    assert whole_group.status_code == 422 and whole_group.json()["errors"][0]["field"] == "body.store_ids"
    narrowed = await notify_client.patch(url, json={"store_ids": [str(group.store_b)]}, headers=at(etag))
    assert narrowed.status_code == 200 and narrowed.json()["store_ids"] == [str(group.store_b)]
    widened = await notify_client.patch(url, json={"store_ids": [str(group.store_b), str(group.store_a)]},
                                        headers=at(narrowed.headers["ETag"]))
    assert widened.status_code == 422 and widened.json()["errors"][0]["field"] == "body.store_ids.1"
    # The partner itself may take its key's stores back.
    back = await notify_client.patch(url, json={"store_ids": []},
                                     headers={**partner.headers, "If-Match": narrowed.headers["ETag"]})
    assert back.status_code == 200
    assert sorted(back.json()["store_ids"]) == sorted([str(group.store_a), str(group.store_b)])


async def test_a_keys_endpoint_without_stores_takes_nothing(notify_client: httpx.AsyncClient,
                                                            notify_runtime: NotifyRuntime, group: Group,
                                                            receiver: Receiver) -> None:
    """Fan-out's own guard: even a key's endpoint whose store list was emptied outside the API gets no event of a
    store outside its key (an admin's endpoint without stores takes the group's)."""
    event = low_score(group, "B")
    assert wants([], [LOW], event) and not wants([], [LOW], event, owned=True)
    assert wants([str(group.store_b)], [LOW], event, owned=True)
    assert not wants([str(group.store_a)], [LOW], event, owned=True)

    created = await subscribe(notify_client, minted(group, ["A"]), receiver)
    async with notify_runtime.sessionmaker() as session, session.begin():
        await session.execute(sa.update(WebhookEndpoint).where(WebhookEndpoint.id == uuid.UUID(created["id"]))
                              .values(store_ids=[]))
    both = [event, low_score(group, "A")]
    await publish(notify_runtime, *both)
    await handled(notify_runtime, *both)
    assert await deliveries(notify_runtime, group) == []


def test_the_partner_catalog_covers_the_issue_and_exists() -> None:
    wanted = {"survey.response.answered.v1", "survey.response.low_score.v1", "survey.complaint.opened.v1",
              "survey.complaint.escalated.v1", "survey.complaint.resolved.v1", "survey.complaint.closed.v1",
              "customer.vehicle.delivered.v1", "customer.visit.completed.v1"}
    assert wanted <= set(PARTNER_EVENT_TYPES)
    assert catalog is not None and set(PARTNER_EVENT_TYPES) <= set(registry)  # each a type of the event catalog


async def test_a_partners_endpoints_follow_its_key(client: httpx.AsyncClient, notify_client: httpx.AsyncClient,
                                                   notify_runtime: NotifyRuntime, group: Group,
                                                   receiver: Receiver) -> None:
    """Stores taken from the key are taken from its endpoints; a revoked key's endpoints stop."""
    partner = await real_key(client, group, stores=["A", "B"])
    created = await subscribe(notify_client, partner, receiver)
    assert sorted(created["store_ids"]) == sorted([str(group.store_a), str(group.store_b)])
    key = await client.get(f"/api/v1/api-keys/{partner.key_id}", headers=group.headers(Role.ADMIN))
    narrowed = await client.patch(f"/api/v1/api-keys/{partner.key_id}", json={"store_ids": [str(group.store_a)]},
                                  headers=group.headers(Role.ADMIN, **{"If-Match": key.headers["etag"]}))
    assert narrowed.status_code == 200, narrowed.text

    async def endpoint() -> WebhookEndpoint:
        async with notify_runtime.sessionmaker() as session:
            found = await session.get(WebhookEndpoint, uuid.UUID(created["id"]))
            assert found is not None
            return found

    async def only_store_a() -> bool:
        return (await endpoint()).store_ids == [str(group.store_a)]

    await eventually(only_store_a)
    assert (await endpoint()).active
    revoked = await client.delete(f"/api/v1/api-keys/{partner.key_id}", headers=group.headers(Role.ADMIN))
    assert revoked.status_code == 204

    async def stopped() -> bool:
        return not (await endpoint()).active

    await eventually(stopped)
    after = low_score(group, "A")
    await publish(notify_runtime, after)
    await handled(notify_runtime, after)
    assert await deliveries(notify_runtime, group) == []  # nothing queued for a stopped endpoint
