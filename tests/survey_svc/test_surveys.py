"""Surveys end to end on survey_svc's side: invitations from commands (once per occurrence and per subject), the
answer link's message, the public page and API (validation, conditional follow-ups, single use, expiry), scoring
and low-score events, reminders, phone answers, templates and versions, integrity flags and review, scoping."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from urllib.parse import urlencode

import sqlalchemy as sa

from survey_svc.models import CustomerView, Invitation, Response, VisitView
from shared.auth.roles import Role
from shared.testing.waiting import eventually
from tests.customer_svc.factories import staff_id
from tests.survey_svc.conftest import (invitation_by_key, new_customer, publish_survey_request, rows, token_of,
                                      visited)

GOOD = {"q1": "satisfied", "q2": "satisfied", "q3": "satisfied", "q4": "very_satisfied", "q5": "satisfied",
        "q6": "yes"}
INVITED = "survey.invitation.sent.v1"
ANSWERED = "survey.response.answered.v1"
LOW = "survey.response.low_score.v1"
MESSAGE = "survey.message.requested.v1"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def _invite(client, survey_runtime, group, **kw):  # type: ignore[no-untyped-def]
    customer = await new_customer(client, group)
    key = await publish_survey_request(survey_runtime, group, customer["id"], **kw)
    return customer, await invitation_by_key(survey_runtime, group, key)


async def test_command_becomes_one_invitation_with_a_link_sent_through_notify(
        client, survey_runtime, sgroup, event_tap) -> None:  # type: ignore[no-untyped-def]
    customer = await new_customer(client, sgroup)
    visit = uuid.uuid4()
    key = await publish_survey_request(survey_runtime, sgroup, customer["id"], about_id=visit)
    inv = await invitation_by_key(survey_runtime, sgroup, key)
    # The same command redelivered, and a second command about the same repair order: still one invitation.
    await publish_survey_request(survey_runtime, sgroup, customer["id"], about_id=visit, key=key)
    await publish_survey_request(survey_runtime, sgroup, customer["id"], about_id=visit)
    [msg] = await event_tap.wait_for(MESSAGE, where=lambda e: e.data["idempotency_key"] == f"survey:{inv.id}:invite")
    assert msg.data["template"] == "survey_invitation" and msg.data["purpose"] == "service"
    assert msg.data["variables"]["survey_link"] == f"https://survey.test/s/{token_of(survey_runtime, inv.id)}"
    assert msg.data["customer_id"] == customer["id"] and msg.data["channels"] == ["sms"]
    [invited] = await event_tap.wait_for(INVITED, subject=str(inv.id))
    assert invited.data["about_id"] == str(visit) and invited.data["survey_version"] == 1
    assert len(await rows(survey_runtime, Invitation, sgroup.tenant_id, customer_id=uuid.UUID(customer["id"]))) == 1
    assert inv.expires_at - inv.created_at == timedelta(days=14)
    assert inv.remind_at - inv.created_at == timedelta(days=3)  # type: ignore[operator]


async def test_public_page_validates_follows_up_low_scores_and_takes_one_answer(
        client, survey_client, survey_runtime, sgroup, event_tap) -> None:  # type: ignore[no-untyped-def]
    _, inv = await _invite(client, survey_runtime, sgroup)
    url = f"/s/{token_of(survey_runtime, inv.id)}"
    page = await survey_client.get(url)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "总体满意度" in page.text and "Store A" in page.text and page.headers["cache-control"] == "no-store"
    assert "测试客户" not in page.text  # the link shows no customer data

    # Missing answers and a bad option: 422, each marked beside its question, given values kept.
    bad = await survey_client.post(url, content=urlencode({"q1": "very_dissatisfied", "q2": "awful"}), headers=FORM)
    assert bad.status_code == 422
    assert bad.text.count('class="msg"') == 5 and "choose one of the options" in bad.text
    assert 'value="very_dissatisfied" data-score="0.0" checked' in bad.text

    # A very low overall score asks why; the answer to the follow-up is taken.
    answers = {**GOOD, "q1": "very_dissatisfied", "q1_why": "等了三个小时,态度差,请打13812345678",
               "contact_way": ["phone", "sms"]}
    ok = await survey_client.post(url, content=urlencode(answers, doseq=True), headers=FORM)
    assert ok.status_code == 200 and "感谢您的宝贵意见" in ok.text
    [resp] = await rows(survey_runtime, Response, sgroup.tenant_id, invitation_id=inv.id)
    assert resp.channel == "web" and resp.overall_score == 0 and resp.answers["contact_way"] == ["phone", "sms"]
    assert resp.low_score and "q1: 0" in resp.low_reasons and "comment" in resp.low_reasons
    [low] = await event_tap.wait_for(LOW, subject=str(resp.id))
    assert low.data["customer_id"] == str(inv.customer_id) and low.data["comment"] == answers["q1_why"]
    # Staff without personal-data access read the number the customer left masked; a CS manager reads it.
    path = f"/api/v1/surveys/responses/{resp.id}"
    agent = (await survey_client.get(path, headers=sgroup.headers(Role.CS_AGENT))).json()
    assert agent["answers"]["q1_why"].endswith("请打138****5678") and "13812345678" not in str(agent), agent
    listed = (await survey_client.get("/api/v1/surveys/responses", params={"customer_id": str(inv.customer_id)},
                                      headers=sgroup.headers(Role.CS_AGENT))).json()["items"]
    assert "13812345678" not in str(listed) and listed[0]["id"] == str(resp.id)
    manager = (await survey_client.get(path, headers=sgroup.headers(Role.CS_MANAGER))).json()
    assert manager["answers"]["q1_why"] == answers["q1_why"]
    [answered] = await event_tap.wait_for(ANSWERED, subject=str(resp.id))
    assert answered.data["low_score"] is True and answered.data["channel"] == "web"

    # Used: the page says so kindly, the API answers 409, and nothing is recorded twice.
    again = await survey_client.get(url)
    assert again.status_code == 200 and "您已完成调查" in again.text and "<form" not in again.text
    repost = await survey_client.post(url, content=urlencode(GOOD), headers=FORM)
    assert "您已完成调查" in repost.text
    api = await survey_client.post(f"/api/v1/public/surveys/{token_of(survey_runtime, inv.id)}/responses",
                                   json={"answers": GOOD})
    assert api.status_code == 409 and api.headers["content-type"] == "application/problem+json"
    assert len(await rows(survey_runtime, Response, sgroup.tenant_id, invitation_id=inv.id)) == 1


async def test_the_page_without_script_keeps_a_comment_on_a_follow_up_not_asked(
        client, survey_client, survey_runtime, sgroup) -> None:  # type: ignore[no-untyped-def]
    """Without script the page shows every follow-up question: praise typed under "why?" after a good rating is
    taken as the customer's comment, not refused (the JSON API, which asks only what is shown, still refuses)."""
    _, inv = await _invite(client, survey_runtime, sgroup)
    url = f"/s/{token_of(survey_runtime, inv.id)}"
    ok = await survey_client.post(url, content=urlencode({**GOOD, "q1_why": "顾问很专业"}), headers=FORM)
    assert ok.status_code == 200 and "感谢" in ok.text, ok.text[:300]
    [resp] = await rows(survey_runtime, Response, sgroup.tenant_id, invitation_id=inv.id)
    assert resp.answers["q1_why"] == "顾问很专业" and not resp.low_score


