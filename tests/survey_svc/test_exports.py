"""Streamed exports of survey results and complaint cases: each format holds the same rows, filters by period,
store and status, store scoping for staff and integration keys, masking, CSV safety, bad input, and a large
export arriving in many chunks.

Responses come from invitations made by survey commands on the broker and answers given through the public API;
complaints are written straight into survey_svc's table (as in the report tests): the exports only read them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from survey_svc.app import create_service_app
from survey_svc.models import Complaint, StaffView
from shared.auth.roles import Role
from shared.testing.exports import parse_export
from tests.customer_svc.factories import integration_headers
from tests.survey_svc.conftest import invitation_by_key, new_customer, publish_survey_request, token_of

RESPONSES = "/api/v1/surveys/exports/responses"
ALIAS = "/api/v1/surveys/reports/responses.csv"
CASES = "/api/v1/complaints/exports/cases"
PERIOD = {"from": "2025-01-01", "to": "2025-01-31"}
JAN15 = datetime(2025, 1, 15, 2, tzinfo=UTC)  # 10:00 in Shanghai
GOOD = {"q1": "satisfied", "q2": "satisfied", "q3": "satisfied", "q4": "satisfied", "q5": "satisfied", "q6": "yes"}
BAD = {"q1": "very_dissatisfied", "q2": "dissatisfied", "q3": "dissatisfied", "q4": "dissatisfied",
       "q5": "dissatisfied", "q6": "no"}
PHONE = "+8613812345678"
FORMULA = "=HYPERLINK(\"http://evil.test\",\"click\") call 13812345678"


def cell(value: Any) -> str:
    """What a JSON value looks like in the CSV export."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        value = ";".join(str(v) for v in value)
    text = str(value)
    return "'" + text if isinstance(value, str) and text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


async def export(client: httpx.AsyncClient, path: str, fmt: str, headers: dict,
                 **params: Any) -> tuple[httpx.Response, list[dict]]:
    r = await client.get(path, params={**params, "format": fmt}, headers=headers)
    assert r.status_code == 200, r.text
    if fmt == "csv":
        assert r.content.startswith(b"\xef\xbb\xbf")
    return r, parse_export(fmt, r.content)


async def all_formats(client: httpx.AsyncClient, path: str, headers: dict, **params: Any) -> list[dict]:
    """The export in the three formats: the same rows (CSV cells as text, formula-safe); returns the JSON rows."""
    r_csv, from_csv = await export(client, path, "csv", headers, **params)
    r_json, from_json = await export(client, path, "json", headers, **params)
    r_nd, from_nd = await export(client, path, "ndjson", headers, **params)
    assert (r_csv.headers["content-type"], r_json.headers["content-type"], r_nd.headers["content-type"]) == \
        ("text/csv; charset=utf-8", "application/json", "application/x-ndjson")
    assert r_csv.headers["content-disposition"].startswith('attachment; filename="')
    assert r_nd.headers["content-disposition"].endswith('.ndjson"')
    assert from_nd == from_json
    assert from_csv == [{k: cell(v) for k, v in row.items()} for row in from_json]
    return from_json


async def asgi_chunks(app: FastAPI, path: str, params: dict, headers: dict) -> tuple[int, list[bytes]]:
    """GET through the whole ASGI app (middleware included), keeping each body message as sent (httpx's ASGI
    transport joins them): the status and the chunks."""
    messages: list[dict] = []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": urlencode(params).encode(), "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in {"host": "test", **headers}.items()],
             "server": ("test", 80), "client": ("127.0.0.1", 1234)}

    requested, done = [False], asyncio.Event()

    async def receive() -> dict:
        if not requested[0]:
            requested[0] = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()  # the client stays until the response is complete
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    await app(scope, receive, send)
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    return status, [m["body"] for m in messages if m["type"] == "http.response.body" and m.get("body")]


async def answer(runtime, group, client, clock, customer: dict, at: datetime,  # type: ignore[no-untyped-def]
                 answers: dict, store: str = "A") -> None:
    clock.now = at
    key = await publish_survey_request(runtime, group, customer["id"], store=store)
    inv = await invitation_by_key(runtime, group, key)
    clock.now = at + timedelta(minutes=30)
    r = await client.post(f"/api/v1/public/surveys/{token_of(runtime, inv.id)}/responses", json={"answers": answers},
                          headers={"User-Agent": f"phone-{inv.id}"})
    assert r.status_code == 201, r.text


