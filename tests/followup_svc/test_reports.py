"""Follow-up reports over real data: deliveries and visits recorded through customer_svc, the plan fired by the
scheduler, tasks finished in the database (the tasks API is not used here), then exact figures per report."""

from __future__ import annotations

import csv
import io
import uuid
from collections import Counter
from datetime import date, datetime, timedelta

import httpx
import sqlalchemy as sa

from followup_svc.app import FollowupRuntime
from followup_svc.models import StaffView, Task
from shared.calendar import StoreCalendar
from followup_svc.scheduling.timing import sampled
from shared.auth.roles import Role
from shared.testing.waiting import eventually
from tests.conftest import Group
from tests.customer_svc.factories import integration_headers, new_vehicle
from tests.followup_svc.conftest import advance, fire_all, followups, tasks
from tests.followup_svc.test_post_delivery import deliver, planned

BASE = "/api/v1/reports/followup"
ENDPOINTS = ("daily-activity", "callbacks", "minor-repair-coverage", "followups/outcomes")
SHANGHAI = StoreCalendar()


def local_day(at: datetime) -> date:
    return SHANGHAI.local(at).date()


async def finish(runtime: FollowupRuntime, task_id: uuid.UUID, status: str, reached: str | None) -> None:
    """What completing a task records (status, when, outcome), written straight to the row."""
    async with runtime.sessionmaker() as s, s.begin():
        await s.execute(sa.update(Task).where(Task.id == task_id).values(
            status=status, completed_at=runtime.clock.now(), escalate_at=None, version=Task.version + 1,
            outcome={"reached": reached} if reached else {}))


async def get(fc: httpx.AsyncClient, group: Group, path: str, role: Role = Role.SALES_MANAGER, store: str = "A",
              **params: object) -> dict:
    resp = await fc.get(f"{BASE}/{path}", params={k.rstrip("_"): str(v) for k, v in params.items()},
                        headers=group.headers(role, store))
    assert resp.status_code == 200, resp.text
    return resp.json()


def counts(row: dict, *keys: str) -> dict:
    return {k: row[k] for k in keys}


ACTIVITY = ("due", "done", "failed", "open", "overdue", "reached", "customers_contacted")
CALLS = ("planned", "cancelled", "done", "done_on_time", "failed", "open", "overdue", "escalated", "reached",
         "not_reached", "completion_rate", "on_time_rate", "reach_rate")