async def test_public_api_names_each_bad_answer(client, survey_client, survey_runtime, sgroup) -> None:  # type: ignore[no-untyped-def]
    _, inv = await _invite(client, survey_runtime, sgroup, survey="sales_satisfaction")
    url = f"/api/v1/public/surveys/{token_of(survey_runtime, inv.id)}"
    got = (await survey_client.get(url)).json()
    assert got["state"] == "open" and [q["id"] for q in got["survey"]["questions"]][:3] == ["q1", "q1_why", "q2"]
    r = await survey_client.post(f"{url}/responses", json={"answers": {
        "q1": "satisfied", "q1_why": "不该问", "q2": "satisfied", "q3": "satisfied", "q4": "maybe", "nps": 11,
        "bogus": 1}})
    assert r.status_code == 422
    fields = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert fields == {"body.answers.bogus": "not a question of this survey",
                      "body.answers.q1_why": "not asked for the answers given",
                      "body.answers.q4": "choose one of the options",
                      "body.answers.nps": "give a whole number from 0 to 10"}
    r = await survey_client.post(f"{url}/responses", json={"answers": {
        "q1": "satisfied", "q2": "very_satisfied", "q3": "satisfied", "q4": "yes", "nps": 6}})
    assert r.status_code == 201, r.text
    [resp] = await rows(survey_runtime, Response, sgroup.tenant_id, invitation_id=inv.id)
    assert resp.nps_score == 6 and resp.nps_class == "detractor" and resp.low_reasons == ["nps: 6"]
    assert resp.satisfaction_index == 87.5


