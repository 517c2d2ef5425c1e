"""The whole chain: a delivery recorded in customer_svc, followup_svc's plan firing its thank-you message, notify_svc
sending it through the provider sandbox at an allowed local time, and the receipt closing it; plus opt-out replies
that travel back to customer_svc, and the provider callbacks' authentication."""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from followup_svc.models import TestClock
from notify_svc import consumers
from notify_svc.models import CustomerView, Message, Template, WechatQuota
from shared.auth.roles import Role
from shared.db.base import utcnow
from shared.events.catalog import customer as ev
from shared.events.envelope import build_event
from shared.messaging.consumer import MissingDependency
from shared.testing.events import handle
from shared.testing.waiting import eventually
from tests.customer_svc.factories import new_customer
from tests.followup_svc.conftest import fire_all, followup_knows
from tests.followup_svc.test_post_delivery import deliver, planned
from tests.notify_svc.conftest import (FixedClock, drain, known_customer, message_by_key, request_message,
                                       set_provider_code)
from tests.notify_svc.sandbox_env import CALLBACK_TOKEN, WECHAT_TOKEN, Sandbox


def wechat_signature(timestamp: str, nonce: str) -> str:
    """How WeChat signs its pushes with the account's server token."""
    return hashlib.sha1("".join(sorted([WECHAT_TOKEN, timestamp, nonce])).encode()).hexdigest()


