"""Partner webhooks follow the integration key's latest state, not the token's claims alone: a token stays valid for
up to 15 minutes after its key was revoked, lost ``webhooks:manage`` or lost a store, and must not create or
re-activate an endpoint, widen one, or get events of a store taken from the key. Free text that may hold a phone
number (a low score's ``comment``, a completed task's ``outcome.summary``) reaches a key only masked, unless the
key holds ``pii:read``.

Keys are real (customer_svc creates, changes and revokes them and publishes ``customer.api_key.changed.v1`` on the
real broker); events reach notify_svc's fan-out through RabbitMQ, deliveries a local receiver.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from notify_svc.app import NotifyRuntime
from notify_svc.models import ApiKeyView, WebhookDelivery, WebhookEndpoint
from notify_svc.webhooks.keys import follow_key
from shared.auth.roles import Role
from shared.db.base import utcnow
from shared.events.catalog.customer import ApiKeyChanged
from shared.events.catalog.followup import TaskCompleted
from shared.events.catalog.survey import SurveyLowScore
from shared.events.envelope import CloudEvent, build_event
from shared.testing.waiting import eventually
from tests.conftest import Group
from tests.notify_svc.test_partner_webhooks import (DELIVERIES, ENDPOINTS, FEED, LOW, Partner, deliveries, handled,
                                                    low_score, minted, publish, real_key, subscribe)
from tests.notify_svc.test_webhooks import Receiver, receiving

DONE = "followup.task.completed.v1"
KEYS = "/api/v1/api-keys"
PHONE_TEXT = "客户说请打13800138000或+8613900139000，别打座机"
MASKED_TEXT = "客户说请打138****8000或+86139****9000，别打座机"


@pytest.fixture
async def receiver(notify_runtime: NotifyRuntime, group: Group) -> AsyncIterator[Receiver]:
    async with receiving(notify_runtime, group.tenant_id) as started:
        yield started


async def change_key(client: httpx.AsyncClient, group: Group, partner: Partner, **changes: Any) -> None:
    """What the group's admin does in customer_svc: PATCH the key (its token stays valid as it was)."""
    current = await client.get(f"{KEYS}/{partner.key_id}", headers=group.headers(Role.ADMIN))
    body = {k: [str(group.stores[s]) for s in v] if k == "store_ids" else v for k, v in changes.items()}
    changed = await client.patch(f"{KEYS}/{partner.key_id}", json=body,
                                 headers=group.headers(Role.ADMIN, **{"If-Match": current.headers["etag"]}))
    assert changed.status_code == 200, changed.text


async def revoke(client: httpx.AsyncClient, group: Group, partner: Partner) -> None:
    revoked = await client.delete(f"{KEYS}/{partner.key_id}", headers=group.headers(Role.ADMIN))
    assert revoked.status_code == 204, revoked.text


async def key_state(runtime: NotifyRuntime, group: Group, key_id: uuid.UUID) -> ApiKeyView | None:
    async with runtime.sessionmaker() as session:
        return await session.get(ApiKeyView, (group.tenant_id, key_id))


async def heard(runtime: NotifyRuntime, group: Group, partner: Partner, *, revoked: bool = False,
                scopes: list[str] | None = None, stores: list[str] | None = None) -> None:
    """Wait until notify_svc consumed the key's change (its state of the key says so)."""
    async def done() -> bool:
        key = await key_state(runtime, group, partner.key_id)
        return key is not None and key.changed_at is not None and key.revoked == revoked and (
            scopes is None or key.scopes == sorted(scopes)) and (
            stores is None or key.store_ids == sorted(str(group.stores[s]) for s in stores))

    await eventually(done)


async def endpoint_row(runtime: NotifyRuntime, endpoint_id: str) -> WebhookEndpoint:
    async with runtime.sessionmaker() as session:
        found = await session.get(WebhookEndpoint, uuid.UUID(endpoint_id))
        assert found is not None
        return found


def task_completed(group: Group, store: str = "A", summary: str = PHONE_TEXT) -> CloudEvent:
    data = TaskCompleted(task_id=uuid.uuid4(), occurrence_key=f"test:{uuid.uuid4()}", rule_key="callback_d3",
                         customer_id=uuid.uuid4(), status="done",
                         outcome={"reached": True, "satisfaction": 3, "summary": summary},
                         completed_at=utcnow(), on_time=True)
    return build_event(data, source="followup_svc", tenant_id=group.tenant_id, store_id=group.stores[store])


