"""survey_svc's events reach followup_svc on the real broker: a low score becomes one service-recovery task for the
manager the playbook names (service or sales), and a closed complaint plans the CS manager's revisit and the
complaint re-survey (real Postgres, real RabbitMQ, followup_svc's test clock)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from followup_svc.app import FollowupRuntime
from followup_svc.models import CustomerView, FollowUp, StoreView, messaging
from followup_svc.scheduling.planner import calendar_of
from shared.auth.roles import Role
from shared.calendar import StoreCalendar
from shared.events.catalog.survey import ComplaintClosed, SurveyLowScore
from shared.events.envelope import CloudEvent, EventData, build_event
from shared.messaging.amqp import AmqpPublisher
from shared.testing.events import EventTap
from shared.testing.waiting import eventually
from tests.conftest import Group
from tests.customer_svc.factories import new_customer, new_vehicle, staff_id
from tests.followup_svc.conftest import advance, fire_all, followups, tasks


async def publish(runtime: FollowupRuntime, *events: CloudEvent) -> None:
    """Publish on the real broker, as survey_svc's relay does."""
    publisher = AmqpPublisher(runtime.settings.amqp_url or "", runtime.settings.exchange)
    try:
        assert (await publisher.publish_batch(list(events))) == [None] * len(events)
    finally:
        await publisher.close()


def survey_event(data: EventData, group: Group, store: str = "A") -> CloudEvent:
    return build_event(data, source="survey_svc", tenant_id=group.tenant_id, store_id=group.stores[store])


async def owner_with_car(client: httpx.AsyncClient, runtime: FollowupRuntime, group: Group) -> tuple[dict, dict]:
    """A customer and car of store A, once followup_svc's read model has the customer."""
    customer = await new_customer(client, group, relationship_type="owner")
    vehicle = await new_vehicle(client, group, customer["id"])

    async def known() -> bool:
        async with runtime.sessionmaker() as s:
            return await s.get(CustomerView, uuid.UUID(customer["id"])) is not None

    await eventually(known)
    return customer, vehicle


def low_score(customer: dict, vehicle: dict, now: datetime, survey: str = "service_satisfaction",
              **fields: Any) -> SurveyLowScore:
    values: dict[str, Any] = dict(
        invitation_id=uuid.uuid4(), survey=survey, survey_version=1, customer_id=uuid.UUID(customer["id"]),
        vehicle_id=uuid.UUID(vehicle["id"]), about_type="visit", about_id=uuid.uuid4(), response_id=uuid.uuid4(),
        satisfaction_index=40.0, reasons=["q1: 25", "comment"], comment="等了两个小时,没人解释", answered_at=now)
    return SurveyLowScore(**{**values, **fields})


async def handled(runtime: FollowupRuntime, event: CloudEvent) -> None:
    """Wait until followup_svc's consumer has taken ``event`` (its inbox row is written with the plan)."""
    inbox = messaging.inbox

    async def seen() -> bool:
        async with runtime.sessionmaker() as s:
            return await s.scalar(sa.select(sa.func.count()).select_from(inbox)
                                  .where(inbox.event_id == uuid.UUID(str(event.id)))) > 0

    await eventually(seen)


async def planned_for(runtime: FollowupRuntime, group: Group, subject_id: uuid.UUID, count: int) -> list[FollowUp]:
    async def found() -> list[FollowUp] | None:
        rows = await followups(runtime, group.tenant_id, subject_id=subject_id)
        return rows if len(rows) >= count else None

    return await eventually(found)


async def store_calendar(runtime: FollowupRuntime, store_id: uuid.UUID) -> StoreCalendar:
    async with runtime.sessionmaker() as s:
        return calendar_of(await s.get(StoreView, store_id))


async def fire_until(runtime: FollowupRuntime, due: datetime) -> None:
    """Move followup_svc's clock just past ``due`` (if it is ahead) and run the scheduler."""
    if due > runtime.clock.now():
        await advance(runtime, due - runtime.clock.now() + timedelta(minutes=1))
    await fire_all(runtime)


