"""The issue's whole path on real services and the real broker: a service visit (customer_svc) makes followup_svc
fire the satisfaction survey, survey_svc invites the customer with a link (its SMS command goes to notify_svc), the
customer answers on the public page, the low score opens a recovery task for the service manager (followup_svc),
a complaint runs from intake through escalation to a closed case with the customer's feedback, followup_svc plans
the revisit and the re-survey, and the reports show it all."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from followup_svc.models import FollowUp
from shared.auth.roles import Role
from shared.testing.waiting import eventually
from tests.conftest import make_group
from tests.customer_svc.factories import new_customer, new_vehicle, staff_id
from tests.followup_svc.conftest import advance, clock, fire_all, followup_knows, tasks  # noqa: F401 (fixture)
from tests.followup_svc.test_reactions import record_visit
from tests.survey_svc.conftest import survey_knows, token_of

LOW_ANSWERS = {"q1": "very_dissatisfied", "q1_why": "等了三个小时也没人解释,态度差", "q2": "satisfied",
               "q3": "dissatisfied", "q4": "neutral", "q5": "satisfied", "q6": "no"}


async def test_visit_to_survey_to_recovery_to_closed_complaint_to_reports(
        client, customer_runtime, followup_runtime, survey_runtime, survey_client, clock, sclock,  # noqa: F811
        event_tap) -> None:  # type: ignore[no-untyped-def]
    group = await make_group(customer_runtime)
    await followup_knows(followup_runtime, group)
    await survey_knows(survey_runtime, group)

    # A maintenance visit with its advisor: followup_svc plans the survey for the next day and fires it.
    advisor = await staff_id(client, group, Role.SERVICE_ADVISOR)
    customer = await new_customer(client, group, relationship_type="owner")
    vehicle = await new_vehicle(client, group, customer["id"])
    visit = await record_visit(client, group, vehicle["id"], "maintenance", mileage_km=12000, advisor_id=advisor)
    await eventually(lambda: _planned(followup_runtime, group, visit["id"], "service_survey"))
    await advance(followup_runtime, timedelta(days=2))
    await fire_all(followup_runtime)

    # survey_svc invites about that repair order, rating that advisor; the link's SMS goes to notify_svc.
    [invited] = await event_tap.wait_for("survey.invitation.sent.v1", where=lambda e: e.data["about_id"] == visit["id"])
    assert invited.data["staff_id"] == advisor and invited.data["survey"] == "service_satisfaction"
    invitation_id = uuid.UUID(invited.data["invitation_id"])
    token = token_of(survey_runtime, invitation_id)
    [sms] = await event_tap.wait_for("survey.message.requested.v1",
                                     where=lambda e: e.data["idempotency_key"] == f"survey:{invitation_id}:invite")
    assert sms.data["variables"]["survey_link"].endswith(f"/s/{token}") and sms.data["customer_id"] == customer["id"]

    # The customer answers on the public page, unhappy.
    page = await survey_client.get(f"/s/{token}")
    assert page.status_code == 200 and "<form" in page.text
    done = await survey_client.post(f"/s/{token}", content=urlencode(LOW_ANSWERS),
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert done.status_code == 200 and "感谢" in done.text
    [low] = await event_tap.wait_for("survey.response.low_score.v1", where=lambda e: e.data["about_id"] == visit["id"])
    response_id = low.data["response_id"]

    # followup_svc opens the recovery task for the service manager (24 h SLA), with the reasons on it.
    async def recovery():  # type: ignore[no-untyped-def]
        found = await tasks(followup_runtime, group.tenant_id, rule_key="service_recovery")
        return found[0] if found else None

    task = await eventually(recovery)
    assert task.role == "service_manager" and task.customer_id == uuid.UUID(customer["id"])
    assert task.sla_due_at - task.due_at == timedelta(hours=24) and "q1: 0" in (task.instructions or "")

    # The service manager calls back and takes it in as a complaint (first-contact owner), bound to the answer.
    manager = group.headers(Role.SERVICE_MANAGER)
    r = await survey_client.post("/api/v1/complaints", headers=manager, json={
        "response_id": response_id, "category": "service", "subtype": "service_quality", "problems": ["waiting", "attitude"],
        "demands": "要求道歉并减免工时费"})
    assert r.status_code == 201, r.text
    case = r.json()
    assert case["customer_id"] == customer["id"] and case["about_id"] == visit["id"] and case["status"] == "ongoing"
    await event_tap.wait_for("survey.complaint.opened.v1", subject=case["id"])

    # Nobody answers in time: the SLA watch escalates it along the chain (CS supervisor first).
    sclock.advance(timedelta(days=3))
    await survey_runtime.sla_watch.run_once()
    [escalated] = await event_tap.wait_for("survey.complaint.escalated.v1", subject=case["id"])
    assert escalated.data["level"] == 1 and "cs_manager" in escalated.data["to_roles"]
    assert escalated.data["notify_staff_ids"]

    # The owner answers, offers remedies, the customer picks one, a manager closes with the customer's feedback.
    # (each action sends the ETag it read as If-Match)
    url = f"/api/v1/complaints/{case['id']}"
    r = await survey_client.get(url, headers=manager)
    r = await survey_client.post(f"{url}/respond", headers={**manager, "If-Match": r.headers["ETag"]}, json={
        "body": "致电道歉,约定明天回复处理方案"})
    assert r.status_code == 200, r.text
    r = await survey_client.post(f"{url}/remedies", headers={**manager, "If-Match": r.headers["ETag"]}, json={
        "remedies": [{"label": "方案一", "description": "本次工时8.5折并赠送免费洗车", "goodwill_amount": "200"},
                     {"label": "方案二", "description": "下次保养工时全免", "goodwill_amount": "500"}]})
    assert r.status_code == 200, r.text
    r = await survey_client.post(f"{url}/resolve", headers={**manager, "If-Match": r.headers["ETag"]},
                                 json={"remedy": "方案一", "goodwill_amount": "200"})
    assert r.status_code == 200, r.text
    r = await survey_client.post(f"{url}/close", headers={**manager, "If-Match": r.headers["ETag"]}, json={
        "root_cause": "高峰期接待人手不足,未告知等待时间", "action_taken": "高峰期增派接待,超时主动告知并致歉",
        "feedback_result": "satisfied", "feedback_speed": "basically_satisfied"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "closed"
    [closed] = await event_tap.wait_for("survey.complaint.closed.v1", subject=case["id"])
    assert closed.data["feedback_speed"] == "basically_satisfied"

    # followup_svc plans the CS manager's revisit (day 3) and the re-survey about the complaint (day 7).
    async def revisit():  # type: ignore[no-untyped-def]
        found = await tasks(followup_runtime, group.tenant_id, rule_key="complaint_revisit")
        return found[0] if found else None

    await eventually(lambda: _planned(followup_runtime, group, case["id"], "complaint_revisit"))
    # (survey_svc's clock is 3 days on, followup_svc's 2: the revisit falls due at 10:00 on day 6 of the test.)
    await advance(followup_runtime, timedelta(days=5))
    await fire_all(followup_runtime)
    visit_task = await eventually(revisit)
    assert visit_task.role == "cs_manager" and visit_task.customer_id == uuid.UUID(customer["id"])
    await advance(followup_runtime, timedelta(days=4))
    await fire_all(followup_runtime)
    [resurvey] = await event_tap.wait_for("survey.invitation.sent.v1",
                                          where=lambda e: e.data["about_id"] == case["id"])
    assert resurvey.data["survey"] == "complaint_satisfaction" and resurvey.data["about_type"] == "complaint"

    # The reports show it: the repair order surveyed, the answer very dissatisfied and low, the complaint escalated
    # once, answered late and closed with the customer's feedback.
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    period = {"store_id": str(group.store_a), "from": str(today - timedelta(days=1)),
              "to": str(today + timedelta(days=10))}
    cs = group.headers(Role.CS_MANAGER)
    r = await survey_client.get("/api/v1/surveys/reports/satisfaction", params=period, headers=cs)
    assert r.status_code == 200, r.text
    totals = r.json()["totals"]
    assert (totals["repair_orders"], totals["invitations_about_records"], totals["survey_rate"]) == (1, 1, 1.0)
    assert (totals["responses"], totals["valid_responses"], totals["very_dissatisfied"], totals["low_score"]) == \
        (1, 1, 1, 1)
    r = await survey_client.get("/api/v1/complaints/reports", params=period, headers=cs)
    assert r.status_code == 200, r.text
    report = r.json()
    assert {k: report["totals"][k] for k in ("complaints", "closed", "escalated", "responded",
                                              "first_response_late")} == \
        {"complaints": 1, "closed": 1, "escalated": 1, "responded": 1, "first_response_late": 1}
    assert report["feedback_speed"] == [{"value": "basically_satisfied", "count": 1}]


async def _planned(runtime, group, subject_id: str, rule_key: str) -> bool:  # type: ignore[no-untyped-def]
    """followup_svc has planned ``rule_key`` for the subject (the event that drives it has arrived)."""
    async with runtime.sessionmaker() as s:
        return bool(await s.scalar(sa.select(sa.func.count()).select_from(FollowUp).where(
            FollowUp.tenant_id == group.tenant_id, FollowUp.subject_id == uuid.UUID(subject_id),
            FollowUp.rule_key == rule_key)))