def commented(group: Group, store: str = "A", comment: str = PHONE_TEXT) -> CloudEvent:
    event = low_score(group, store)
    data = SurveyLowScore.model_validate({**event.data, "comment": comment, "reasons": ["comment"]})
    return build_event(data, source="survey_svc", tenant_id=group.tenant_id, store_id=group.stores[store])


# --- a revoked key, or one without the scope, with a token still valid -------------------------------------


async def test_a_revoked_keys_valid_token_neither_creates_nor_reactivates_an_endpoint(
        client: httpx.AsyncClient, notify_client: httpx.AsyncClient, notify_runtime: NotifyRuntime, group: Group,
        receiver: Receiver) -> None:
    partner = await real_key(client, group, stores=["A", "B"])
    created = await subscribe(notify_client, partner, receiver)
    url = f"{ENDPOINTS}/{created['id']}"
    await revoke(client, group, partner)
    await heard(notify_runtime, group, partner, revoked=True)
    assert not (await endpoint_row(notify_runtime, created["id"])).active  # follow_key stopped it

    # The token the partner holds is still valid, but reads and manages nothing any more (its endpoints' URLs
    # may carry its own tokens).
    for read in (url, ENDPOINTS):
        denied = await notify_client.get(read, headers=partner.headers)
        assert denied.status_code == 403 and "revoked" in denied.json()["detail"], denied.text
    shown = await notify_client.get(url, headers=group.headers(Role.ADMIN))
    assert shown.status_code == 200 and shown.json()["active"] is False
    again = await notify_client.post(ENDPOINTS, headers=partner.headers, json={
        "partner": "OEM", "url": receiver.url, "event_types": [LOW]})
    assert again.status_code == 403, again.text
    assert again.headers["content-type"] == "application/problem+json" and "revoked" in again.json()["detail"]
    reactivated = await notify_client.patch(url, json={"active": True},
                                            headers={**partner.headers, "If-Match": shown.headers["ETag"]})
    assert reactivated.status_code == 403, reactivated.text
    assert reactivated.headers["content-type"] == "application/problem+json"

    # Nor may staff turn the revoked key's endpoint back on.
    admin = await notify_client.patch(url, json={"active": True},
                                      headers=group.headers(Role.ADMIN, **{"If-Match": shown.headers["ETag"]}))
    assert admin.status_code == 422 and [e["field"] for e in admin.json()["errors"]] == ["body.active"]

    listed = await notify_client.get(ENDPOINTS, headers=group.headers(Role.ADMIN))
    assert [(e["id"], e["active"]) for e in listed.json()["items"]] == [(created["id"], False)]
    event = low_score(group, "A")
    await publish(notify_runtime, event)
    await handled(notify_runtime, event)
    assert await deliveries(notify_runtime, group) == []


async def test_a_key_that_lost_the_scope_creates_nothing_with_its_old_token(
        client: httpx.AsyncClient, notify_client: httpx.AsyncClient, notify_runtime: NotifyRuntime, group: Group,
        receiver: Receiver) -> None:
    partner = await real_key(client, group, stores=["A"])
    created = await subscribe(notify_client, partner, receiver)
    await change_key(client, group, partner, scopes=["surveys:read"])
    await heard(notify_runtime, group, partner, scopes=["surveys:read"])

    refused = await notify_client.post(ENDPOINTS, headers=partner.headers, json={
        "partner": "OEM", "url": receiver.url, "event_types": [LOW]})
    assert refused.status_code == 403 and "webhooks:manage" in refused.json()["detail"]
    url = f"{ENDPOINTS}/{created['id']}"
    assert (await notify_client.get(url, headers=partner.headers)).status_code == 403
    etag = (await notify_client.get(url, headers=group.headers(Role.ADMIN))).headers["ETag"]
    assert (await notify_client.patch(url, json={"active": True},
                                      headers={**partner.headers, "If-Match": etag})).status_code == 403