async def test_a_low_service_score_becomes_one_recovery_task_for_the_service_manager(
        client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    customer, vehicle = await owner_with_car(client, followup_runtime, fgroup)
    advisor = uuid.UUID(await staff_id(client, fgroup, Role.SERVICE_ADVISOR))
    data = low_score(customer, vehicle, followup_runtime.clock.now(), staff_id=advisor)
    event = survey_event(data, fgroup)
    await publish(followup_runtime, event)

    [row] = await planned_for(followup_runtime, fgroup, data.response_id, 1)
    assert (row.rule_key, row.subject_type) == ("service_recovery", "survey_response")
    # Due at once during the store's opening hours: the background scheduler may already have fired it.
    assert row.state in ("scheduled", "fired")
    assert row.occurrence_key == f"service_recovery:survey_response:{data.response_id}:r:0"
    assert (row.customer_id, row.vehicle_id, row.store_id) == (data.customer_id, data.vehicle_id, fgroup.store_a)
    assert row.context["reasons"] == ["q1: 25", "comment"] and row.context["survey"] == "service_satisfaction"
    assert row.context["staff_id"] == str(advisor) and row.context["satisfaction_index"] == 40.0
    # At once: the answer's time, or the store's next opening when it came in after hours.
    calendar = await store_calendar(followup_runtime, fgroup.store_a)
    assert row.due_at == calendar.next_task_time(data.answered_at, working_days_only=False)

    # The alert redelivered (same event) and re-sent (a new envelope, same answer) plans nothing more.
    again = survey_event(data, fgroup)
    await publish(followup_runtime, event, again)
    await handled(followup_runtime, again)
    await fire_until(followup_runtime, row.due_at)
    await fire_all(followup_runtime)

    # The background scheduler may be firing it at this moment (claimed, not yet committed): wait for its task.
    [task] = await eventually(lambda: tasks(followup_runtime, fgroup.tenant_id, customer_id=data.customer_id))
    assert (task.rule_key, task.role, task.assignee_id, task.status) == ("service_recovery", "service_manager",
                                                                         None, "open")
    assert (task.kind, task.title, task.priority) == ("call", "满意度低分回访(服务补救)", 1)
    assert (task.vehicle_id, task.store_id) == (data.vehicle_id, fgroup.store_a)
    assert task.sla_due_at - task.due_at == timedelta(hours=24)
    assert task.escalate_at == task.sla_due_at
    assert "q1: 25" in (task.instructions or "") and "等了两个小时" in (task.instructions or "")
    assert "promise a reply" in (task.instructions or "")
    assert task.context["reasons"] == ["q1: 25", "comment"] and task.context["rule_name"] == "满意度低分回访(服务补救)"
    assert len(await followups(followup_runtime, fgroup.tenant_id, subject_id=data.response_id)) == 1


async def test_a_low_score_given_under_a_record_merged_since_is_the_survivors(
        client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    """survey_svc keeps the id an answer was given under; staff merged that record into another since: the
    recovery task is planned (and fired) for the surviving customer, not skipped as a merged record's."""
    duplicate, vehicle = await owner_with_car(client, followup_runtime, fgroup)
    survivor, _ = await owner_with_car(client, followup_runtime, fgroup)
    merged = await client.post(f"/api/v1/customers/{survivor['id']}/merge", json={"duplicate_id": duplicate["id"]},
                               headers=fgroup.headers(Role.ADMIN, **{"If-Match": "*"}))
    assert merged.status_code == 200, merged.text

    async def known() -> bool:
        async with followup_runtime.sessionmaker() as s:
            row = await s.get(CustomerView, uuid.UUID(duplicate["id"]))
            return row is not None and row.merged_into_id == uuid.UUID(survivor["id"])

    await eventually(known)
    data = low_score(duplicate, vehicle, followup_runtime.clock.now())
    await publish(followup_runtime, survey_event(data, fgroup))
    [row] = await planned_for(followup_runtime, fgroup, data.response_id, 1)
    assert row.customer_id == uuid.UUID(survivor["id"])
    await fire_until(followup_runtime, row.due_at)
    [task] = await eventually(lambda: tasks(followup_runtime, fgroup.tenant_id, rule_key="service_recovery",
                                            customer_id=uuid.UUID(survivor["id"])))
    assert task.status == "open"


async def test_a_low_sales_score_goes_to_the_sales_manager(
        client, followup_runtime: FollowupRuntime, fgroup: Group, event_tap: EventTap) -> None:
    customer, vehicle = await owner_with_car(client, followup_runtime, fgroup)
    data = low_score(customer, vehicle, followup_runtime.clock.now(), survey="sales_satisfaction",
                     about_type="delivery", reasons=["q3: 0"], comment=None, satisfaction_index=None, nps_score=3)
    await publish(followup_runtime, survey_event(data, fgroup))

    [row] = await planned_for(followup_runtime, fgroup, data.response_id, 1)
    assert row.rule_key == "sales_recovery"
    await fire_until(followup_runtime, row.due_at)
    # The background scheduler may be firing it at this moment (claimed, not yet committed): wait for its task.
    [task] = await eventually(lambda: tasks(followup_runtime, fgroup.tenant_id, customer_id=data.customer_id))
    assert (task.rule_key, task.role, task.assignee_id) == ("sales_recovery", "sales_manager", None)
    assert task.sla_due_at - task.due_at == timedelta(hours=24)
    assert "q3: 0" in (task.instructions or "") and "NPS: 3" in (task.instructions or "")
    created = (await event_tap.wait_for("followup.task.created.v1", subject=str(task.id)))[0].data
    assert created["role"] == "sales_manager" and created["customer_id"] == customer["id"]

    # A survey no rule names (a tenant's own questionnaire) opens nothing by default.
    other = low_score(customer, vehicle, followup_runtime.clock.now(), survey="showroom_experience")
    event = survey_event(other, fgroup)
    await publish(followup_runtime, event)
    await handled(followup_runtime, event)
    assert await followups(followup_runtime, fgroup.tenant_id, subject_id=other.response_id) == []


async def test_a_closed_complaint_plans_the_cs_managers_revisit_and_the_resurvey(
        client, followup_runtime: FollowupRuntime, fgroup: Group, event_tap: EventTap) -> None:
    customer, vehicle = await owner_with_car(client, followup_runtime, fgroup)
    owner = uuid.UUID(await staff_id(client, fgroup, Role.SERVICE_ADVISOR))
    closed_at = followup_runtime.clock.now()
    data = ComplaintClosed(
        complaint_id=uuid.uuid4(), number="C202611-0007", customer_id=uuid.UUID(customer["id"]),
        vehicle_id=uuid.UUID(vehicle["id"]), channel="phone", category="repair_quality", severity="high",
        nature="ordinary", kind="complaint", status="closed", owner_id=owner, closed_at=closed_at,
        feedback_result="satisfied", feedback_speed="basically_satisfied",
        signed_off_by=uuid.UUID(await staff_id(client, fgroup, Role.SERVICE_MANAGER)))
    event = survey_event(data, fgroup)
    await publish(followup_runtime, event)

    rows = {r.rule_key: r for r in await planned_for(followup_runtime, fgroup, data.complaint_id, 2)}
    assert set(rows) == {"complaint_revisit", "complaint_resurvey"}
    revisit, resurvey = rows["complaint_revisit"], rows["complaint_resurvey"]
    calendar = await store_calendar(followup_runtime, fgroup.store_a)
    assert calendar.local(revisit.due_at).date() == calendar.local(closed_at).date() + timedelta(days=3)
    assert calendar.local(revisit.due_at).strftime("%H:%M") == "10:00"
    assert calendar.local(resurvey.due_at).date() == calendar.local(closed_at).date() + timedelta(days=7)
    assert all(r.subject_type == "complaint" and r.context["complaint_number"] == "C202611-0007"
               and r.context["category"] == "repair_quality" for r in rows.values())
    await publish(followup_runtime, event)  # redelivered: nothing more

    # Three days on: the CS manager's revisit, nothing of the survey yet.
    await fire_until(followup_runtime, revisit.due_at)
    # The background scheduler may be firing it at this moment (claimed, not yet committed): wait for its task.
    [task] = await eventually(lambda: tasks(followup_runtime, fgroup.tenant_id, customer_id=data.customer_id))
    assert (task.rule_key, task.role, task.assignee_id, task.title) == ("complaint_revisit", "cs_manager", None,
                                                                        "投诉结案后回访")
    assert task.sla_due_at - task.due_at == timedelta(hours=48)
    assert timedelta(0) <= task.due_at - revisit.due_at < timedelta(minutes=5)  # fired when the clock got there
    assert task.vehicle_id == data.vehicle_id
    assert "C202611-0007" in (task.instructions or "")
    assert event_tap.matching("followup.survey.requested.v1", subject=str(resurvey.id)) == []

    # A week on: the complaint-satisfaction survey about this complaint, rating its owner.
    await fire_until(followup_runtime, resurvey.due_at)
    requested = (await event_tap.wait_for("followup.survey.requested.v1", subject=str(resurvey.id)))[0]
    assert requested.storeid == str(fgroup.store_a)
    assert requested.data["survey"] == "complaint_satisfaction" and requested.data["about_type"] == "complaint"
    assert requested.data["about_id"] == str(data.complaint_id) and requested.data["staff_id"] == str(owner)
    assert requested.data["customer_id"] == customer["id"]
    assert requested.data["idempotency_key"] == resurvey.occurrence_key
    after = {r.rule_key: r for r in await followups(followup_runtime, fgroup.tenant_id, subject_id=data.complaint_id)}
    assert len(after) == 2 and {r.state for r in after.values()} == {"fired"}
    assert len(await tasks(followup_runtime, fgroup.tenant_id, customer_id=data.customer_id)) == 1


async def test_a_complaint_without_a_customer_gets_the_revisit_but_no_survey(
        followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    data = ComplaintClosed(
        complaint_id=uuid.uuid4(), number="C202611-0008", channel="media", category="attitude", severity="critical",
        nature="media_exposure", kind="major", status="closed", closed_at=followup_runtime.clock.now(),
        feedback_result="basically_satisfied", feedback_speed="dissatisfied", signed_off_by=uuid.uuid4())
    await publish(followup_runtime, survey_event(data, fgroup, "B"))
    rows = {r.rule_key: r for r in await planned_for(followup_runtime, fgroup, data.complaint_id, 2)}
    await fire_until(followup_runtime, rows["complaint_resurvey"].due_at)
    after = {r.rule_key: r for r in await followups(followup_runtime, fgroup.tenant_id, subject_id=data.complaint_id)}
    assert after["complaint_revisit"].state == "fired" and after["complaint_revisit"].store_id == fgroup.store_b
    assert (after["complaint_resurvey"].state, after["complaint_resurvey"].reason) == (
        "skipped", "nothing to survey: a complaint without a customer")


async def test_the_playbook_api_takes_survey_rules_and_names_bad_fields(followup_client, fgroup: Group) -> None:
    rules = "/api/v1/playbook/rules"
    headers = fgroup.headers(Role.CS_DIRECTOR)
    listed = await followup_client.get(rules, params={"trigger": "survey.low_score"}, headers=headers)
    assert {r["key"] for r in listed.json()} == {"service_recovery", "sales_recovery", "complaint_resurvey_recovery"}
    nps_to_cs = {"name": "NPS低分:客服经理回访", "trigger": "survey.low_score", "conditions": {"surveys": ["nps"]},
                 "action": {"kind": "task", "title": "NPS低分回访", "role": "cs_manager"}, "sla_hours": 24}
    resp = await followup_client.post(rules, json={"key": "nps_recovery", "definition": nps_to_cs}, headers=headers)
    assert resp.status_code == 201, resp.text
    resurvey_nps = {"name": "投诉结案后NPS", "trigger": "complaint.closed", "schedule": {"offsets": [{"days": 30}]},
                    "action": {"kind": "survey", "survey": "nps"}}
    resp = await followup_client.post(rules, json={"key": "complaint_nps", "definition": resurvey_nps},
                                      headers=headers)
    assert resp.status_code == 201, resp.text

    def errors(resp: httpx.Response) -> list[tuple[str, str]]:
        assert resp.status_code == 422, resp.text
        return [(e["field"], e["message"].split(":")[0]) for e in resp.json()["errors"]]

    # Checks across the definition are reported on it, the message naming the field (as for every rule check).
    bad_key = {**nps_to_cs, "conditions": {"surveys": ["NPS survey"]}}
    [(field, message)] = errors(await followup_client.post(rules, json={"key": "bad_one", "definition": bad_key},
                                                           headers=headers))
    assert field == "body.definition.conditions.surveys.0" and "pattern" in message
    wrong_trigger = {**nps_to_cs, "trigger": "visit.completed"}
    assert errors(await followup_client.post(rules, json={"key": "bad_two", "definition": wrong_trigger},
                                             headers=headers)) == [("body.definition.conditions.surveys",
                                                                    "only for trigger survey.low_score")]
    survey_of_survey = {**resurvey_nps, "trigger": "survey.low_score"}
    assert errors(await followup_client.post(rules, json={"key": "bad_three", "definition": survey_of_survey},
                                             headers=headers)) == [
        ("body.definition.action.survey", "surveys are about a visit, a delivery or a closed complaint")]