async def test_unknown_expired_and_cancelled_links_get_friendly_pages(
        client, survey_client, survey_runtime, sgroup, sclock) -> None:  # type: ignore[no-untyped-def]
    for token in ("x" * 32, "short", "a" * 64):
        r = await survey_client.get(f"/s/{token}")
        assert r.status_code == 404 and "链接无效" in r.text
    assert (await survey_client.get("/api/v1/public/surveys/" + "x" * 32)).status_code == 404

    _, inv = await _invite(client, survey_runtime, sgroup)
    token = token_of(survey_runtime, inv.id)
    sclock.advance(timedelta(days=15))
    r = await survey_client.get(f"/s/{token}")
    assert r.status_code == 410 and "有效期已过" in r.text
    r = await survey_client.post(f"/api/v1/public/surveys/{token}/responses", json={"answers": GOOD})
    assert r.status_code == 410
    await survey_runtime.reminders.run_once()
    async with survey_runtime.sessionmaker() as s:
        assert (await s.get(Invitation, inv.id)).status == "expired"  # type: ignore[union-attr]

    advisor = uuid.UUID(await staff_id(client, sgroup, Role.SERVICE_ADVISOR))
    _, inv2 = await _invite(client, survey_runtime, sgroup, staff_id=advisor)
    url = f"/api/v1/surveys/invitations/{inv2.id}/cancel"
    own = await survey_client.post(url, headers=sgroup.headers(Role.SERVICE_ADVISOR))
    assert own.status_code == 403, own.text  # the advisor it rates may not withdraw it
    r = await survey_client.post(url, headers=sgroup.headers(Role.CS_AGENT))
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = await survey_client.get(f"/s/{token_of(survey_runtime, inv2.id)}")
    assert r.status_code == 410 and "已不再收集" in r.text


async def test_one_reminder_if_unanswered(client, survey_client, survey_runtime, sgroup, sclock, event_tap) -> None:  # type: ignore[no-untyped-def]
    _, unanswered = await _invite(client, survey_runtime, sgroup)
    _, answered = await _invite(client, survey_runtime, sgroup)
    r = await survey_client.post(f"/api/v1/public/surveys/{token_of(survey_runtime, answered.id)}/responses",
                                 json={"answers": GOOD})
    assert r.status_code == 201
    sclock.advance(timedelta(days=2))
    await survey_runtime.reminders.run_once()
    sclock.advance(timedelta(days=1, minutes=1))
    await survey_runtime.reminders.run_once()
    await survey_runtime.reminders.run_once()
    [reminder] = await event_tap.wait_for(MESSAGE, where=lambda e: e.data["idempotency_key"].startswith(
        f"survey:{unanswered.id}:remind"))
    assert reminder.data["template"] == "survey_reminder"
    assert reminder.data["variables"]["survey_link"].endswith(token_of(survey_runtime, unanswered.id))
    assert not event_tap.matching(MESSAGE, where=lambda e: e.data["idempotency_key"] == f"survey:{answered.id}:remind")
    async with survey_runtime.sessionmaker() as s:
        row = await s.get(Invitation, unanswered.id)
        assert row.reminded_at is not None and row.remind_at is None  # type: ignore[union-attr]


