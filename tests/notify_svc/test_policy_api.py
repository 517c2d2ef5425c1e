"""The contact policy through its API, and what it does to real sends: defaults, a dealer group's values and a
store's override (who may set which, bad values named), the daily cap holding a message until the next local
morning, and the group-wide weekly budget counting one person across the group's stores but not beyond it."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from notify_svc.app import NotifyRuntime
from notify_svc.models import Message, StaffView, StoreView, Template
from notify_svc.policy.config import PolicyConfig
from shared.auth.roles import Role
from shared.testing.waiting import eventually
from tests.conftest import Group, make_group, new_phone
from tests.notify_svc.conftest import (SHANGHAI, FixedClock, message_by_key, request_message,
                                       set_provider_code)
from tests.notify_svc.sandbox_env import Sandbox
from tests.notify_svc.test_dispatch import customer, phone_of

POLICY = "/api/v1/notify/policy"
MARKETING_SMS = [{"channel": "sms", "purpose": "marketing", "granted": True, "source": "contact card"}]


# --- helpers shared with test_history_and_bulk.py ----------------------------------------------------------------


def pin(clock: FixedClock, hh: int, mm: int = 0) -> datetime:
    """Pin the dispatcher's clock to hh:mm Shanghai time on the first day from tomorrow that is no statutory
    holiday: later than the wall clock (rows the API stamps with the real time are due at once) and a day on which
    marketing may go out."""
    marketing = PolicyConfig.of(None).calendars("Asia/Shanghai")[1]
    clock.now = marketing.after_holiday(clock.at_local(hh, mm, days=1))
    return clock.now


def local(clock: FixedClock, hh: int, mm: int = 0, days: int = 0) -> datetime:
    """hh:mm Shanghai time on the pinned day (+ ``days``), without moving the clock."""
    day = clock.now.astimezone(SHANGHAI).date() + timedelta(days=days)
    return datetime.combine(day, time(hh, mm), SHANGHAI).astimezone(UTC)


async def known_group(runtime: NotifyRuntime, group: Group) -> Group:
    """Wait until notify_svc has the group's stores, staff and default templates (what ``ngroup`` does)."""
    async def known() -> bool:
        async with runtime.sessionmaker() as s:
            counts = [await s.scalar(sa.select(sa.func.count()).select_from(model).where(model.tenant_id
                                                                                         == group.tenant_id))
                      for model in (StoreView, StaffView, Template)]
        return counts[0] == 2 and counts[1] >= 18 and counts[2] > 0

    await eventually(known)
    return group


async def put_policy(notify_client: httpx.AsyncClient, group: Group, body: dict[str, Any],
                     role: Role = Role.ADMIN, store: str | None = None) -> dict[str, Any]:
    params = {"store_id": str(group.stores[store])} if store else {}
    resp = await notify_client.put(POLICY, json=body, params=params, headers=group.headers(role, store or "A"))
    assert resp.status_code == 200, resp.text
    return resp.json()


async def settled(runtime: NotifyRuntime, group: Group, *keys: str) -> list[Message]:
    """The messages of ``keys`` once none of them is waiting for the dispatcher any more."""
    return [await message_by_key(runtime, group, k, "sent", "delivered", "held", "failed", "suppressed")
            for k in keys]


