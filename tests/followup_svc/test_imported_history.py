"""Imported history (a delivery two years ago, a customer from the DMS) is history to the playbooks: what it would
have triggered back then is recorded as stale, never sent late; what is still ahead is planned as usual."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import httpx
import pytest

from followup_svc.app import FollowupRuntime
from followup_svc.consumers import Handlers
from shared.events.catalog import customer as ev
from shared.events.envelope import build_event
from shared.messaging.consumer import MissingDependency
from shared.testing.events import EventTap, handle
from shared.testing.waiting import eventually
from tests.conftest import Group, new_phone
from tests.customer_svc.factories import integration_headers, new_vin
from tests.customer_svc.test_imports import finished, upload
from tests.followup_svc.conftest import fire_all, followups


async def test_an_imported_old_delivery_sends_nothing_late(client: httpx.AsyncClient, followup_runtime: FollowupRuntime,
                                                          fgroup: Group, event_tap: EventTap) -> None:
    key = integration_headers(fgroup, ["imports:write", "customers:write", "vehicles:write"])
    delivered = date.today() - timedelta(days=730)
    owner, prospect = f"DMS-{uuid.uuid4().hex[:8]}", f"DMS-{uuid.uuid4().hex[:8]}"
    csv = ("external_id,name,phone,store_code,vin,purchase_date,delivery_date,relationship\n"
           f"{owner},车主甲,{new_phone()},A,{new_vin()},{delivered - timedelta(days=2)},{delivered},\n"
           f"{prospect},潜客乙,{new_phone()},A,,,,prospect\n")
    job = await finished(client, key, (await upload(client, key, csv.encode()))["id"])
    assert (job["accepted"], job["rejected"]) == (2, 0), job
    created = await event_tap.wait_for("customer.customer.created.v1", count=2,
                                       where=lambda e: e.tenantid == str(fgroup.tenant_id))
    ids = {e.data["external_id"]: uuid.UUID(e.data["customer_id"]) for e in created}

    async def planned() -> list:
        rows = await followups(followup_runtime, fgroup.tenant_id, customer_id=ids[owner])
        return rows if any(r.rule_key == "anniversary_calls" or "anniversary" in r.rule_key for r in rows) else []

    rows = await eventually(planned, timeout=20)
    await fire_all(followup_runtime)
    rows = await followups(followup_runtime, fgroup.tenant_id, customer_id=ids[owner])
    now = followup_runtime.clock.now()
    past = [r for r in rows if r.due_at < now - timedelta(days=3)]
    ahead = [r for r in rows if r.due_at > now]
    assert past and ahead, [(r.rule_key, r.due_at, r.state) for r in rows]
    assert {r.state for r in past} == {"skipped"}, [(r.rule_key, r.due_at, r.state, r.reason) for r in past]
    assert all("stale" in (r.reason or "") for r in past)
    assert {r.state for r in ahead} == {"scheduled"}
    # The series a delivery starts go on from today: the first monthly care and quarterly call still ahead.
    for rule, within in (("owner_monthly_care", 45), ("owner_quarterly_visit", 100)):  # holidays defer some
        upcoming = [r for r in rows if r.rule_key == rule and r.state == "scheduled"]
        assert len(upcoming) == 1 and now < upcoming[0].due_at < now + timedelta(days=within), (rule, upcoming)
    # The imported prospect is no fresh showroom contact: no thank-you SMS, no 24-hour recap.
    prospect_rows = await followups(followup_runtime, fgroup.tenant_id, customer_id=ids[prospect])
    assert not [r for r in prospect_rows if r.rule_key.startswith("prospect_thanks")
                or r.rule_key.startswith("prospect_recap") or r.rule_key.startswith("prospect_intent")]
    requested = event_tap.matching("followup.message.requested.v1",
                                   where=lambda e: e.data.get("customer_id") in {str(i) for i in ids.values()})
    assert requested == []


async def test_an_update_handled_before_its_customers_creation_waits_for_it(followup_runtime: FollowupRuntime,
                                                                            fgroup: Group) -> None:
    """Only the created event says whether a customer is imported history: an update that overtook it is retried
    instead of making the customer a fresh showroom contact."""
    customer_id = uuid.uuid4()
    common = dict(customer_id=customer_id, store_id=fgroup.store_a, customer_no="C-9", kind="person", name="导入客户",
                  relationship="prospect")
    updated = build_event(ev.CustomerUpdated(**common, changed=["name"]), source="customer_svc",
                          tenant_id=fgroup.tenant_id, store_id=fgroup.store_a)
    created = build_event(ev.CustomerCreated(**common, imported=True), source="customer_svc",
                          tenant_id=fgroup.tenant_id, store_id=fgroup.store_a)
    handlers = Handlers(followup_runtime)
    with pytest.raises(MissingDependency):
        await handle(followup_runtime.sessionmaker, (handlers.customer_updated, updated))
    await handle(followup_runtime.sessionmaker, (handlers.customer_created, created),
                 (handlers.customer_updated, updated))
    assert await followups(followup_runtime, fgroup.tenant_id, customer_id=customer_id) == []
