"""The playbook API over real HTTP: the rules in force, store overrides, new versions and what they do to the
occurrences already planned, the cross-rule checks, who may write, and a bad rule never stalling the scheduler."""

from __future__ import annotations

import copy
import uuid
from datetime import date, timedelta

import httpx
import sqlalchemy as sa

from followup_svc.app import FollowupRuntime
from followup_svc.models import AuditEntry, FollowUp, Rule, StoreView
from followup_svc.playbooks.defaults import DEFAULT_RULES
from followup_svc.playbooks.schemas import RuleDefinition
from followup_svc.scheduling import timing
from followup_svc.scheduling.planner import calendar_of
from shared.auth.roles import Role
from shared.testing.events import EventTap
from tests.conftest import Group
from tests.customer_svc.factories import new_customer, new_vehicle, staff_id
from tests.followup_svc.conftest import advance, fire_all, followups, local_today, tasks
from tests.followup_svc.test_post_delivery import planned

RULES = "/api/v1/playbook/rules"
CALLS = "post_delivery_calls"


def default(key: str) -> dict:
    return copy.deepcopy(DEFAULT_RULES[key].model_dump(mode="json"))


def chained(after: str, name: str = "chained call") -> dict:
    return {"name": name, "trigger": "rule.fired", "conditions": {"after_rule": after},
            "schedule": {"offsets": [{"days": 1}]},
            "action": {"kind": "task", "title": name, "role": "cs_agent"}}


async def deliver_in(client: httpx.AsyncClient, group: Group, store: str, day: date | None = None) -> dict:
    consultant = await staff_id(client, group, Role.SALES_CONSULTANT, store)
    customer = await new_customer(client, group, store, relationship_type="owner")
    vehicle = await new_vehicle(client, group, customer["id"], selling_consultant_id=consultant)
    resp = await client.post(f"/api/v1/vehicles/{vehicle['id']}/delivery",
                             json={"delivery_date": (day or local_today()).isoformat()},
                             headers=group.headers(Role.ADMIN))
    assert resp.status_code == 200, resp.text
    return vehicle


async def calls_of(runtime: FollowupRuntime, group: Group, vehicle: dict, minimum: int = 4) -> list[FollowUp]:
    await planned(runtime, group, vehicle["id"], 17)
    rows = await followups(runtime, group.tenant_id, vehicle_id=uuid.UUID(vehicle["id"]), rule_key=CALLS)
    assert len(rows) >= minimum
    return sorted(rows, key=lambda r: r.step)


async def etag(fc: httpx.AsyncClient, group: Group, key: str, **params: str) -> str:
    resp = await fc.get(f"{RULES}/{key}", params=params, headers=group.headers(Role.CS_AGENT))
    assert resp.status_code == 200, resp.text
    return resp.headers["ETag"]


async def put_rule(fc: httpx.AsyncClient, group: Group, key: str, definition: dict, pending: str,
                   enabled: bool = True, role: Role = Role.CS_DIRECTOR, **params: str) -> httpx.Response:
    tag = await etag(fc, group, key, **params)
    return await fc.put(f"{RULES}/{key}", params=params, json={
        "definition": definition, "enabled": enabled, "change_note": "test change", "pending": pending},
        headers=group.headers(role, **{"If-Match": tag}))


