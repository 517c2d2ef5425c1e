"""A message request travels the whole way: the command on the real broker, the policy check, the provider
sandbox (real signatures and formats), the receipt callback, the customer's history; and nothing is lost or sent
twice when the provider misbehaves."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
import sqlalchemy as sa

from notify_svc.app import NotifyRuntime
from notify_svc.channels.base import Receipt
from notify_svc.messages.receipts import apply_receipt
from notify_svc.models import Message, MessageEvent
from shared.testing.waiting import eventually
from shared.auth.roles import Role
from tests.conftest import Group, customer_body
from tests.notify_svc.conftest import (FixedClock, known_customer, message_by_key, request_message, rows,
                                       set_provider_code)
from tests.notify_svc.sandbox_env import CALLBACK_TOKEN, Sandbox


async def customer(client: httpx.AsyncClient, runtime: NotifyRuntime, group: Group, store: str = "A",
                   **fields: object) -> dict:
    resp = await client.post("/api/v1/customers", json=customer_body(group.stores[store], **fields),
                             headers=group.headers(Role.ADMIN))
    assert resp.status_code == 201, resp.text
    body = resp.json()
    await known_customer(runtime, body["id"])
    return body


def phone_of(c: dict) -> str:
    return c["phones"][0]["number"]


async def trail(runtime: NotifyRuntime, message_id: uuid.UUID) -> list[MessageEvent]:
    async with runtime.sessionmaker() as s:
        return list(await s.scalars(sa.select(MessageEvent).where(MessageEvent.message_id == message_id)
                                    .order_by(MessageEvent.id)))


async def test_message_reaches_aliyun_in_shape_gets_its_receipt_and_shows_in_history(
        client, notify_client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:
    c = await customer(client, notify_runtime, ngroup)
    await set_provider_code(notify_runtime, ngroup, "purchase_thanks", "sms", aliyun="SMS_100001")
    key = await request_message(notify_runtime, ngroup, c["id"])
    message = await message_by_key(notify_runtime, ngroup, key, "sent")

    [sent] = box.state.messages_for("aliyun")
    assert sent.to == phone_of(c).removeprefix("+86")  # Aliyun takes mainland numbers without +86
    assert (sent.template, sent.sign, sent.our_id) == ("SMS_100001", "测试汽车", str(message.id))
    assert sent.params["customer_name"] == c["name"] and sent.params["store_name"] == "Store A"
    assert message.provider_message_id == sent.provider_id and message.recipient_masked.startswith("139****")

    receipts = await box_get(box, "/_sandbox/receipts/aliyun")
    for _ in range(2):  # Aliyun may push a receipt twice: the second changes nothing
        resp = await notify_client.post(f"/api/v1/notify/callbacks/aliyun/receipts?token={CALLBACK_TOKEN}",
                                        content=receipts, headers={"Content-Type": "application/json"})
        assert resp.status_code == 200 and resp.json() == {"code": 0, "msg": "接收成功"}
    delivered = await message_by_key(notify_runtime, ngroup, key, "delivered")
    assert delivered.delivered_at is not None
    assert [e.status for e in await trail(notify_runtime, message.id)] == ["sending", "sent", "delivered"]

    history = await notify_client.get("/api/v1/messages", params={"customer_id": c["id"]},
                                      headers=ngroup.headers(Role.SERVICE_ADVISOR))
    assert history.status_code == 200, history.text
    [item] = history.json()["items"]
    assert item["status"] == "delivered" and item["template"] == "purchase_thanks" and c["name"] in item["body"]
    masked = await notify_client.get("/api/v1/messages", params={"customer_id": c["id"]},
                                     headers=ngroup.headers(Role.CS_AGENT))
    assert masked.json()["items"][0]["body"] is None  # no PII permission, no text
    other = await notify_client.get(f"/api/v1/messages/{message.id}", headers=ngroup.headers(Role.ADMIN, "B"))
    assert other.status_code == 200  # admins see the whole group
    outsider = await notify_client.get(f"/api/v1/messages/{message.id}",
                                       headers=ngroup.headers(Role.SERVICE_ADVISOR, "B"))
    assert outsider.status_code == 404


async def box_get(box: Sandbox, path: str) -> bytes:
    async with httpx.AsyncClient(base_url=box.url) as http:
        resp = await http.get(path)
        assert resp.status_code == 200, resp.text
        return resp.content


async def test_quiet_hours_hold_a_service_message_until_morning_local_time(
        client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:
    c = await customer(client, notify_runtime, ngroup)
    await set_provider_code(notify_runtime, ngroup, "purchase_thanks", "sms", aliyun="SMS_100001")
    night = clock.at_local(22, 30)
    key = await request_message(notify_runtime, ngroup, c["id"])
    held = await message_by_key(notify_runtime, ngroup, key, "held")
    morning = clock.at_local(8, 0, days=1)
    assert held.reason == "quiet_hours" and held.next_attempt_at == morning and night < morning
    assert box.state.messages_for("aliyun") == []
    clock.advance(timedelta(minutes=1))
    notify_runtime.nudge_dispatcher()
    sent = await message_by_key(notify_runtime, ngroup, key, "sent")
    assert len(box.state.messages_for("aliyun")) == 1 and sent.sent_at == clock.now


async def test_marketing_needs_consent_and_carries_the_opt_out_text(
        client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:
    await set_provider_code(notify_runtime, ngroup, "monthly_care", "sms", aliyun="SMS_200002")
    no_consent = await customer(client, notify_runtime, ngroup)
    consented = await customer(client, notify_runtime, ngroup, consents=[
        {"channel": "sms", "purpose": "marketing", "granted": True, "source": "contact card"}])
    clock.at_local(11)
    k1 = await request_message(notify_runtime, ngroup, no_consent["id"], template="monthly_care", purpose="marketing")
    k2 = await request_message(notify_runtime, ngroup, consented["id"], template="monthly_care", purpose="marketing")
    suppressed = await message_by_key(notify_runtime, ngroup, k1, "suppressed")
    assert suppressed.reason == "consent"
    sent = await message_by_key(notify_runtime, ngroup, k2, "sent")
    assert "拒收请回复R" in (sent.body or "")
    assert [m.to for m in box.state.messages_for("aliyun")] == [phone_of(consented).removeprefix("+86")]


async def test_a_greeting_asked_for_as_service_is_marketing_all_the_same(
        client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:
    """The template decides: a marketing template requested as ``service`` (the bulk API's default) needs
    marketing consent, waits for the marketing window and never goes as a WeChat template message; the message
    records the purpose it was sent under."""
    await set_provider_code(notify_runtime, ngroup, "monthly_care", "sms", aliyun="SMS_200002")
    await set_provider_code(notify_runtime, ngroup, "monthly_care", "wechat", wechat="tpl-monthly-care")
    no_consent = await customer(client, notify_runtime, ngroup)
    consented = await customer(client, notify_runtime, ngroup, wechat_openid="oTestOpenid000000000000009", consents=[
        {"channel": "sms", "purpose": "marketing", "granted": True, "source": "contact card"},
        {"channel": "wechat", "purpose": "marketing", "granted": True, "source": "contact card"}])
    evening = await customer(client, notify_runtime, ngroup, consents=[
        {"channel": "sms", "purpose": "marketing", "granted": True, "source": "contact card"}])
    clock.at_local(20, 30)  # a service message could still go
    late = await request_message(notify_runtime, ngroup, evening["id"], template="monthly_care")
    held = await message_by_key(notify_runtime, ngroup, late, "held")
    assert (held.reason, held.purpose) == ("marketing_window", "marketing")

    clock.at_local(11, days=1)
    k1 = await request_message(notify_runtime, ngroup, no_consent["id"], template="monthly_care")
    k2 = await request_message(notify_runtime, ngroup, consented["id"], template="monthly_care",
                               channels=("wechat", "sms"))
    suppressed = await message_by_key(notify_runtime, ngroup, k1, "suppressed")
    assert (suppressed.reason, suppressed.purpose) == ("consent", "marketing")
    sent = await message_by_key(notify_runtime, ngroup, k2, "sent")
    assert (sent.channel, sent.purpose) == ("sms", "marketing") and "拒收请回复R" in (sent.body or "")
    assert box.state.messages_for("wechat") == []
    assert any("wechat: wechat_template_not_for_marketing" in (e.detail or "")  # its send (alone or in a batch)
               for e in await trail(notify_runtime, sent.id))


async def test_marketing_after_the_window_waits_for_the_next_day(
        client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:
    await set_provider_code(notify_runtime, ngroup, "monthly_care", "sms", aliyun="SMS_200002")
    c = await customer(client, notify_runtime, ngroup, consents=[
        {"channel": "sms", "purpose": "marketing", "granted": True, "source": "contact card"}])
    clock.at_local(20, 30)  # service messages could still go; marketing stops at 20:00
    key = await request_message(notify_runtime, ngroup, c["id"], template="monthly_care", purpose="marketing")
    held = await message_by_key(notify_runtime, ngroup, key, "held")
    assert held.reason == "marketing_window" and held.next_attempt_at is not None
    assert held.next_attempt_at >= clock.at_local(9, 0, days=1) - timedelta(seconds=1)


async def test_a_redelivered_request_sends_once(client, notify_runtime, ngroup, clock: FixedClock,
                                                box: Sandbox) -> None:
    c = await customer(client, notify_runtime, ngroup)
    await set_provider_code(notify_runtime, ngroup, "purchase_thanks", "sms", aliyun="SMS_100001")
    key = await request_message(notify_runtime, ngroup, c["id"])
    await request_message(notify_runtime, ngroup, c["id"], key=key)
    await message_by_key(notify_runtime, ngroup, key, "sent")
    await request_message(notify_runtime, ngroup, c["id"], key=key)  # after it was sent, too
    assert len(await rows(notify_runtime, Message,
                          ngroup.tenant_id)) == 1
    assert len(box.state.messages_for("aliyun")) == 1


async def test_a_provider_outage_loses_nothing_and_sends_once(
        client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:
    c = await customer(client, notify_runtime, ngroup)
    await set_provider_code(notify_runtime, ngroup, "purchase_thanks", "sms", aliyun="SMS_100001")
    box.state.add_fault("aliyun", "outage", count=2)
    key = await request_message(notify_runtime, ngroup, c["id"])
    for attempt in (1, 2):
        held = await after_attempts(notify_runtime, ngroup, key, attempt)
        assert (held.status, held.reason, held.sent_at) == ("held", "provider_retry", None)
        assert box.state.messages_for("aliyun") == []
        clock.advance(timedelta(seconds=30 * 2 ** attempt))  # the back-off doubles from 30 s
        notify_runtime.nudge_dispatcher()
    sent = await message_by_key(notify_runtime, ngroup, key, "sent")
    assert sent.attempts == 3 and len(box.state.messages_for("aliyun")) == 1


async def test_a_timeout_after_the_provider_accepted_never_sends_twice(
        client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:
    c = await customer(client, notify_runtime, ngroup)
    await set_provider_code(notify_runtime, ngroup, "purchase_thanks", "sms", aliyun="SMS_100001")
    box.state.add_fault("aliyun", "accept_then_timeout")
    key = await request_message(notify_runtime, ngroup, c["id"])
    unknown = await message_by_key_reason(notify_runtime, ngroup, key, "awaiting_receipt")
    assert unknown.status == "sending"
    assert len(box.state.messages_for("aliyun")) == 1
    # The status query finds nothing yet: it keeps waiting instead of sending again.
    clock.advance(timedelta(minutes=11))
    notify_runtime.nudge_dispatcher()
    await message_by_key_reason(notify_runtime, ngroup, key, "awaiting_receipt", after=clock.now)
    assert len(box.state.messages_for("aliyun")) == 1
    box.state.report("aliyun")  # the carrier delivered it
    clock.advance(timedelta(minutes=11))
    notify_runtime.nudge_dispatcher()
    delivered = await message_by_key(notify_runtime, ngroup, key, "delivered")
    assert delivered.delivered_at is not None and unknown.id == delivered.id
    assert len(box.state.messages_for("aliyun")) == 1


async def after_attempts(runtime: NotifyRuntime, group: Group, key: str, attempts: int):  # type: ignore[no-untyped-def]
    async def check():  # type: ignore[no-untyped-def]
        m = await message_by_key(runtime, group, key)
        return m if m.attempts >= attempts and m.status != "sending" else None

    return await eventually(check)


async def message_by_key_reason(runtime: NotifyRuntime, group: Group, key: str, reason: str,
                                after: datetime | None = None) -> Message:
    async def check():  # type: ignore[no-untyped-def]
        m = await message_by_key(runtime, group, key)
        ok = m.reason == reason and (after is None or (m.next_attempt_at is not None and m.next_attempt_at > after))
        return m if ok else None

    return await eventually(check)


async def test_wechat_first_and_sms_when_the_customer_no_longer_follows(
        client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:
    follower = await customer(client, notify_runtime, ngroup, wechat_openid="oTestOpenid000000000000001")
    gone = await customer(client, notify_runtime, ngroup, wechat_openid="oTestOpenid000000000000002")
    box.state.wechat_not_following.add("oTestOpenid000000000000002")
    await set_provider_code(notify_runtime, ngroup, "purchase_thanks", "wechat", wechat="tpl-purchase-thanks")
    await set_provider_code(notify_runtime, ngroup, "purchase_thanks", "sms", aliyun="SMS_100001")
    k1 = await request_message(notify_runtime, ngroup, follower["id"], channels=("wechat", "sms"))
    k2 = await request_message(notify_runtime, ngroup, gone["id"], channels=("wechat", "sms"))
    by_wechat = await message_by_key(notify_runtime, ngroup, k1, "sent")
    fell_back = await message_by_key(notify_runtime, ngroup, k2, "sent")
    assert (by_wechat.channel, by_wechat.provider) == ("wechat", "wechat")
    assert (fell_back.channel, fell_back.provider, fell_back.failed_channels) == ("sms", "aliyun", ["wechat"])
    [wx] = box.state.messages_for("wechat")
    assert wx.to == "oTestOpenid000000000000001" and wx.template == "tpl-purchase-thanks"
    assert [m.to for m in box.state.messages_for("aliyun")] == [phone_of(gone).removeprefix("+86")]
    statuses = [(e.status, e.channel) for e in await trail(notify_runtime, fell_back.id)]
    assert statuses[:2] == [("sending", "wechat"), ("failed", "wechat")] and ("sent", "sms") in statuses


async def test_a_failure_receipt_that_overtakes_the_send_answer_falls_back(
        client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:
    """A fast provider can push "not delivered" before its own send answer is recorded: the message must move
    on to the next channel, not be left queued with no next attempt."""
    c = await customer(client, notify_runtime, ngroup)
    await set_provider_code(notify_runtime, ngroup, "purchase_thanks", "sms", aliyun="SMS_100001")
    console = notify_runtime.providers["console"]

    class PushesFailureFirst:
        name, channel = "console", "console"

        async def send(self, out):  # type: ignore[no-untyped-def]
            result = await console.send(out)
            async with notify_runtime.sessionmaker() as s, s.begin():
                # At the dispatcher's (pinned) time: the fallback it queues is due now, whatever the time of day.
                await apply_receipt(s, notify_runtime.outbox, out.message_id,
                                    Receipt(provider="console", delivered=False, code="UNDELIV"), clock.now)
            return result

        async def lookup(self, out, sent_at):  # type: ignore[no-untyped-def]
            return None

        async def aclose(self) -> None:
            return None

    notify_runtime.providers["console"] = PushesFailureFirst()  # type: ignore[assignment]
    try:
        key = await request_message(notify_runtime, ngroup, c["id"], channels=("console", "sms"))
        sent = await message_by_key(notify_runtime, ngroup, key, "sent")
    finally:
        notify_runtime.providers["console"] = console
    assert (sent.channel, sent.failed_channels) == ("sms", ["console"])
    assert len(box.state.messages_for("aliyun")) == 1