async def test_a_keys_state_is_the_newest_event_and_a_revocation_stays(notify_client: httpx.AsyncClient,
                                                                        notify_runtime: NotifyRuntime, group: Group,
                                                                        receiver: Receiver) -> None:
    """Out of order (a redelivery, concurrent consumers): an older change never undoes a newer one."""
    partner = minted(group, ["A", "B"])
    created = await subscribe(notify_client, partner, receiver)
    # The token's claims were kept when it saved the endpoint (no event yet: the key is as it was created).
    seeded = await key_state(notify_runtime, group, partner.key_id)
    assert seeded is not None and seeded.changed_at is None and seeded.scopes == sorted(FEED)
    assert seeded.store_ids == sorted([str(group.store_a), str(group.store_b)])

    def change(minutes: int, stores: list[str], revoked: bool = False) -> CloudEvent:
        data = ApiKeyChanged(api_key_id=partner.key_id, scopes=list(FEED),
                             store_ids=[group.stores[s] for s in stores], revoked=revoked)
        event = build_event(data, source="customer_svc", tenant_id=group.tenant_id, store_id=None)
        return event.model_copy(update={"time": utcnow() + timedelta(minutes=minutes)})

    async def follow(event: CloudEvent) -> None:
        async with notify_runtime.sessionmaker() as session, session.begin():
            await follow_key(session, event)

    await follow(change(2, ["A"]))
    await follow(change(1, ["A", "B"]))  # older: ignored, and the endpoint keeps its narrowing
    key = await key_state(notify_runtime, group, partner.key_id)
    assert key is not None and key.store_ids == [str(group.store_a)] and not key.revoked
    endpoint = await endpoint_row(notify_runtime, created["id"])
    assert (endpoint.active, endpoint.store_ids) == (True, [str(group.store_a)])

    await follow(change(3, ["A"], revoked=True))
    await follow(change(4, ["A", "B"]))  # not a real sequence (a revoked key never changes), but it must not revive
    key = await key_state(notify_runtime, group, partner.key_id)
    assert key is not None and key.revoked
    assert not (await endpoint_row(notify_runtime, created["id"])).active
    refused = await notify_client.post(ENDPOINTS, headers=partner.headers, json={
        "partner": "OEM", "url": receiver.url, "event_types": [LOW]})
    assert refused.status_code == 403


# --- stores taken from the key ---------------------------------------------------------------------------


async def test_a_store_taken_from_the_key_gets_no_endpoint_and_no_delivery(
        client: httpx.AsyncClient, notify_client: httpx.AsyncClient, notify_runtime: NotifyRuntime, group: Group,
        receiver: Receiver) -> None:
    partner = await real_key(client, group, stores=["A", "B"])  # its token lists A and B until it expires
    first = await subscribe(notify_client, partner, receiver)
    await change_key(client, group, partner, store_ids=["A"])
    await heard(notify_runtime, group, partner, stores=["A"])
    assert (await endpoint_row(notify_runtime, first["id"])).store_ids == [str(group.store_a)]

    base = {"partner": "OEM", "url": receiver.url, "event_types": [LOW]}
    named = await notify_client.post(ENDPOINTS, headers=partner.headers,
                                     json={**base, "store_ids": [str(group.store_b)]})
    assert named.status_code == 422 and [e["field"] for e in named.json()["errors"]] == ["body.store_ids.0"]
    # "All of the key's": the key's stores now, not the token's.
    whole = await notify_client.post(ENDPOINTS, headers=partner.headers, json=base)
    assert whole.status_code == 201 and whole.json()["store_ids"] == [str(group.store_a)]
    url = f"{ENDPOINTS}/{first['id']}"
    etag = (await notify_client.get(url, headers=partner.headers)).headers["ETag"]
    widened = await notify_client.patch(url, json={"store_ids": [str(group.store_a), str(group.store_b)]},
                                        headers={**partner.headers, "If-Match": etag})
    assert widened.status_code == 422 and widened.json()["errors"][0]["field"] == "body.store_ids.1"
    back = await notify_client.patch(url, json={"store_ids": []}, headers={**partner.headers, "If-Match": etag})
    assert back.status_code == 200 and back.json()["store_ids"] == [str(group.store_a)]

    # Fan-out's own guard: an endpoint still listing store B (saved in a race with the change) gets none of its
    # events.
    async with notify_runtime.sessionmaker() as session, session.begin():
        await session.execute(sa.update(WebhookEndpoint).where(WebhookEndpoint.api_key_id == partner.key_id)
                              .values(store_ids=[str(group.store_a), str(group.store_b)]))
    b_event, a_event = low_score(group, "B"), low_score(group, "A")
    await publish(notify_runtime, b_event, a_event)
    await handled(notify_runtime, b_event, a_event)
    queued = await deliveries(notify_runtime, group)
    assert {d.event_id for d in queued} == {a_event.id} and len(queued) == 2  # both endpoints, store A only