def case(group, n: int, opened: datetime, store: str = "A", **fields: Any) -> dict:  # type: ignore[no-untyped-def]
    values = dict(tenant_id=group.tenant_id, store_id=group.stores[store], number=f"C{opened:%Y%m}-{n:05d}",
                  description="等待时间太长", opened_at=opened, first_response_due=opened + timedelta(hours=4),
                  resolution_due=opened + timedelta(hours=72), channel="phone_inbound", kind="complaint",
                  category="service", severity="medium", status="ongoing")
    values.update(fields)
    return values


async def add_cases(runtime, rows: list[dict]) -> None:  # type: ignore[no-untyped-def]
    async with runtime.sessionmaker() as s, s.begin():
        await s.execute(sa.insert(Complaint), rows)


@pytest.fixture
async def answered(client, survey_client, survey_runtime, sgroup, sclock):  # type: ignore[no-untyped-def]
    """Store A: two answers in January (one at 01:00 local on 1 January, still 31 December in UTC) and one on
    1 February 00:30 local (outside January); store B: one answer in January."""
    g, rt = sgroup, survey_runtime
    ca, cb = await new_customer(client, g), await new_customer(client, g, "B")
    await answer(rt, g, survey_client, sclock, ca, datetime(2024, 12, 31, 16, 30, tzinfo=UTC), GOOD)  # 1 Jan 01:00
    await answer(rt, g, survey_client, sclock, ca, JAN15, BAD)
    await answer(rt, g, survey_client, sclock, ca, datetime(2025, 1, 31, 16, tzinfo=UTC), GOOD)      # 1 Feb 00:30
    await answer(rt, g, survey_client, sclock, cb, JAN15, GOOD, store="B")
    sclock.now = datetime(2025, 2, 10, tzinfo=UTC)
    return {"ca": ca, "cb": cb}


async def test_responses_in_every_format(survey_client, sgroup, answered):  # type: ignore[no-untyped-def]
    rows = await all_formats(survey_client, RESPONSES, sgroup.headers(Role.CS_MANAGER),
                             **PERIOD, store_id=str(sgroup.store_a))
    assert [r["answered_at_local"] for r in rows] == ["2025-01-01T01:00:00+08:00", "2025-01-15T10:30:00+08:00"]
    assert all(r["store_code"] == "A" and r["customer_id"] == answered["ca"]["id"] for r in rows)
    good, bad = rows
    assert (good["survey"], good["channel"], good["satisfaction_index"], good["q1"], good["q6"], good["low_score"],
            good["flags"]) == ("service_satisfaction", "web", 79.17, 75.0, 100.0, False, [])
    assert (bad["overall_score"], bad["low_score"], bad["q1"]) == (0.0, True, 0.0)
    assert list(good)[:3] == ["response_id", "invitation_id", "store_code"]
    assert not {"name", "phone", "comment", "answers"} & set(good)

    # the CSV alias is the same export; every store of a group-wide role; one survey only
    r, from_alias = await export(survey_client, ALIAS, "csv", sgroup.headers(Role.CS_MANAGER),
                                 **PERIOD, store_id=str(sgroup.store_a))
    r2 = await survey_client.get(RESPONSES, params={**PERIOD, "store_id": str(sgroup.store_a), "format": "csv"},
                                 headers=sgroup.headers(Role.CS_MANAGER))
    assert r.content == r2.content
    _, everything = await export(survey_client, RESPONSES, "json", sgroup.headers(Role.ADMIN), **PERIOD)
    assert sorted(r["store_code"] for r in everything) == ["A", "A", "B"]
    _, none = await export(survey_client, RESPONSES, "json", sgroup.headers(Role.ADMIN), **PERIOD,
                           survey="sales_satisfaction")
    assert none == []
    # a period of February holds the answer of 1 February 00:30 local only
    _, feb = await export(survey_client, RESPONSES, "ndjson", sgroup.headers(Role.ADMIN), **{"from": "2025-02-01",
                                                                                            "to": "2025-02-28"})
    assert [r["answered_at_local"] for r in feb] == ["2025-02-01T00:30:00+08:00"]