def field_of(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    return [e["field"] for e in resp.json()["errors"]]


# --- reading ---------------------------------------------------------------------------------------------------


async def test_every_staff_member_reads_the_default_playbook(followup_client, fgroup: Group) -> None:
    resp = await followup_client.get(RULES, headers=fgroup.headers(Role.SALES_CONSULTANT, "B"))
    assert resp.status_code == 200, resp.text
    rules = resp.json()
    assert len(rules) == 41 and {r["key"] for r in rules} == set(DEFAULT_RULES)
    assert all(r["scope"] == "*" and r["version"] == 1 and r["enabled"] and r["retired_at"] is None for r in rules)
    delivered = (await followup_client.get(RULES, params={"trigger": "vehicle.delivered"},
                                           headers=fgroup.headers(Role.CS_AGENT))).json()
    assert {r["key"] for r in delivered} == {k for k, d in DEFAULT_RULES.items() if d.trigger == "vehicle.delivered"}
    one = await followup_client.get(f"{RULES}/{CALLS}", headers=fgroup.headers(Role.CS_AGENT))
    assert one.status_code == 200 and one.headers["ETag"] == 'W/"1"'
    assert one.json()["definition"]["schedule"]["offsets"][0] == {"months": 0, "days": 3, "hours": 0, "minutes": 0}
    missing = await followup_client.get(f"{RULES}/no_such_rule", headers=fgroup.headers(Role.CS_AGENT))
    assert missing.status_code == 404
    bad = await followup_client.get(RULES, params={"trigger": "nope"}, headers=fgroup.headers(Role.CS_AGENT))
    assert field_of(bad) == ["query.trigger"]
    # Another store's effective set is out of scope for a store-A executor.
    out = await followup_client.get(RULES, params={"store_id": str(fgroup.store_b)},
                                    headers=fgroup.headers(Role.CS_AGENT, "A"))
    assert out.status_code == 404


# --- store overrides ---------------------------------------------------------------------------------------------


async def test_a_store_override_changes_the_effective_set_of_that_store_only(
        client, followup_client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    override = default(CALLS)
    override["name"] = "A店提车回访(2次)"
    override["schedule"]["offsets"] = [{"days": 2}, {"days": 10}]
    resp = await followup_client.post(RULES, json={"key": CALLS, "store_id": str(fgroup.store_a),
                                                   "definition": override, "change_note": "store A cadence"},
                                      headers=fgroup.headers(Role.SALES_MANAGER, "A", **{"Idempotency-Key": "ov-1"}))
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["scope"] == str(fgroup.store_a) and created["version"] == 1 and resp.headers["ETag"] == 'W/"1"'
    assert resp.headers["Location"] == f"{RULES}/{CALLS}?store_id={fgroup.store_a}"
    replay = await followup_client.post(RULES, json={"key": CALLS, "store_id": str(fgroup.store_a),
                                                     "definition": override, "change_note": "store A cadence"},
                                        headers=fgroup.headers(Role.SALES_MANAGER, "A", **{"Idempotency-Key": "ov-1"}))
    assert replay.status_code == 201 and replay.json()["id"] == created["id"]
    assert replay.headers["Idempotent-Replayed"] == "true"
    again = await followup_client.post(RULES, json={"key": CALLS, "store_id": str(fgroup.store_a),
                                                    "definition": override},
                                       headers=fgroup.headers(Role.SALES_MANAGER, "A"))
    assert again.status_code == 409 and again.json()["existing_id"] == created["id"]

    in_a = {r["key"]: r for r in (await followup_client.get(RULES, params={"store_id": str(fgroup.store_a)},
                                                            headers=fgroup.headers(Role.CS_AGENT, "A"))).json()}
    in_b = {r["key"]: r for r in (await followup_client.get(RULES, params={"store_id": str(fgroup.store_b)},
                                                            headers=fgroup.headers(Role.CS_AGENT, "B"))).json()}
    group = {r["key"]: r for r in (await followup_client.get(RULES, headers=fgroup.headers(Role.CS_AGENT))).json()}
    assert len(in_a) == len(in_b) == len(group) == 41
    assert in_a[CALLS]["id"] == created["id"] and in_a[CALLS]["scope"] == str(fgroup.store_a)
    assert in_b[CALLS]["scope"] == "*" and group[CALLS]["id"] == in_b[CALLS]["id"]
    effective = await followup_client.get(f"{RULES}/{CALLS}", params={"store_id": str(fgroup.store_a)},
                                          headers=fgroup.headers(Role.CS_AGENT))
    assert effective.json()["id"] == created["id"]

    vehicle_a, vehicle_b = await deliver_in(client, fgroup, "A"), await deliver_in(client, fgroup, "B")
    rows_a = await calls_of(followup_runtime, fgroup, vehicle_a, minimum=2)
    rows_b = await calls_of(followup_runtime, fgroup, vehicle_b)
    assert {str(r.rule_id) for r in rows_a} == {created["id"]} and [r.step for r in rows_a] == [0, 1]
    assert {str(r.rule_id) for r in rows_b} == {group[CALLS]["id"]} and [r.step for r in rows_b] == [0, 1, 2, 3]

    # Removing the override: the group rule applies in store A again; its pending occurrences move to it.
    no_tag = await followup_client.delete(f"{RULES}/{CALLS}", params={"store_id": str(fgroup.store_a)},
                                          headers=fgroup.headers(Role.SALES_MANAGER, "A"))
    assert no_tag.status_code == 428
    removed = await followup_client.delete(
        f"{RULES}/{CALLS}", params={"store_id": str(fgroup.store_a), "pending": "reschedule"},
        headers=fgroup.headers(Role.SALES_MANAGER, "A", **{"If-Match": 'W/"1"'}))
    assert removed.status_code == 200, removed.text
    assert removed.json()["retired_at"] is not None and removed.json()["pending_rescheduled"] == 2
    after = await followup_client.get(f"{RULES}/{CALLS}", params={"store_id": str(fgroup.store_a)},
                                      headers=fgroup.headers(Role.CS_AGENT))
    assert after.json()["scope"] == "*"
    rows_a = await followups(followup_runtime, fgroup.tenant_id, vehicle_id=uuid.UUID(vehicle_a["id"]), rule_key=CALLS)
    assert {str(r.rule_id) for r in rows_a} == {group[CALLS]["id"]}
    # The group rule itself is never deleted.
    refused = await followup_client.delete(f"{RULES}/{CALLS}", headers=fgroup.headers(Role.ADMIN, **{"If-Match": "*"}))
    assert refused.status_code == 422 and "enabled=false" in refused.json()["detail"]
    versions = await followup_client.get(f"{RULES}/{CALLS}/versions", params={"store_id": str(fgroup.store_a)},
                                         headers=fgroup.headers(Role.CS_AGENT))
    assert [v["version"] for v in versions.json()] == [1]


async def test_who_may_write_rules(followup_client, fgroup: Group) -> None:
    body = {"key": "extra_call", "definition": chained("maintenance_reminder")}
    for role in (Role.SALES_CONSULTANT, Role.SERVICE_ADVISOR, Role.CS_AGENT, Role.SHOWROOM_MANAGER):
        resp = await followup_client.post(RULES, json=body, headers=fgroup.headers(role))
        assert resp.status_code == 403, (role, resp.text)
    # Store managers override for their store; the group's playbook is the CS director's and the admin's.
    resp = await followup_client.post(RULES, json=body, headers=fgroup.headers(Role.SALES_MANAGER))
    assert resp.status_code == 403
    override = {"key": CALLS, "store_id": str(fgroup.store_a), "definition": default(CALLS)}
    resp = await followup_client.post(RULES, json=override, headers=fgroup.headers(Role.SERVICE_MANAGER, "B"))
    assert resp.status_code == 404
    put = await followup_client.put(f"{RULES}/{CALLS}", json={"definition": default(CALLS), "pending": "keep"},
                                    headers=fgroup.headers(Role.CS_MANAGER, **{"If-Match": 'W/"1"'}))
    assert put.status_code == 403
    ok = await followup_client.post(RULES, json=body, headers=fgroup.headers(Role.CS_DIRECTOR))
    assert ok.status_code == 201, ok.text
    unknown_store = await followup_client.post(RULES, json={**override, "store_id": str(uuid.uuid4())},
                                               headers=fgroup.headers(Role.ADMIN))
    assert unknown_store.status_code == 404
    new_key_override = await followup_client.post(RULES, json={"key": "not_in_group", "store_id": str(fgroup.store_a),
                                                               "definition": default(CALLS)},
                                                  headers=fgroup.headers(Role.SALES_MANAGER))
    assert field_of(new_key_override) == ["body.key"]
    other_trigger = {**override, "definition": default("service_callback")}
    assert field_of(await followup_client.post(RULES, json=other_trigger, headers=fgroup.headers(Role.SALES_MANAGER))
                    ) == ["body.definition.trigger"]


# --- new versions and pending occurrences --------------------------------------------------------------------------


async def test_reschedule_moves_pending_occurrences_to_the_new_offsets(
        client, followup_client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    vehicle = await deliver_in(client, fgroup, "A")
    old_history = await deliver_in(client, fgroup, "A", day=local_today() - timedelta(days=400))
    before = await calls_of(followup_runtime, fgroup, vehicle)
    history = await calls_of(followup_runtime, fgroup, old_history)
    assert all(r.state == "skipped" for r in history)
    changed = default(CALLS)
    changed["schedule"]["offsets"] = [{"days": 2}, {"days": 5}]
    resp = await put_rule(followup_client, fgroup, CALLS, changed, "reschedule")
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert result["version"] == 2 and resp.headers["ETag"] == 'W/"2"'
    assert result["pending_rescheduled"] == 2 and result["pending_cancelled"] == 2 and result["pending_kept"] == 0
    after = {r.step: r for r in await followups(followup_runtime, fgroup.tenant_id,
                                                vehicle_id=uuid.UUID(vehicle["id"]), rule_key=CALLS)}
    async with followup_runtime.sessionmaker() as s:
        calendar = calendar_of(await s.get(StoreView, fgroup.store_a))
    new_def = RuleDefinition.model_validate(changed)
    for step in (0, 1):
        row = after[step]
        assert row.state == "scheduled" and str(row.rule_id) == result["id"]
        assert row.due_at == timing.due_time(new_def, before[step].anchor_at, step, calendar)
    assert timedelta(days=1) < after[0].due_at - after[0].anchor_at < before[0].due_at - before[0].anchor_at
    for step in (2, 3):
        assert after[step].state == "cancelled" and "has no such step" in after[step].reason
        assert after[step].rule_id == before[step].rule_id
    # History is never rewritten.
    untouched = await followups(followup_runtime, fgroup.tenant_id, vehicle_id=uuid.UUID(old_history["id"]),
                                rule_key=CALLS)
    assert [(r.state, r.reason, r.due_at, r.rule_id) for r in untouched] == \
        [(r.state, r.reason, r.due_at, r.rule_id) for r in history]
    listed = (await followup_client.get(RULES, params={"include_retired": "true"},
                                        headers=fgroup.headers(Role.CS_AGENT))).json()
    versions = [(r["version"], r["retired_at"] is None) for r in listed if r["key"] == CALLS]
    assert versions == [(2, True), (1, False)]
    # Audited: the retired version and the new one.
    async with followup_runtime.sessionmaker() as s:
        actions = set((await s.execute(sa.select(AuditEntry.action, AuditEntry.record_type).where(
            AuditEntry.tenant_id == fgroup.tenant_id, AuditEntry.record_type == "rule"))).all())
    assert {("retire", "rule"), ("create", "rule")} <= actions


async def test_cancel_cancels_pending_occurrences_with_the_reason(
        client, followup_client, followup_runtime: FollowupRuntime, fgroup: Group, event_tap: EventTap) -> None:
    vehicle = await deliver_in(client, fgroup, "A")
    await calls_of(followup_runtime, fgroup, vehicle)
    changed = default(CALLS)
    changed["sla_hours"] = 24
    resp = await put_rule(followup_client, fgroup, CALLS, changed, "cancel")
    assert resp.status_code == 200 and resp.json()["pending_cancelled"] == 4
    rows = await followups(followup_runtime, fgroup.tenant_id, vehicle_id=uuid.UUID(vehicle["id"]), rule_key=CALLS)
    assert {(r.state, r.reason) for r in rows} == {("cancelled", f"rule {CALLS} changed to v2: pending cancelled")}
    told = await event_tap.wait_for("followup.occurrence.skipped.v1", subject=str(rows[0].id))
    assert told[0].data["state"] == "cancelled" and told[0].data["reason"] == rows[0].reason


async def test_keep_leaves_pending_on_the_old_version_which_fires_with_its_own_definition(
        client, followup_client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    vehicle = await deliver_in(client, fgroup, "A")
    before = await calls_of(followup_runtime, fgroup, vehicle)
    old_title = DEFAULT_RULES[CALLS].action.title
    changed = default(CALLS)
    changed["action"]["title"] = "新版回访标题"
    resp = await put_rule(followup_client, fgroup, CALLS, changed, "keep")
    assert resp.status_code == 200 and resp.json()["pending_kept"] == 4
    rows = await followups(followup_runtime, fgroup.tenant_id, vehicle_id=uuid.UUID(vehicle["id"]), rule_key=CALLS)
    assert {r.rule_id for r in rows} == {before[0].rule_id} and all(r.state == "scheduled" for r in rows)
    # A delivery after the change is planned by the new version.
    later = await deliver_in(client, fgroup, "A")
    assert {str(r.rule_id) for r in await calls_of(followup_runtime, fgroup, later)} == {resp.json()["id"]}

    await advance(followup_runtime, before[0].due_at - followup_runtime.clock.now() + timedelta(minutes=5))
    await fire_all(followup_runtime)
    made = await tasks(followup_runtime, fgroup.tenant_id, vehicle_id=uuid.UUID(vehicle["id"]), rule_key=CALLS)
    assert [t.title for t in made] == [old_title]


async def test_a_disabled_version_keeps_or_cancels_pending_occurrences(
        client, followup_client, followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    vehicle = await deliver_in(client, fgroup, "A")
    await calls_of(followup_runtime, fgroup, vehicle)
    resp = await put_rule(followup_client, fgroup, CALLS, default(CALLS), "keep", enabled=False)
    assert resp.status_code == 200 and resp.json()["enabled"] is False and resp.json()["pending_kept"] == 4
    listed = {r["key"]: r for r in (await followup_client.get(RULES, headers=fgroup.headers(Role.CS_AGENT))).json()}
    assert listed[CALLS]["enabled"] is False
    # The kept rows belong to v1, not v2: changing v2 again leaves them alone.
    resp = await put_rule(followup_client, fgroup, CALLS, default(CALLS), "reschedule", enabled=False)
    assert resp.status_code == 200 and resp.json()["pending_rescheduled"] == 0
    # A fresh delivery plans nothing from the disabled rule.
    later = await deliver_in(client, fgroup, "A")
    await planned(followup_runtime, fgroup, later["id"], 13)
    assert await followups(followup_runtime, fgroup.tenant_id, vehicle_id=uuid.UUID(later["id"]), rule_key=CALLS) == []
    # Enabled again, then disabled with reschedule: the pending ones are cancelled, the reason says why.
    resp = await put_rule(followup_client, fgroup, CALLS, default(CALLS), "keep")
    third = await deliver_in(client, fgroup, "A")
    await calls_of(followup_runtime, fgroup, third)
    resp = await put_rule(followup_client, fgroup, CALLS, default(CALLS), "reschedule", enabled=False)
    assert resp.status_code == 200 and resp.json()["pending_cancelled"] == 4
    rows = await followups(followup_runtime, fgroup.tenant_id, vehicle_id=uuid.UUID(third["id"]), rule_key=CALLS)
    assert all(r.state == "cancelled" and "disabled" in r.reason for r in rows)


async def test_if_match_is_required_and_must_be_current(followup_client, fgroup: Group) -> None:
    body = {"definition": default(CALLS), "pending": "keep"}
    missing = await followup_client.put(f"{RULES}/{CALLS}", json=body, headers=fgroup.headers(Role.ADMIN))
    assert missing.status_code == 428
    stale = await followup_client.put(f"{RULES}/{CALLS}", json=body,
                                      headers=fgroup.headers(Role.ADMIN, **{"If-Match": 'W/"7"'}))
    assert stale.status_code == 412
    no_pending = await followup_client.put(f"{RULES}/{CALLS}", json={"definition": default(CALLS)},
                                           headers=fgroup.headers(Role.ADMIN, **{"If-Match": 'W/"1"'}))
    assert field_of(no_pending) == ["body.pending"]
    ok = await followup_client.put(f"{RULES}/{CALLS}", json=body,
                                   headers=fgroup.headers(Role.ADMIN, **{"If-Match": 'W/"1"'}))
    assert ok.status_code == 200
    repeat = await followup_client.put(f"{RULES}/{CALLS}", json=body,
                                       headers=fgroup.headers(Role.ADMIN, **{"If-Match": 'W/"1"'}))
    assert repeat.status_code == 412


# --- cross-rule checks ------------------------------------------------------------------------------------------------


async def test_chained_rules_must_follow_a_rule_and_never_loop(followup_client, fgroup: Group) -> None:
    admin = fgroup.headers(Role.CS_DIRECTOR)
    unknown = await followup_client.post(RULES, json={"key": "chain_x", "definition": chained("no_such_rule")},
                                         headers=admin)
    assert field_of(unknown) == ["body.definition.conditions.after_rule"]
    itself = await followup_client.post(RULES, json={"key": "chain_self", "definition": chained("chain_self")},
                                        headers=admin)
    assert field_of(itself) == ["body.definition.conditions.after_rule"]
    a = await followup_client.post(RULES, json={"key": "chain_a", "definition": chained("maintenance_reminder")},
                                   headers=admin)
    assert a.status_code == 201, a.text
    b = await followup_client.post(RULES, json={"key": "chain_b", "definition": chained("chain_a")}, headers=admin)
    assert b.status_code == 201, b.text
    loop = await put_rule(followup_client, fgroup, "chain_a", chained("chain_b"), "keep")
    assert field_of(loop) == ["body.definition.conditions.after_rule"]
    assert "chain_a runs after chain_b runs after chain_a" in loop.json()["detail"]
    # A store override may not close a loop in its store either.
    override = await followup_client.post(RULES, json={"key": "chain_a", "store_id": str(fgroup.store_a),
                                                       "definition": chained("chain_b")},
                                          headers=fgroup.headers(Role.SALES_MANAGER))
    assert field_of(override) == ["body.definition.conditions.after_rule"]


async def test_schedules_are_checked_with_the_field_named(followup_client, fgroup: Group) -> None:
    admin = fgroup.headers(Role.CS_DIRECTOR)

    async def post(key: str, definition: dict) -> httpx.Response:
        return await followup_client.post(RULES, json={"key": key, "definition": definition}, headers=admin)

    zero = default("owner_monthly_care")
    zero["schedule"]["repeat"]["every"] = {}
    assert field_of(await post("zero_repeat", zero))[0].startswith("body.definition.schedule.repeat")
    template = default("post_delivery_thanks_sms")
    template["action"]["template"] = "no_such_template"
    resp = await post("bad_template", template)
    assert field_of(resp)[0].startswith("body.definition.action") and "no_such_template" in resp.text
    unordered = default(CALLS)
    unordered["schedule"]["offsets"] = [{"days": 7}, {"days": 3}]
    assert field_of(await post("unordered", unordered)) == ["body.definition.schedule.offsets"]
    ambiguous = default(CALLS)
    ambiguous["schedule"]["offsets"] = [{"days": 30}, {"months": 1}]
    assert field_of(await post("ambiguous", ambiguous)) == ["body.definition.schedule.offsets"]
    twice = default("insurance_renewal")
    twice["schedule"]["offsets"] = [{"days": 15}, {"days": 15}]
    assert field_of(await post("twice", twice)) == ["body.definition.schedule.offsets"]
    cadence = default("prospect_cadence_h")
    cadence["schedule"]["repeat"] = None
    assert field_of(await post("cadence", cadence)) == ["body.definition.schedule.repeat"]
    many = default("owner_monthly_care")
    many["schedule"]["offsets"] = [{"days": d} for d in range(1, 21)]
    many["schedule"]["repeat"]["count"] = 230
    assert field_of(await post("too_many", many)) == ["body.definition.schedule.repeat.count"]
    trigger_change = default("service_callback")
    resp = await put_rule(followup_client, fgroup, CALLS, trigger_change, "reschedule")
    assert field_of(resp) == ["body.pending"]
    assert (await put_rule(followup_client, fgroup, CALLS, trigger_change, "cancel")).status_code == 200
    bad_key = await followup_client.get(f"{RULES}/Bad-Key", headers=admin)
    assert field_of(bad_key) == ["path.key"]


# --- the scheduler and a bad rule ------------------------------------------------------------------------------------


async def _due(runtime: FollowupRuntime, group: Group, rule: Rule, customer_id: uuid.UUID | None) -> FollowUp:
    now = runtime.clock.now()
    row = FollowUp(tenant_id=group.tenant_id, store_id=group.store_a, rule_id=rule.id, rule_key=rule.key,
                   occurrence_key=f"{rule.key}:vehicle:{uuid.uuid4()}:s:0", subject_type="vehicle",
                   subject_id=uuid.uuid4(), customer_id=customer_id, vehicle_id=None,
                   anchor_at=now - timedelta(hours=1), step=0, due_at=now - timedelta(minutes=1), state="scheduled",
                   attempts=0, purpose="service", context={"series": "s"}, created_at=now, updated_at=now)
    async with runtime.sessionmaker() as s, s.begin():
        s.add(row)
    return row


async def test_a_rule_that_no_longer_validates_never_stalls_the_scheduler(
        followup_runtime: FollowupRuntime, fgroup: Group) -> None:
    now = followup_runtime.clock.now()
    broken = Rule(tenant_id=fgroup.tenant_id, scope="*", key="broken_rule", version=1, trigger="vehicle.delivered",
                  enabled=True, definition={"name": "broken", "trigger": "vehicle.delivered",
                                            "action": {"kind": "message", "template": "gone_template"}},
                  change_note="written before a template was withdrawn", created_at=now, retired_at=now)
    async with followup_runtime.sessionmaker() as s, s.begin():
        s.add(broken)
        healthy_rule = await s.scalar(sa.select(Rule).where(Rule.tenant_id == fgroup.tenant_id,
                                                            Rule.key == "owner_lapsed_win_back"))
    bad = await _due(followup_runtime, fgroup, broken, customer_id=uuid.uuid4())
    healthy = await _due(followup_runtime, fgroup, healthy_rule, customer_id=None)
    try:
        await fire_all(followup_runtime)
        rows = {r.id: r for r in await followups(followup_runtime, fgroup.tenant_id)}
        assert rows[healthy.id].state == "fired" and rows[healthy.id].task_id is not None
        assert rows[bad.id].state == "scheduled" and rows[bad.id].attempts == 1
        assert "ValidationError" in rows[bad.id].last_error
        for attempt in range(2, 6):
            await advance(followup_runtime, rows[bad.id].due_at - followup_runtime.clock.now() + timedelta(seconds=5))
            await fire_all(followup_runtime)
            rows = {r.id: r for r in await followups(followup_runtime, fgroup.tenant_id)}
            assert rows[bad.id].attempts == attempt
        assert rows[bad.id].state == "failed" and "gave up after 5 attempts" in rows[bad.id].reason
    finally:  # never leave a due row behind that other tests' scheduler turns would meet
        async with followup_runtime.sessionmaker() as s, s.begin():
            await s.execute(sa.update(FollowUp).where(FollowUp.id == bad.id, FollowUp.state == "scheduled")
                            .values(state="failed", reason="test cleanup"))