async def test_staff_record_a_phone_answer(client, survey_client, survey_runtime, sgroup, event_tap) -> None:  # type: ignore[no-untyped-def]
    customer, inv = await _invite(client, survey_runtime, sgroup)
    agent = sgroup.headers(Role.CS_AGENT)
    r = await survey_client.post("/api/v1/surveys/responses", headers=agent,
                                 json={"invitation_id": str(inv.id), "answers": GOOD})
    assert r.status_code == 201, r.text
    assert r.json()["channel"] == "phone" and r.json()["recorded_by"] is not None
    again = await survey_client.post("/api/v1/surveys/responses", headers=agent,
                                     json={"invitation_id": str(inv.id), "answers": GOOD})
    assert again.status_code == 409

    # No invitation was sent for this delivery: the answer is recorded on one made for it (no SMS goes out).
    vehicle = uuid.UUID(await visited(client, survey_runtime, sgroup, customer["id"], "delivery"))
    made_up = {"survey": "sales_satisfaction", "store_id": str(sgroup.store_a), "customer_id": customer["id"],
               "about_type": "delivery", "about_id": str(uuid.uuid4()), "answers": {"q1": "satisfied"}}
    r = await survey_client.post("/api/v1/surveys/responses", headers=agent, json=made_up)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.about_id"
    r = await survey_client.post("/api/v1/surveys/responses", headers=agent, json={
        "survey": "sales_satisfaction", "store_id": str(sgroup.store_a), "customer_id": customer["id"],
        "about_type": "delivery", "about_id": str(vehicle),
        "answers": {"q1": "very_satisfied", "q2": "very_satisfied", "q3": "very_satisfied", "q4": "yes", "nps": 10}})
    assert r.status_code == 201, r.text
    [made] = await rows(survey_runtime, Invitation, sgroup.tenant_id, about_id=vehicle)
    assert made.source == "phone" and made.status == "answered"
    assert not event_tap.matching(MESSAGE, where=lambda e: e.data["idempotency_key"].startswith(f"survey:{made.id}"))
    bad = await survey_client.post("/api/v1/surveys/responses", headers=agent,
                                   json={"invitation_id": str(inv.id), "survey": "nps", "answers": {}})
    assert bad.status_code == 422
    wrong_store = await survey_client.post("/api/v1/surveys/responses", headers=sgroup.headers(Role.CS_AGENT, "B"),
                                           json={"invitation_id": str(inv.id), "answers": GOOD})
    assert wrong_store.status_code == 404


