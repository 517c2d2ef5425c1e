"""Issue 6 end to end, as an OEM partner lives it: its integration key (made by the dealer group's admin) imports a
file of deliveries, followup_svc plans the delivery survey, survey_svc invites and the customers answer, a low score
becomes a complaint that is closed, and the partner receives each of those as a signed webhook for its store only;
the two-year-old delivery in the same file is history (no survey); a re-import changes nothing; and the partner
streams the survey results export with its token.

Everything runs on the real apps (HTTP through ASGI), Postgres and RabbitMQ; the webhooks reach a local HTTP
receiver that verifies each Standard Webhooks signature with the endpoint's secret."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa

from customer_svc.app import CustomerRuntime
from customer_svc.models import messaging as customer_messaging
from followup_svc.app import FollowupRuntime
from notify_svc.app import NotifyRuntime
from notify_svc.models import WebhookDelivery, messaging as notify_messaging
from survey_svc.app import SurveyRuntime
from survey_svc.models import Invitation
from shared.auth.roles import Role
from shared.events.envelope import CloudEvent
from shared.testing.events import EventTap
from shared.testing.waiting import eventually
from tests.conftest import Group, make_group, new_phone
from tests.customer_svc.factories import new_customer, new_vehicle, new_vin
from tests.customer_svc.test_imports import finished, rows, upload
from tests.followup_svc import conftest as followup_fixtures
from tests.followup_svc.conftest import advance, fire_all, followup_knows, followups, local_today
from tests.notify_svc.test_partner_webhooks import real_key
from tests.notify_svc.test_webhooks import Receiver, receiving
from tests.survey_svc.conftest import survey_knows, token_of

clock = followup_fixtures.clock  # the follow-up test clock fixture, at real time around the test

HEADER = "客户编号,姓名,手机,门店编码,车架号,购车日期,交车日期"
SCOPES = ["imports:write", "customers:write", "vehicles:write", "webhooks:manage", "surveys:read", "complaints:read"]
ANSWERED, LOW, OPENED, CLOSED = ("survey.response.answered.v1", "survey.response.low_score.v1",
                                 "survey.complaint.opened.v1", "survey.complaint.closed.v1")
DELIVERED = "customer.vehicle.delivered.v1"
notify_inbox = notify_messaging.inbox
SURVEY_RULE = "post_delivery_survey"  # 交车满意度调查: 7 days after the delivery, 11:00 store-local
UNHAPPY = {"q1": "very_dissatisfied", "q1_why": "交车时车内不干净,承诺的脚垫也没给", "q2": "dissatisfied",
           "q3": "neutral", "q4": "no", "nps": "2"}
HAPPY = {"q1": "very_satisfied", "q2": "very_satisfied", "q3": "satisfied", "q4": "yes", "nps": "10"}


@pytest.fixture
async def oem_group(customer_runtime: CustomerRuntime, followup_runtime: FollowupRuntime,
                    survey_runtime: SurveyRuntime, notify_runtime: NotifyRuntime,
                    clock: FollowupRuntime) -> Group:
    """A new dealer group that followup_svc and survey_svc already know (stores, staff, playbook, surveys)."""
    group = await make_group(customer_runtime)
    await followup_knows(followup_runtime, group)
    await survey_knows(survey_runtime, group)
    return group


@pytest.fixture
async def receiver(notify_runtime: NotifyRuntime, oem_group: Group) -> AsyncIterator[Receiver]:
    """The partner's HTTPS endpoint, played by a local server (private addresses are allowed in test mode)."""
    async with receiving(notify_runtime, oem_group.tenant_id) as started:
        yield started


def deliveries_file(people: list[tuple[str, str, str, int]]) -> bytes:
    """A dealer's export as Excel on Chinese Windows saves it: Chinese headers, UTF-8 with BOM, CRLF; each person
    delivered ``days_ago`` store-local days ago (bought five days before)."""
    lines = [HEADER]
    for external_id, phone, vin, days_ago in people:
        day = local_today() - timedelta(days=days_ago)
        lines.append(f"{external_id},王{external_id[-2:]},{phone},A,{vin},{day - timedelta(days=5)},{day}")
    return ("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8")


def unique(events: list[CloudEvent]) -> list[CloudEvent]:
    """Events by id (delivery is at least once: a relay may publish one twice after a lost confirm)."""
    return list({e.id: e for e in events}.values())


