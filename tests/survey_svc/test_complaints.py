"""Complaints end to end (DOMAIN §10): intake by any staff member who becomes the owner, the case log, transfer,
remedies, goodwill above the limit waiting for a manager, resolution, closure signed off by a manager with the
customer's feedback, SLA escalation along the chain (paused by a hold), case numbers, idempotent intake,
complaints from survey answers, store scoping and bad input."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from survey_svc.app import SurveyRuntime
from survey_svc.models import AuditEntry, Complaint, CustomerView, Response, StaffView
from shared.auth.roles import Role
from shared.testing.waiting import eventually
from tests.conftest import Group
from tests.survey_svc.conftest import (SurveyClock, invitation_by_key, new_customer, publish_survey_request, rows,
                                      token_of, visited)

OPENED = "survey.complaint.opened.v1"
ESCALATED = "survey.complaint.escalated.v1"
RESOLVED = "survey.complaint.resolved.v1"
CLOSED = "survey.complaint.closed.v1"
URL = "/api/v1/complaints"
BODY: dict[str, Any] = {"channel": "phone_inbound", "category": "service", "subtype": "service_quality",
                        "problems": ["repair_quality", "waiting"], "complainant_name": "王先生",
                        "complainant_phone": "13912345678", "description": "保养后发动机异响,等了三个小时"}


def h(group: Group, role: Role, store: str = "A", **extra: str) -> dict[str, str]:
    return group.headers(role, store, **extra)


async def staff_id(runtime: SurveyRuntime, group: Group, role: Role, store: str = "A") -> uuid.UUID:
    [member] = [m for m in await rows(runtime, StaffView, group.tenant_id) if m.name == f"{role.value} {store}"]
    return member.id


async def open_case(sc: httpx.AsyncClient, group: Group, role: Role = Role.SERVICE_ADVISOR, store: str = "A",
                    **body: Any) -> dict:
    r = await sc.post(URL, json={**BODY, **body}, headers=h(group, role, store))
    assert r.status_code == 201, r.text
    return r.json()


async def act(sc: httpx.AsyncClient, group: Group, complaint_id: str, action: str, body: dict[str, Any],
              role: Role = Role.SERVICE_ADVISOR, store: str = "A") -> httpx.Response:
    """POST an action with the case's current ETag as If-Match (most actions require it)."""
    read = await sc.get(f"{URL}/{complaint_id}", headers=h(group, role, store))
    etag = read.headers.get("ETag", "*")
    return await sc.post(f"{URL}/{complaint_id}/{action}", json=body,
                         headers=h(group, role, store, **{"If-Match": etag}))


async def level_of(runtime: SurveyRuntime, complaint_id: str, level: int) -> Complaint:
    """Wait until the SLA watch (the worker's loop, or our own run) has taken the case to ``level``."""

    async def reached() -> Complaint | None:
        await runtime.sla_watch.run_once()
        async with runtime.sessionmaker() as s:
            c = await s.get(Complaint, uuid.UUID(complaint_id))
        return c if c is not None and c.escalation_level == level else None

    return await eventually(reached)


async def known_customer(client: httpx.AsyncClient, runtime: SurveyRuntime, group: Group, store: str = "A") -> dict:
    customer = await new_customer(client, group, store)

    async def known() -> bool:
        async with runtime.sessionmaker() as s:
            return await s.get(CustomerView, uuid.UUID(customer["id"])) is not None

    await eventually(known)
    return customer