async def test_new_version_for_new_invitations_open_ones_keep_theirs(
        client, survey_client, survey_runtime, sgroup) -> None:  # type: ignore[no-untyped-def]
    _, old = await _invite(client, survey_runtime, sgroup, survey="nps")
    manager = sgroup.headers(Role.CS_MANAGER)
    bad = await survey_client.put("/api/v1/surveys/templates/nps", headers=manager, json={
        "name": "NPS", "definition": {"title": "推荐", "questions": [
            {"id": "why", "type": "text", "text": "为什么?", "show_if": {"question": "nps", "max_score": 60}},
            {"id": "nps", "type": "nps", "text": "推荐吗?"}]}})
    assert bad.status_code == 422 and "not an earlier question" in bad.text
    assert (await survey_client.put("/api/v1/surveys/templates/nps", headers=sgroup.headers(Role.SERVICE_ADVISOR),
                                    json={"name": "x", "definition": {"title": "x", "questions": []}})).status_code == 403
    v2 = {"name": "NPS v2", "change_note": "加一道题", "definition": {"title": "推荐意愿", "questions": [
        {"id": "nps", "type": "nps", "text": "您有多大可能推荐本店?"},
        {"id": "best", "type": "single", "text": "最满意的环节", "required": False,
         "options": [{"value": "sales", "label": "销售"}, {"value": "service", "label": "售后"}]}]}}
    path = "/api/v1/surveys/templates/nps"
    read = await survey_client.get(path, headers=manager)
    assert read.headers["ETag"] == 'W/"1"'
    assert (await survey_client.put(path, headers=manager, json=v2)).status_code == 428
    r = await survey_client.put(path, headers={**manager, "If-Match": read.headers["ETag"]}, json=v2)
    assert r.status_code == 200 and r.json()["version"] == 2 and r.headers["ETag"] == 'W/"2"'
    # A second editor of version 1 does not silently replace the first one's version 2.
    stale = await survey_client.put(path, headers={**manager, "If-Match": read.headers["ETag"]}, json=v2)
    assert stale.status_code == 412, stale.text
    versions = (await survey_client.get("/api/v1/surveys/templates/nps/versions", headers=manager)).json()
    assert [v["version"] for v in versions] == [2, 1] and versions[1]["retired_at"] is not None

    _, new = await _invite(client, survey_runtime, sgroup, survey="nps")
    assert (old.survey_version, new.survey_version) == (1, 2)
    # The open invitation still answers version 1 (no "best" question there).
    r = await survey_client.post(f"/api/v1/public/surveys/{token_of(survey_runtime, old.id)}/responses",
                                 json={"answers": {"nps": 9, "best": "sales"}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.answers.best"
    r = await survey_client.post(f"/api/v1/public/surveys/{token_of(survey_runtime, new.id)}/responses",
                                 json={"answers": {"nps": 9, "best": "sales"}})
    assert r.status_code == 201
    [resp] = await rows(survey_runtime, Response, sgroup.tenant_id, invitation_id=new.id)
    assert resp.survey_version == 2 and resp.nps_class == "promoter" and not resp.low_score


async def test_the_policy_is_changed_from_the_version_read_and_a_partial_sla_keeps_the_others(
        survey_client, sgroup) -> None:  # type: ignore[no-untyped-def]
    director, path = sgroup.headers(Role.CS_DIRECTOR), "/api/v1/surveys/policy"
    read = await survey_client.get(path, headers=director)
    defaults = read.json()["rules"]["complaint_sla"]
    assert defaults["critical"] == {"first_response_hours": 1, "resolution_hours": 24}
    body = {"rules": {"complaint_sla": {"critical": {"first_response_hours": 0.5, "resolution_hours": 12}}}}
    assert (await survey_client.put(path, headers=director, json=body)).status_code == 428
    r = await survey_client.put(path, headers={**director, "If-Match": read.headers["ETag"]}, json=body)
    assert r.status_code == 200, r.text
    sla = (await survey_client.get(path, headers=director)).json()["rules"]["complaint_sla"]
    assert sla["critical"] == {"first_response_hours": 0.5, "resolution_hours": 12}
    assert {k: sla[k] for k in ("low", "medium", "high")} == {k: defaults[k] for k in ("low", "medium", "high")}
    stale = await survey_client.put(path, headers={**director, "If-Match": read.headers["ETag"]},
                                    json={"rules": {"goodwill_limit": 500}})
    assert stale.status_code == 412, stale.text
    urgent = await survey_client.put(path, headers={**director, "If-Match": r.headers["ETag"]}, json={
        "rules": {"complaint_sla": {"urgent": {"first_response_hours": 1, "resolution_hours": 2}}}})
    assert urgent.status_code == 422 and urgent.json()["errors"][0]["field"] == "body.rules.complaint_sla.urgent"


async def test_one_device_or_one_phone_answering_for_many_customers_is_flagged_for_review(
        client, survey_client, survey_runtime, sgroup) -> None:  # type: ignore[no-untyped-def]
    staff_phone = {"User-Agent": "Mozilla/5.0 (iPhone) MicroMessenger/8.0", "X-Forwarded-For": "203.0.113.7"}
    invitations = [(await _invite(client, survey_runtime, sgroup))[1] for _ in range(3)]
    for inv in invitations:
        r = await survey_client.post(f"/api/v1/public/surveys/{token_of(survey_runtime, inv.id)}/responses",
                                     json={"answers": {**GOOD, "q1": "very_satisfied"}}, headers=staff_phone)
        assert r.status_code == 201
    found = {r.invitation_id: r for r in await rows(survey_runtime, Response, sgroup.tenant_id)}
    flagged = [found[i.id].flags for i in invitations]
    assert flagged == [[], [], ["same_device"]]
    third = found[invitations[2].id]
    assert third.review_status == "pending"

    # Three customers whose records carry one phone number (a consultant's own): their answers are flagged.
    async with survey_runtime.sessionmaker() as s, s.begin():
        ids = [uuid.uuid4() for _ in range(3)]
        for cid in ids:
            s.add(CustomerView(id=cid, tenant_id=sgroup.tenant_id, store_id=sgroup.store_a, name="x",
                               phone="+8613900000000"))
    for cid in ids:
        key = await publish_survey_request(survey_runtime, sgroup, cid)
        inv = await invitation_by_key(survey_runtime, sgroup, key)
    r = await survey_client.post(f"/api/v1/public/surveys/{token_of(survey_runtime, inv.id)}/responses",
                                 json={"answers": GOOD})
    [resp] = await rows(survey_runtime, Response, sgroup.tenant_id, invitation_id=inv.id)
    assert "shared_phone" in resp.flags

    # A contact phone entered just before the survey is flagged on the invitation.
    customer = await new_customer(client, sgroup)
    r = await client.patch(f"/api/v1/customers/{customer['id']}", headers={**sgroup.headers(), "If-Match": '"1"'},
                           json={"phones": [{"number": "+8613911112222"}]})
    assert r.status_code == 200, r.text

    async def phone_changed() -> bool:
        async with survey_runtime.sessionmaker() as s:
            row = await s.get(CustomerView, uuid.UUID(customer["id"]))
            return row is not None and row.phone_changed_at is not None

    await eventually(phone_changed)
    key = await publish_survey_request(survey_runtime, sgroup, customer["id"])
    assert (await invitation_by_key(survey_runtime, sgroup, key)).flags == ["contact_changed"]

    # Review: the CS manager decides; an advisor may not; a decided answer is not decided again.
    url = f"/api/v1/surveys/responses/{third.id}/review"
    assert (await survey_client.post(url, headers=sgroup.headers(Role.SERVICE_ADVISOR),
                                     json={"decision": "rejected", "note": "x"})).status_code == 403
    r = await survey_client.post(url, headers=sgroup.headers(Role.CS_MANAGER),
                                 json={"decision": "rejected", "note": "顾问本人手机代填"})
    assert r.status_code == 200 and r.json()["review_status"] == "rejected"
    assert (await survey_client.post(url, headers=sgroup.headers(Role.CS_MANAGER),
                                     json={"decision": "accepted", "note": "x"})).status_code == 409
    pending = await survey_client.get("/api/v1/surveys/responses?review_status=pending",
                                      headers=sgroup.headers(Role.CS_MANAGER))
    assert third.id not in {uuid.UUID(i["id"]) for i in pending.json()["items"]}


async def test_staff_see_only_their_stores(client, survey_client, survey_runtime, sgroup) -> None:  # type: ignore[no-untyped-def]
    _, inv = await _invite(client, survey_runtime, sgroup)
    b = sgroup.headers(Role.CS_MANAGER, "B")
    assert (await survey_client.get(f"/api/v1/surveys/invitations/{inv.id}", headers=b)).status_code == 404
    listed = (await survey_client.get("/api/v1/surveys/invitations", headers=b)).json()["items"]
    assert inv.id not in {uuid.UUID(i["id"]) for i in listed}
    a = (await survey_client.get(f"/api/v1/surveys/invitations/{inv.id}", headers=sgroup.headers(Role.CS_AGENT)))
    assert a.status_code == 200 and a.json()["status"] == "open"
    assert (await survey_client.get("/api/v1/surveys/invitations")).status_code == 401
    # Creating by hand: about a real repair order of the customer in the store; one per survey and subject.
    visit = await visited(client, survey_runtime, sgroup, str(inv.customer_id))
    body = {"survey": "nps", "store_id": str(sgroup.store_a), "customer_id": str(inv.customer_id),
            "about_type": "visit", "about_id": visit}
    for change, field in (({"about_id": str(inv.about_id)}, "body.about_id"),
                          ({"customer_id": str(uuid.uuid4())}, "body.customer_id"),
                          ({"about_type": "delivery"}, "body.about_id")):
        r = await survey_client.post("/api/v1/surveys/invitations", headers=sgroup.headers(Role.CS_AGENT),
                                     json={**body, **change})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, (change, r.text)
    first = await survey_client.post("/api/v1/surveys/invitations", headers=sgroup.headers(Role.CS_AGENT), json=body)
    assert first.status_code == 201 and first.json()["source"] == "staff"
    dup = await survey_client.post("/api/v1/surveys/invitations", headers=sgroup.headers(Role.CS_AGENT), json=body)
    assert dup.status_code == 409 and dup.json()["existing_id"] == first.json()["id"]
    other = await survey_client.post("/api/v1/surveys/invitations", headers=b, json=body)
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "body.store_id", other.text
    # The rating is credited to a real staff member of the store, and the vehicle is the repair order's.
    for change, field in (({"staff_id": str(uuid.uuid4())}, "body.staff_id"),
                          ({"vehicle_id": str(uuid.uuid4())}, "body.vehicle_id")):
        r = await survey_client.post("/api/v1/surveys/invitations", headers=sgroup.headers(Role.CS_AGENT),
                                     json={**body, "survey": "service_satisfaction", **change})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, (change, r.text)
    unknown = await survey_client.post("/api/v1/surveys/invitations", headers=sgroup.headers(Role.CS_AGENT),
                                       json={**body, "survey": "no_such_survey"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "body.survey"
    async with survey_runtime.sessionmaker() as s:
        assert await s.scalar(sa.select(sa.func.count()).select_from(Invitation).where(
            Invitation.tenant_id == sgroup.tenant_id, Invitation.survey_key == "no_such_survey")) == 0


async def test_odd_answers_get_422_never_500(client, survey_client, survey_runtime, sgroup) -> None:  # type: ignore[no-untyped-def]
    _, inv = await _invite(client, survey_runtime, sgroup, survey="nps")
    token = token_of(survey_runtime, inv.id)
    api = f"/api/v1/public/surveys/{token}/responses"
    for answers in ({"nps": "²"}, {"nps": "1" * 5000}, {"nps": {"x": 1}}, {"nps": [9]}, {"nps": 9.5}, {"nps": True},
                    {"nps": 9, "nps_why": ["a"]}):
        r = await survey_client.post(api, json={"answers": answers})
        assert r.status_code == 422, (answers, r.text)
    for form in ("nps=%C2%B2", "nps=3&nps_why=%00%00", "&".join(f"f{i}=1" for i in range(300))):
        r = await survey_client.post(f"/s/{token}", content=form, headers=FORM)
        assert r.status_code in (413, 422) or (r.status_code == 200 and "感谢" in r.text), (form[:20], r.text[:200])
    [resp] = await rows(survey_runtime, Response, sgroup.tenant_id, invitation_id=inv.id)
    assert resp.nps_score == 3 and "nps_why" not in resp.answers  # the NUL-only text counted as empty
    long_link = await survey_client.get("/s/" + "a" * 300)
    assert long_link.status_code == 404 and "链接无效" in long_link.text


async def test_blank_text_and_multiple_choice_follow_ups(client, survey_client, survey_runtime, sgroup) -> None:  # type: ignore[no-untyped-def]
    manager = sgroup.headers(Role.CS_MANAGER)
    r = await survey_client.post("/api/v1/surveys/templates", headers=manager, json={
        "key": "lounge", "name": "休息区", "definition": {"title": "休息区体验", "questions": [
            {"id": "used", "type": "multiple", "text": "您使用了哪些设施?",
             "options": [{"value": "wifi", "label": "WiFi"}, {"value": "coffee", "label": "咖啡"}]},
            {"id": "coffee_note", "type": "text", "text": "咖啡口味如何?", "show_if": {"question": "used",
                                                                                    "values": ["coffee"]}},
            {"id": "say", "type": "text", "text": "一句话评价"}]}})
    assert r.status_code == 201, r.text
    bad = await survey_client.post("/api/v1/surveys/templates", headers=manager, json={
        "key": "pick_two", "name": "x", "definition": {"title": "x", "questions": [
            {"id": "q", "type": "multiple", "text": "x", "min_choices": 3,
             "options": [{"value": "a", "label": "A"}, {"value": "b", "label": "B"}]}]}})
    assert bad.status_code == 422 and "min_choices" in bad.text
    # A question id that is a column of the response export would overwrite it there.
    taken = await survey_client.post("/api/v1/surveys/templates", headers=manager, json={
        "key": "clash", "name": "x", "definition": {"title": "x", "questions": [
            {"id": "overall_score", "type": "text", "text": "x"}]}})
    assert taken.status_code == 422 and taken.json()["errors"][0]["field"] == "body.definition.questions", taken.text
    assert "overall_score" in taken.json()["errors"][0]["message"]
    customer = await new_customer(client, sgroup)
    key = await publish_survey_request(survey_runtime, sgroup, customer["id"], survey="lounge")
    inv = await invitation_by_key(survey_runtime, sgroup, key)
    api = f"/api/v1/public/surveys/{token_of(survey_runtime, inv.id)}/responses"
    r = await survey_client.post(api, json={"answers": {"used": ["wifi", "coffee"], "coffee_note": "   ",
                                                        "say": "  "}})
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"body.answers.coffee_note", "body.answers.say"}
    r = await survey_client.post(api, json={"answers": {"used": ["wifi", "coffee"], "coffee_note": "偏淡",
                                                        "say": "不错"}})
    assert r.status_code == 201, r.text


async def test_phone_answers_race_once_and_the_rated_advisor_cannot_score_himself(
        client, survey_client, survey_runtime, sgroup) -> None:  # type: ignore[no-untyped-def]
    customer = await new_customer(client, sgroup)
    visit = await visited(client, survey_runtime, sgroup, customer["id"])
    body = {"survey": "service_satisfaction", "store_id": str(sgroup.store_a), "customer_id": customer["id"],
            "about_type": "visit", "about_id": visit, "answers": GOOD}
    agent = sgroup.headers(Role.CS_AGENT)
    results = await asyncio.gather(*(survey_client.post("/api/v1/surveys/responses", headers=agent, json=body)
                                     for _ in range(4)))
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409]
    assert len(await rows(survey_runtime, Invitation, sgroup.tenant_id, about_id=uuid.UUID(visit))) == 1

    # An advisor's own repair order, answered "by phone" by that advisor: kept, but waits for review.
    advisor = await staff_id(client, sgroup, Role.SERVICE_ADVISOR)
    own = await visited(client, survey_runtime, sgroup, customer["id"])
    async with survey_runtime.sessionmaker() as s, s.begin():
        (await s.get(VisitView, (uuid.UUID(own), "visit"))).staff_id = uuid.UUID(advisor)  # type: ignore[union-attr]
    r = await survey_client.post("/api/v1/surveys/responses", headers={**sgroup.headers(Role.SERVICE_ADVISOR),
                                                                       "Idempotency-Key": "call-1"},
                                 json={**body, "about_id": own, "answers": {**GOOD, "q1": "very_satisfied"}})
    assert r.status_code == 201, r.text
    assert r.json()["flags"] == ["recorded_by_rated_staff"] and r.json()["review_status"] == "pending"
    replay = await survey_client.post("/api/v1/surveys/responses", headers={
        **sgroup.headers(Role.SERVICE_ADVISOR), "Idempotency-Key": "call-1"},
        json={**body, "about_id": own, "answers": {**GOOD, "q1": "very_satisfied"}})
    assert replay.status_code == 201 and replay.json()["id"] == r.json()["id"]
    assert replay.headers["idempotent-replayed"] == "true"


async def test_contact_changed_after_the_invitation_flags_the_answer(
        client, survey_client, survey_runtime, sgroup, sclock) -> None:  # type: ignore[no-untyped-def]
    customer, inv = await _invite(client, survey_runtime, sgroup)
    assert inv.flags == []
    sclock.advance(timedelta(days=5))  # long after the invitation: only the change after it matters
    async with survey_runtime.sessionmaker() as s, s.begin():
        row = await s.get(CustomerView, uuid.UUID(customer["id"]))
        row.phone, row.phone_changed_at = "+8613911110000", sclock.now  # type: ignore[union-attr]
    r = await survey_client.post(f"/api/v1/public/surveys/{token_of(survey_runtime, inv.id)}/responses",
                                 json={"answers": GOOD})
    assert r.status_code == 201
    [resp] = await rows(survey_runtime, Response, sgroup.tenant_id, invitation_id=inv.id)
    assert resp.flags == ["contact_changed"] and resp.review_status == "pending"