async def test_a_delivery_s_thank_you_message_reaches_the_customer(
        client, followup_runtime, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:
    await set_provider_code(notify_runtime, ngroup, "purchase_thanks", "sms", aliyun="SMS_300003")
    await followup_knows(followup_runtime, ngroup)
    customer, vehicle, _ = await deliver(client, ngroup)
    await known_customer(notify_runtime, customer["id"])
    rows = await planned(followup_runtime, ngroup, vehicle["id"], 17)
    thanks = next(r for r in rows if r.rule_key == "post_delivery_thanks_sms")
    table = TestClock.__table__
    try:  # move followup_svc's clock to when the thank-you falls due (4 h later, out of quiet hours)
        await followup_runtime.clock.set(followup_runtime.engine, table,
                                         thanks.due_at - datetime.now(UTC) + timedelta(minutes=1))
        await fire_all(followup_runtime)
        key = f"post_delivery_thanks_sms:vehicle:{vehicle['id']}"

        async def requested():  # type: ignore[no-untyped-def]
            async with notify_runtime.sessionmaker() as s:
                return await s.scalar(sa.select(Message).where(Message.tenant_id == ngroup.tenant_id,
                                                               Message.idempotency_key.startswith(key)))
        message = await eventually(requested)
    finally:
        await followup_runtime.clock.set(followup_runtime.engine, table, timedelta(0))
    # notify decides at its own (pinned) time: a morning after the request.
    clock.now = max(clock.at_local(10), message.not_before)
    notify_runtime.nudge_dispatcher()
    sent = await message_by_key(notify_runtime, ngroup, message.idempotency_key, "sent", "held")
    if sent.status == "held":  # the request arrived in quiet hours: the next allowed minute sends it
        assert sent.reason == "quiet_hours"
        clock.now = sent.next_attempt_at
        notify_runtime.nudge_dispatcher()
        sent = await message_by_key(notify_runtime, ngroup, message.idempotency_key, "sent")
    [sms] = box.state.messages_for("aliyun")
    assert sms.template == "SMS_300003" and sms.our_id == str(sent.id)
    assert sms.to == customer["phones"][0]["number"].removeprefix("+86")
    assert (sent.rule_key, sent.source, sent.vehicle_id) == ("post_delivery_thanks_sms", "followup",
                                                            uuid.UUID(vehicle["id"]))


async def test_an_opt_out_reply_revokes_marketing_consent_everywhere(
        client, notify_client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:
    c = await new_customer(client, ngroup, consents=[
        {"channel": "sms", "purpose": "marketing", "granted": True, "source": "contact card"}])
    await known_customer(notify_runtime, c["id"])
    phone = c["phones"][0]["number"]
    async with httpx.AsyncClient(base_url=box.url) as http:
        push = (await http.post("/_sandbox/replies/aliyun", json={"phone": phone, "content": "TD",
                                                                    "sign": None})).content
    resp = await notify_client.post(f"/api/v1/notify/callbacks/aliyun/replies?token={CALLBACK_TOKEN}",
                                    content=push, headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text

    async def revoked_here():  # type: ignore[no-untyped-def]
        async with notify_runtime.sessionmaker() as s:
            view = await s.get(CustomerView, uuid.UUID(c["id"]))
        return view.consents.get("sms:marketing") is False

    await eventually(revoked_here)

    async def revoked_in_customer_svc():  # type: ignore[no-untyped-def]
        body = (await client.get(f"/api/v1/customers/{c['id']}", headers=ngroup.headers(Role.ADMIN))).json()
        consent = next((x for x in body["consents"] if (x["channel"], x["purpose"]) == ("sms", "marketing")), None)
        return consent is not None and consent["granted"] is False and consent["source"] == "sms_reply"

    await eventually(revoked_in_customer_svc)
    # A second "TD" changes nothing (and publishes nothing new).
    resp = await notify_client.post(f"/api/v1/notify/callbacks/aliyun/replies?token={CALLBACK_TOKEN}",
                                    content=push, headers={"Content-Type": "application/json"})
    assert resp.status_code == 200


async def test_a_withdrawal_handled_before_the_customers_snapshot_waits_for_it(notify_runtime, ngroup) -> None:
    """Events overtook each other: the withdrawal is retried once the snapshot is in, and the snapshot's older
    "granted" does not win."""
    customer_id = uuid.uuid4()
    created = build_event(ev.CustomerCreated(
        customer_id=customer_id, store_id=ngroup.store_a, customer_no="C-1", kind="person", name="测试客户",
        relationship="prospect", consents=[ev.ConsentState(channel="sms", purpose="marketing", granted=True)]),
        source="customer_svc", tenant_id=ngroup.tenant_id, store_id=ngroup.store_a)
    withdrawn = build_event(ev.CustomerConsentChanged(customer_id=customer_id, channel="sms", purpose="marketing",
                                                      granted=False, source="customer_request",
                                                      recorded_at=utcnow()),
                            source="customer_svc", tenant_id=ngroup.tenant_id, store_id=ngroup.store_a)
    with pytest.raises(MissingDependency):
        await handle(notify_runtime.sessionmaker, (consumers.consent_changed, withdrawn))
    await handle(notify_runtime.sessionmaker, (consumers.customer, created), (consumers.consent_changed, withdrawn))
    async with notify_runtime.sessionmaker() as session:
        view = await session.get(CustomerView, customer_id)
    assert view is not None and view.consents["sms:marketing"] is False


async def test_callbacks_are_authenticated_and_parse_strictly(notify_client, notify_runtime, box: Sandbox) -> None:
    for path in ("aliyun/receipts", "aliyun/replies", "tencent/receipts", "tencent/replies"):
        wrong = await notify_client.post(f"/api/v1/notify/callbacks/{path}?token=guess", content=b"[]")
        assert wrong.status_code == 401, path
        assert wrong.headers["content-type"].startswith("application/problem+json")
        missing = await notify_client.post(f"/api/v1/notify/callbacks/{path}", content=b"[]")
        assert missing.status_code == 422
        garbage = await notify_client.post(f"/api/v1/notify/callbacks/{path}?token={CALLBACK_TOKEN}",
                                           content=b"{not json")
        assert garbage.status_code == 422 and "body" in garbage.text
    unsigned = await notify_client.get("/api/v1/notify/callbacks/wechat",
                                       params={"signature": "0" * 40, "timestamp": "1", "nonce": "n",
                                               "echostr": "hello"})
    assert unsigned.status_code == 401
    ts, nonce = str(int(time.time())), "abc123"
    signature = wechat_signature(ts, nonce)
    ok = await notify_client.get("/api/v1/notify/callbacks/wechat",
                                 params={"signature": signature, "timestamp": ts, "nonce": nonce, "echostr": "hello"})
    assert ok.status_code == 200 and ok.text == "hello"
    # A signed query string seen once (a log) does not carry another body later: it is too old by then.
    old = str(int(time.time()) - 600)
    stale = await notify_client.post("/api/v1/notify/callbacks/wechat",
                                     params={"signature": wechat_signature(old, nonce), "timestamp": old,
                                             "nonce": nonce},
                                     content=b"<xml><MsgType>event</MsgType><Event>unsubscribe</Event></xml>")
    assert stale.status_code == 401 and "timestamp" in stale.json()["detail"]
    doctype = await notify_client.post("/api/v1/notify/callbacks/wechat",
                                       params={"signature": signature, "timestamp": ts, "nonce": nonce},
                                       content=b'<!DOCTYPE x [<!ENTITY a "b">]><xml><MsgType>text</MsgType></xml>')
    assert doctype.status_code == 422


async def test_wechat_receipts_and_one_time_subscriptions(
        client, notify_client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:

    openid = f"oSub{uuid.uuid4().hex[:20]}"
    c = await new_customer(client, ngroup, wechat_openid=openid)
    await known_customer(notify_runtime, c["id"])
    await set_provider_code(notify_runtime, ngroup, "appointment_reminder", "wechat", wechat="tpl-sub-appt")
    async with notify_runtime.sessionmaker() as s, s.begin():
        t = await s.scalar(sa.select(Template).where(Template.tenant_id == ngroup.tenant_id,
                                                     Template.key == "appointment_reminder",
                                                     Template.channel == "wechat", Template.store_id.is_(None)))
        t.provider_params = {**t.provider_params, "wechat_kind": "subscribe"}
    ts, nonce = str(int(time.time())), "n1"
    sig = {"signature": wechat_signature(ts, nonce),
           "timestamp": ts, "nonce": nonce}
    # No authorisation yet: suppressed (WeChat only), with the reason staff can read.
    k0 = await request_message(notify_runtime, ngroup, c["id"], template="appointment_reminder",
                               channels=("wechat",),
                               variables={"appointment_time": "2026-12-01T10:00:00+08:00", "plate": "粤B12345"})
    first = await message_by_key(notify_runtime, ngroup, k0, "suppressed")
    assert first.reason == "no_subscription"
    popup = (f"<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
             "<CreateTime>1700000001</CreateTime><MsgType><![CDATA[event]]></MsgType>"
             "<Event><![CDATA[subscribe_msg_popup_event]]></Event><SubscribeMsgPopupEvent><List>"
             "<TemplateId><![CDATA[tpl-sub-appt]]></TemplateId>"
             "<SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString><PopupScene>0</PopupScene>"
             "</List></SubscribeMsgPopupEvent></xml>")
    for _ in range(2):  # WeChat pushes again when it got no answer in time: one authorisation all the same
        resp = await notify_client.post("/api/v1/notify/callbacks/wechat", params=sig, content=popup.encode())
        assert resp.status_code == 200 and resp.text == "success"
    # WeChat is busy (-1): nothing was sent, so the retry still has the customer's authorisation.
    await drain(notify_runtime, clock)  # the fault is this message's, not one an earlier test left due
    box.state.add_fault("wechat", "system_error")
    k1 = await request_message(notify_runtime, ngroup, c["id"], template="appointment_reminder",
                               channels=("wechat",),
                               variables={"appointment_time": "2026-12-01T10:00:00+08:00", "plate": "粤B12345"})
    held = await message_by_key(notify_runtime, ngroup, k1, "held")
    assert held.reason == "provider_retry"
    async with notify_runtime.sessionmaker() as s:
        assert await s.scalar(sa.select(WechatQuota.remaining).where(WechatQuota.openid == openid)) == 1
    clock.advance(timedelta(seconds=60))
    notify_runtime.nudge_dispatcher()
    sent = await message_by_key(notify_runtime, ngroup, k1, "sent")
    k2 = await request_message(notify_runtime, ngroup, c["id"], template="appointment_reminder",
                               channels=("wechat",),
                               variables={"appointment_time": "2026-12-02T10:00:00+08:00", "plate": "粤B12345"})
    used_up = await message_by_key(notify_runtime, ngroup, k2, "suppressed")
    assert used_up.reason == "no_subscription"  # one authorisation, one notice
    [wx] = box.state.messages_for("wechat")
    assert wx.kind == "subscribe" and wx.to == openid
    async with httpx.AsyncClient(base_url=box.url) as http:
        pushes = (await http.get("/_sandbox/receipts/wechat")).json()
    assert len(pushes) == 1
    resp = await notify_client.post("/api/v1/notify/callbacks/wechat", params=sig, content=pushes[0].encode())
    assert resp.status_code == 200
    delivered = await message_by_key(notify_runtime, ngroup, k1, "delivered")
    assert delivered.id == sent.id