def field_of(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    return [e["field"] for e in resp.json()["errors"]]


# --- the policy API -----------------------------------------------------------------------------------------------


async def test_defaults_then_group_values_then_a_store_override(notify_client, ngroup, clock: FixedClock) -> None:
    advisor = ngroup.headers(Role.SERVICE_ADVISOR)
    resp = await notify_client.get(POLICY, headers=advisor)
    assert resp.status_code == 200, resp.text
    defaults = resp.json()
    assert defaults["scope"] == "default" and defaults["store_id"] is None
    assert (defaults["quiet_start"], defaults["quiet_end"]) == ("21:00", "08:00")
    assert (defaults["marketing_start"], defaults["marketing_end"], defaults["marketing_quiet"]) == \
        ("09:00", "20:00", "defer")
    assert (defaults["daily_cap"], defaults["template_daily_cap"], defaults["weekly_marketing_budget"],
            defaults["weekly_service_budget"], defaults["opt_out_text"]) == (3, 10, 2, 10, "拒收请回复R")

    group_values = {"quiet_start": "22:00", "quiet_end": "07:30", "daily_cap": 2, "weekly_marketing_budget": 1}
    put = await put_policy(notify_client, ngroup, group_values)
    assert put["scope"] == "group" and {k: put[k] for k in group_values} == group_values
    assert put["marketing_start"] == "09:00"  # not given: the default
    again = await put_policy(notify_client, ngroup, group_values)  # a PUT repeated changes nothing
    assert again == put

    # A store without its own values reads the group's.
    store_a = {"store_id": str(ngroup.store_a)}
    inherited = (await notify_client.get(POLICY, params=store_a, headers=advisor)).json()
    assert inherited["scope"] == "group" and inherited["store_id"] == str(ngroup.store_a)
    assert {k: inherited[k] for k in group_values} == group_values

    # The store's service manager overrides it for their store only.
    override = await put_policy(notify_client, ngroup, {"daily_cap": 5, "marketing_quiet": "drop"},
                                Role.SERVICE_MANAGER, "A")
    assert override["scope"] == "store" and override["store_id"] == str(ngroup.store_a)
    assert (override["daily_cap"], override["marketing_quiet"]) == (5, "drop")
    read = (await notify_client.get(POLICY, params=store_a, headers=advisor)).json()
    assert read == override
    store_b = (await notify_client.get(POLICY, params={"store_id": str(ngroup.store_b)},
                                       headers=ngroup.headers(Role.SERVICE_ADVISOR, "B"))).json()
    assert store_b["scope"] == "group" and store_b["daily_cap"] == 2
    group_wide = (await notify_client.get(POLICY, headers=advisor)).json()
    assert group_wide["scope"] == "group" and group_wide["daily_cap"] == 2


async def test_who_may_set_the_policy(notify_client, customer_runtime, ngroup, clock: FixedClock) -> None:
    body = {"daily_cap": 4}
    store_a, store_b = {"store_id": str(ngroup.store_a)}, {"store_id": str(ngroup.store_b)}
    # Staff read it, only managers write it.
    consultant = ngroup.headers(Role.SALES_CONSULTANT)
    assert (await notify_client.get(POLICY, params=store_a, headers=consultant)).status_code == 200
    for params in ({}, store_a):
        resp = await notify_client.put(POLICY, json=body, params=params, headers=consultant)
        assert resp.status_code == 403, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
    # A store's manager sets their store's values, not the group's, and not another store's.
    manager = ngroup.headers(Role.SERVICE_MANAGER)
    assert (await notify_client.put(POLICY, json=body, headers=manager)).status_code == 403
    assert (await notify_client.put(POLICY, json=body, params=store_b, headers=manager)).status_code == 404
    assert (await notify_client.get(POLICY, params=store_b, headers=ngroup.headers(Role.SALES_CONSULTANT))
            ).status_code == 404
    # Another dealer group's store does not exist for anyone here, group-wide roles included.
    other = await make_group(customer_runtime)
    foreign = {"store_id": str(other.store_a)}
    for role in (Role.SERVICE_MANAGER, Role.ADMIN):
        resp = await notify_client.put(POLICY, json=body, params=foreign, headers=ngroup.headers(role))
        assert resp.status_code == 404, (role, resp.text)
        resp = await notify_client.get(POLICY, params=foreign, headers=ngroup.headers(role))
        assert resp.status_code == 404, (role, resp.text)
    # Nothing above changed anything.
    after = (await notify_client.get(POLICY, params=store_a, headers=consultant)).json()
    assert after["scope"] == "default" and after["daily_cap"] == 3


async def test_bad_policy_values_are_422_naming_the_field(notify_client, ngroup, clock: FixedClock) -> None:
    admin = ngroup.headers(Role.ADMIN)
    cases = [({"quiet_start": "25:00"}, "body.quiet_start"), ({"quiet_end": "8:00"}, "body.quiet_end"),
             ({"marketing_end": "20:60"}, "body.marketing_end"),
             ({"template_daily_cap": 51}, "body.template_daily_cap"),
             ({"daily_cap": 0}, "body.daily_cap"), ({"weekly_marketing_budget": -1}, "body.weekly_marketing_budget"),
             ({"marketing_quiet": "later"}, "body.marketing_quiet"), ({"opt_out_text": "R"}, "body.opt_out_text"),
             ({"daily_cap": 2, "quiet": "22:00"}, "body.quiet"),
             # Quiet hours cannot be switched off or leave the night out; marketing stays in Aliyun's day.
             ({"quiet_start": "21:00", "quiet_end": "21:00"}, "body.quiet_end"), ({"quiet_start": "23:00"},
                                                                                  "body.quiet_end"),
             ({"marketing_end": "22:00"}, "body.marketing_end"), ({"marketing_start": "07:00"}, "body.marketing_start"),
             ({"marketing_start": "19:00", "marketing_end": "10:00"}, "body.marketing_end")]
    for body, field in cases:
        resp = await notify_client.put(POLICY, json=body, headers=admin)
        assert field_of(resp) == [field], (body, resp.text)
    resp = await notify_client.put(POLICY, params={"store_id": "not-a-uuid"}, json={}, headers=admin)
    assert field_of(resp) == ["query.store_id"]
    assert (await notify_client.get(POLICY, headers=admin)).json()["scope"] == "default"


# --- the policy at work -------------------------------------------------------------------------------------------


async def test_daily_cap_holds_the_second_message_until_the_next_local_morning(
        client, notify_client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:
    await put_policy(notify_client, ngroup, {"daily_cap": 1})
    c = await customer(client, notify_runtime, ngroup)
    await set_provider_code(notify_runtime, ngroup, "purchase_thanks", "sms", aliyun="SMS_100001")
    pin(clock, 10)
    keys = [await request_message(notify_runtime, ngroup, c["id"]) for _ in range(2)]
    messages = await settled(notify_runtime, ngroup, *keys)
    [sent] = [m for m in messages if m.status == "sent"]
    [held] = [m for m in messages if m.status == "held"]
    assert held.reason == "daily_cap" and held.sent_at is None
    assert held.next_attempt_at == local(clock, 8, 0, days=1)  # the next local day, when quiet hours end
    to = phone_of(c).removeprefix("+86")  # held messages of earlier tests may fall due as the clock moves on
    assert sent.sent_at == clock.now and len(box.state.messages_for("aliyun", to)) == 1

    clock.now = local(clock, 7, 59, days=1)  # a new day, but still quiet hours: not yet due
    notify_runtime.nudge_dispatcher()
    assert (await message_by_key(notify_runtime, ngroup, held.idempotency_key)).status == "held"
    clock.now = local(clock, 8, 1)
    notify_runtime.nudge_dispatcher()
    later = await message_by_key(notify_runtime, ngroup, held.idempotency_key, "sent")
    assert later.sent_at == clock.now and later.reason is None
    assert len(box.state.messages_for("aliyun", to)) == 2


async def test_weekly_budget_counts_one_person_across_the_group_s_stores_only(
        client, customer_runtime, notify_client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox) -> None:
    other = await known_group(notify_runtime, await make_group(customer_runtime))
    for group in (ngroup, other):  # the same tight budget in both groups
        await put_policy(notify_client, group, {"weekly_marketing_budget": 1})
        await set_provider_code(notify_runtime, group, "monthly_care", "sms", aliyun="SMS_200002")
    phone = new_phone()  # one person: a customer of store A and of store B, and of another dealer group
    in_a = await customer(client, notify_runtime, ngroup, "A", phones=[{"number": phone}], consents=MARKETING_SMS)
    in_b = await customer(client, notify_runtime, ngroup, "B", phones=[{"number": phone}], consents=MARKETING_SMS)
    elsewhere = await customer(client, notify_runtime, other, "A", phones=[{"number": phone}],
                               consents=MARKETING_SMS)
    pin(clock, 11)
    # All three are decided in one dispatcher batch: they become due at the same instant.
    due = clock.now + timedelta(minutes=1)
    ka = await request_message(notify_runtime, ngroup, in_a["id"], store="A", template="monthly_care",
                               purpose="marketing", not_before=due)
    kb = await request_message(notify_runtime, ngroup, in_b["id"], store="B", template="monthly_care",
                               purpose="marketing", not_before=due)
    kx = await request_message(notify_runtime, other, elsewhere["id"], template="monthly_care", purpose="marketing",
                               not_before=due)
    for group, key in ((ngroup, ka), (ngroup, kb), (other, kx)):
        await message_by_key(notify_runtime, group, key, "queued")
    clock.now = due
    notify_runtime.nudge_dispatcher()

    ours = await settled(notify_runtime, ngroup, ka, kb)
    theirs = (await settled(notify_runtime, other, kx))[0]
    assert sorted(m.status for m in ours) == ["held", "sent"], [(m.status, m.reason) for m in ours]
    [sent] = [m for m in ours if m.status == "sent"]
    [held] = [m for m in ours if m.status == "held"]
    assert held.reason == "contact_budget" and held.next_attempt_at == sent.sent_at + timedelta(days=7)
    assert (theirs.status, theirs.reason) == ("sent", None)  # another group's budget is its own
    to = phone.removeprefix("+86")
    assert len(box.state.messages_for("aliyun", to)) == 2

    # Staff asking why see the rule in plain words.
    resp = await notify_client.get(f"/api/v1/messages/{held.id}", headers=ngroup.headers(Role.CS_MANAGER,
                                                                                         held_store(ngroup, held)))
    assert resp.status_code == 200, resp.text
    assert resp.json()["reason"] == "contact_budget" and "budget" in resp.json()["explanation"]
    assert [(e["status"], e["reason"]) for e in resp.json()["trail"]] == [("held", "contact_budget")]


def held_store(group: Group, message: Message) -> str:
    return next(code for code, store_id in group.stores.items() if store_id == message.store_id)