async def delivered_in_outbox(runtime: CustomerRuntime, tenant_id: uuid.UUID) -> int:
    """customer_svc's delivered events of the group (written with the import's own transaction)."""
    outbox = customer_messaging.outbox
    async with runtime.sessionmaker() as s:
        return int(await s.scalar(sa.select(sa.func.count()).select_from(outbox).where(
            outbox.event_type == DELIVERED, outbox.payload["tenantid"].as_string() == str(tenant_id))) or 0)


async def test_an_oem_imports_deliveries_receives_signed_webhooks_reimports_nothing_and_exports(
        client: httpx.AsyncClient, customer_runtime: CustomerRuntime, followup_runtime: FollowupRuntime,
        survey_runtime: SurveyRuntime, survey_client: httpx.AsyncClient, notify_runtime: NotifyRuntime,
        notify_client: httpx.AsyncClient, event_tap: EventTap, oem_group: Group, receiver: Receiver) -> None:
    group = oem_group

    # 1. The group's admin creates the partner's key for store A; the partner exchanges it for a token.
    partner = await real_key(client, group, stores=["A"], scopes=SCOPES)

    # 2. The partner subscribes its endpoint to the survey and complaint events.
    subscribed = await notify_client.post("/api/v1/webhooks/endpoints", headers=partner.headers, json={
        "partner": "OEM CAC", "url": receiver.url, "event_types": [ANSWERED, LOW, OPENED, CLOSED]})
    assert subscribed.status_code == 201, subscribed.text
    endpoint = subscribed.json()
    receiver.secret = endpoint["secret"]
    assert endpoint["store_ids"] == [str(group.store_a)] and endpoint["api_key_id"] == str(partner.key_id)

    # 3. It uploads yesterday's deliveries (two) and one from two years ago, and waits for the job.
    unhappy, happy, old = (f"OEM-{uuid.uuid4().hex[:8]}-{n}" for n in ("01", "02", "03"))
    people = [(unhappy, new_phone(), new_vin(), 1), (happy, new_phone(), new_vin(), 1),
              (old, new_phone(), new_vin(), 730)]
    body = deliveries_file(people)
    job = await finished(client, partner.headers, (await upload(client, partner.headers, body,
                                                                filename="deliveries.csv"))["id"])
    assert (job["status"], job["accepted"], job["updated"], job["unchanged"], job["rejected"]) == \
        ("done", 3, 0, 0, 0), job
    report = await rows(client, partner.headers, job["id"])
    assert [r["key"] for r in report] == [unhappy, happy, old], report
    customer = {r["key"]: r["customer_id"] for r in report}
    vehicle = {r["key"]: r["vehicle_id"] for r in report}
    assert all(customer.values()) and all(vehicle.values()), report
    await event_tap.wait_for(DELIVERED, count=3, where=lambda e: e.tenantid == str(group.tenant_id))
    assert await delivered_in_outbox(customer_runtime, group.tenant_id) == 3
    # Store B (not the key's) delivers a car today too, entered by its staff: the same survey, not the partner's.
    other = await new_customer(client, group, "B", relationship_type="owner")
    other_vehicle = await new_vehicle(client, group, other["id"], "B")
    r = await client.post(f"/api/v1/vehicles/{other_vehicle['id']}/delivery", headers=group.headers(Role.ADMIN, "B"),
                          json={"delivery_date": local_today().isoformat()})
    assert r.status_code in (200, 201), r.text
    customer["B"], vehicle["B"] = other["id"], other_vehicle["id"]

    # 4. followup_svc plans the delivery survey: due a week on for the recent deliveries, and recorded as stale
    # history for the old one (never sent late).
    async def planned() -> dict[str, list] | None:
        found = await followups(followup_runtime, group.tenant_id, rule_key=SURVEY_RULE)
        by = {k: [f for f in found if str(f.customer_id) == customer[k]] for k in customer}
        return by if all(by.values()) else None

    recent = (unhappy, happy, "B")
    plan = await eventually(planned, timeout=30)
    assert {f.state for k in recent for f in plan[k]} == {"scheduled"}, plan
    now, due = followup_runtime.clock.now(), max(f.due_at for k in recent for f in plan[k])
    assert due > now + timedelta(days=5), plan  # a week after the delivery, not at once
    await advance(followup_runtime, due - now + timedelta(minutes=1))
    await fire_all(followup_runtime)

    async def invited() -> dict[str, str] | None:
        sent = event_tap.matching("survey.invitation.sent.v1", where=lambda e: e.tenantid == str(group.tenant_id))
        by = {e.data["customer_id"]: e for e in sent}
        if not {customer[k] for k in recent} <= set(by):
            return None
        return {k: by[customer[k]].data["invitation_id"] for k in recent}

    invitations = await eventually(invited, timeout=30)
    for k in recent:
        [sent] = unique(event_tap.matching("survey.invitation.sent.v1",
                                           where=lambda e, k=k: e.data["customer_id"] == customer[k]))
        assert (sent.data["survey"], sent.data["about_type"], sent.data["about_id"]) == \
            ("sales_satisfaction", "delivery", vehicle[k])
    # The two-year-old delivery: its survey was stale when it fell due, so nothing went out for it.
    [old_survey] = await followups(followup_runtime, group.tenant_id, rule_key=SURVEY_RULE,
                                   customer_id=uuid.UUID(customer[old]))
    assert old_survey.state == "skipped" and "stale" in (old_survey.reason or ""), (old_survey.state,
                                                                                   old_survey.reason)
    assert event_tap.matching("followup.survey.requested.v1",
                              where=lambda e: e.data["customer_id"] == customer[old]) == []
    # (What is still ahead for that car, such as its next maintenance reminder, goes out as usual; nothing of the
    # delivery itself does.)
    assert not [e.data["rule_key"] for e in event_tap.matching(
        "followup.message.requested.v1", where=lambda e: e.data["customer_id"] == customer[old])
        if e.data["rule_key"].startswith("post_delivery")]
    async with survey_runtime.sessionmaker() as s:
        assert await s.scalar(sa.select(sa.func.count()).select_from(Invitation).where(
            Invitation.tenant_id == group.tenant_id, Invitation.customer_id == uuid.UUID(customer[old]))) == 0

    # The customers answer on the public page: one unhappy, one happy, and store B's unhappy too.
    for k, answers in ((unhappy, UNHAPPY), (happy, HAPPY), ("B", UNHAPPY)):
        token = token_of(survey_runtime, uuid.UUID(invitations[k]))
        done = await survey_client.post(f"/s/{token}", content=urlencode(answers),
                                        headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert done.status_code == 200 and "感谢" in done.text, done.text
    [low] = unique(await event_tap.wait_for(LOW, where=lambda e: e.data["customer_id"] == customer[unhappy]))
    response_id = low.data["response_id"]
    await event_tap.wait_for(ANSWERED, count=3, where=lambda e: e.tenantid == str(group.tenant_id))
    [low_b] = unique(await event_tap.wait_for(LOW, where=lambda e: e.data["customer_id"] == customer["B"]))

    # The sales manager calls the customer back and takes the low score in as a complaint, then closes it.
    manager = group.headers(Role.SALES_MANAGER)
    r = await survey_client.post("/api/v1/complaints", headers=manager, json={
        "response_id": response_id, "category": "sales", "subtype": "promise_not_kept", "problems": ["attitude"],
        "demands": "补送脚垫并道歉"})
    assert r.status_code == 201, r.text
    case = r.json()
    assert (case["customer_id"], case["about_id"], case["store_id"]) == \
        (customer[unhappy], vehicle[unhappy], str(group.store_a))
    url = f"/api/v1/complaints/{case['id']}"
    r = await survey_client.post(f"{url}/respond", headers={**manager, "If-Match": r.headers["ETag"]},
                                 json={"body": "致电道歉,约定明天上门补送脚垫"})
    assert r.status_code == 200, r.text
    r = await survey_client.post(f"{url}/resolve", headers={**manager, "If-Match": r.headers["ETag"]},
                                 json={"remedy": "补送原厂脚垫并上门清洁"})
    assert r.status_code == 200, r.text
    r = await survey_client.post(f"{url}/close", headers={**manager, "If-Match": r.headers["ETag"]}, json={
        "root_cause": "交车前检查单未逐项核对", "action_taken": "交车前由展厅经理复核检查单",
        "feedback_result": "satisfied", "feedback_speed": "satisfied"})
    assert r.status_code == 200 and r.json()["status"] == "closed", r.text

    # 5. The partner's receiver got each of them, signed with its endpoint's secret, for store A only.
    wanted = {(ANSWERED, customer[unhappy]), (ANSWERED, customer[happy]), (LOW, customer[unhappy]),
              (OPENED, customer[unhappy]), (CLOSED, customer[unhappy])}

    async def arrived() -> bool:
        got = {(r.json()["type"], r.json()["data"].get("customer_id")) for r in receiver.requests}
        async with notify_runtime.sessionmaker() as s:
            statuses = set((await s.scalars(sa.select(WebhookDelivery.status).where(
                WebhookDelivery.tenant_id == group.tenant_id))).all())
        return wanted <= got and statuses == {"delivered"}

    await eventually(arrived, timeout=30)
    assert all(r.verified for r in receiver.requests)
    events = [r.json() for r in receiver.requests]
    assert sorted((e["type"], e["data"].get("customer_id")) for e in events) == sorted(wanted), events
    assert {e["storeid"] for e in events} == {str(group.store_a)}
    assert {e["tenantid"] for e in events} == {str(group.tenant_id)}
    assert len({r.webhook_id for r in receiver.requests}) == len(receiver.requests)  # one delivery each
    by_type = {e["type"]: e for e in events if e["data"].get("customer_id") == customer[unhappy]}
    assert by_type[LOW]["data"]["response_id"] == response_id
    assert by_type[OPENED]["data"]["complaint_id"] == by_type[CLOSED]["data"]["complaint_id"] == case["id"]
    assert not {customer[old], customer["B"]} & {e["data"].get("customer_id") for e in events}
    async with notify_runtime.sessionmaker() as s:  # store B's low score reached notify_svc, for no one here
        assert await s.scalar(sa.select(sa.func.count()).select_from(notify_inbox).where(
            notify_inbox.event_id == low_b.id, notify_inbox.consumer.like("%.webhooks"))) == 1
    listed = await notify_client.get("/api/v1/webhooks/deliveries", headers=partner.headers)
    assert listed.status_code == 200, listed.text
    assert sorted(d["id"] for d in listed.json()["items"]) == sorted(r.webhook_id for r in receiver.requests)
    assert {d["status"] for d in listed.json()["items"]} == {"delivered"}

    # 6. The same file again: every row unchanged, no new customer, no new delivery event.
    delivered_before = await delivered_in_outbox(customer_runtime, group.tenant_id)
    again = await finished(client, partner.headers, (await upload(client, partner.headers, body))["id"])
    assert (again["status"], again["accepted"], again["updated"], again["unchanged"], again["rejected"]) == \
        ("done", 0, 0, 3, 0), again
    assert {(r["key"], r["status"], r["customer_id"]) for r in await rows(client, partner.headers, again["id"])} \
        == {(k, "unchanged", customer[k]) for k in (unhappy, happy, old)}
    assert await delivered_in_outbox(customer_runtime, group.tenant_id) == delivered_before == 4  # 3 + store B's
    staff_view = await client.get("/api/v1/customers", params={"limit": 100}, headers=group.headers(Role.ADMIN))
    assert staff_view.status_code == 200, staff_view.text
    assert sorted(c["id"] for c in staff_view.json()["items"]) == sorted(customer.values())  # incl. store B's

    # 7. The partner streams the survey results with its token and finds the low score.
    period = {"from": str(local_today() - timedelta(days=1)), "to": str(local_today())}
    exported = await survey_client.get("/api/v1/surveys/exports/responses", headers=partner.headers,
                                       params={**period, "format": "ndjson"})
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-disposition"].startswith("attachment"), exported.headers
    lines = [json.loads(line) for line in exported.text.splitlines() if line.strip()]
    assert {(x["customer_id"], x["survey"], x["low_score"]) for x in lines} == {
        (customer[unhappy], "sales_satisfaction", True), (customer[happy], "sales_satisfaction", False)}, lines
    [row] = [x for x in lines if x["response_id"] == response_id]
    assert (row["store_code"], row["about_type"], row["about_id"], row["nps_score"]) == \
        ("A", "delivery", vehicle[unhappy], 2)
    as_csv = await survey_client.get("/api/v1/surveys/exports/responses", headers=partner.headers,
                                     params={**period, "format": "csv"})
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv"), as_csv.text
    table = list(csv.DictReader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    assert sorted(x["response_id"] for x in table) == sorted(x["response_id"] for x in lines)
    # ... and the complaint cases too; another store's are not the key's to read.
    cases = await survey_client.get("/api/v1/complaints/exports/cases", headers=partner.headers,
                                    params={**period, "format": "json"})
    assert cases.status_code == 200, cases.text
    assert [(c["complaint_id"], c["customer_id"], c["status"]) for c in cases.json()] == \
        [(case["id"], customer[unhappy], "closed")]
    elsewhere = await survey_client.get("/api/v1/surveys/exports/responses", headers=partner.headers,
                                        params={**period, "store_id": str(group.store_b)})
    assert elsewhere.status_code == 404, elsewhere.text