async def test_a_delivery_queued_before_its_store_was_taken_from_the_key_never_goes_out(
        client: httpx.AsyncClient, notify_client: httpx.AsyncClient, notify_runtime: NotifyRuntime, group: Group,
        receiver: Receiver) -> None:
    partner = await real_key(client, group, stores=["A", "B"])
    await subscribe(notify_client, partner, receiver)
    receiver.will(503)  # the partner is down: the first attempt fails and the retry waits 15 minutes
    event = low_score(group, "B")
    await publish(notify_runtime, event)

    async def waiting() -> WebhookDelivery | None:
        found = await deliveries(notify_runtime, group, event_id=event.id)
        return found[0] if found and found[0].attempts == 1 and found[0].last_status_code == 503 else None

    delivery = await eventually(waiting, timeout=20)
    await change_key(client, group, partner, store_ids=["A"])
    await heard(notify_runtime, group, partner, stores=["A"])
    async with notify_runtime.sessionmaker() as session, session.begin():  # the retry falls due
        await session.execute(sa.update(WebhookDelivery).where(WebhookDelivery.id == delivery.id)
                              .values(next_attempt_at=utcnow()))

    async def failed() -> WebhookDelivery | None:
        found = (await deliveries(notify_runtime, group, id=delivery.id))[0]
        return found if found.status == "failed" else None

    assert "no longer one of the integration key's" in ((await eventually(failed, timeout=20)).last_error or "")
    assert len(receiver.requests) == 1
    # Nor is it in the partner's delivery log any more (its token still lists store B).
    listed = await notify_client.get(DELIVERIES, headers=partner.headers)
    assert listed.status_code == 200 and listed.json()["items"] == [], listed.text


# --- free text and pii:read ------------------------------------------------------------------------------


async def test_free_text_reaches_a_key_masked_unless_it_holds_pii_read(
        client: httpx.AsyncClient, notify_client: httpx.AsyncClient, notify_runtime: NotifyRuntime, group: Group,
        receiver: Receiver) -> None:
    plain = await real_key(client, group, stores=["A"])
    trusted = await real_key(client, group, stores=["A"], scopes=[*FEED, "pii:read"])
    async with receiving(notify_runtime, group.tenant_id) as other:
        masked_ep = await subscribe(notify_client, plain, receiver, event_types=[LOW, DONE])
        clear_ep = await subscribe(notify_client, trusted, other, event_types=[LOW, DONE])
        events = [commented(group), task_completed(group)]
        await publish(notify_runtime, *events)

        async def arrived() -> bool:
            return len(receiver.requests) == 2 and len(other.requests) == 2

        await eventually(arrived, timeout=20)
        assert all(r.verified for r in [*receiver.requests, *other.requests])

        def texts(requests: list[Any]) -> dict[str, str]:
            bodies = {r.json()["type"]: r.json()["data"] for r in requests}
            return {LOW: bodies[LOW]["comment"], DONE: bodies[DONE]["outcome"]["summary"]}

        assert texts(receiver.requests) == {LOW: MASKED_TEXT, DONE: MASKED_TEXT}
        assert texts(other.requests) == {LOW: PHONE_TEXT, DONE: PHONE_TEXT}
        # The delivery log shows the partner what was sent, masked alike.
        low_rows = await deliveries(notify_runtime, group, event_type=LOW)
        stored = {d.endpoint_id: d.payload for d in low_rows}
        stored_ids = {d.endpoint_id: d.id for d in low_rows}
        assert stored[uuid.UUID(masked_ep["id"])]["data"]["comment"] == MASKED_TEXT
        assert stored[uuid.UUID(clear_ep["id"])]["data"]["comment"] == PHONE_TEXT

        # pii:read taken from the key: from then on its text is masked too.
        await change_key(client, group, trusted, scopes=list(FEED))
        await heard(notify_runtime, group, trusted, scopes=list(FEED))
        later = commented(group)
        await publish(notify_runtime, later)
        await handled(notify_runtime, later)
        (row,) = await deliveries(notify_runtime, group, event_id=later.id, endpoint_id=uuid.UUID(clear_ep["id"]))
        assert row.payload["data"]["comment"] == MASKED_TEXT
        # What went out before is read back masked now (its token still says pii:read; the key no longer does).
        earlier = stored_ids[uuid.UUID(clear_ep["id"])]
        shown = await notify_client.get(f"{DELIVERIES}/{earlier}", headers=trusted.headers)
        assert shown.status_code == 200 and shown.json()["payload"]["data"]["comment"] == MASKED_TEXT, shown.text


