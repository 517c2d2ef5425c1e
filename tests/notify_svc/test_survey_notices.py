"""survey_svc's events in notify_svc, through the real broker: an escalated complaint tells each person on the chain
once (WeCom, else SMS, through the provider sandbox), and partners subscribed to survey events get signed webhook
deliveries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from notify_svc.app import NotifyRuntime
from notify_svc.channels.wecom import WecomApp
from notify_svc.models import Message, WebhookDelivery
from notify_svc.webhooks.fanout import PARTNER_EVENT_TYPES
from shared.auth.roles import Role
from shared.db.base import utcnow
from shared.events.catalog.survey import ComplaintEscalated, SurveyLowScore
from shared.events.envelope import CloudEvent, build_event
from shared.testing.events import EventTap
from shared.testing.waiting import eventually
from tests.conftest import Group, new_phone
from tests.notify_svc.conftest import FixedClock, messages, set_provider_code
from tests.notify_svc.sandbox_env import Sandbox
from tests.notify_svc.test_dispatch import customer
from tests.notify_svc.test_history_and_bulk import publish
from tests.notify_svc.test_policy_api import pin
from tests.notify_svc import test_webhooks, test_wecom
from tests.notify_svc.test_webhooks import ENDPOINTS, Harness
from tests.notify_svc.test_wecom import member, with_wecom_notice_template

LOW_SCORE = "survey.response.low_score.v1"
#: Fixtures of the WeCom and webhook tests: the worker with the group's WeCom app; a partner's signed receiver.
wecom_on = test_wecom.wecom_on
hooks = test_webhooks.hooks


def complaint_escalation(group: Group, staff_ids: list[str], *, complaint_id: uuid.UUID, level: int = 1,
                         **fields: Any) -> CloudEvent:
    values: dict[str, Any] = dict(
        complaint_id=complaint_id, number="C202611-0007", channel="phone", category="repair_quality",
        severity="high", nature="ordinary", kind="complaint", status="in_process", level=level,
        to_roles=["cs_manager", "service_manager"], notify_staff_ids=[uuid.UUID(s) for s in staff_ids],
        reason="first response overdue", title="C202611-0007 返修未修好")
    data = ComplaintEscalated(**{**values, **fields})
    return build_event(data, source="survey_svc", tenant_id=group.tenant_id, store_id=group.store_a)


async def complaint_notices(runtime: NotifyRuntime, group: Group, complaint_id: uuid.UUID, count: int,
                            *statuses: str) -> dict[str, Message]:
    """The escalation notices about one complaint, by staff member, once ``count`` exist and each has one of
    ``statuses`` (any settled one when none are given)."""
    async def found() -> dict[str, Message] | None:
        rows = [m for m in await messages(runtime, group.tenant_id, source="escalation")
                if m.idempotency_key.startswith(f"escalation:complaint:{complaint_id}:")]
        settled = all((m.status in statuses) if statuses else m.status not in ("queued", "sending") for m in rows)
        return {str(m.staff_id) + f":{m.idempotency_key.split(':')[-2]}": m for m in rows} \
            if len(rows) == count and settled else None

    return await eventually(found, timeout=20)


async def test_an_escalated_complaint_tells_each_person_on_the_chain_once_by_sms(
        client, notify_runtime: NotifyRuntime, ngroup: Group, clock: FixedClock, box: Sandbox) -> None:
    phone = new_phone()
    manager, _ = await member(client, notify_runtime, ngroup, Role.CS_MANAGER, phone=phone)
    without_phone, _ = await member(client, notify_runtime, ngroup, Role.SERVICE_MANAGER)
    c = await customer(client, notify_runtime, ngroup, name="王投诉")
    await set_provider_code(notify_runtime, ngroup, "escalation_notice", "sms", aliyun="SMS_400004")
    pin(clock, 10)
    complaint_id = uuid.uuid4()
    event = complaint_escalation(ngroup, [manager, without_phone], complaint_id=complaint_id,
                                 customer_id=uuid.UUID(c["id"]))
    await publish(notify_runtime, event)

    notices = await complaint_notices(notify_runtime, ngroup, complaint_id, 2)
    told, untold = notices[f"{manager}:1"], notices[f"{without_phone}:1"]
    assert {(m.template_key, m.purpose, m.customer_id, m.store_id, m.channels[-1]) for m in notices.values()} == \
        {("escalation_notice", "service", None, ngroup.store_a, "sms")}
    assert told.idempotency_key == f"escalation:complaint:{complaint_id}:1:{manager}"
    assert (told.status, told.channel) == ("sent", "sms")
    assert (untold.status, untold.reason) == ("suppressed", "no_phone")
    [sms] = box.state.messages_for("aliyun", phone.removeprefix("+86"))
    assert sms.our_id == str(told.id)
    assert (sms.params["task_title"], sms.params["level"], sms.params["customer_name"]) == \
        ("C202611-0007 返修未修好", "1", "王投诉")
    assert "C202611-0007 返修未修好" in (told.body or "") and "第1级" in (told.body or "")

    # Redelivered: nobody is told twice; the next level is a new notice.
    await publish(notify_runtime, event)
    await publish(notify_runtime, complaint_escalation(ngroup, [manager], complaint_id=complaint_id, level=2))
    notices = await complaint_notices(notify_runtime, ngroup, complaint_id, 3)
    assert set(notices) == {f"{manager}:1", f"{without_phone}:1", f"{manager}:2"}
    assert len(box.state.messages_for("aliyun", phone.removeprefix("+86"))) == 2


async def test_an_escalated_complaint_reaches_wecom_first(
        client, notify_runtime: NotifyRuntime, ngroup: Group, clock: FixedClock, box: Sandbox,
        wecom_on: WecomApp) -> None:
    sid, userid = await member(client, notify_runtime, ngroup, Role.CS_MANAGER)
    await with_wecom_notice_template(notify_runtime, ngroup)
    pin(clock, 10)
    complaint_id = uuid.uuid4()
    await publish(notify_runtime, complaint_escalation(ngroup, [sid], complaint_id=complaint_id, level=3))
    told = (await complaint_notices(notify_runtime, ngroup, complaint_id, 1, "sent", "failed"))[f"{sid}:3"]
    assert (told.status, told.channel, told.channels) == ("sent", "wecom", ["wecom", "sms"])
    [app_message] = box.state.messages_for("wecom", userid)
    assert app_message.params["content"] == told.body
    assert "C202611-0007 返修未修好" in (told.body or "") and "第3级" in (told.body or "") and "—" in (told.body or "")


def test_partners_may_subscribe_to_survey_and_complaint_events() -> None:
    assert set(PARTNER_EVENT_TYPES) >= {
        "survey.response.answered.v1", LOW_SCORE, "survey.complaint.opened.v1", "survey.complaint.escalated.v1",
        "survey.complaint.resolved.v1", "survey.complaint.closed.v1"}


async def test_a_partner_subscribed_to_low_scores_gets_a_signed_delivery(
        hooks: Harness, event_tap: EventTap) -> None:
    created = await hooks.endpoint(event_types=[LOW_SCORE, "survey.complaint.closed.v1"])
    assert created["event_types"] == [LOW_SCORE, "survey.complaint.closed.v1"]
    data = SurveyLowScore(invitation_id=uuid.uuid4(), survey="service_satisfaction", survey_version=2,
                          customer_id=uuid.uuid4(), about_type="visit", about_id=uuid.uuid4(), response_id=uuid.uuid4(),
                          satisfaction_index=35.0, reasons=["q2: 25"], answered_at=datetime.now(UTC))
    event = build_event(data, source="survey_svc", tenant_id=hooks.group.tenant_id, store_id=hooks.group.store_a)
    await publish(hooks.runtime, event)
    await event_tap.wait_for(LOW_SCORE, subject=str(data.response_id))
    mine = hooks.deliverer(clock=utcnow)

    async def delivered() -> list[WebhookDelivery]:
        await mine.run_once()
        return [d for d in await hooks.deliveries(event_id=uuid.UUID(str(event.id))) if d.status == "delivered"]

    [delivery] = await eventually(delivered, timeout=20)
    assert str(delivery.endpoint_id) == created["id"] and delivery.event_type == LOW_SCORE
    [request] = hooks.receiver.requests  # once, whichever worker sent it
    assert request.verified and request.webhook_id == str(delivery.id)
    body = request.json()
    assert body["type"] == LOW_SCORE and body["id"] == str(event.id)
    assert body["data"]["response_id"] == str(data.response_id) and body["data"]["reasons"] == ["q2: 25"]
    endpoint = await hooks.api.get(f"{ENDPOINTS}/{created['id']}", headers=hooks.group.headers(Role.ADMIN))
    assert endpoint.status_code == 200 and LOW_SCORE in endpoint.json()["event_types"]
