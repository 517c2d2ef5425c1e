"""Satisfaction and complaint reports: exact figures from invitations made by survey commands on the broker and
answers given through the public API, months in the store's time zone, store scoping, CSV exports, bad input.

The visits and deliveries the survey rate is based on are written straight into survey_svc's read model (the
rows customer_svc's events would write), and so are the complaints (their intake endpoints are built in
parallel): the reports only read those tables.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from survey_svc.models import Complaint, Response, StaffView, VisitView
from shared.auth.roles import Role
from tests.survey_svc.conftest import invitation_by_key, new_customer, publish_survey_request, token_of

SAT = "/api/v1/surveys/reports/satisfaction"
COMPLAINTS = "/api/v1/complaints/reports"
EXPORT = "/api/v1/surveys/reports/responses.csv"
PERIOD = {"from": "2025-01-01", "to": "2025-02-28"}
JAN15 = datetime(2025, 1, 15, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai

ALL = {"q1": "very_satisfied", "q2": "very_satisfied", "q3": "very_satisfied", "q4": "very_satisfied",
       "q5": "very_satisfied", "q6": "yes"}                                                       # index 100
BAD = {"q1": "very_dissatisfied", "q2": "dissatisfied", "q3": "dissatisfied", "q4": "dissatisfied",
       "q5": "dissatisfied", "q6": "no"}                                                          # 16.67, overall 0
GOOD = {"q1": "satisfied", "q2": "satisfied", "q3": "satisfied", "q4": "satisfied", "q5": "satisfied",
        "q6": "yes"}                                                                              # 79.17
SO_SO = {"q1": "neutral", "q2": "neutral", "q3": "neutral", "q4": "neutral", "q5": "neutral", "q6": "yes"}  # 58.33
SALES = {"q1": "satisfied", "q2": "satisfied", "q3": "very_satisfied", "q4": "yes", "nps": 9}      # 87.5, promoter


async def _staff(runtime, group, name: str) -> uuid.UUID:  # type: ignore[no-untyped-def]
    async with runtime.sessionmaker() as s:
        return await s.scalar(sa.select(StaffView.id).where(StaffView.tenant_id == group.tenant_id,
                                                            StaffView.name == name))


async def _records(runtime, group,  # type: ignore[no-untyped-def]
                   rows: list[tuple[str, str, str, datetime, uuid.UUID | None]]) -> dict[str, uuid.UUID]:
    """Repair orders and deliveries as customer_svc's events leave them in survey_svc's read model."""
    ids = {}
    async with runtime.sessionmaker() as s, s.begin():
        for name, kind, store, at, staff in rows:
            ids[name] = uuid.uuid4()
            s.add(VisitView(id=ids[name], kind=kind, tenant_id=group.tenant_id, store_id=group.stores[store],
                            customer_id=uuid.uuid4(), staff_id=staff, completed_at=at,
                            visit_type="maintenance" if kind == "visit" else None))
    return ids


class Flow:
    """Invite through the survey command on the broker, answer through the public API, at the pinned clock."""

    def __init__(self, runtime, group, client, clock) -> None:  # type: ignore[no-untyped-def]
        self.runtime, self.group, self.client, self.clock = runtime, group, client, clock

    async def invite(self, customer: dict, about: uuid.UUID, at: datetime, *, store: str = "A",
                     survey: str = "service_satisfaction", about_type: str = "visit") -> Any:
        self.clock.now = at
        key = await publish_survey_request(self.runtime, self.group, customer["id"], about_id=about, store=store,
                                           survey=survey, about_type=about_type)
        return await invitation_by_key(self.runtime, self.group, key)

    async def answer(self, inv: Any, answers: dict, at: datetime, device: str | None = None) -> None:
        self.clock.now = at
        r = await self.client.post(f"/api/v1/public/surveys/{token_of(self.runtime, inv.id)}/responses",
                                   json={"answers": answers},
                                   headers={"User-Agent": device or f"phone-{inv.id}"})
        assert r.status_code == 201, r.text


@pytest.fixture
async def data(client, survey_client, survey_runtime, sgroup, sclock):  # type: ignore[no-untyped-def]
    """Store A: 7 repair orders and 2 deliveries, 8 invitations, 7 answers (one rejected by a reviewer), one
    answered at 01:00 local on 1 February (still January in UTC); store B: one of each."""
    g, rt = sgroup, survey_runtime
    s1 = await _staff(rt, g, "service_advisor A")
    s2 = await _staff(rt, g, "service_manager A")
    s3 = await _staff(rt, g, "sales_consultant A")
    jan10, feb2 = datetime(2025, 1, 10, 2, tzinfo=UTC), datetime(2025, 2, 2, 2, tzinfo=UTC)
    rec = await _records(rt, g, [
        ("v1", "visit", "A", jan10, s1), ("v2", "visit", "A", jan10, s1), ("v3", "visit", "A", jan10, s2),
        ("v4", "visit", "A", jan10, s1), ("v5", "visit", "A", feb2, s2), ("v6", "visit", "A", feb2, s2),
        ("v7", "visit", "A", feb2, s2), ("d1", "delivery", "A", jan10, s3), ("d2", "delivery", "A", jan10, s3),
        ("b1", "visit", "B", jan10, None),
        # outside the period (31 Dec 23:00 in Shanghai) and another group's record: never counted
        ("old", "visit", "A", datetime(2024, 12, 31, 15, tzinfo=UTC), s1)])
    ca, cb = await new_customer(client, g), await new_customer(client, g, "B")
    f1, f2, f3 = [await new_customer(client, g) for _ in range(3)]
    flow = Flow(rt, g, survey_client, sclock)
    inv1 = await flow.invite(ca, rec["v1"], JAN15)
    inv2 = await flow.invite(ca, rec["v2"], JAN15)
    await flow.invite(ca, rec["v3"], JAN15)  # never answered
    inv4 = await flow.invite(ca, rec["d1"], JAN15, survey="sales_satisfaction", about_type="delivery")
    inv_b = await flow.invite(cb, rec["b1"], JAN15, store="B")
    for inv, answers in ((inv1, ALL), (inv2, BAD), (inv4, SALES), (inv_b, GOOD)):
        await flow.answer(inv, answers, JAN15 + timedelta(hours=1))
    inv5 = await flow.invite(ca, rec["v4"], datetime(2025, 1, 25, 2, tzinfo=UTC))
    await flow.answer(inv5, GOOD, datetime(2025, 1, 31, 17, tzinfo=UTC))  # 1 February 01:00 in Shanghai
    feb3 = datetime(2025, 2, 3, 2, tzinfo=UTC)
    inv6 = await flow.invite(f1, rec["v5"], feb3)
    inv7 = await flow.invite(f2, rec["v6"], feb3)
    inv8 = await flow.invite(f3, rec["v7"], feb3)
    # one device answering for three customers: the third answer is flagged, and a reviewer rejects it
    for inv, answers in ((inv6, SO_SO), (inv7, ALL), (inv8, GOOD)):
        await flow.answer(inv, answers, feb3 + timedelta(hours=1), device="one-shared-phone")
    async with rt.sessionmaker() as s:
        flagged = await s.scalar(sa.select(Response).where(Response.invitation_id == inv8.id))
    assert flagged.review_status == "pending" and flagged.flags == ["same_device"]
    r = await survey_client.post(f"/api/v1/surveys/responses/{flagged.id}/review",
                                 json={"decision": "rejected", "note": "one phone for three customers"},
                                 headers=g.headers(Role.CS_MANAGER))
    assert r.status_code == 200, r.text
    sclock.now = feb3 + timedelta(hours=2)
    return {"s1": s1, "s2": s2, "s3": s3, "ca": ca, "f1": f1, "inv5": inv5, "inv4": inv4}


async def test_satisfaction_by_store(survey_client, sgroup, data):  # type: ignore[no-untyped-def]
    r = await survey_client.get(SAT, params={**PERIOD, "group_by": "store"}, headers=sgroup.headers(Role.ADMIN))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["days"] == 59 and body["time_zones"] == ["Asia/Shanghai"]
    a, b = body["rows"]
    assert (a["store_id"], a["store_code"], b["store_code"]) == (str(sgroup.store_a), "A", "B")
    assert {k: a[k] for k in ("repair_orders", "deliveries", "records", "invitations", "invitations_about_records",
                              "survey_rate", "responses", "web_responses", "return_rate", "valid_responses",
                              "rejected", "pending_review", "valid_rate", "avg_satisfaction_index",
                              "avg_overall_score", "very_dissatisfied", "low_score", "nps_answers", "promoters",
                              "detractors", "nps")} == {
        "repair_orders": 7, "deliveries": 2, "records": 9, "invitations": 8, "invitations_about_records": 8,
        "survey_rate": 0.8889, "responses": 7, "web_responses": 7, "return_rate": 0.875, "valid_responses": 6,
        "rejected": 1, "pending_review": 0, "valid_rate": 0.8571,
        "avg_satisfaction_index": round((100 + 16.67 + 87.5 + 79.17 + 58.33 + 100) / 6, 2),  # 73.61
        "avg_overall_score": 66.67, "very_dissatisfied": 1, "low_score": 2, "nps_answers": 1, "promoters": 1,
        "detractors": 0, "nps": 100.0}
    assert (b["records"], b["invitations"], b["responses"], b["avg_satisfaction_index"]) == (1, 1, 1, 79.17)
    total = body["totals"]
    assert (total["records"], total["invitations"], total["responses"], total["valid_responses"]) == (10, 9, 8, 7)

    service, sales = body["items"][1], body["items"][0]
    assert service["survey"] == "service_satisfaction" and sales["survey"] == "sales_satisfaction"
    averages = {i["item"]: (i["answers"], i["average"], i["very_dissatisfied"]) for i in service["items"]}
    # valid service answers: A 100s, A bad, A good (1 Feb), A so-so, A 100s, and store B's good one
    assert averages == {"q1": (6, round((100 + 0 + 75 + 50 + 100 + 75) / 6, 2), 1),
                        "q2": (6, round((100 + 25 + 75 + 50 + 100 + 75) / 6, 2), 0),
                        "q3": (6, 70.83, 0), "q4": (6, 70.83, 0), "q5": (6, 70.83, 0),
                        "q6": (6, round(500 / 6, 2), 1)}
    assert (service["strongest"], service["weakest"]) == ("q6", "q1")
    assert service["items"][0]["text"] == "您对本次到站服务的总体满意度"
    assert [(i["item"], i["average"]) for i in sales["items"]] == [("q1", 75.0), ("q2", 75.0), ("q3", 100.0),
                                                                   ("q4", 100.0)]
    assert (sales["strongest"], sales["weakest"]) == ("q3", "q1")


async def test_month_trend_in_store_time(survey_client, sgroup, data):  # type: ignore[no-untyped-def]
    r = await survey_client.get(SAT, params={**PERIOD, "group_by": "month", "store_id": str(sgroup.store_a)},
                                headers=sgroup.headers(Role.CS_MANAGER))
    assert r.status_code == 200, r.text
    jan, feb = r.json()["rows"]
    assert (jan["month"], jan["records"], jan["invitations"], jan["responses"], jan["return_rate"]) == \
        ("2025-01", 6, 5, 3, 0.6)
    assert jan["avg_satisfaction_index"] == round((100 + 16.67 + 87.5) / 3, 2)
    # the answer given at 01:00 on 1 February (Shanghai) is February's, though it is 31 January in UTC
    assert (feb["month"], feb["records"], feb["invitations"], feb["responses"], feb["valid_responses"],
            feb["rejected"]) == ("2025-02", 3, 3, 4, 3, 1)
    assert feb["avg_satisfaction_index"] == round((79.17 + 58.33 + 100) / 3, 2)
    # a month without anything still has its row
    r = await survey_client.get(SAT, params={"from": "2024-12-01", "to": "2025-01-31", "group_by": "month",
                                             "store_id": str(sgroup.store_a)}, headers=sgroup.headers(Role.ADMIN))
    dec, jan2 = r.json()["rows"]
    assert (dec["month"], dec["records"], dec["responses"], dec["survey_rate"], dec["nps"]) == \
        ("2024-12", 1, 0, 0.0, None)
    assert jan2 == jan


async def test_by_staff_and_survey_filter(survey_client, sgroup, data):  # type: ignore[no-untyped-def]
    r = await survey_client.get(SAT, params={**PERIOD, "group_by": "staff", "store_id": str(sgroup.store_a)},
                                headers=sgroup.headers(Role.SERVICE_MANAGER))
    rows = {row["staff_name"]: row for row in r.json()["rows"]}
    assert set(rows) == {"service_advisor A", "service_manager A", "sales_consultant A"}
    advisor, other, sales = rows["service_advisor A"], rows["service_manager A"], rows["sales_consultant A"]
    assert advisor["staff_id"] == str(data["s1"])
    assert (advisor["records"], advisor["invitations"], advisor["responses"], advisor["very_dissatisfied"],
            advisor["avg_satisfaction_index"]) == (3, 3, 3, 1, round((100 + 16.67 + 79.17) / 3, 2))
    assert (other["records"], other["invitations"], other["responses"], other["valid_responses"],
            other["avg_satisfaction_index"]) == (4, 4, 3, 2, round((58.33 + 100) / 2, 2))
    assert (sales["deliveries"], sales["invitations"], sales["promoters"], sales["nps"]) == (2, 1, 1, 100.0)

    # one survey: its records are the kinds its invitations are about (deliveries for the sales survey)
    r = await survey_client.get(SAT, params={**PERIOD, "survey": "sales_satisfaction",
                                             "store_id": str(sgroup.store_a)}, headers=sgroup.headers(Role.ADMIN))
    [row] = r.json()["rows"]
    assert (row["records"], row["invitations"], row["survey_rate"], row["responses"], row["avg_overall_score"]) == \
        (2, 1, 0.5, 1, 75.0)
    assert [g["survey"] for g in r.json()["items"]] == ["sales_satisfaction"]


async def test_store_scoping(survey_client, sgroup, data):  # type: ignore[no-untyped-def]
    r = await survey_client.get(SAT, params=PERIOD, headers=sgroup.headers(Role.SERVICE_MANAGER, "B"))
    body = r.json()
    assert [row["store_code"] for row in body["rows"]] == ["B"]
    assert (body["totals"]["responses"], body["totals"]["records"]) == (1, 1)
    for path in (SAT, COMPLAINTS, EXPORT):
        r = await survey_client.get(path, params={**PERIOD, "store_id": str(sgroup.store_a)},
                                    headers=sgroup.headers(Role.SERVICE_MANAGER, "B"))
        assert r.status_code == 404, (path, r.text)
    # staff who are not managers get no reports
    r = await survey_client.get(SAT, params=PERIOD, headers=sgroup.headers(Role.SERVICE_ADVISOR))
    assert r.status_code == 403
    # store B's export holds store B's one answer only
    r = await survey_client.get(EXPORT, params=PERIOD, headers=sgroup.headers(Role.CS_MANAGER, "B"))
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [row["store_code"] for row in rows] == ["B"]


async def test_satisfaction_csv(survey_client, sgroup, data):  # type: ignore[no-untyped-def]
    r = await survey_client.get(SAT, params={**PERIOD, "group_by": "month", "store_id": str(sgroup.store_a),
                                             "format": "csv"}, headers=sgroup.headers(Role.CS_DIRECTOR))
    assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.content.startswith(b"\xef\xbb\xbf") and "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [(row["section"], row["month"]) for row in rows[:3]] == [("total", ""), ("month", "2025-01"),
                                                                   ("month", "2025-02")]
    assert (rows[0]["responses"], rows[0]["valid_rate"], rows[0]["nps"]) == ("7", "0.8571", "100.0")
    items = [row for row in rows if row["section"] == "item"]
    assert [(row["survey"], row["item"]) for row in items][:2] == [("sales_satisfaction", "q1"),
                                                                  ("sales_satisfaction", "q2")]
    assert {row["item"]: row["average"] for row in items if row["survey"] == "service_satisfaction"}["q1"] == "65.0"
    # Accept: text/csv picks CSV too
    r = await survey_client.get(SAT, params=PERIOD, headers=sgroup.headers(Role.ADMIN, Accept="text/csv"))
    assert r.headers["content-type"].startswith("text/csv")


async def test_responses_export(survey_client, sgroup, data):  # type: ignore[no-untyped-def]
    r = await survey_client.get(EXPORT, params={**PERIOD, "store_id": str(sgroup.store_a)},
                                headers=sgroup.headers(Role.CS_MANAGER))
    assert r.status_code == 200 and r.content.startswith(b"\xef\xbb\xbf")
    text = r.content.decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    # a stable set of columns: every scored item of the group's surveys (the complaint re-survey's last)
    assert reader.fieldnames[-8:] == ["q1", "q2", "q3", "q4", "q5", "q6", "result", "speed"]
    assert not {"name", "phone", "comment", "answers"} & set(reader.fieldnames or [])
    assert "测试客户" not in text and "+86" not in text
    assert len(rows) == 7 and all(row["store_code"] == "A" for row in rows)
    assert [row["answered_at_local"] for row in rows][2:4] == ["2025-01-15T11:00:00+08:00",
                                                               "2025-02-01T01:00:00+08:00"]
    by_inv = {row["invitation_id"]: row for row in rows}
    late = by_inv[str(data["inv5"].id)]
    assert (late["survey"], late["survey_version"], late["channel"], late["satisfaction_index"], late["q1"],
            late["q6"], late["low_score"], late["review_status"]) == \
        ("service_satisfaction", "1", "web", "79.17", "75.0", "100.0", "false", "none")
    sales = by_inv[str(data["inv4"].id)]
    assert (sales["nps_score"], sales["nps_class"], sales["q4"], sales["q5"]) == ("9", "promoter", "100.0", "")
    rejected = [row for row in rows if row["review_status"] == "rejected"]
    assert [(row["flags"], row["customer_id"]) for row in rejected] == [("same_device", rows[-1]["customer_id"])]


async def _complaint(runtime, group, n: int, *, store: str = "A",  # type: ignore[no-untyped-def]
                     customer: Any = None, opened: datetime, first_due: float, resolve_due: float,
                     responded: float | None = None, resolved: float | None = None, closed: float | None = None,
                     **fields: Any) -> None:
    def at(hours: float | None) -> datetime | None:
        return None if hours is None else opened + timedelta(hours=hours)

    async with runtime.sessionmaker() as s, s.begin():
        s.add(Complaint(tenant_id=group.tenant_id, store_id=group.stores[store], number=f"C202501-{n}",
                        customer_id=uuid.UUID(customer["id"]) if customer else None, description="…",
                        opened_at=opened, first_response_due=at(first_due), resolution_due=at(resolve_due),
                        first_responded_at=at(responded), resolved_at=at(resolved), closed_at=at(closed),
                        **{"channel": "phone", "kind": "complaint", **fields}))


async def test_complaint_report(survey_client, survey_runtime, sgroup, data):  # type: ignore[no-untyped-def]
    rt, g = survey_runtime, sgroup
    await _complaint(rt, g, 1, customer=data["ca"], opened=datetime(2025, 1, 10, 2, tzinfo=UTC), category="service",
                     severity="high", status="closed", first_due=4, responded=2, resolve_due=72, resolved=48,
                     closed=50, feedback_result="satisfied", feedback_speed="basically_satisfied")
    await _complaint(rt, g, 2, customer=data["ca"], opened=datetime(2025, 1, 20, 2, tzinfo=UTC), category="service",
                     severity="medium", status="in_process", first_due=8, responded=10, resolve_due=120)
    await _complaint(rt, g, 3, customer=data["f1"], opened=datetime(2025, 2, 2, 2, tzinfo=UTC), category="sales",
                     severity="low", status="ongoing", first_due=24, resolve_due=168, channel="wechat")
    await _complaint(rt, g, 4, opened=datetime(2025, 1, 12, 2, tzinfo=UTC), category="major", kind="major",
                     severity="critical", status="closed", first_due=1, responded=0.5, resolve_due=24, resolved=30,
                     closed=40, escalation_level=2, nature="media")
    await _complaint(rt, g, 5, store="B", opened=datetime(2025, 1, 15, 2, tzinfo=UTC), category="parts",
                     severity="low", status="ongoing", first_due=24, resolve_due=168)
    r = await survey_client.get(COMPLAINTS, params={**PERIOD, "store_id": str(g.store_a)},
                                headers=g.headers(Role.CS_MANAGER))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["totals"] == {
        "complaints": 4, "major": 1, "open": 2, "closed": 2, "escalated": 1, "responded": 3,
        "avg_first_response_hours": round((2 + 10 + 0.5) / 3, 2), "p90_first_response_hours": 8.4,
        "avg_closure_hours": 45.0, "p90_closure_hours": 49.0,
        "first_response_late": 2,   # #2 answered after 10 h of 8; #3 not answered, due 3 Feb 02:00, now 04:00
        "resolution_late": 2,       # #2 still open past its due time; #4 resolved after 30 h of 24
        "complaint_rate": round(4 / 9, 4)}
    assert [(row["category"], row["complaints"]) for row in body["rows"]] == [("service", 2), ("major", 1),
                                                                            ("sales", 1)]
    service = body["rows"][0]
    assert (service["avg_first_response_hours"], service["p90_closure_hours"], service["complaint_rate"]) == \
        (6.0, 50.0, None)
    assert {c["value"]: c["count"] for c in body["by_status"]} == {"closed": 2, "in_process": 1, "ongoing": 1}
    assert {c["value"]: c["count"] for c in body["by_severity"]} == {"high": 1, "medium": 1, "low": 1,
                                                                     "critical": 1}
    assert {c["value"]: c["count"] for c in body["by_channel"]} == {"phone": 3, "wechat": 1}
    assert body["feedback_result"] == [{"value": "satisfied", "count": 1}]
    assert body["repeat_complainers"] == 1
    assert body["top_repeat_complainers"] == [{"customer_id": data["ca"]["id"], "complaints": 2}]

    r = await survey_client.get(COMPLAINTS, params={**PERIOD, "group_by": "month", "store_id": str(g.store_a)},
                                headers=g.headers(Role.CS_MANAGER))
    jan, feb = r.json()["rows"]
    assert (jan["month"], jan["complaints"], jan["complaint_rate"], feb["complaints"], feb["complaint_rate"]) == \
        ("2025-01", 3, 0.5, 1, round(1 / 3, 4))
    r = await survey_client.get(COMPLAINTS, params={**PERIOD, "group_by": "store"}, headers=g.headers(Role.ADMIN))
    assert [(row["store_code"], row["complaints"]) for row in r.json()["rows"]] == [("A", 4), ("B", 1)]
    r = await survey_client.get(COMPLAINTS, params={**PERIOD, "group_by": "severity"},
                                headers=g.headers(Role.SERVICE_MANAGER, "B"))
    assert [(row["severity"], row["complaints"]) for row in r.json()["rows"]] == [("low", 1)]

    r = await survey_client.get(COMPLAINTS, params={**PERIOD, "store_id": str(g.store_a), "format": "csv"},
                                headers=g.headers(Role.CS_MANAGER))
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert (rows[0]["section"], rows[0]["complaints"], rows[0]["p90_first_response_hours"]) == ("total", "4", "8.4")
    assert [row["customer_id"] for row in rows if row["section"] == "repeat_complainer"] == [data["ca"]["id"]]
    assert {row["value"]: row["count"] for row in rows if row["section"] == "by_category"} == \
        {"service": "2", "major": "1", "sales": "1"}


@pytest.mark.parametrize(("path", "params", "field"), [
    (SAT, {"from": "2025-03-01", "to": "2025-02-01"}, "query.from"),
    (SAT, {"from": "2023-01-01", "to": "2025-01-02"}, "query.to"),
    (SAT, {"group_by": "week"}, "query.group_by"),
    (SAT, {"from": "2025-02-30"}, "query.from"),
    (SAT, {"survey": "no such survey"}, "query.survey"),
    (COMPLAINTS, {"group_by": "staff"}, "query.group_by"),
    (COMPLAINTS, {"from": "2025-03-01", "to": "2025-02-01"}, "query.from"),
    (EXPORT, {"from": "2020-01-01", "to": "2024-01-01"}, "query.to"),
    (EXPORT, {"format": "xml"}, None),
])
async def test_bad_input(survey_client, sgroup, path, params, field):  # type: ignore[no-untyped-def]
    r = await survey_client.get(path, params=params, headers=sgroup.headers(Role.ADMIN))
    if field is None:  # unknown query parameters are ignored
        assert r.status_code == 200
        return
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in r.json()["errors"]]


async def test_two_years_is_the_limit(survey_client, sgroup):  # type: ignore[no-untyped-def]
    r = await survey_client.get(SAT, params={"from": "2023-01-01", "to": "2024-12-31", "group_by": "month"},
                                headers=sgroup.headers(Role.ADMIN))
    assert r.status_code == 200, r.text
    assert len(r.json()["rows"]) == 24 and r.json()["totals"]["responses"] == 0
