"""What staff do with messages after the fact, through the real API and broker: ask why a customer was not
contacted, replay what failed, send a bulk job (the birthday list of a range crossing new year), and what arrives
from elsewhere: escalation notices to staff, and an SMS sent through Tencent with its receipt pushed back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from notify_svc.app import NotifyRuntime
from notify_svc.channels.tencent import TencentSms
from notify_svc.messages.reasons import REASONS
from notify_svc.models import Message, StaffView, Template
from shared.auth.roles import Role
from shared.events.catalog.followup import TaskEscalated
from shared.events.envelope import CloudEvent, build_event
from shared.messaging.amqp import AmqpPublisher
from shared.testing.waiting import eventually
from tests.conftest import Group, new_phone
from tests.notify_svc.conftest import FixedClock, message_by_key, messages, request_message, set_provider_code
from tests.notify_svc.sandbox_env import CALLBACK_TOKEN, Sandbox
from tests.notify_svc.test_dispatch import after_attempts, box_get, customer, phone_of
from tests.notify_svc.conftest import drain
from tests.notify_svc.test_policy_api import MARKETING_SMS, local, pin

WHY = "/api/v1/messages/why"
BULK = "/api/v1/messages/bulk"


def trail_of(body: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(e["status"], e["reason"]) for e in body["trail"]]


async def push_receipts(notify_client: httpx.AsyncClient, box: Sandbox, provider: str = "aliyun") -> httpx.Response:
    """What the provider pushes once the carrier reported every message it accepted."""
    receipts = await box_get(box, f"/_sandbox/receipts/{provider}")
    resp = await notify_client.post(f"/api/v1/notify/callbacks/{provider}/receipts?token={CALLBACK_TOKEN}",
                                    content=receipts, headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    return resp


# --- "why wasn't this customer contacted?" ------------------------------------------------------------------------


async def test_why_shows_each_touch_with_its_reason_in_plain_words_and_its_trail(
        client, notify_client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:
    c = await customer(client, notify_runtime, ngroup)  # service messages allowed, no marketing consent
    await set_provider_code(notify_runtime, ngroup, "purchase_thanks", "sms", aliyun="SMS_100001")
    await set_provider_code(notify_runtime, ngroup, "monthly_care", "sms", aliyun="SMS_200002")
    pin(clock, 10)
    k_suppressed = await request_message(notify_runtime, ngroup, c["id"], template="monthly_care",
                                         purpose="marketing")
    await message_by_key(notify_runtime, ngroup, k_suppressed, "suppressed")
    k_delivered = await request_message(notify_runtime, ngroup, c["id"])
    await message_by_key(notify_runtime, ngroup, k_delivered, "sent")
    await push_receipts(notify_client, box)
    await message_by_key(notify_runtime, ngroup, k_delivered, "delivered")
    clock.now = local(clock, 22, 30)
    k_held = await request_message(notify_runtime, ngroup, c["id"])
    await message_by_key(notify_runtime, ngroup, k_held, "held")

    resp = await notify_client.get(WHY, params={"customer_id": c["id"]}, headers=ngroup.headers(Role.SERVICE_ADVISOR))
    assert resp.status_code == 200, resp.text
    report = resp.json()
    assert report["customer_id"] == c["id"] and report["idempotency_key"] is None
    assert report["counts"] == {"suppressed": 1, "delivered": 1, "held": 1}
    touches = report["touches"]
    assert [t["idempotency_key"] for t in touches] == [k_held, k_delivered, k_suppressed]  # newest first
    held, delivered, suppressed = touches

    assert (suppressed["status"], suppressed["reason"], suppressed["purpose"]) == ("suppressed", "consent", "marketing")
    assert suppressed["explanation"] == REASONS["consent"] and "marketing" in suppressed["detail"]
    assert trail_of(suppressed) == [("suppressed", "consent")] and suppressed["replayable"] is False
    assert suppressed["trail"][0]["explanation"] == REASONS["consent"]

    assert (held["status"], held["reason"], held["explanation"]) == ("held", "quiet_hours", REASONS["quiet_hours"])
    assert datetime.fromisoformat(held["next_attempt_at"]) == local(clock, 8, 0, days=1)
    assert trail_of(held) == [("held", "quiet_hours")] and held["replayable"] is False

    assert (delivered["status"], delivered["reason"], delivered["explanation"]) == ("delivered", None, None)
    assert [e["status"] for e in delivered["trail"]] == ["sending", "sent", "delivered"]
    assert delivered["recipient"].startswith("139****") and c["name"] in delivered["body"]

    one = await notify_client.get(WHY, params={"customer_id": c["id"], "idempotency_key": k_held},
                                  headers=ngroup.headers(Role.SERVICE_ADVISOR))
    assert one.status_code == 200 and one.json()["counts"] == {"held": 1}
    assert [t["idempotency_key"] for t in one.json()["touches"]] == [k_held]
    by_key = await notify_client.get(WHY, params={"idempotency_key": k_suppressed},
                                     headers=ngroup.headers(Role.CS_AGENT))
    [only] = by_key.json()["touches"]
    assert only["reason"] == "consent" and only["body"] is None  # no PII permission, no text

    missing = await notify_client.get(WHY, headers=ngroup.headers(Role.SERVICE_ADVISOR))
    assert missing.status_code == 422 and [e["field"] for e in missing.json()["errors"]] == ["query.customer_id"]
    elsewhere = await notify_client.get(WHY, params={"customer_id": c["id"]},
                                        headers=ngroup.headers(Role.CS_AGENT, "B"))
    assert elsewhere.status_code == 200 and elsewhere.json()["touches"] == [] and elsewhere.json()["counts"] == {}


# --- replay -------------------------------------------------------------------------------------------------------


async def test_replay_sends_a_dead_lettered_message_once_and_never_overrides_consent(
        client, notify_client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:
    c = await customer(client, notify_runtime, ngroup)
    await set_provider_code(notify_runtime, ngroup, "purchase_thanks", "sms", aliyun="SMS_100001")
    await set_provider_code(notify_runtime, ngroup, "monthly_care", "sms", aliyun="SMS_200002")
    pin(clock, 14)
    await drain(notify_runtime, clock)
    to = phone_of(c).removeprefix("+86")
    max_attempts = notify_runtime.settings.max_attempts
    box.state.add_fault("aliyun", "system_error", count=max_attempts)
    key = await request_message(notify_runtime, ngroup, c["id"])
    for attempt in range(1, max_attempts):
        retry = await after_attempts(notify_runtime, ngroup, key, attempt)
        assert (retry.status, retry.reason) == ("held", "provider_retry"), (retry.status, retry.reason)
        clock.advance(timedelta(seconds=30 * 2 ** (attempt - 1) + 1))  # past the back-off
        notify_runtime.nudge_dispatcher()
    dead = await message_by_key(notify_runtime, ngroup, key, "failed")
    assert (dead.reason, dead.attempts) == ("dead_lettered", max_attempts)
    assert box.state.messages_for("aliyun", to) == []

    manager = ngroup.headers(Role.CS_MANAGER)
    detail = (await notify_client.get(f"/api/v1/messages/{dead.id}", headers=manager)).json()
    assert detail["replayable"] is True and detail["explanation"] == REASONS["dead_lettered"]
    forbidden = await notify_client.post(f"/api/v1/messages/{dead.id}/replay",
                                         headers=ngroup.headers(Role.SALES_CONSULTANT))
    assert forbidden.status_code == 403
    hidden = await notify_client.post(f"/api/v1/messages/{dead.id}/replay", headers=ngroup.headers(Role.CS_AGENT, "B"))
    assert hidden.status_code == 404

    # Keep the replayed message from being due for a moment, so both calls meet it queued.
    resume = clock.now
    clock.now = datetime.now(UTC) - timedelta(hours=1)
    first = await notify_client.post(f"/api/v1/messages/{dead.id}/replay", headers=manager)
    assert first.status_code == 200, first.text
    assert (first.json()["status"], first.json()["reason"], first.json()["attempts"]) == ("queued", "replayed", 0)
    assert trail_of(first.json())[-1] == ("queued", "replayed")
    second = await notify_client.post(f"/api/v1/messages/{dead.id}/replay", headers=manager)
    assert second.status_code == 200, second.text
    assert second.json()["trail"] == first.json()["trail"] and second.json()["status"] == "queued"

    clock.now = resume
    notify_runtime.nudge_dispatcher()
    sent = await message_by_key(notify_runtime, ngroup, key, "sent")
    assert sent.attempts == 1 and len(box.state.messages_for("aliyun", to)) == 1
    trail = trail_of((await notify_client.get(f"/api/v1/messages/{dead.id}", headers=manager)).json())
    assert trail.count(("queued", "replayed")) == 1 and trail[-2:] == [("sending", None), ("sent", "sent")]
    again = await notify_client.post(f"/api/v1/messages/{dead.id}/replay", headers=manager)
    assert again.status_code == 409  # on its way already: a replay would send it twice
    assert len(box.state.messages_for("aliyun", to)) == 1

    k_consent = await request_message(notify_runtime, ngroup, c["id"], template="monthly_care", purpose="marketing")
    no_consent = await message_by_key(notify_runtime, ngroup, k_consent, "suppressed")
    refused = await notify_client.post(f"/api/v1/messages/{no_consent.id}/replay", headers=manager)
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert (await message_by_key(notify_runtime, ngroup, k_consent)).status == "suppressed"


# --- bulk sends ---------------------------------------------------------------------------------------------------


async def test_birthday_bulk_across_new_year_checks_consent_per_recipient(
        client, notify_client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:
    await set_provider_code(notify_runtime, ngroup, "birthday_greeting", "sms", aliyun="SMS_300003")

    async def born(day: str, consent: bool, store: str = "A") -> dict[str, Any]:
        return await customer(client, notify_runtime, ngroup, store, birthday=day,
                              **({"consents": MARKETING_SMS} if consent else {}))

    dec30, jan1, jan2 = await born("1990-12-30", True), await born("1988-01-01", False), await born("1992-01-02", True)
    outside = [await born("1990-12-29", True), await born("1985-01-03", True),
               await customer(client, notify_runtime, ngroup, consents=MARKETING_SMS)]  # no birthday on file
    other_store = await born("1991-12-31", True, "B")
    pin(clock, 10)

    manager = ngroup.headers(Role.CS_MANAGER, **{"Idempotency-Key": f"bulk-{uuid.uuid4()}"})
    body = {"store_id": str(ngroup.store_a), "template": "birthday_greeting", "purpose": "marketing",
            "channels": ["sms"], "birthday_from": "2026-12-30", "birthday_to": "2027-01-02"}
    created = await notify_client.post(BULK, json=body, headers=manager)
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["total"] == 3 and job["template"] == "birthday_greeting" and job["purpose"] == "marketing"
    assert created.headers["Location"] == f"{BULK}/{job['id']}"
    repeat = await notify_client.post(BULK, json=body, headers=manager)
    assert repeat.status_code == 201 and repeat.json()["id"] == job["id"]
    assert len(await messages(notify_runtime, ngroup.tenant_id, source="bulk")) == 3

    async def progress(expected: dict[str, int]) -> dict[str, Any] | None:
        resp = await notify_client.get(f"{BULK}/{job['id']}", headers=ngroup.headers(Role.SERVICE_ADVISOR))
        assert resp.status_code == 200, resp.text
        return resp.json() if resp.json()["progress"] == expected else None

    sending = await eventually(lambda: progress({"sent": 2, "suppressed": 1}))
    assert sending["done"] is False
    ours = {phone_of(x).removeprefix("+86") for x in (dec30, jan1, jan2, *outside, other_store)}
    assert sorted(m.to for m in box.state.messages_for("aliyun") if m.to in ours) == \
        sorted(phone_of(x).removeprefix("+86") for x in (dec30, jan2))
    await push_receipts(notify_client, box)
    finished = await eventually(lambda: progress({"delivered": 2, "suppressed": 1}))
    assert finished["done"] is True and finished["total"] == 3

    resp = await notify_client.get(f"{BULK}/{job['id']}/recipients", headers=ngroup.headers(Role.SERVICE_ADVISOR))
    assert resp.status_code == 200, resp.text
    recipients = {r["customer_id"]: r for r in resp.json()["items"]}
    assert set(recipients) == {dec30["id"], jan1["id"], jan2["id"]}
    assert {r["source"] for r in recipients.values()} == {"bulk"}
    assert recipients[dec30["id"]]["status"] == recipients[jan2["id"]]["status"] == "delivered"
    assert (recipients[jan1["id"]]["status"], recipients[jan1["id"]]["reason"]) == ("suppressed", "consent")
    assert not {x["id"] for x in [*outside, other_store]} & set(recipients)
    assert "拒收请回复R" in recipients[dec30["id"]]["body"]


async def test_bulk_requests_that_name_no_or_foreign_recipients_are_refused(
        client, notify_client, notify_runtime, ngroup, clock: FixedClock) -> None:
    in_b = await customer(client, notify_runtime, ngroup, "B")
    manager = ngroup.headers(Role.CS_MANAGER)
    base = {"store_id": str(ngroup.store_a), "template": "birthday_greeting", "purpose": "marketing"}
    for body in (base, {**base, "customer_ids": [in_b["id"]]},
                 {**base, "customer_ids": [in_b["id"]], "birthday_from": "2026-12-30", "birthday_to": "2027-01-02"}):
        resp = await notify_client.post(BULK, json=body, headers=manager)
        assert resp.status_code == 422, resp.text
        assert [e["field"] for e in resp.json()["errors"]] == ["body.customer_ids"]
    resp = await notify_client.post(BULK, json={**base, "birthday_from": "2027-01-02", "birthday_to": "2026-12-30"},
                                    headers=manager)
    assert resp.status_code == 422 and [e["field"] for e in resp.json()["errors"]] == ["body.birthday_to"]
    resp = await notify_client.post(BULK, json={**base, "customer_ids": [in_b["id"]]},
                                    headers=ngroup.headers(Role.SALES_CONSULTANT))
    assert resp.status_code == 403
    resp = await notify_client.post(BULK, json={**base, "store_id": str(ngroup.store_b), "customer_ids": [in_b["id"]]},
                                    headers=manager)
    assert resp.status_code == 404  # store B is not the store A manager's
    assert await messages(notify_runtime, ngroup.tenant_id, source="bulk") == []


# --- escalation notices -------------------------------------------------------------------------------------------


async def staff_id(client: httpx.AsyncClient, group: Group, role: Role, store: str = "A") -> str:
    page = (await client.get("/api/v1/staff", params={"q": f"{role.value}-{store}"},
                             headers=group.headers(Role.ADMIN))).json()
    return page["items"][0]["id"]


async def publish(runtime: NotifyRuntime, event: CloudEvent) -> None:
    publisher = AmqpPublisher(runtime.settings.amqp_url or "", runtime.settings.exchange)
    try:
        assert (await publisher.publish_batch([event])) == [None]
    finally:
        await publisher.close()


def escalation(group: Group, staff_ids: list[str], level: int = 1, task_id: uuid.UUID | None = None,
               **fields: Any) -> CloudEvent:
    data = TaskEscalated(task_id=task_id or uuid.uuid4(), level=level, to_roles=["service_manager", "cs_manager"],
                         notify_staff_ids=[uuid.UUID(s) for s in staff_ids], reason="overdue", **fields)
    return build_event(data, source="followup_svc", tenant_id=group.tenant_id, store_id=group.store_a)


async def test_escalation_notices_go_to_each_staff_member_once(
        client, notify_client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:
    with_phone = await staff_id(client, ngroup, Role.CS_MANAGER)
    without = await staff_id(client, ngroup, Role.SERVICE_MANAGER)
    phone = new_phone()
    current = await client.get(f"/api/v1/staff/{with_phone}", headers=ngroup.headers(Role.ADMIN))
    patched = await client.patch(f"/api/v1/staff/{with_phone}", json={"phone": phone},
                                 headers=ngroup.headers(Role.ADMIN, **{"If-Match": current.headers["ETag"]}))
    assert patched.status_code == 200, patched.text

    async def phone_known() -> bool:
        async with notify_runtime.sessionmaker() as s:
            return (await s.get(StaffView, uuid.UUID(with_phone))).phone == phone  # type: ignore[union-attr]

    await eventually(phone_known)
    c = await customer(client, notify_runtime, ngroup, name="李测试")
    await set_provider_code(notify_runtime, ngroup, "escalation_notice", "sms", aliyun="SMS_400004")
    pin(clock, 10)
    task_id = uuid.uuid4()
    event = escalation(ngroup, [with_phone, without], task_id=task_id, title="首保回访", customer_id=c["id"])
    await publish(notify_runtime, event)

    async def notices() -> list[Message]:
        rows = await messages(notify_runtime, ngroup.tenant_id, source="escalation")
        return rows if len(rows) == 2 and all(m.status not in ("queued", "sending") for m in rows) else []

    by_staff = {str(m.staff_id): m for m in await eventually(notices)}
    assert set(by_staff) == {with_phone, without}
    assert {(m.template_key, m.purpose, m.customer_id, m.store_id) for m in by_staff.values()} == \
        {("escalation_notice", "service", None, ngroup.store_a)}
    assert (by_staff[without].status, by_staff[without].reason) == ("suppressed", "no_phone")
    told = by_staff[with_phone]
    assert (told.status, told.reason, told.detail) == ("sent", None, None)
    [sms] = box.state.messages_for("aliyun", phone.removeprefix("+86"))
    assert sms.our_id == str(told.id)
    # The notice names the task and the customer it is about (not the staff member it goes to).
    assert (sms.params["task_title"], sms.params["level"], sms.params["customer_name"]) == ("首保回访", "1", "李测试")
    assert "首保回访" in (told.body or "") and "李测试" in (told.body or "")

    # The event redelivered makes no second notice; a later escalation of the same task does.
    await publish(notify_runtime, event)
    await publish(notify_runtime, escalation(ngroup, [without], level=2, task_id=task_id))

    async def level_two() -> list[Message]:
        rows = await messages(notify_runtime, ngroup.tenant_id, source="escalation")
        return rows if any(m.idempotency_key.endswith(f":2:{without}") for m in rows) else []

    assert len(await eventually(level_two)) == 3
    assert len(box.state.messages_for("aliyun", phone.removeprefix("+86"))) == 1


# --- Tencent ------------------------------------------------------------------------------------------------------


@pytest.fixture
async def tencent(notify_runtime: NotifyRuntime) -> AsyncIterator[TencentSms]:
    """SMS through Tencent Cloud (the sandbox's) for one test; Aliyun again afterwards."""
    original = notify_runtime.providers["sms"]
    adapter = TencentSms.from_settings(notify_runtime.settings)
    notify_runtime.providers["sms"] = adapter
    try:
        yield adapter
    finally:
        notify_runtime.providers["sms"] = original
        await adapter.aclose()


async def set_tencent_params(runtime: NotifyRuntime, group: Group, key: str, names: list[str]) -> None:
    """The order Tencent's approved template numbers its parameters ({1}, {2}...), as the tenant records it."""
    async with runtime.sessionmaker() as s, s.begin():
        template = await s.scalar(sa.select(Template).where(Template.tenant_id == group.tenant_id,
                                                            Template.store_id.is_(None), Template.key == key,
                                                            Template.channel == "sms"))
        assert template is not None
        template.provider_params = {**template.provider_params, "tencent": names}
        template.version += 1


async def test_an_sms_through_tencent_carries_ordered_params_and_its_receipt_delivers_it(
        client, notify_client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox, tencent: TencentSms) -> None:
    c = await customer(client, notify_runtime, ngroup, name="王测试")
    await set_provider_code(notify_runtime, ngroup, "purchase_thanks", "sms", tencent="1234567")
    await set_tencent_params(notify_runtime, ngroup, "purchase_thanks", ["store_name", "customer_name"])
    pin(clock, 10)
    key = await request_message(notify_runtime, ngroup, c["id"])
    sent = await message_by_key(notify_runtime, ngroup, key, "sent")
    assert (sent.channel, sent.provider) == ("sms", "tencent")

    [sms] = box.state.messages_for("tencent", phone_of(c))
    assert box.state.messages_for("aliyun", phone_of(c).removeprefix("+86")) == []
    assert sms.to == phone_of(c) and sms.to.startswith("+86")  # Tencent takes E.164
    assert (sms.template, sms.sign, sms.params) == ("1234567", "测试汽车", ["Store A", "王测试"])
    assert sms.our_id == str(sent.id) and sent.provider_message_id == sms.provider_id

    receipts = await box_get(box, "/_sandbox/receipts/tencent")
    for _ in range(2):  # a receipt pushed again changes nothing
        resp = await notify_client.post(f"/api/v1/notify/callbacks/tencent/receipts?token={CALLBACK_TOKEN}",
                                        content=receipts, headers={"Content-Type": "application/json"})
        assert resp.status_code == 200 and resp.json() == {"result": 0, "errmsg": "OK"}
    delivered = await message_by_key(notify_runtime, ngroup, key, "delivered")
    assert delivered.delivered_at is not None
    detail = (await notify_client.get(f"/api/v1/messages/{sent.id}", headers=ngroup.headers(Role.SERVICE_ADVISOR)))
    assert [e["status"] for e in detail.json()["trail"]] == ["sending", "sent", "delivered"]
    wrong = await notify_client.post("/api/v1/notify/callbacks/tencent/receipts?token=not-the-token",
                                     content=receipts, headers={"Content-Type": "application/json"})
    assert wrong.status_code == 401