async def test_every_free_text_of_a_partner_event_is_masked(notify_runtime: NotifyRuntime, group: Group) -> None:
    """A complaint's remedy, an escalation's reason, everything under a task's outcome, declined repair items."""
    from notify_svc.webhooks.fanout import partner_payload
    from shared.events.catalog.customer import ServiceVisitCompleted
    from shared.events.catalog.survey import ComplaintResolved

    done = task_completed(group)
    done = done.model_copy(update={"data": {**done.data, "outcome": {
        "summary": PHONE_TEXT, "preferred_next_contact": "晚上打 139 0013 9000", "cancel_reason": "客户换号13800138000",
        "reached": True}}})
    body = partner_payload(done, pii=False)["data"]["outcome"]
    assert body == {"summary": MASKED_TEXT, "preferred_next_contact": "晚上打 139****9000",
                    "cancel_reason": "客户换号138****8000", "reached": True}
    resolved = build_event(ComplaintResolved.model_validate({
        "complaint_id": uuid.uuid4(), "number": "C202612-00001", "customer_id": uuid.uuid4(), "channel": "phone",
        "category": "service", "severity": "medium", "nature": "ordinary", "kind": "complaint", "status": "in_process",
        "remedy": "退款后回电13800138000", "resolved_at": utcnow()}),
        source="survey_svc", tenant_id=group.tenant_id, store_id=group.store_a)
    assert partner_payload(resolved, pii=False)["data"]["remedy"] == "退款后回电138****8000"
    assert partner_payload(resolved, pii=True)["data"]["remedy"] == "退款后回电13800138000"
    visit = build_event(ServiceVisitCompleted(visit_id=uuid.uuid4(), vehicle_id=uuid.uuid4(), customer_id=uuid.uuid4(),
                                              visit_type="maintenance", completed_at=utcnow(),
                                              declined_items=["刹车片, 客户说打13800138000再约"]),
                        source="customer_svc", tenant_id=group.tenant_id, store_id=group.store_a)
    assert partner_payload(visit, pii=False)["data"]["declined_items"] == ["刹车片, 客户说打138****8000再约"]


async def test_an_event_type_needs_its_read_scope(
        client: httpx.AsyncClient, notify_client: httpx.AsyncClient, notify_runtime: NotifyRuntime, group: Group,
        receiver: Receiver) -> None:
    """``webhooks:manage`` alone opens no data: survey answers need ``surveys:read``, as the export does; a key
    that loses it gets none from then on, and a revoked key's token reads no delivery log."""
    bare = minted(group, ["A"], scopes=["webhooks:manage"])
    refused = await notify_client.post(ENDPOINTS, headers=bare.headers, json={
        "partner": "OEM", "url": receiver.url, "event_types": [LOW]})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "body.event_types.0", refused.text
    assert "surveys:read" in refused.json()["errors"][0]["message"]

    partner = await real_key(client, group, stores=["A"])
    await subscribe(notify_client, partner, receiver, event_types=[LOW, DONE])
    earlier = low_score(group)
    await publish(notify_runtime, earlier)
    await handled(notify_runtime, earlier)
    [sent] = await deliveries(notify_runtime, group)
    path = f"{DELIVERIES}/{sent.id}"
    assert (await notify_client.get(path, headers=partner.headers)).status_code == 200
    narrowed = [s for s in FEED if s != "surveys:read"]
    await change_key(client, group, partner, scopes=narrowed)
    await heard(notify_runtime, group, partner, scopes=narrowed)
    events = [low_score(group), task_completed(group)]
    await publish(notify_runtime, *events)
    await handled(notify_runtime, *events)
    assert [d.event_type for d in await deliveries(notify_runtime, group) if d.id != sent.id] == [DONE]
    # Nor does its delivery log show survey answers any more, though its token still lists the scope.
    for denied in (await notify_client.get(path, headers=partner.headers),
                   await notify_client.post(f"{path}/replay", headers=partner.headers)):
        assert denied.status_code == 404, denied.text
    listed = await notify_client.get(DELIVERIES, headers=partner.headers)
    assert [d["event_type"] for d in listed.json()["items"]] == [DONE]
    assert (await notify_client.get(path, headers=group.headers(Role.ADMIN))).status_code == 200

    await revoke(client, group, partner)
    await heard(notify_runtime, group, partner, revoked=True, scopes=narrowed)
    assert (await notify_client.get(DELIVERIES, headers=partner.headers)).status_code == 403


async def test_staff_endpoints_get_free_text_as_it_is(notify_client: httpx.AsyncClient,
                                                      notify_runtime: NotifyRuntime, group: Group,
                                                      receiver: Receiver) -> None:
    """Staff's own endpoints (admins see personal data) are not the partner feed: unchanged."""
    admin = await notify_client.post(ENDPOINTS, headers=group.headers(Role.ADMIN), json={
        "partner": "Group BI", "url": receiver.url, "event_types": [LOW]})
    assert admin.status_code == 201, admin.text
    event = commented(group)
    await publish(notify_runtime, event)
    await handled(notify_runtime, event)
    (row,) = await deliveries(notify_runtime, group, event_id=event.id)
    assert row.payload["data"]["comment"] == PHONE_TEXT
