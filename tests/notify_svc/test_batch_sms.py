"""Aliyun SendBatchSms through the whole dispatcher: non-urgent messages of one template due together go out as
one request; each keeps its own policy check, receipt and fate; a batch refused as a whole goes out one by one;
a batch whose answer was lost is checked, never sent again."""

from __future__ import annotations

import uuid
from datetime import timedelta
from types import SimpleNamespace

import httpx
import orjson
import sqlalchemy as sa

from notify_svc.app import NotifyRuntime
from notify_svc.channels.base import Outgoing, is_batch_out_id
from notify_svc.dispatch.decide import Decision
from notify_svc.dispatch.dispatcher import plan_requests
from notify_svc.models import Message
from notify_svc.sandbox import formats
from tests.conftest import Group
from tests.notify_svc.conftest import FixedClock, message_by_key, request_message, set_provider_code
from tests.notify_svc.sandbox_env import CALLBACK_TOKEN, Sandbox
from tests.notify_svc.test_dispatch import customer, message_by_key_reason, phone_of, trail


async def due_together(client: httpx.AsyncClient, runtime: NotifyRuntime, group: Group, clock: FixedClock,
                       customers: list[dict], template: str = "purchase_thanks") -> list[str]:
    """One message per customer (a customer listed twice gets two), all queued for a minute from now, then the
    clock moves on: the dispatcher finds them due in one claim. Returns their idempotency keys."""
    later = clock.now + timedelta(minutes=1)
    keys = [await request_message(runtime, group, c["id"], template=template, not_before=later) for c in customers]
    for key in keys:
        await message_by_key(runtime, group, key, "queued")
    clock.advance(timedelta(minutes=2))
    runtime.nudge_dispatcher()
    return keys