async def test_store_scope_and_integration_keys(survey_client, sgroup, answered):  # type: ignore[no-untyped-def]
    g = sgroup
    _, rows = await export(survey_client, RESPONSES, "json", g.headers(Role.SERVICE_MANAGER, "B"), **PERIOD)
    assert [r["store_code"] for r in rows] == ["B"]
    key = integration_headers(g, ["surveys:read"])
    _, rows = await export(survey_client, RESPONSES, "csv", key, **PERIOD)
    assert [r["store_code"] for r in rows] == ["A", "A"]
    for headers, path, status in (
            (integration_headers(g, ["complaints:read", "customers:read"]), RESPONSES, 403),
            (integration_headers(g, ["surveys:read"]), CASES, 403),
            (integration_headers(g, ["followups:read"]), ALIAS, 403),
            (g.headers(Role.SERVICE_ADVISOR), RESPONSES, 403), (g.headers(Role.CS_AGENT), CASES, 403),
            ({}, RESPONSES, 401),
            # The reports ask for the same scopes as the exports of what they count.
            (integration_headers(g, ["surveys:read"]), "/api/v1/complaints/reports", 403),
            (integration_headers(g, ["complaints:read"]), "/api/v1/surveys/reports/satisfaction", 403)):
        r = await survey_client.get(path, params=PERIOD, headers=headers)
        assert r.status_code == status, (path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    for path, scope in (("/api/v1/complaints/reports", "complaints:read"),
                        ("/api/v1/surveys/reports/satisfaction", "surveys:read")):
        r = await survey_client.get(path, params=PERIOD, headers=integration_headers(g, [scope]))
        assert r.status_code == 200, (path, r.text)
    # another store than the key's (or the manager's) is not found
    for path, headers in ((RESPONSES, key), (CASES, integration_headers(g, ["complaints:read"]))):
        r = await survey_client.get(path, params={**PERIOD, "store_id": str(g.store_b)}, headers=headers)
        assert r.status_code == 404, (path, r.text)
    r = await survey_client.get(CASES, params={**PERIOD, "store_id": str(g.store_a)},
                                headers=g.headers(Role.SERVICE_MANAGER, "B"))
    assert r.status_code == 404


async def test_complaint_cases(survey_client, survey_runtime, sgroup, sclock):  # type: ignore[no-untyped-def]
    g, rt = sgroup, survey_runtime
    sclock.now = datetime(2025, 2, 10, tzinfo=UTC)
    async with rt.sessionmaker() as s:
        owner = await s.scalar(sa.select(StaffView.id).where(StaffView.tenant_id == g.tenant_id,
                                                             StaffView.name == "cs_agent A"))
    jan10 = datetime(2025, 1, 10, 2, tzinfo=UTC)
    await add_cases(rt, [
        # kept both deadlines, closed with the customer's feedback
        case(g, 1, jan10, owner_id=owner, status="closed", first_responded_at=jan10 + timedelta(hours=1),
             resolved_at=jan10 + timedelta(hours=20), closed_at=jan10 + timedelta(hours=30),
             chosen_remedy="免费返修", goodwill_amount=200, root_cause="工位不足",
             action_taken="已回访客户 138 1234 5678, 座机 0755-8600 1234", feedback_result="satisfied",
             feedback_speed="basically_satisfied", complainant_name="张三丰", complainant_phone=PHONE,
             description=FORMULA, problems=["waiting", "attitude"]),
        # first response late, still open past its resolution deadline
        case(g, 2, jan10 + timedelta(days=5), severity="high", status="in_process",
             first_responded_at=jan10 + timedelta(days=5, hours=6)),
        # not answered yet, deadlines still running (opened at 23:30 local on 31 January)
        case(g, 3, datetime(2025, 1, 31, 15, 30, tzinfo=UTC), first_response_due=datetime(2025, 3, 1, tzinfo=UTC),
             resolution_due=datetime(2025, 3, 5, tzinfo=UTC)),
        case(g, 4, jan10, store="B"),
        case(g, 5, datetime(2025, 1, 31, 16, 30, tzinfo=UTC)),  # 1 February 00:30 local: not January
        # on hold since before its first-response deadline: the clock stopped, nothing is missed yet
        case(g, 6, jan10 + timedelta(days=10), status="hold", held_from="ongoing",
             held_at=jan10 + timedelta(days=10, hours=1)),
        # on hold since after its first-response deadline: that one was missed, the resolution's still runs
        case(g, 7, jan10 + timedelta(days=11), status="hold", held_from="ongoing",
             held_at=jan10 + timedelta(days=11, hours=5)),
    ])
    rows = await all_formats(survey_client, CASES, g.headers(Role.CS_MANAGER), **PERIOD,
                             store_id=str(g.store_a))
    assert [r["number"] for r in rows] == ["C202501-00001", "C202501-00002", "C202501-00006", "C202501-00007",
                                           "C202501-00003"]
    kept, late, held, held_late, running = rows
    assert (held["first_response_met"], held["resolution_met"], held["sla_met"], held["overdue"]) == \
        (None, None, None, False)
    assert (held_late["first_response_met"], held_late["resolution_met"], held_late["sla_met"]) == (False, None, False)
    assert {k: kept[k] for k in ("store_code", "opened_at", "status", "category", "severity", "owner_name",
                                 "first_response_met", "resolution_met", "sla_met", "overdue", "resolution",
                                 "goodwill_amount", "feedback_result", "feedback_speed", "closed_at", "problems",
                                 "complainant_name", "complainant_phone", "description")} == {
        "store_code": "A", "opened_at": "2025-01-10T10:00:00+08:00", "status": "closed", "category": "service",
        "severity": "medium", "owner_name": "cs_agent A", "first_response_met": True, "resolution_met": True,
        "sla_met": True, "overdue": False, "resolution": "免费返修", "goodwill_amount": "200.00",
        "feedback_result": "satisfied", "feedback_speed": "basically_satisfied",
        "closed_at": "2025-01-11T16:00:00+08:00", "problems": ["waiting", "attitude"],
        "complainant_name": "张三丰", "complainant_phone": PHONE, "description": FORMULA}
    assert (late["first_response_met"], late["resolution_met"], late["sla_met"], late["overdue"]) == \
        (False, False, False, True)
    assert (running["opened_at"], running["first_response_met"], running["resolution_met"], running["sla_met"]) == \
        ("2025-01-31T23:30:00+08:00", None, None, None)

    # the CSV cell that would be a formula is text; the phone number too
    _, table = await export(survey_client, CASES, "csv", g.headers(Role.CS_MANAGER), **PERIOD,
                            store_id=str(g.store_a))
    assert table[0]["description"] == "'" + FORMULA and table[0]["complainant_phone"] == "'" + PHONE
    assert table[0]["sla_met"] == "true" and table[4]["sla_met"] == ""

    # status filter (repeatable); an integration key without pii:read reads masked personal data
    _, closed = await export(survey_client, CASES, "json", g.headers(Role.ADMIN), **PERIOD, status="closed")
    assert [r["number"] for r in closed] == ["C202501-00001"]
    r = await survey_client.get(CASES, params=[("from", "2025-01-01"), ("to", "2025-01-31"), ("status", "closed"),
                                               ("status", "in_process")], headers=g.headers(Role.ADMIN))
    assert [row["number"] for row in r.json()] == ["C202501-00001", "C202501-00002"]
    _, masked = await export(survey_client, CASES, "json", integration_headers(g, ["complaints:read"]), **PERIOD)
    assert [r["number"] for r in masked][:2] == ["C202501-00001", "C202501-00002"]
    assert (masked[0]["complainant_name"], masked[0]["complainant_phone"]) == ("张**", "138****5678")
    assert "13812345678" not in masked[0]["description"] and "138****5678" in masked[0]["description"]
    # phone numbers staff wrote down in any free text, however grouped
    assert masked[0]["action_taken"] == "已回访客户 138****5678, 座机 0755-****1234", masked[0]["action_taken"]
    _, unmasked = await export(survey_client, CASES, "json", integration_headers(g, ["complaints:read", "pii:read"]),
                               **PERIOD)
    assert unmasked[0]["complainant_phone"] == PHONE
    # store B's manager: store B's case only
    _, b = await export(survey_client, CASES, "csv", g.headers(Role.SERVICE_MANAGER, "B"), **PERIOD)
    assert [r["number"] for r in b] == ["C202501-00004"]


@pytest.mark.parametrize(("path", "params", "field"), [
    (RESPONSES, {"format": "xml"}, "query.format"),
    (CASES, {"format": "xlsx"}, "query.format"),
    (RESPONSES, {"from": "2024-01-01", "to": "2025-01-31"}, "query.to"),   # more than 366 days
    (CASES, {"from": "2024-01-01", "to": "2025-01-31"}, "query.to"),
    (CASES, {"from": "2025-02-01", "to": "2025-01-01"}, "query.from"),
    (RESPONSES, {"from": "2025-02-30"}, "query.from"),
    (RESPONSES, {"from": "1999-12-31"}, "query.from"),
    (RESPONSES, {"survey": "no such survey"}, "query.survey"),
    (CASES, {"status": "lost"}, "query.status.0"),
    (ALIAS, {"from": "2020-01-01", "to": "2024-01-01"}, "query.to"),  # the alias keeps the reports' two years
])
async def test_bad_input(survey_client, sgroup, path, params, field):  # type: ignore[no-untyped-def]
    r = await survey_client.get(path, params=params, headers=sgroup.headers(Role.ADMIN))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in r.json()["errors"]]


