"""The follow-up completion export over real data: a delivery recorded through customer_svc, its plan fired by
the scheduler, the call finished in the database; then the same rows in every format, filters by period, store
and rule, store scoping for staff and integration keys, masking, bad input, and a large export in many chunks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from followup_svc.app import FollowupRuntime, create_service_app
from followup_svc.models import FollowUp, Rule, Task
from shared.auth.roles import Role
from shared.testing.exports import parse_export
from tests.conftest import Group
from tests.customer_svc.factories import integration_headers
from tests.followup_svc.conftest import advance, fire_all, followups, tasks
from tests.followup_svc.test_post_delivery import deliver, planned
from tests.followup_svc.test_reports import local_day
from tests.survey_svc.test_exports import all_formats, asgi_chunks, export

PATH = "/api/v1/followups/exports/completion"
SUMMARY = "客户很满意, 请回电 13812345678"


async def _plan(client, followup_runtime: FollowupRuntime, group: Group) -> dict:  # type: ignore[no-untyped-def]
    """A delivery in store A, its plan fired the next day, the 3-hour call done and reached; and one task created
    by hand."""
    _, vehicle_a, _ = await deliver(client, group)
    await planned(followup_runtime, group, vehicle_a["id"], 17)
    await advance(followup_runtime, timedelta(days=1))
    await fire_all(followup_runtime)
    [call] = await tasks(followup_runtime, group.tenant_id, rule_key="post_delivery_call_3h")
    async with followup_runtime.sessionmaker() as s, s.begin():
        await s.execute(sa.update(Task).where(Task.id == call.id).values(
            status="done", completed_at=followup_runtime.clock.now(), completed_by=call.assignee_id,
            escalate_at=None, outcome={"reached": "reached", "satisfaction": "satisfied", "comment_type": "praise",
                                       "follow_on": "none", "summary": SUMMARY}))
        by_hand = Task(tenant_id=group.tenant_id, store_id=group.store_a, occurrence_key=f"manual:{uuid.uuid4()}",
                       kind="call", title="回访", role="cs_agent", due_at=call.due_at + timedelta(minutes=1),
                       sla_due_at=call.due_at + timedelta(hours=8))
        s.add(by_hand)
    return {"call": call, "vehicle": vehicle_a, "by_hand": by_hand.id}


def _in_period(rows: list[FollowUp], first: str, last: str) -> list[FollowUp]:
    return [r for r in rows if first <= local_day(r.due_at).isoformat() <= last]


async def test_completion_in_every_format(client, followup_client, followup_runtime: FollowupRuntime,
                                          fgroup: Group) -> None:
    plan = await _plan(client, followup_runtime, fgroup)
    call = plan["call"]
    day = local_day(call.due_at)
    first, last = (day - timedelta(days=1)).isoformat(), (day + timedelta(days=7)).isoformat()
    params = {"from": first, "to": last}
    rows = await all_formats(followup_client, PATH, fgroup.headers(Role.SALES_MANAGER), **params)

    expected = _in_period(await followups(followup_runtime, fgroup.tenant_id, store_id=fgroup.store_a), first, last)
    occurrences = [r for r in rows if r["occurrence_id"] is not None]
    assert {r["occurrence_id"] for r in occurrences} == {str(f.id) for f in expected}
    assert [r["task_id"] for r in rows if r["occurrence_id"] is None] == [str(plan["by_hand"])]
    assert [r["due_at"] for r in rows] == sorted(r["due_at"] for r in rows)
    done = next(r for r in rows if r["task_id"] == str(call.id))
    assert {k: done[k] for k in ("rule_key", "store_code", "state", "task_kind", "task_status", "role",
                                 "assignee_name", "completed_by_name", "on_time", "attempts", "reached",
                                 "satisfaction", "comment_type", "summary", "customer_name")} == {
        "rule_key": "post_delivery_call_3h", "store_code": "A", "state": "fired", "task_kind": "call",
        "task_status": "done", "role": "sales_consultant", "assignee_name": "sales_consultant A",
        "completed_by_name": "sales_consultant A", "on_time": True, "attempts": 1, "reached": "reached",
        "satisfaction": "satisfied", "comment_type": "praise", "summary": SUMMARY, "customer_name": "测试客户"}
    assert done["due_at"].endswith("+08:00") and done["subject_type"] == "vehicle"
    # touches without a task (messages, survey commands, or not due yet): no SLA to keep
    untasked = [r for r in occurrences if r["task_id"] is None]
    assert untasked and all(r["on_time"] is None and r["task_status"] is None for r in untasked)
    assert len(occurrences) > 2

    # one rule; an integration key with followups:read (its store, masked personal data)
    _, only = await export(followup_client, PATH, "json", fgroup.headers(Role.ADMIN), **params,
                           rule="post_delivery_call_3h")
    assert [r["task_id"] for r in only] == [str(call.id)]
    _, pulled = await export(followup_client, PATH, "ndjson", integration_headers(fgroup, ["followups:read"]),
                             **params, rule="post_delivery_call_3h")
    assert (pulled[0]["customer_name"], pulled[0]["summary"]) == ("测***", "客户很满意, 请回电 138****5678")
    _, pulled = await export(followup_client, PATH, "json",
                             integration_headers(fgroup, ["followups:read", "pii:read"]), **params,
                             rule="post_delivery_call_3h")
    assert pulled[0]["summary"] == SUMMARY
    # another period holds none of it
    _, other = await export(followup_client, PATH, "csv", fgroup.headers(Role.ADMIN), **{
        "from": "2024-01-01", "to": "2024-01-31"})
    assert other == []


async def test_scope_and_access(client, followup_client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    plan = await _plan(client, followup_runtime, fgroup)
    day = local_day(plan["call"].due_at)
    params = {"from": (day - timedelta(days=1)).isoformat(), "to": day.isoformat()}
    _, mine = await export(followup_client, PATH, "json", fgroup.headers(Role.SALES_MANAGER), **params)
    assert mine and {r["store_code"] for r in mine} == {"A"}
    # store B's manager and an integration key of store B see nothing of store A
    for headers in (fgroup.headers(Role.SALES_MANAGER, "B"), integration_headers(fgroup, ["followups:read"], "B")):
        _, theirs = await export(followup_client, PATH, "json", headers, **params)
        assert theirs == []
    _, everything = await export(followup_client, PATH, "json", fgroup.headers(Role.CS_DIRECTOR, "B"), **params)
    assert len(everything) == len(mine)
    for headers, status in ((fgroup.headers(Role.SALES_CONSULTANT), 403), (fgroup.headers(Role.CS_AGENT), 403),
                            (integration_headers(fgroup, ["surveys:read", "complaints:read"]), 403), ({}, 401)):
        r = await followup_client.get(PATH, params=params, headers=headers)
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    for headers, store in ((integration_headers(fgroup, ["followups:read"]), fgroup.store_b),
                           (fgroup.headers(Role.SALES_MANAGER, "B"), fgroup.store_a)):
        r = await followup_client.get(PATH, params={**params, "store_id": str(store)}, headers=headers)
        assert r.status_code == 404, r.text


@pytest.mark.parametrize(("params", "field"), [
    ({"format": "xml"}, "query.format"),
    ({"from": "2024-01-01", "to": "2025-01-31"}, "query.to"),
    ({"from": "2025-02-01", "to": "2025-01-01"}, "query.to"),
    ({"from": "2025-02-30"}, "query.from"),
    ({"rule": "No Such Rule"}, "query.rule"),
])
async def test_bad_input(followup_client: httpx.AsyncClient, fgroup: Group, params: dict, field: str) -> None:
    r = await followup_client.get(PATH, params=params, headers=fgroup.headers(Role.ADMIN))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in r.json()["errors"]]


async def test_a_large_export_streams_in_chunks(followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    total = 2500
    async with followup_runtime.sessionmaker() as s, s.begin():
        rule = await s.scalar(sa.select(Rule).where(Rule.tenant_id == fgroup.tenant_id).limit(1))
        start = datetime(2024, 6, 1, 2, tzinfo=UTC)
        rows = [dict(tenant_id=fgroup.tenant_id, store_id=fgroup.stores[store], rule_id=rule.id, rule_key=rule.key,
                     occurrence_key=f"bulk:{store}:{i}", subject_type="customer", subject_id=uuid.uuid4(),
                     anchor_at=start, due_at=start + timedelta(minutes=i), state="skipped",
                     reason="stale: 3 days late")
                for store, n in (("A", total), ("B", 40)) for i in range(n)]
        await s.execute(sa.insert(FollowUp), rows)
    app = create_service_app(followup_runtime)
    params = {"from": "2024-06-01", "to": "2024-06-30", "store_id": str(fgroup.store_a)}
    for fmt in ("csv", "json", "ndjson"):
        status, chunks = await asgi_chunks(app, PATH, {**params, "format": fmt}, fgroup.headers(Role.CS_MANAGER))
        assert status == 200
        assert len(chunks) >= 10, (fmt, len(chunks))
        body = b"".join(chunks)
        got = parse_export(fmt, body)
        assert len(got) == total and {r["store_code"] for r in got} == {"A"}
        assert {r["state"] for r in got} == {"skipped"} and got[0]["due_at"] == "2024-06-01T10:00:00+08:00"