async def push_receipts(notify_client: httpx.AsyncClient, body: bytes) -> None:
    resp = await notify_client.post(f"/api/v1/notify/callbacks/aliyun/receipts?token={CALLBACK_TOKEN}",
                                    content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text


async def test_messages_due_together_go_in_one_batch_and_each_gets_its_own_receipt(
        client, notify_client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:
    people = [await customer(client, notify_runtime, ngroup) for _ in range(3)]
    await set_provider_code(notify_runtime, ngroup, "purchase_thanks", "sms", aliyun="SMS_100001")
    keys = await due_together(client, notify_runtime, ngroup, clock, people)
    sent = [await message_by_key(notify_runtime, ngroup, k, "sent") for k in keys]

    # One request carried all three: one BizId and one batch OutId (a single send has its own). Counted by this
    # test's numbers: the sandbox and the dispatcher are shared, and moving the clock on may make a message an
    # earlier test left queued (a retry) due in the same pass.
    ours = {phone_of(c).removeprefix("+86") for c in people}
    recorded = {m.to: m for m in box.state.messages_for("aliyun") if m.to in ours}
    assert sorted(recorded) == sorted(ours)
    [biz_id] = {m.provider_id for m in recorded.values()}
    [out_id] = {m.our_id for m in recorded.values()}
    assert is_batch_out_id(out_id)
    for c, message in zip(people, sent, strict=True):
        assert message.provider_message_id == biz_id and message.sent_at == clock.now
        assert recorded[phone_of(c).removeprefix("+86")].params["customer_name"] == c["name"]
        [entry] = await trail(notify_runtime, message.id)  # one entry for the attempt, not two
        assert (entry.status, entry.code) == ("sent", "OK") and out_id in (entry.detail or "")

    # Receipts carry the batch's BizId and the number: each finds its own message (in whatever order they come),
    # and a repeated push changes nothing.
    box.state.report("aliyun", fail={phone_of(people[0])})
    receipts = orjson.loads(formats.aliyun_receipts(list(recorded.values())))
    assert all(r["biz_id"] == biz_id and r["out_id"] == out_id for r in receipts)
    for _ in range(2):
        await push_receipts(notify_client, orjson.dumps(receipts[::-1]))
    failed = await message_by_key(notify_runtime, ngroup, keys[0], "failed")
    assert failed.reason == "receipt_failed"
    for key in keys[1:]:
        assert (await message_by_key(notify_runtime, ngroup, key, "delivered")).delivered_at is not None
    assert [e.status for e in await trail(notify_runtime, failed.id)] == ["sent", "failed"]


async def test_caps_hold_per_message_and_one_number_never_twice_in_a_batch(
        client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:
    """Four messages to one person in one claim: the daily cap (3) holds the fourth exactly as for single sends,
    and the three that go are three requests, since a receipt names its message by batch and number."""
    capped, other = await customer(client, notify_runtime, ngroup), await customer(client, notify_runtime, ngroup)
    await set_provider_code(notify_runtime, ngroup, "purchase_thanks", "sms", aliyun="SMS_100001")
    await set_provider_code(notify_runtime, ngroup, "service_thanks", "sms", aliyun="SMS_100002")
    keys = await due_together(client, notify_runtime, ngroup, clock, [capped, other, capped, capped, capped],
                              template="service_thanks")
    statuses = [(await message_by_key(notify_runtime, ngroup, k, "sent", "held")).status for k in keys]
    assert sorted(statuses) == ["held"] + ["sent"] * 4
    held = await message_by_key(notify_runtime, ngroup, keys[statuses.index("held")])
    assert held.reason == "daily_cap"
    recorded = box.state.messages_for("aliyun")
    to_capped = [m for m in recorded if m.to == phone_of(capped).removeprefix("+86")]
    assert len(to_capped) == 3 and len({m.our_id for m in to_capped}) == 3
    assert box.state.requests["aliyun"] == 3  # one batch (a capped message with the other customer's) + two alone
    async with notify_runtime.sessionmaker() as s, s.begin():  # not left due for the next tests' clocks
        await s.execute(sa.update(Message).where(Message.id == held.id).values(status="suppressed",
                                                                               next_attempt_at=None))


async def test_a_batch_refused_as_a_whole_goes_out_one_by_one(
        client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:
    people = [await customer(client, notify_runtime, ngroup) for _ in range(3)]
    await set_provider_code(notify_runtime, ngroup, "purchase_thanks", "sms", aliyun="SMS_100001")
    box.state.add_fault("aliyun", "invalid_number")  # the batch request: one bad number refuses them all
    keys = await due_together(client, notify_runtime, ngroup, clock, people)
    sent = [await message_by_key(notify_runtime, ngroup, k, "sent") for k in keys]
    assert (box.state.requests["aliyun"], box.state.batches) == (4, 0)
    assert sorted(m.our_id for m in box.state.messages_for("aliyun")) == sorted(str(m.id) for m in sent)
    for message in sent:
        recorded = box.state.messages_for("aliyun", phone_of(people[keys.index(message.idempotency_key)])[3:])
        assert message.provider_message_id == recorded[0].provider_id and message.attempts == 1
        # One entry for the attempt (never "sending" then "sent"); a receipt's may follow on a busy machine.
        entries = await trail(notify_runtime, message.id)
        assert entries[0].status == "sent" and "refused as a whole" in (entries[0].detail or ""), \
            [(e.status, e.detail) for e in entries]
        assert "sent" not in [e.status for e in entries[1:]] and "sending" not in [e.status for e in entries]


async def test_a_batch_whose_answer_was_lost_is_checked_never_sent_again(
        client, notify_client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:
    """Accepted, then the answer timed out: every message waits for its receipt under the batch's OutId. The
    status query finds nothing yet, so nothing is sent again; the receipts (BizId never recorded) and the status
    query each settle their own message."""
    people = [await customer(client, notify_runtime, ngroup) for _ in range(3)]
    await set_provider_code(notify_runtime, ngroup, "purchase_thanks", "sms", aliyun="SMS_100001")
    box.state.add_fault("aliyun", "accept_then_timeout")
    keys = await due_together(client, notify_runtime, ngroup, clock, people)
    waiting = [await message_by_key_reason(notify_runtime, ngroup, k, "awaiting_receipt") for k in keys]
    [out_id] = {m.our_id for m in box.state.messages_for("aliyun")}
    assert all(m.status == "sending" and m.provider_message_id == out_id for m in waiting)
    assert len(box.state.messages_for("aliyun")) == 3

    clock.advance(timedelta(minutes=11))  # the status query: nothing known yet, so wait again, never resend
    notify_runtime.nudge_dispatcher()
    for k in keys:
        await message_by_key_reason(notify_runtime, ngroup, k, "awaiting_receipt", after=clock.now)
    assert len(box.state.messages_for("aliyun")) == 3

    # The carrier's receipt for the first arrives by push (matched by the batch's OutId and the number) ...
    [first] = box.state.messages_for("aliyun", phone_of(people[0])[3:])
    first.status, first.reported_at = "delivered", first.at
    await push_receipts(notify_client, formats.aliyun_receipts([first]))
    assert (await message_by_key(notify_runtime, ngroup, keys[0], "delivered")).delivered_at is not None
    # ... and the status query finds the other two (one delivered, one not).
    box.state.report("aliyun", fail={phone_of(people[2])})
    clock.advance(timedelta(minutes=11))
    notify_runtime.nudge_dispatcher()
    assert (await message_by_key(notify_runtime, ngroup, keys[1], "delivered")).delivered_at is not None
    assert (await message_by_key(notify_runtime, ngroup, keys[2], "failed")).reason == "receipt_failed"
    assert len(box.state.messages_for("aliyun")) == 3 and box.state.requests["aliyun"] > 1


def test_urgent_and_lone_messages_keep_their_own_request() -> None:
    class Batching:
        name, channel, max_batch = "aliyun", "sms", 2

        async def send_batch(self, outs, out_id):  # type: ignore[no-untyped-def]
            raise AssertionError("not called")

    def send(phone: str, template: str = "SMS_1", staff: bool = False, source: str = "followup") -> Decision:
        message = SimpleNamespace(id=uuid.uuid4(), staff_id=uuid.uuid4() if staff else None, source=source)
        out = Outgoing(message_id=message.id, channel="sms", to=phone, text="x", template_code=template,
                       sign_name="测试汽车")
        return Decision(message, "send", channel="sms", provider=Batching(), outgoing=out,  # type: ignore[arg-type]
                        recipient_masked=phone[3:6] + "****" + phone[-4:])

    decisions = [send("+8613900000001"), send("+8613900000002"), send("+8613900000003"),
                 send("+8613911110001"),  # masks like the first: never in one batch with it
                 send("+8613900000004", template="SMS_2"),  # alone with its template
                 send("+8613900000005", staff=True, source="escalation")]  # a notice to staff: urgent
    requests = plan_requests(decisions)
    shapes = sorted((q.out_id is not None, sorted(d.outgoing.to[-4:] for d in q.decisions)) for q in requests)
    assert shapes == [(False, ["0004"]), (False, ["0005"]), (True, ["0001", "0002"]), (True, ["0001", "0003"])]
    assert all(d.batch_out_id == q.out_id for q in requests for d in q.decisions)