async def test_complaint_from_intake_to_closure(client, survey_client, survey_runtime, sgroup, sclock,
                                                event_tap) -> None:  # type: ignore[no-untyped-def]
    sc, g = survey_client, sgroup
    advisor = await staff_id(survey_runtime, g, Role.SERVICE_ADVISOR)
    agent = await staff_id(survey_runtime, g, Role.CS_AGENT)
    customer = await known_customer(client, survey_runtime, g)
    r = await sc.post(URL, json={**BODY, "customer_id": customer["id"], "complainant_name": None,
                                 "complainant_phone": None, "demands": "免费返修并赔偿误工费"},
                      headers=h(g, Role.SERVICE_ADVISOR))
    assert r.status_code == 201, r.text
    case = r.json()
    cid = case["id"]
    period = sclock.now.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y%m")  # the store's local month
    assert case["number"] == f"C{period}-0001" and r.headers["ETag"] == 'W/"1"'
    assert r.headers["Location"] == f"{URL}/{cid}"
    assert case["owner_id"] == str(advisor) and case["status"] == "ongoing" and case["kind"] == "complaint"
    assert case["severity"] == "medium" and case["nature"] == "ordinary" and case["escalation_level"] == 0
    assert case["store_id"] == str(g.stores["A"]) and case["customer_id"] == customer["id"]
    [opened] = await event_tap.wait_for(OPENED, subject=cid)
    assert opened.data["number"] == case["number"] and opened.data["owner_id"] == str(advisor)
    assert opened.data["severity"] == "medium" and opened.data["kind"] == "complaint"

    # The owner's first contact is the first response.
    sclock.advance(timedelta(minutes=30))
    r = await sc.post(f"{URL}/{cid}/respond", json={"body": "已致歉并安排明早复检", "promised_reply_at":
                                                    (sclock.now + timedelta(hours=20)).isoformat()},
                      headers=h(g, Role.SERVICE_ADVISOR, **{"If-Match": 'W/"1"'}))
    assert r.status_code == 200, r.text
    assert r.json()["first_responded_at"] is not None and r.headers["ETag"] == 'W/"2"'

    # Ownership changes only by a transfer with a reason, to staff of the store.
    bad = await sc.post(f"{URL}/{cid}/transfer", json={"to_id": str(agent)}, headers=h(g, Role.SERVICE_ADVISOR))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.reason"
    other_store = await staff_id(survey_runtime, g, Role.CS_AGENT, "B")
    bad = await act(sc, g, cid, "transfer", {"to_id": str(other_store), "reason": "客服跟进"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.to_id"
    r = await act(sc, g, cid, "transfer", {"to_id": str(agent), "reason": "转客服专员跟进"})
    assert r.status_code == 200 and r.json()["owner_id"] == str(agent)
    # The former owner is no longer the one who works it (notes stay open to anyone of the store, but only the
    # owner or a manager records the investigation).
    refused = await sc.post(f"{URL}/{cid}/respond", json={"body": "x"}, headers=h(g, Role.SERVICE_ADVISOR))
    assert refused.status_code == 403
    noted = await sc.post(f"{URL}/{cid}/notes", json={"body": "客户电话 13912345678 再次来电"},
                          headers=h(g, Role.SERVICE_ADVISOR))
    assert noted.status_code == 200 and noted.json()["investigation"] is None
    overwrite = await sc.post(f"{URL}/{cid}/notes", json={"body": "我查过了", "investigation": "客户操作不当"},
                              headers=h(g, Role.SERVICE_ADVISOR))
    assert overwrite.status_code == 403
    noted = await sc.post(f"{URL}/{cid}/notes", json={"body": "复检结果", "investigation": "火花塞安装不到位"},
                          headers=h(g, Role.CS_AGENT))
    assert noted.status_code == 200 and noted.json()["investigation"] == "火花塞安装不到位"

    # Remedies offered; the costly one needs approval.
    r = await act(sc, g, cid, "remedies", {"remedies": [
        {"label": "方案一", "description": "贵宾卡:工时9折,配件8.5折;免费洗车", "goodwill_amount": "800"},
        {"label": "方案二", "description": "工时8折,配件9折", "goodwill_amount": "1500"},
        {"label": "方案三", "description": "更换发动机总成并赠送一年免费保养, 联系车间主任 13712345678",
         "goodwill_amount": "12000"}]},
        Role.CS_AGENT)
    assert r.status_code == 200, r.text
    assert [x["needs_approval"] for x in r.json()["remedies"]] == [False, False, True]

    # The customer wants 方案三: ¥12,000 is above the ¥10,000 limit -> pending, and the case is major.
    r = await act(sc, g, cid, "goodwill", {"amount": "12000", "reason": "客户选择方案三"}, Role.CS_AGENT)
    assert r.status_code == 200 and r.json()["goodwill_status"] == "pending" and r.json()["kind"] == "major"
    blocked = await act(sc, g, cid, "resolve", {"remedy": "方案三", "goodwill_amount": "12000"}, Role.CS_AGENT)
    assert blocked.status_code == 409
    pending = await sc.get(URL, params={"goodwill_status": "pending"}, headers=h(g, Role.SERVICE_MANAGER))
    assert [c["id"] for c in pending.json()["items"]] == [cid]
    assert (await sc.post(f"{URL}/{cid}/goodwill/approve", json={}, headers=h(g, Role.CS_AGENT))).status_code == 403
    r = await act(sc, g, cid, "goodwill/approve", {"note": "同意"}, Role.SERVICE_MANAGER)
    assert r.status_code == 200 and r.json()["goodwill_status"] == "approved"
    assert r.json()["goodwill_decided_by"] == str(await staff_id(survey_runtime, g, Role.SERVICE_MANAGER))
    etag = r.headers["ETag"]
    # More than approved is refused; another amount than the offered package's too; so is a stale ETag, or none.
    over = await act(sc, g, cid, "resolve", {"remedy": "换发动机并赔偿误工", "goodwill_amount": "15000"},
                     Role.CS_AGENT)
    assert over.status_code == 409
    other = await act(sc, g, cid, "resolve", {"remedy": "方案三", "goodwill_amount": "15000"}, Role.CS_AGENT)
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "body.goodwill_amount"
    unmatched = await sc.post(f"{URL}/{cid}/resolve", json={"remedy": "方案三"}, headers=h(g, Role.CS_AGENT))
    assert unmatched.status_code == 428
    stale = await sc.post(f"{URL}/{cid}/resolve", json={"remedy": "方案三", "goodwill_amount": "12000"},
                          headers=h(g, Role.CS_AGENT, **{"If-Match": 'W/"1"'}))
    assert stale.status_code == 412
    r = await sc.post(f"{URL}/{cid}/resolve", json={"remedy": "方案三"},
                      headers=h(g, Role.CS_AGENT, **{"If-Match": etag}))
    assert r.status_code == 200, r.text
    assert r.json()["resolved_at"] is not None and r.json()["status"] == "in_process"
    assert r.json()["chosen_remedy"] == "方案三" and r.json()["goodwill_amount"] == "12000.00"
    # Still watched until closed: by the resolution deadline (5 days away).
    assert r.json()["closing_due"] == r.json()["resolution_due"] == r.json()["escalate_at"]

    # Closing: a manager signs off, with root cause, action and the customer's feedback.
    close = {"root_cause": "火花塞安装不到位", "action_taken": "返工并对技师再培训, 已回访 139 1234 5678",
             "feedback_result": "satisfied", "feedback_speed": "basically_satisfied",
             "staff_verdict": "技师通报批评, 其主管 13612345678"}
    assert (await sc.post(f"{URL}/{cid}/close", json=close, headers=h(g, Role.CS_AGENT))).status_code == 403
    missing = await sc.post(f"{URL}/{cid}/close", json={**close, "root_cause": None}, headers=h(g, Role.CS_MANAGER))
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "body.root_cause"
    bad_feedback = await sc.post(f"{URL}/{cid}/close", json={**close, "feedback_speed": "great"},
                                 headers=h(g, Role.CS_MANAGER))
    assert bad_feedback.status_code == 422 and bad_feedback.json()["errors"][0]["field"] == "body.feedback_speed"
    r = await act(sc, g, cid, "close", close, Role.CS_MANAGER)
    assert r.status_code == 200, r.text
    closed = r.json()
    assert closed["escalate_at"] is None
    manager = await staff_id(survey_runtime, g, Role.CS_MANAGER)
    assert closed["status"] == "closed" and closed["signed_off_by"] == str(manager) and closed["closed_at"]
    again = await sc.post(f"{URL}/{cid}/respond", json={"body": "回访"}, headers=h(g, Role.CS_AGENT))
    assert again.status_code == 409

    # The log tells the story, oldest first; the audit trail has every write.
    detail = (await sc.get(f"{URL}/{cid}", headers=h(g, Role.CS_MANAGER))).json()
    assert [e["kind"] for e in detail["entries"]] == ["opened", "response", "transfer", "note", "note", "remedies",
                                                      "goodwill", "goodwill", "resolved", "closed"]
    assert detail["entries"][2]["data"] == {"from_id": str(advisor), "to_id": str(agent)}
    # The CS agent has no personal-data permission: phone numbers in the log are masked.
    masked = (await sc.get(f"{URL}/{cid}", headers=h(g, Role.CS_AGENT))).json()
    assert "139****5678" in masked["entries"][3]["body"] and "13912345678" not in masked["entries"][3]["body"]
    assert masked["action_taken"] == "返工并对技师再培训, 已回访 139****5678", masked["action_taken"]
    # And wherever else staff wrote one: the verdict, the remedies offered, and the log's record of them.
    assert masked["staff_verdict"] == "技师通报批评, 其主管 136****5678"
    assert masked["remedies"][2]["description"].endswith("137****5678")
    logged = next(e for e in masked["entries"] if e["kind"] == "remedies")
    assert "13712345678" not in str(logged["data"]) and "137****5678" in str(logged["data"])
    assert "13712345678" in str(detail["remedies"])
    assert detail["action_taken"] == close["action_taken"]
    audits = await rows(survey_runtime, AuditEntry, g.tenant_id, record_id=uuid.UUID(cid))
    assert {"complaint.create", "complaint.transfer", "complaint.goodwill.approve", "complaint.resolve",
            "complaint.close"} <= {a.action for a in audits}

    [resolved] = await event_tap.wait_for(RESOLVED, subject=cid)
    assert resolved.data["goodwill_amount"] == 12000 and resolved.data["kind"] == "major"
    assert resolved.data["remedy"] == "方案三" and resolved.data["owner_id"] == str(agent)
    [done] = await event_tap.wait_for(CLOSED, subject=cid)
    assert done.data["feedback_result"] == "satisfied" and done.data["feedback_speed"] == "basically_satisfied"
    assert done.data["signed_off_by"] == str(manager) and done.data["status"] == "closed"
    assert done.data["customer_id"] == customer["id"]


async def test_goodwill_rejection_and_amounts_within_the_limit(
        survey_client, survey_runtime, sgroup) -> None:  # type: ignore[no-untyped-def]
    sc, g = survey_client, sgroup
    cid = (await open_case(sc, g, Role.SERVICE_MANAGER))["id"]
    r = await act(sc, g, cid, "goodwill", {"amount": "20000", "reason": "退车要求"}, Role.SERVICE_MANAGER)
    assert r.json()["goodwill_status"] == "pending"
    # Nobody approves their own request.
    own = await act(sc, g, cid, "goodwill/reject", {"reason": "x"}, Role.SERVICE_MANAGER)
    assert own.status_code == 403
    r = await act(sc, g, cid, "goodwill/reject", {"reason": "超出政策"}, Role.CS_DIRECTOR)
    assert r.status_code == 200 and r.json()["goodwill_status"] == "rejected"
    assert (await act(sc, g, cid, "goodwill/approve", {}, Role.ADMIN)).status_code == 409
    refused = await act(sc, g, cid, "resolve", {"remedy": "退车", "goodwill_amount": "20000"}, Role.SERVICE_MANAGER)
    assert refused.status_code == 409
    # Within the limit no approval is needed.
    r = await act(sc, g, cid, "resolve", {"remedy": "免费检测并减免工时费", "goodwill_amount": "3000"},
                  Role.SERVICE_MANAGER)
    assert r.status_code == 200 and r.json()["goodwill_amount"] == "3000.00"
    assert (await act(sc, g, cid, "resolve", {"remedy": "x"}, Role.SERVICE_MANAGER)).status_code == 409


async def test_sla_breach_escalates_up_the_chain(survey_client, survey_runtime, sgroup, sclock: SurveyClock,
                                                 event_tap) -> None:  # type: ignore[no-untyped-def]
    sc, g = survey_client, sgroup
    case = await open_case(sc, g)  # medium: first response within 8 hours
    cid = case["id"]
    staff = await rows(survey_runtime, StaffView, g.tenant_id)

    def ids(*names: str) -> set[str]:
        return {str(m.id) for m in staff if m.name in names}

    sclock.advance(timedelta(hours=7, minutes=59))
    await survey_runtime.sla_watch.run_once()
    [c] = await rows(survey_runtime, Complaint, g.tenant_id, id=uuid.UUID(cid))
    assert c.escalation_level == 0

    expected = {1: (["cs_manager"], ids("cs_manager A")),
                2: (["service_manager"], ids("service_manager A")),
                # director and admin are group-wide: those of store B are told too
                3: (["cs_director", "admin"], ids("cs_director A", "admin A", "cs_director B", "admin B"))}
    for level in (1, 2, 3):
        sclock.advance(timedelta(minutes=1) if level == 1 else timedelta(hours=8))
        c = await level_of(survey_runtime, cid, level)
        [event] = await event_tap.wait_for(ESCALATED, subject=cid, where=lambda e, lv=level: e.data["level"] == lv)
        roles, notify = expected[level]
        assert event.data["to_roles"] == roles and set(event.data["notify_staff_ids"]) == notify
        assert event.data["title"] == f"投诉 {case['number']} 超过首次响应时限,已升级至第{level}级"
        assert "no first response" in event.data["reason"] and event.data["number"] == case["number"]
        # Staff read it as an SMS: the deadline is in the store's local time.
        local = c.first_response_due.astimezone(ZoneInfo("Asia/Shanghai"))
        assert event.data["reason"] == f"no first response by {local:%Y-%m-%d %H:%M}"
    assert c.escalate_at is None  # the top of the chain

    sclock.advance(timedelta(hours=48))
    await survey_runtime.sla_watch.run_once()
    [c] = await rows(survey_runtime, Complaint, g.tenant_id, id=uuid.UUID(cid))
    assert c.escalation_level == 3
    assert len(event_tap.matching(ESCALATED, subject=cid)) == 3
    log = (await sc.get(f"{URL}/{cid}", headers=h(g, Role.ADMIN))).json()
    assert [e["data"]["level"] for e in log["entries"] if e["kind"] == "escalation"] == [1, 2, 3]
    assert log["overdue"] is True
    overdue = await sc.get(URL, params={"overdue": "true"}, headers=h(g, Role.SERVICE_MANAGER))
    assert cid in [x["id"] for x in overdue.json()["items"]]


async def test_answered_in_time_escalates_only_when_the_resolution_is_late(
        survey_client, survey_runtime, sgroup, sclock: SurveyClock, event_tap) -> None:  # type: ignore[no-untyped-def]
    sc, g = survey_client, sgroup
    case = await open_case(sc, g, severity="high")  # 4 hours to respond, 72 to resolve
    cid = case["id"]
    assert case["severity"] == "high"
    sclock.advance(timedelta(hours=1))
    await act(sc, g, cid, "respond", {"body": "已联系客户"})
    sclock.advance(timedelta(hours=10))
    await survey_runtime.sla_watch.run_once()
    [c] = await rows(survey_runtime, Complaint, g.tenant_id, id=uuid.UUID(cid))
    assert c.escalation_level == 0 and c.escalate_at == c.resolution_due
    sclock.advance(timedelta(hours=62))
    await level_of(survey_runtime, cid, 1)
    [event] = await event_tap.wait_for(ESCALATED, subject=cid)
    assert "no resolution" in event.data["reason"] and "解决时限" in event.data["title"]


async def test_hold_pauses_the_sla_watch(
        survey_client, survey_runtime, sgroup, sclock: SurveyClock) -> None:  # type: ignore[no-untyped-def]
    sc, g = survey_client, sgroup
    case = await open_case(sc, g)  # first response due in 8 hours
    cid = case["id"]
    sclock.advance(timedelta(hours=2))
    bad = await sc.post(f"{URL}/{cid}/status", json={"status": "hold"}, headers=h(g, Role.SERVICE_ADVISOR))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.reason"
    r = await sc.post(f"{URL}/{cid}/status", json={"status": "hold", "reason": "客户出差,下周再议"},
                      headers=h(g, Role.SERVICE_ADVISOR))
    assert r.status_code == 200 and r.json()["status"] == "hold" and r.json()["escalate_at"] is None
    sclock.advance(timedelta(hours=30))
    await survey_runtime.sla_watch.run_once()
    [c] = await rows(survey_runtime, Complaint, g.tenant_id, id=uuid.UUID(cid))
    assert c.escalation_level == 0
    held = await sc.get(URL, params={"overdue": "true"}, headers=h(g, Role.SERVICE_ADVISOR))
    assert cid not in [x["id"] for x in held.json()["items"]]

    # Resuming moves the deadlines on by the 30 hours held: 6 hours are left to respond.
    r = await sc.post(f"{URL}/{cid}/status", json={"status": "ongoing"}, headers=h(g, Role.SERVICE_ADVISOR))
    assert r.status_code == 200 and r.json()["status"] == "ongoing" and r.json()["held_from"] is None
    [c] = await rows(survey_runtime, Complaint, g.tenant_id, id=uuid.UUID(cid))
    assert c.escalate_at == sclock.now + timedelta(hours=6)
    assert c.first_response_due == c.opened_at + timedelta(hours=38)
    sclock.advance(timedelta(hours=5, minutes=59))
    await survey_runtime.sla_watch.run_once()
    [c] = await rows(survey_runtime, Complaint, g.tenant_id, id=uuid.UUID(cid))
    assert c.escalation_level == 0
    sclock.advance(timedelta(minutes=2))
    await level_of(survey_runtime, cid, 1)


async def test_safety_case_goes_to_the_service_manager_at_once_and_staff_escalate_by_hand(
        survey_client, survey_runtime, sgroup, sclock: SurveyClock, event_tap) -> None:  # type: ignore[no-untyped-def]
    sc, g = survey_client, sgroup
    case = await open_case(sc, g, Role.CS_AGENT, safety=True, channel="on_site",
                           description="行驶中熄火撞车,气囊弹出,驾驶员轻伤")
    cid = case["id"]
    assert case["severity"] == "critical" and case["escalation_level"] == 2
    [event] = await event_tap.wait_for(ESCALATED, subject=cid)
    assert event.data["level"] == 2 and event.data["to_roles"] == ["service_manager"]
    assert event.data["notify_staff_ids"] == [str(await staff_id(survey_runtime, g, Role.SERVICE_MANAGER))]
    assert event.data["title"].startswith("紧急")

    # An ordinary case: a frontline member reports it up early; a lower target is refused; the top is the end.
    other = (await open_case(sc, g, Role.SALES_CONSULTANT, category="sales", subtype="price_difference",
                             channel="via_sales"))["id"]
    r = await sc.post(f"{URL}/{other}/escalate", json={"reason": "客户情绪激动"}, headers=h(g, Role.SERVICE_ADVISOR))
    assert r.status_code == 200 and r.json()["escalation_level"] == 1
    low = await sc.post(f"{URL}/{other}/escalate", json={"reason": "x", "to_level": 1},
                        headers=h(g, Role.SERVICE_ADVISOR))
    assert low.status_code == 422 and low.json()["errors"][0]["field"] == "body.to_level"
    r = await sc.post(f"{URL}/{other}/escalate", json={"reason": "扬言曝光", "to_level": 3},
                      headers=h(g, Role.SALES_CONSULTANT))
    assert r.status_code == 200 and r.json()["escalation_level"] == 3 and r.json()["escalate_at"] is None
    top = await sc.post(f"{URL}/{other}/escalate", json={"reason": "x"}, headers=h(g, Role.SALES_CONSULTANT))
    assert top.status_code == 409
    [manual] = await event_tap.wait_for(ESCALATED, subject=other, where=lambda e: e.data["level"] == 3)
    assert manual.data["reason"] == "扬言曝光" and manual.data["category"] == "sales"

    # Raising severity shortens the deadlines; lowering is refused.
    third = (await open_case(sc, g, kind="grumble", complainant_phone="13600001111"))
    assert third["severity"] == "low"
    lower = await act(sc, g, third["id"], "severity", {"severity": "low", "reason": "x"})
    assert lower.status_code == 422 and lower.json()["errors"][0]["field"] == "body.severity"
    r = await act(sc, g, third["id"], "severity", {"severity": "high", "reason": "客户多次来电"})
    assert r.status_code == 200 and r.json()["severity"] == "high"
    assert r.json()["first_response_due"] < third["first_response_due"]


async def test_severity_and_kind_follow_the_facts(
        survey_client, survey_runtime, sgroup) -> None:  # type: ignore[no-untyped-def]
    sc, g = survey_client, sgroup
    grumble = await open_case(sc, g, kind="grumble", complainant_phone="13700001111")
    assert (grumble["severity"], grumble["kind"]) == ("low", "grumble")
    # The same phone again within 12 months: one level up.
    repeat = await open_case(sc, g, kind="grumble", complainant_phone="137 0000 1111")
    assert repeat["severity"] == "medium"
    media = await open_case(sc, g, channel="media", complainant_phone="13700002222")
    assert (media["nature"], media["severity"], media["kind"]) == ("media_risk", "critical", "major")
    money = await open_case(sc, g, demanded_amount="30000", complainant_phone="13700003333")
    assert (money["severity"], money["kind"]) == ("high", "major")
    major = await open_case(sc, g, category="major", subtype="pr_media_legal_risk", complainant_phone="13700004444")
    assert (major["severity"], major["kind"]) == ("high", "major")
    # A given severity can raise, never lower.
    given = await open_case(sc, g, severity="low", channel="consumer_association", complainant_phone="13700005555")
    assert (given["nature"], given["severity"]) == ("consumer_association", "high")
    assert given["kind"] == "major"


async def test_store_scoping_and_masking(  # type: ignore[no-untyped-def]
        client, survey_client, survey_runtime, sgroup) -> None:
    sc, g = survey_client, sgroup
    cid = (await open_case(sc, g))["id"]
    for role in (Role.SERVICE_ADVISOR, Role.CS_MANAGER):
        assert (await sc.get(f"{URL}/{cid}", headers=h(g, role, "B"))).status_code == 404
        assert (await sc.post(f"{URL}/{cid}/notes", json={"body": "x"}, headers=h(g, role, "B"))).status_code == 404
        listed = await sc.get(URL, headers=h(g, role, "B"))
        assert cid not in [c["id"] for c in listed.json()["items"]]
    assert (await sc.get(URL, params={"store_id": str(g.stores["A"])},
                         headers=h(g, Role.SERVICE_ADVISOR, "B"))).status_code == 404
    # Group-wide roles see every store.
    assert (await sc.get(f"{URL}/{cid}", headers=h(g, Role.CS_DIRECTOR, "B"))).status_code == 200
    # Roles without personal-data access read names and phones masked.
    plain = (await sc.get(f"{URL}/{cid}", headers=h(g, Role.SERVICE_ADVISOR))).json()
    assert (plain["complainant_name"], plain["complainant_phone"]) == ("王先生", "+8613912345678")
    masked = (await sc.get(f"{URL}/{cid}", headers=h(g, Role.CS_AGENT))).json()
    assert (masked["complainant_name"], masked["complainant_phone"]) == ("王**", "139****5678")
    # A store B user cannot open a case for store A, nor for a store A customer.
    r = await sc.post(URL, json={**BODY, "store_id": str(g.stores["A"])}, headers=h(g, Role.SERVICE_ADVISOR, "B"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.store_id", r.text
    # Nor about a repair order that is not one of the store's.
    r = await sc.post(URL, json={**BODY, "about_type": "visit", "about_id": str(uuid.uuid4())},
                      headers=h(g, Role.CS_AGENT))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.about_id", r.text
    # About one of the store's repair orders: its vehicle comes with it.
    customer = await new_customer(client, g)
    visit = await visited(client, survey_runtime, g, customer["id"])
    r = await sc.post(URL, json={**BODY, "customer_id": customer["id"], "about_type": "visit", "about_id": visit},
                      headers=h(g, Role.CS_AGENT))
    assert r.status_code == 201 and r.json()["about_id"] == visit and r.json()["vehicle_id"] is not None, r.text
    other = await new_customer(client, g)
    await visited(client, survey_runtime, g, other["id"])  # known to survey_svc, with a visit of their own
    r = await sc.post(URL, json={**BODY, "customer_id": other["id"], "about_type": "visit", "about_id": visit},
                      headers=h(g, Role.CS_AGENT))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.about_id", r.text


async def test_bad_input_is_a_422_naming_the_field(
        client, survey_client, survey_runtime, sgroup) -> None:  # type: ignore[no-untyped-def]
    sc, g = survey_client, sgroup
    customer_b = await known_customer(client, survey_runtime, g, "B")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"channel": None}, "body.channel"),
        ({"channel": "fax"}, "body.channel"),
        ({"category": "food"}, "body.category"),
        ({"subtype": "late_delivery"}, "body.subtype"),
        ({"problems": ["price", "price"]}, "body.problems"),
        ({"problems": ["smell"]}, "body.problems.0"),
        ({"complainant_name": None, "complainant_phone": None}, "body.complainant_name"),
        ({"complainant_phone": "12345"}, "body.complainant_phone"),
        ({"customer_id": customer_b["id"]}, "body.customer_id"),
        ({"demanded_amount": "-5"}, "body.demanded_amount"),
        ({"demanded_amount": "1.234"}, "body.demanded_amount"),
        ({"severity": "extreme"}, "body.severity"),
        ({"description": ""}, "body.description"),
        ({"about_type": "visit"}, "body.about_id"),
        ({"response_id": str(uuid.uuid4())}, "body.response_id"),
        ({"surprise": 1}, "body.surprise"),
    ]
    for change, field in cases:
        r = await sc.post(URL, json={k: v for k, v in {**BODY, **change}.items()}, headers=h(g, Role.SERVICE_ADVISOR))
        assert r.status_code == 422, (change, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert field in [e["field"] for e in r.json()["errors"]], (change, r.json())
    cid = (await open_case(sc, g))["id"]
    action_cases = [
        ("remedies", {"remedies": []}, "body.remedies"),
        ("remedies", {"remedies": [{"label": "A", "description": "x"}, {"label": "A", "description": "y"}]},
         "body.remedies"),
        ("goodwill", {"amount": "abc", "reason": "x"}, "body.amount"),
        ("status", {"status": "closed"}, "body.status"),
        ("transfer", {"to_id": str(uuid.uuid4()), "reason": "x"}, "body.to_id"),
        ("escalate", {"reason": "x", "to_level": 4}, "body.to_level"),
        ("respond", {"body": ""}, "body.body"),
    ]
    for action, body, field in action_cases:
        r = await act(sc, g, cid, action, body)
        assert r.status_code == 422, (action, r.text)
        assert field in [e["field"] for e in r.json()["errors"]], (action, r.json())
    r = await sc.get(URL, params={"status": "open"}, headers=h(g, Role.SERVICE_ADVISOR))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.status.0"
    r = await sc.get(URL, params={"cursor": "!!"}, headers=h(g, Role.SERVICE_ADVISOR))
    assert r.status_code == 422
    assert (await sc.get(f"{URL}/not-an-id", headers=h(g, Role.SERVICE_ADVISOR))).status_code == 422
    # Closing an unresolved case is a conflict, not a crash.
    close = {"root_cause": "x", "action_taken": "y", "feedback_result": "satisfied", "feedback_speed": "satisfied"}
    assert (await act(sc, g, cid, "close", close, Role.CS_MANAGER)).status_code == 409


async def test_intake_is_idempotent_and_pages(
        survey_client, survey_runtime, sgroup) -> None:  # type: ignore[no-untyped-def]
    sc, g = survey_client, sgroup
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = await sc.post(URL, json=BODY, headers=h(g, Role.SERVICE_ADVISOR, **key))
    again = await sc.post(URL, json=BODY, headers=h(g, Role.SERVICE_ADVISOR, **key))
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    other = await sc.post(URL, json={**BODY, "description": "另一件事"}, headers=h(g, Role.SERVICE_ADVISOR, **key))
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "header.Idempotency-Key"
    assert len(await rows(survey_runtime, Complaint, g.tenant_id)) == 1

    for _ in range(4):
        await open_case(sc, g)
    seen: list[str] = []
    cursor = None
    while True:
        r = await sc.get(URL, params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                         headers=h(g, Role.SERVICE_ADVISOR))
        seen += [c["number"] for c in r.json()["items"]]
        if not (cursor := r.json()["next_cursor"]):
            break
    assert len(seen) == 5 and seen == sorted(seen, reverse=True)
    mine = await sc.get(URL, params={"owner_id": str(await staff_id(survey_runtime, g, Role.SERVICE_ADVISOR)),
                                     "status": "ongoing"}, headers=h(g, Role.ADMIN))
    assert len(mine.json()["items"]) == 5


async def test_concurrent_intakes_get_unique_case_numbers(
        survey_client, survey_runtime, sgroup) -> None:  # type: ignore[no-untyped-def]
    sc, g = survey_client, sgroup
    results = await asyncio.gather(*[
        sc.post(URL, json={**BODY, "complainant_phone": f"1370000{i:04d}"}, headers=h(g, Role.SERVICE_ADVISOR))
        for i in range(12)])
    assert [r.status_code for r in results] == [201] * 12, [r.text for r in results if r.status_code != 201]
    numbers = sorted(r.json()["number"] for r in results)
    period = numbers[0][1:7]
    assert numbers == [f"C{period}-{n:04d}" for n in range(1, 13)]
    # Store B counts on its own.
    b = await open_case(sc, g, store="B")
    assert b["number"] == f"C{period}-0001"
    assert re.fullmatch(r"C\d{6}-\d{4}", b["number"])


async def test_a_low_survey_answer_becomes_one_complaint(client, survey_client, survey_runtime, sgroup,
                                                        event_tap) -> None:  # type: ignore[no-untyped-def]
    sc, g = survey_client, sgroup
    customer = await known_customer(client, survey_runtime, g)
    visit = uuid.uuid4()
    key = await publish_survey_request(survey_runtime, g, customer["id"], about_id=visit)
    inv = await invitation_by_key(survey_runtime, g, key)
    answers = {"q1": "very_dissatisfied", "q1_why": "等了三个小时,态度差", "q2": "satisfied", "q3": "satisfied",
               "q4": "satisfied", "q5": "satisfied", "q6": "yes"}
    r = await sc.post(f"/api/v1/public/surveys/{token_of(survey_runtime, inv.id)}/responses", json={"answers": answers})
    assert r.status_code == 201, r.text
    [resp] = await rows(survey_runtime, Response, g.tenant_id, invitation_id=inv.id)
    response_id = str(resp.id)

    body = {"response_id": response_id, "category": "service", "problems": ["waiting", "attitude"]}
    # The channel and the subject come from the response; other stores cannot see the response.
    for change, field in (({"channel": "letter"}, "body.channel"), ({"about_id": str(uuid.uuid4())}, "body.about_id"),
                          ({"customer_id": str(uuid.uuid4())}, "body.customer_id")):
        r = await sc.post(URL, json={**body, **change}, headers=h(g, Role.CS_AGENT))
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field
    r = await sc.post(URL, json=body, headers=h(g, Role.CS_AGENT, "B"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.response_id"

    r = await sc.post(URL, json=body, headers=h(g, Role.CS_AGENT))
    assert r.status_code == 201, r.text
    case = r.json()
    assert case["channel"] == "survey" and case["customer_id"] == customer["id"]
    assert (case["about_type"], case["about_id"]) == ("visit", str(visit)) and case["response_id"] == response_id
    assert case["description"] == "等了三个小时,态度差"
    dup = await sc.post(URL, json=body, headers=h(g, Role.SERVICE_MANAGER))
    assert dup.status_code == 409 and dup.json()["existing_id"] == case["id"]
    [opened] = await event_tap.wait_for(OPENED, subject=case["id"])
    assert opened.data["channel"] == "survey" and opened.data["customer_id"] == customer["id"]


async def test_raising_severity_keeps_the_time_held(
        survey_client, survey_runtime, sgroup, sclock: SurveyClock) -> None:  # type: ignore[no-untyped-def]
    sc, g = survey_client, sgroup
    # Raised during a hold: the look the watch resumes with moves up with the shorter deadline.
    case = await open_case(sc, g, kind="grumble", complainant_phone="13611110001")  # low: 24 h to respond
    cid = case["id"]
    sclock.advance(timedelta(hours=2))
    r = await sc.post(f"{URL}/{cid}/status", json={"status": "hold", "reason": "等待厂家鉴定"},
                      headers=h(g, Role.SERVICE_ADVISOR))
    assert r.status_code == 200
    sclock.advance(timedelta(hours=10))
    r = await act(sc, g, cid, "severity", {"severity": "high", "reason": "客户扬言投诉到厂家"})  # 4 h to respond
    assert r.status_code == 200 and r.json()["escalate_at"] is None
    r = await sc.post(f"{URL}/{cid}/status", json={"status": "ongoing"}, headers=h(g, Role.SERVICE_ADVISOR))
    [c] = await rows(survey_runtime, Complaint, g.tenant_id, id=uuid.UUID(cid))
    # 2 of the 4 hours were used before the hold: 2 are left.
    assert c.first_response_due == c.opened_at + timedelta(hours=4 + 10)
    assert c.escalate_at == sclock.now + timedelta(hours=2) and c.held_seconds == 10 * 3600
    sclock.advance(timedelta(hours=2, minutes=1))
    await level_of(survey_runtime, cid, 1)

    # Raised after a hold of 72 hours: the deadline is intake + the new SLA + the time held, not already past.
    other = (await open_case(sc, g, kind="grumble", complainant_phone="13611110002"))["id"]
    r = await sc.post(f"{URL}/{other}/status", json={"status": "hold", "reason": "客户出国"},
                      headers=h(g, Role.SERVICE_ADVISOR))
    sclock.advance(timedelta(hours=72))
    r = await sc.post(f"{URL}/{other}/status", json={"status": "ongoing"}, headers=h(g, Role.SERVICE_ADVISOR))
    assert r.status_code == 200
    r = await act(sc, g, other, "severity", {"severity": "medium", "reason": "客户再次来电"})  # 8 h to respond
    assert r.status_code == 200
    [c] = await rows(survey_runtime, Complaint, g.tenant_id, id=uuid.UUID(other))
    assert c.first_response_due == c.opened_at + timedelta(hours=8 + 72) == c.escalate_at
    await survey_runtime.sla_watch.run_once()
    [c] = await rows(survey_runtime, Complaint, g.tenant_id, id=uuid.UUID(other))
    assert c.escalation_level == 0 and r.json()["overdue"] is False


async def test_an_offered_package_costs_its_goodwill(
        survey_client, survey_runtime, sgroup, event_tap) -> None:  # type: ignore[no-untyped-def]
    sc, g = survey_client, sgroup
    cid = (await open_case(sc, g))["id"]
    r = await act(sc, g, cid, "remedies", {"remedies": [
        {"label": "方案一", "description": "回购车辆", "goodwill_amount": "50000"},
        {"label": "方案二", "description": "免费保养两次", "goodwill_amount": "600"}]})
    assert [x["needs_approval"] for x in r.json()["remedies"]] == [True, False]
    # Declaring no goodwill for the costly package does not get round the approval.
    r = await act(sc, g, cid, "resolve", {"remedy": "方案一", "goodwill_amount": "0"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.goodwill_amount"
    r = await act(sc, g, cid, "resolve", {"remedy": "方案一"})
    assert r.status_code == 409
    r = await act(sc, g, cid, "goodwill", {"amount": "50000", "reason": "客户选择回购"})
    assert r.json()["goodwill_status"] == "pending"
    assert (await act(sc, g, cid, "goodwill/approve", {}, Role.SERVICE_MANAGER)).status_code == 200
    r = await act(sc, g, cid, "resolve", {"remedy": "方案一"})
    assert r.status_code == 200, r.text
    assert (r.json()["goodwill_amount"], r.json()["kind"]) == ("50000.00", "major")
    [resolved] = await event_tap.wait_for(RESOLVED, subject=cid)
    assert resolved.data["goodwill_amount"] == 50000 and resolved.data["kind"] == "major"

    # A cheap package within the limit resolves at its own amount, no approval needed.
    cheap = (await open_case(sc, g, complainant_phone="13611110003"))["id"]
    await act(sc, g, cheap, "remedies", {"remedies": [{"label": "方案二", "description": "免费保养两次",
                                                        "goodwill_amount": "600"}]})
    r = await act(sc, g, cheap, "resolve", {"remedy": "方案二"})
    assert r.status_code == 200 and (r.json()["goodwill_amount"], r.json()["kind"]) == ("600.00", "complaint")


async def test_a_resolved_case_is_watched_until_it_is_closed(
        survey_client, survey_runtime, sgroup, sclock: SurveyClock, event_tap) -> None:  # type: ignore[no-untyped-def]
    sc, g = survey_client, sgroup
    cid = (await open_case(sc, g))["id"]  # medium: resolve within 5 days
    await act(sc, g, cid, "respond", {"body": "已联系"})
    sclock.advance(timedelta(hours=3))
    r = await act(sc, g, cid, "resolve", {"remedy": "返修"})
    case = r.json()
    assert case["closing_due"] == case["resolution_due"] == case["escalate_at"]
    [c] = await rows(survey_runtime, Complaint, g.tenant_id, id=uuid.UUID(cid))
    sclock.advance(c.resolution_due - sclock.now - timedelta(minutes=1))
    await survey_runtime.sla_watch.run_once()
    [c] = await rows(survey_runtime, Complaint, g.tenant_id, id=uuid.UUID(cid))
    assert c.escalation_level == 0
    sclock.advance(timedelta(minutes=2))
    c = await level_of(survey_runtime, cid, 1)
    [event] = await event_tap.wait_for(ESCALATED, subject=cid)
    assert event.data["title"] == f"投诉 {case['number']} 已解决但超过结案时限,已升级至第1级"
    assert event.data["reason"].startswith("resolved but not closed by")
    listed = await sc.get(URL, params={"overdue": "true"}, headers=h(g, Role.CS_MANAGER))
    assert cid in [x["id"] for x in listed.json()["items"]]
    close = {"root_cause": "x", "action_taken": "y", "feedback_result": "satisfied", "feedback_speed": "satisfied"}
    r = await act(sc, g, cid, "close", close, Role.CS_MANAGER)
    assert r.status_code == 200 and r.json()["escalate_at"] is None and r.json()["overdue"] is False

    # Resolved when the resolution deadline has passed: 48 hours to close.
    late = (await open_case(sc, g, complainant_phone="13611110004"))["id"]
    await act(sc, g, late, "respond", {"body": "已联系"})
    sclock.advance(timedelta(days=6))
    while await survey_runtime.sla_watch.run_once():  # its escalations now, not between reading and resolving
        pass
    r = await act(sc, g, late, "resolve", {"remedy": "返修"})
    assert r.status_code == 200, r.text
    [c] = await rows(survey_runtime, Complaint, g.tenant_id, id=uuid.UUID(late))
    assert c.closing_due == c.resolved_at + timedelta(hours=48) == c.escalate_at


async def test_level_two_is_the_manager_of_the_line_complained_about(
        survey_client, survey_runtime, sgroup, event_tap) -> None:  # type: ignore[no-untyped-def]
    sc, g = survey_client, sgroup
    staff = await rows(survey_runtime, StaffView, g.tenant_id)

    def ids(*names: str) -> set[str]:
        return {str(m.id) for m in staff if m.name in names}

    cases = [({"category": "sales", "subtype": "price_difference", "channel": "via_sales"},
              ["sales_manager"], ids("sales_manager A")),
             ({"category": "parts", "subtype": "parts_supply"}, ["service_manager"], ids("service_manager A")),
             ({"category": "major", "subtype": "pr_media_legal_risk"}, ["service_manager", "cs_director"],
              ids("service_manager A", "cs_director A", "cs_director B"))]
    for n, (body, roles, notify) in enumerate(cases):
        cid = (await open_case(sc, g, complainant_phone=f"1361111002{n}", **body))["id"]
        r = await sc.post(f"{URL}/{cid}/escalate", json={"reason": "客户情绪激动", "to_level": 2},
                          headers=h(g, Role.SERVICE_ADVISOR))
        assert r.status_code == 200, r.text
        [event] = await event_tap.wait_for(ESCALATED, subject=cid)
        assert event.data["to_roles"] == roles and set(event.data["notify_staff_ids"]) == notify, body


async def test_if_match_is_required_where_the_case_changes(
        survey_client, survey_runtime, sgroup) -> None:  # type: ignore[no-untyped-def]
    sc, g = survey_client, sgroup
    cid = (await open_case(sc, g))["id"]
    r = await sc.post(f"{URL}/{cid}/respond", json={"body": "x"}, headers=h(g, Role.SERVICE_ADVISOR))
    assert r.status_code == 428 and r.headers["content-type"] == "application/problem+json"
    r = await sc.post(f"{URL}/{cid}/respond", json={"body": "x"},
                      headers=h(g, Role.SERVICE_ADVISOR, **{"If-Match": 'W/"7"'}))
    assert r.status_code == 412
    for action, body in (("transfer", {"to_id": str(await staff_id(survey_runtime, g, Role.CS_AGENT)),
                                       "reason": "x"}),
                         ("severity", {"severity": "high", "reason": "x"}),
                         ("remedies", {"remedies": [{"label": "A", "description": "x"}]}),
                         ("goodwill", {"amount": "100", "reason": "x"}),
                         ("resolve", {"remedy": "x"})):
        r = await sc.post(f"{URL}/{cid}/{action}", json=body, headers=h(g, Role.SERVICE_ADVISOR))
        assert r.status_code == 428, (action, r.text)
    # Notes add to the log; a status change and reporting up are harmless to repeat: If-Match checked when sent.
    assert (await sc.post(f"{URL}/{cid}/notes", json={"body": "x"}, headers=h(g, Role.CS_AGENT))).status_code == 200
    r = await sc.post(f"{URL}/{cid}/status", json={"status": "in_process"}, headers=h(g, Role.SERVICE_ADVISOR))
    assert r.status_code == 200
    r = await sc.post(f"{URL}/{cid}/escalate", json={"reason": "x"},
                      headers=h(g, Role.CS_AGENT, **{"If-Match": 'W/"1"'}))
    assert r.status_code == 412
    r = await sc.post(f"{URL}/{cid}/escalate", json={"reason": "x"}, headers=h(g, Role.CS_AGENT))
    assert r.status_code == 200 and r.json()["escalation_level"] == 1


async def test_a_level_nobody_holds_passes_the_case_on_at_once(
        client, survey_client, survey_runtime, sgroup, sclock: SurveyClock,
        event_tap) -> None:  # type: ignore[no-untyped-def]
    sc, g = survey_client, sgroup
    supervisor = await staff_id(survey_runtime, g, Role.CS_MANAGER)
    read = await client.get(f"/api/v1/staff/{supervisor}", headers=h(g, Role.ADMIN))
    r = await client.patch(f"/api/v1/staff/{supervisor}", json={"active": False},
                           headers=h(g, Role.ADMIN, **{"If-Match": read.headers["ETag"]}))
    assert r.status_code == 200, r.text

    async def gone() -> bool:
        [member] = await rows(survey_runtime, StaffView, g.tenant_id, id=supervisor)
        return not member.active

    await eventually(gone)
    case = await open_case(sc, g)  # medium: 8 hours to respond
    cid = case["id"]
    sclock.advance(timedelta(hours=8, minutes=1))
    await survey_runtime.sla_watch.run_once()
    [c] = await rows(survey_runtime, Complaint, g.tenant_id, id=uuid.UUID(cid))
    assert c.escalation_level == 2  # in one run: nobody active is the CS supervisor of store A
    log = (await sc.get(f"{URL}/{cid}", headers=h(g, Role.ADMIN))).json()
    steps = [e for e in log["entries"] if e["kind"] == "escalation"]
    assert [(e["data"]["level"], e["data"]["notify_staff_ids"]) for e in steps] == \
        [(1, []), (2, [str(await staff_id(survey_runtime, g, Role.SERVICE_MANAGER))])]
    assert steps[0]["data"]["passed_on"] is True and "passed on to level 2" in steps[0]["body"]
    [event] = await event_tap.wait_for(ESCALATED, subject=cid)
    assert event.data["level"] == 2 and event.data["to_roles"] == ["service_manager"]