async def test_daily_activity_and_callbacks_count_what_the_staff_did(
        client, followup_client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    deliveries = [await deliver(client, fgroup) for _ in range(3)]
    consultant = deliveries[0][2]
    for _, vehicle, _ in deliveries:
        await planned(followup_runtime, fgroup, vehicle["id"], 17)
    await advance(followup_runtime, timedelta(days=1))
    await fire_all(followup_runtime)
    calls = await tasks(followup_runtime, fgroup.tenant_id, rule_key="post_delivery_call_3h")
    assert len(calls) == 3 and {str(t.assignee_id) for t in calls} == {consultant}
    day = local_day(calls[0].due_at)
    assert {local_day(t.due_at) for t in calls} == {day}
    reached, failed, still_open = calls
    await finish(followup_runtime, reached.id, "done", "reached")
    await finish(followup_runtime, failed.id, "failed", "not_reached")

    report = await get(followup_client, fgroup, "daily-activity", day=day)
    assert report["day"] == day.isoformat() and report["store_id"] is None
    by_staff = {r["staff_id"]: r for r in report["rows"]}
    assert counts(by_staff[consultant], *ACTIVITY) == dict(due=3, done=1, failed=1, open=1, overdue=0, reached=1,
                                                           customers_contacted=2)
    assert by_staff[consultant]["role"] == "sales_consultant"
    assert by_staff[consultant]["staff_name"] == "sales_consultant A"
    # Every executor of store A has a row, idle ones with zeros; store B's staff are not in store A's report.
    assert {r["staff_name"] for r in report["rows"]} == {"sales_consultant A", "service_advisor A", "cs_agent A"}
    assert all(r[k] == 0 for r in report["rows"] if r["staff_id"] != consultant for k in ACTIVITY)
    assert counts(report["totals"], *ACTIVITY) == counts(by_staff[consultant], *ACTIVITY)

    expected = dict(planned=3, cancelled=0, done=1, done_on_time=1, failed=1, open=1, overdue=0, escalated=0,
                    reached=1, not_reached=1, completion_rate=0.3333, on_time_rate=0.3333, reach_rate=0.5)
    report = await get(followup_client, fgroup, "callbacks", from_=day, to=day)
    assert (report["from_date"], report["to_date"]) == (day.isoformat(), day.isoformat())
    assert counts(report["totals"], *CALLS) == expected
    assert [r["rule_key"] for r in report["by_rule"]] == ["post_delivery_call_3h"]
    assert counts(report["by_rule"][0], *CALLS) == expected
    assert [(r["staff_id"], r["role"]) for r in report["by_assignee"]] == [(consultant, "sales_consultant")]
    assert counts(report["by_assignee"][0], *CALLS) == expected

    # Two days on, the open call is past its SLA (8 h) and the SLA watch has escalated it.
    await advance(followup_runtime, timedelta(days=2))

    async def escalated() -> bool:
        return (await tasks(followup_runtime, fgroup.tenant_id, id=still_open.id))[0].escalation_level >= 1
    await eventually(escalated)
    report = await get(followup_client, fgroup, "callbacks", from_=day, to=day)
    assert counts(report["totals"], *CALLS) == {**expected, "overdue": 1, "escalated": 1}
    report = await get(followup_client, fgroup, "daily-activity", day=day + timedelta(days=1))
    by_staff = {r["staff_id"]: r for r in report["rows"]}
    assert counts(by_staff[consultant], *ACTIVITY) == dict(due=0, done=0, failed=0, open=0, overdue=1, reached=0,
                                                           customers_contacted=0)


async def test_reports_are_for_managers_and_scoped_to_their_stores(
        client, followup_client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    _, vehicle, _ = await deliver(client, fgroup)
    await planned(followup_runtime, fgroup, vehicle["id"], 17)
    await advance(followup_runtime, timedelta(days=1))
    await fire_all(followup_runtime)
    call = (await tasks(followup_runtime, fgroup.tenant_id, rule_key="post_delivery_call_3h"))[0]
    day = local_day(call.due_at).isoformat()
    store_a, store_b = str(fgroup.store_a), str(fgroup.store_b)

    for path in ENDPOINTS:
        for role in (Role.SALES_CONSULTANT, Role.SERVICE_ADVISOR, Role.CS_AGENT):
            resp = await followup_client.get(f"{BASE}/{path}", headers=fgroup.headers(role))
            assert resp.status_code == 403, (path, role, resp.text)
        resp = await followup_client.get(f"{BASE}/{path}", headers=integration_headers(fgroup, ["customers:read"]))
        assert resp.status_code == 403
        assert (await followup_client.get(f"{BASE}/{path}")).status_code == 401
        # A store outside the caller's scope is not found, whatever the caller's role.
        for role, store, other in ((Role.SERVICE_MANAGER, "B", store_a), (Role.ADMIN, "A", str(uuid.uuid4()))):
            resp = await followup_client.get(f"{BASE}/{path}", params={"store_id": other},
                                             headers=fgroup.headers(role, store))
            assert resp.status_code == 404, (path, resp.text)
            assert resp.headers["content-type"].startswith("application/problem+json")

    def planned_calls(report: dict) -> int:
        return report["totals"]["planned"]

    for role, store, params, seen in (
            (Role.SHOWROOM_MANAGER, "A", {}, 1), (Role.CS_MANAGER, "A", {"store_id": store_a}, 1),
            (Role.SALES_MANAGER, "B", {}, 0),  # store B's manager: nothing of store A
            (Role.ADMIN, "B", {}, 1), (Role.CS_DIRECTOR, "B", {}, 1),  # group-wide roles see every store
            (Role.ADMIN, "A", {"store_id": store_b}, 0)):
        report = await get(followup_client, fgroup, "callbacks", role, store, from_=day, to=day, **params)
        assert planned_calls(report) == seen, (role, store, params)
    report = await get(followup_client, fgroup, "daily-activity", Role.SALES_MANAGER, "B", day=day)
    assert {r["staff_name"] for r in report["rows"]} == {"sales_consultant B", "service_advisor B", "cs_agent B"}
    assert report["totals"]["due"] == 0
    report = await get(followup_client, fgroup, "daily-activity", Role.ADMIN, "A", day=day)
    assert len(report["rows"]) == 6 and report["totals"]["due"] == 1


async def test_csv_has_a_bom_a_header_row_and_the_json_rows(
        client, followup_client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    await deliver(client, fgroup)
    await eventually(lambda: followups(followup_runtime, fgroup.tenant_id, rule_key="post_delivery_call_3h"))
    await advance(followup_runtime, timedelta(days=1))
    await fire_all(followup_runtime)
    call = (await tasks(followup_runtime, fgroup.tenant_id, rule_key="post_delivery_call_3h"))[0]
    planned_call = (await followups(followup_runtime, fgroup.tenant_id, rule_key="post_delivery_call_3h"))[0]
    await finish(followup_runtime, call.id, "done", "reached")
    day = local_day(call.due_at).isoformat()
    params = {"from": day, "to": day}

    resp = await followup_client.get(f"{BASE}/callbacks", params={**params, "format": "csv"},
                                     headers=fgroup.headers(Role.SALES_MANAGER))
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "text/csv; charset=utf-8"
    assert resp.headers["content-disposition"] == f'attachment; filename="followup-callbacks-{day}_{day}.csv"'
    assert resp.content.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(resp.content.decode("utf-8-sig"))))
    assert table[0] == ["section", "rule_key", *CALLS, "staff_id", "staff_name", "role"]
    rows = [dict(zip(table[0], line)) for line in table[1:]]
    assert [r["section"] for r in rows] == ["rule", "assignee", "total"]
    assert rows[0]["rule_key"] == "post_delivery_call_3h" and rows[0]["staff_id"] == ""
    assert rows[1]["staff_name"] == "sales_consultant A" and rows[1]["rule_key"] == ""
    assert all(r["planned"] == "1" and r["done"] == "1" and r["completion_rate"] == "1.0" for r in rows)
    assert rows[2]["reach_rate"] == "1.0"

    for path, first_column, sections in (
            ("daily-activity", "section", {"staff", "total"}),
            ("minor-repair-coverage", "section", {"store", "total"}),
            ("followups/outcomes", "section", {"rule", "total"})):
        # The occurrence may have been due the day before its task (the task is due when it was created).
        occurrence_day = local_day(planned_call.due_at).isoformat()
        query = {"day": day} if path == "daily-activity" else {"from": min(occurrence_day, day), "to": day}
        resp = await followup_client.get(f"{BASE}/{path}", params={**query, "format": "csv"},
                                         headers=fgroup.headers(Role.ADMIN))
        assert resp.status_code == 200 and resp.content.startswith(b"\xef\xbb\xbf"), path
        table = list(csv.reader(io.StringIO(resp.content.decode("utf-8-sig"))))
        assert table[0][0] == first_column
        json_report = await get(followup_client, fgroup, path, Role.ADMIN, **query)
        assert sections <= {line[0] for line in table[1:]}, path
        if path == "minor-repair-coverage":
            assert table[0] == ["section", "store_id", "store_name", "minor_repair_visits", "sampled", "callbacks_done",
                                "reached", "coverage", "meets_target"]
            assert len(table) == 1 + len(json_report["stores"]) + 1
        if path == "daily-activity":
            assert len(table) == 1 + len(json_report["rows"]) + 1

    # A name that a spreadsheet would run as a formula is written as text, as in the exports.
    formula = '=HYPERLINK("http://example.invalid","点击")'
    async with followup_runtime.sessionmaker() as session, session.begin():
        await session.execute(sa.update(StaffView).where(StaffView.id == call.assignee_id).values(name=formula))
    resp = await followup_client.get(f"{BASE}/callbacks", params={**params, "format": "csv"},
                                     headers=fgroup.headers(Role.SALES_MANAGER))
    table = list(csv.reader(io.StringIO(resp.content.decode("utf-8-sig"))))
    assert [dict(zip(table[0], line))["staff_name"] for line in table[1:]] == ["", "'" + formula, ""]


async def test_bad_dates_and_parameters_are_422_naming_the_field(followup_client, fgroup: Group) -> None:
    cases = [
        ("callbacks", {"from": "2026-13-01"}, "query.from"),
        ("callbacks", {"to": "yesterday"}, "query.to"),
        ("callbacks", {"from": "20260101"}, "query.from"),
        ("callbacks", {"from": "2026-03-10", "to": "2026-03-01"}, "query.to"),
        ("minor-repair-coverage", {"from": "2025-01-01", "to": "2026-01-02"}, "query.to"),
        ("followups/outcomes", {"from": "1900-01-01", "to": "1900-01-31"}, "query.from"),
        ("followups/outcomes", {"from": "2026-01-01", "to": "9999-12-31"}, "query.to"),
        ("callbacks", {"from": "2099-01-01"}, "query.from"),  # after `to` (today by default)
        ("daily-activity", {"day": "2026-02-30"}, "query.day"),
        ("daily-activity", {"day": "0001-01-01"}, "query.day"),
        ("daily-activity", {"format": "xlsx"}, "query.format"),
        ("callbacks", {"store_id": "store-a"}, "query.store_id"),
    ]
    for path, params, field in cases:
        resp = await followup_client.get(f"{BASE}/{path}", params=params, headers=fgroup.headers(Role.CS_MANAGER))
        assert resp.status_code == 422, (path, params, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in resp.json()["errors"]] == [field], (path, params, resp.json())
    # A whole leap year is fine; the default period is this month so far.
    report = await get(followup_client, fgroup, "callbacks", Role.CS_MANAGER, from_="2024-01-01", to="2024-12-31")
    assert report["totals"]["planned"] == 0 and report["totals"]["completion_rate"] is None
    report = await get(followup_client, fgroup, "followups/outcomes", Role.CS_MANAGER)
    assert report["from_date"][8:] == "01" and report["to_date"][:7] == report["from_date"][:7]


async def test_minor_repair_coverage_counts_visits_and_reached_callbacks(
        client, followup_client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    vehicle = await new_vehicle(client, fgroup)
    advisor = fgroup.headers(Role.SERVICE_ADVISOR)

    async def visit(visit_type: str) -> str:
        resp = await client.post("/api/v1/visits", headers=advisor, json={
            "vehicle_id": vehicle["id"], "visit_type": visit_type,
            "completed_at": datetime.now().astimezone().isoformat()})
        assert resp.status_code == 201, resp.text
        return resp.json()["id"]

    minor: list[str] = []
    while len(minor) < 4 or sum(sampled(uuid.UUID(v), 35) for v in minor) < 2:
        minor.append(await visit("minor_repair"))
        assert len(minor) < 40
    await visit("maintenance")  # another visit type: not in the coverage
    picked = {v for v in minor if sampled(uuid.UUID(v), 35)}

    async def all_planned():  # type: ignore[no-untyped-def]
        rows = await followups(followup_runtime, fgroup.tenant_id, rule_key="service_thanks")
        return rows if len(rows) == len(minor) + 1 else None
    thanks = await eventually(all_planned)
    day = local_day(thanks[0].anchor_at)
    callbacks = await followups(followup_runtime, fgroup.tenant_id, rule_key="minor_repair_callback")
    assert {str(r.subject_id) for r in callbacks} == picked

    # Day by day (the callback is 3 working days later at 10:00, stale after 10 days) until every one fired.
    for _ in range(14):
        pending = [r for r in await followups(followup_runtime, fgroup.tenant_id, rule_key="minor_repair_callback")
                   if r.state == "scheduled"]
        if not pending:
            break
        await advance(followup_runtime, timedelta(days=1))
        await fire_all(followup_runtime)
    calls = await tasks(followup_runtime, fgroup.tenant_id, rule_key="minor_repair_callback")
    assert len(calls) == len(picked) and all(t.role == "cs_agent" for t in calls)
    await finish(followup_runtime, calls[0].id, "done", "reached")
    await finish(followup_runtime, calls[1].id, "done", "not_reached")

    report = await get(followup_client, fgroup, "minor-repair-coverage", Role.CS_MANAGER, from_=day, to=day)
    coverage = round(1 / len(minor), 4)
    expected = dict(minor_repair_visits=len(minor), sampled=len(picked), callbacks_done=2, reached=1,
                    coverage=coverage, meets_target=coverage >= 0.30)
    assert report["target"] == 0.3
    assert [r["store_id"] for r in report["stores"]] == [str(fgroup.store_a)]
    assert {k: report["stores"][0][k] for k in expected} == expected
    assert report["stores"][0]["store_name"] == "Store A"
    assert {k: report["total"][k] for k in expected} == expected
    # The group's view: both stores, store B without visits (no coverage to judge).
    report = await get(followup_client, fgroup, "minor-repair-coverage", Role.ADMIN, from_=day, to=day)
    by_store = {r["store_name"]: r for r in report["stores"]}
    assert set(by_store) == {"Store A", "Store B"}
    assert by_store["Store B"]["minor_repair_visits"] == 0 and by_store["Store B"]["coverage"] is None
    assert by_store["Store B"]["meets_target"] is None
    assert {k: report["total"][k] for k in expected} == expected
    # Outside the period: nothing.
    report = await get(followup_client, fgroup, "minor-repair-coverage", Role.CS_MANAGER,
                       from_=day - timedelta(days=30), to=day - timedelta(days=1))
    assert report["total"]["minor_repair_visits"] == 0


async def test_outcomes_say_why_touches_did_not_happen(
        client, followup_client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    vehicles = [(await deliver(client, fgroup))[1], (await deliver(client, fgroup, do_not_call=True))[1]]
    for v in vehicles:
        await planned(followup_runtime, fgroup, v["id"], 17)
    # Five days at once: the 3-hour call and the thank-you SMS are too late (stale after 2 and 3 days); the
    # day-3 call fires for one customer and is skipped for the one who asked not to be called.
    await advance(followup_runtime, timedelta(days=5))
    await fire_all(followup_runtime)
    rows = await followups(followup_runtime, fgroup.tenant_id)
    by_key = {(r.rule_key, r.vehicle_id and str(r.vehicle_id), r.step): r for r in rows}
    for v in vehicles:
        for key in ("post_delivery_call_3h", "post_delivery_thanks_sms"):
            assert by_key[(key, v["id"], 0)].state == "skipped"
            assert by_key[(key, v["id"], 0)].reason.startswith("stale: ")
    assert by_key[("post_delivery_calls", vehicles[0]["id"], 0)].state == "fired"
    dnc = by_key[("post_delivery_calls", vehicles[1]["id"], 0)]
    assert (dnc.state, dnc.reason) == ("skipped", "customer asked not to be called")

    watched = [by_key[(k, v["id"], 0)] for k in ("post_delivery_call_3h", "post_delivery_thanks_sms",
                                                   "post_delivery_calls") for v in vehicles]
    first, last = min(local_day(r.due_at) for r in watched), max(local_day(r.due_at) for r in watched)
    report = await get(followup_client, fgroup, "followups/outcomes", Role.CS_MANAGER, from_=first, to=last)
    in_period = [r for r in rows if first <= local_day(r.due_at) <= last]
    expected = Counter((r.rule_key, r.state) for r in in_period)
    states = ("scheduled", "fired", "skipped", "cancelled", "failed")
    for entry in report["by_rule"]:
        assert {s: entry[s] for s in states} == {s: expected[(entry["rule_key"], s)] for s in states}
        assert entry["total"] == sum(entry[s] for s in states)
    assert {e["rule_key"] for e in report["by_rule"]} == {r.rule_key for r in in_period}
    assert report["totals"]["total"] == len(in_period)
    assert {k: v for k, v in report["totals"].items()} == {**{s: sum(1 for r in in_period if r.state == s)
                                                              for s in states}, "total": len(in_period)}
    by_rule = {e["rule_key"]: e for e in report["by_rule"]}
    assert by_rule["post_delivery_call_3h"]["skipped"] == 2 and by_rule["post_delivery_thanks_sms"]["skipped"] == 2
    assert by_rule["post_delivery_calls"]["fired"] >= 1 and by_rule["post_delivery_calls"]["skipped"] >= 1
    reasons = {(e["state"], e["reason"]): e["count"] for e in report["top_reasons"]}
    stale = sum(1 for r in in_period if r.reason and r.reason.startswith("stale: "))
    assert stale >= 4 and reasons[("skipped", "stale (too late)")] == stale
    assert reasons[("skipped", "customer asked not to be called")] == sum(
        1 for r in in_period if r.reason == "customer asked not to be called")
    counts_desc = [e["count"] for e in report["top_reasons"]]
    assert counts_desc == sorted(counts_desc, reverse=True)
    # Store B's manager sees none of it.
    report = await get(followup_client, fgroup, "followups/outcomes", Role.SERVICE_MANAGER, "B", from_=first, to=last)
    assert report["totals"]["total"] == 0 and report["by_rule"] == [] and report["top_reasons"] == []