async def test_two_years_only_through_the_alias(survey_client, sgroup):  # type: ignore[no-untyped-def]
    params = {"from": "2023-02-01", "to": "2025-01-31"}
    r = await survey_client.get(ALIAS, params=params, headers=sgroup.headers(Role.ADMIN))
    assert r.status_code == 200 and r.content.startswith(b"\xef\xbb\xbf")
    r = await survey_client.get(RESPONSES, params={"from": "2024-02-01", "to": "2025-01-31"},
                                headers=sgroup.headers(Role.ADMIN))
    assert r.status_code == 200 and r.json() == []  # 366 days (a leap year) is allowed


async def test_a_large_export_streams_in_chunks(  # type: ignore[no-untyped-def]
        survey_client, survey_runtime, sgroup, sclock):
    g, rt, total = sgroup, survey_runtime, 3000
    sclock.now = datetime(2025, 2, 10, tzinfo=UTC)
    start = datetime(2024, 6, 1, 2, tzinfo=UTC)
    await add_cases(rt, [case(g, i, start + timedelta(minutes=i), description=f"第{i}号 " + "很长的描述" * 20)
                         for i in range(total)])
    await add_cases(rt, [case(g, i, start + timedelta(minutes=i), store="B") for i in range(50)])
    params = {"from": "2024-06-01", "to": "2024-06-30", "store_id": str(g.store_a)}
    app = create_service_app(rt)
    for fmt in ("csv", "json", "ndjson"):
        status, chunks = await asgi_chunks(app, CASES, {**params, "format": fmt}, g.headers(Role.CS_MANAGER))
        assert status == 200
        assert len(chunks) >= 10, (fmt, len(chunks))
        body = b"".join(chunks)
        rows = parse_export(fmt, body)
        assert len(rows) == total and {r["store_code"] for r in rows} == {"A"}
        assert [r["number"] for r in rows[:2]] == ["C202406-00000", "C202406-00001"]
        assert rows[-1]["number"] == f"C202406-{total - 1:05d}"


def test_an_item_named_like_a_response_column_never_overwrites_it() -> None:
    """Surveys saved before such ids were refused: their item gets a column of its own."""
    from survey_svc.exports.queries import RESPONSE_COLUMNS, item_column

    assert [item_column(i) for i in ("q1", "overall_score")] == ["q1", "item_overall_score"]
    assert "overall_score" in RESPONSE_COLUMNS and "item_overall_score" not in RESPONSE_COLUMNS


async def test_a_from_alone_too_early_names_from(survey_client, sgroup):  # type: ignore[no-untyped-def]
    """`to` defaults to today: the field to change is the one sent."""
    r = await survey_client.get(CASES, params={"from": "2000-01-01"}, headers=sgroup.headers(Role.CS_MANAGER))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.from", r.text
    assert "at the earliest" in r.json()["errors"][0]["message"]
