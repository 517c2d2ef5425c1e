"""Bulk imports and REST upserts by external id (OEM / DMS intake), through HTTP, Postgres and the worker."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from customer_svc.imports.jobs import Claim, ImportRunner, LeaseLost, store_upload
from customer_svc.models import (AuditEntry, Customer, ImportChunk, ImportJob, ImportRow, ServiceVisit, Vehicle,
                                 messaging)
from shared.db.base import utcnow
from shared.ids import new_id
from shared.events.envelope import CloudEvent
from shared.auth.roles import Role
from shared.testing.events import EventTap
from shared.testing.waiting import eventually
from tests.conftest import Group, make_group, new_phone
from tests.customer_svc.factories import integration_headers, new_customer, new_vin, staff_id

_ids = itertools.count(1)
HEADER_ZH = "客户编号,姓名,手机,性别,生日,门店编码,车架号,车牌号,品牌,车型,购车日期,交车日期,销售顾问工号"
TWO_YEARS_AGO = date.today() - timedelta(days=730)


def ext() -> str:
    return f"OEM-{uuid.uuid4().hex[:8]}-{next(_ids)}"


def zh_row(external_id: str, phone: str, vin: str, store: str = "A", delivered: date | None = TWO_YEARS_AGO,
           name: str = "张三", consultant: str = "") -> str:
    bought = (delivered - timedelta(days=3)).isoformat().replace("-", "/") if delivered else ""
    return (f"{external_id},{name},{phone},男,1985/6/1,{store},{vin},粤B{next(_ids) % 100000:05d},品牌甲,车型乙,"
            f"{bought},{delivered.isoformat() if delivered else ''},{consultant}")


async def upload(client: httpx.AsyncClient, headers: dict[str, str], body: bytes, kind: str = "customers",
                 content_type: str = "text/csv", **params: str) -> dict[str, Any]:
    resp = await client.post("/api/v1/imports", params={"kind": kind, **params}, content=body,
                             headers={**headers, "Content-Type": content_type})
    assert resp.status_code == 202, resp.text
    assert resp.headers["Location"] == f"/api/v1/imports/{resp.json()['id']}"
    return resp.json()


async def finished(client: httpx.AsyncClient, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        job = (await client.get(f"/api/v1/imports/{job_id}", headers=headers)).json()
        return job if job["status"] in ("done", "failed") else None

    return await eventually(check, timeout=30)


async def rows(client: httpx.AsyncClient, headers: dict[str, str], job_id: str, **params: str) -> list[dict]:
    resp = await client.get(f"/api/v1/imports/{job_id}/rows", params={"limit": 1000, **params}, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]


async def test_a_file_of_deliveries_imports_once_and_a_resend_changes_nothing(
        client: httpx.AsyncClient, group: Group, event_tap: EventTap) -> None:
    key = integration_headers(group, ["imports:write", "customers:write", "vehicles:write"])
    people = [(ext(), new_phone(), new_vin()) for _ in range(5)]
    body = "\r\n".join([HEADER_ZH, *(zh_row(*p) for p in people)]) + "\r\n"
    job = await finished(client, key, (await upload(client, key, ("\ufeff" + body).encode("utf-8"),
                                                    filename="sales.csv"))["id"])
    assert (job["status"], job["accepted"], job["updated"], job["unchanged"], job["rejected"]) == \
        ("done", 5, 0, 0, 0), job
    assert job["encoding"] == "utf-8" and job["progress"] == 1.0 and job["rows_done"] == 5
    report = await rows(client, key, job["id"])
    assert [r["row"] for r in report] == [2, 3, 4, 5, 6]
    assert {r["status"] for r in report} == {"accepted"}
    async with group.runtime.sessionmaker() as session:
        customers = {c.external_id: c for c in await session.scalars(
            sa.select(Customer).where(Customer.tenant_id == group.tenant_id))}
        vehicles = {v.vin: v for v in await session.scalars(
            sa.select(Vehicle).where(Vehicle.tenant_id == group.tenant_id))}
    for external_id, phone, vin in people:
        c = customers[external_id]
        assert (c.name, c.gender, c.birthday, c.relationship_type, c.store_id) == \
            ("张三", "male", date(1985, 6, 1), "owner", group.store_a)
        assert c.primary_phone == phone
        assert vehicles[vin].customer_id == c.id and vehicles[vin].delivery_date == TWO_YEARS_AGO
    delivered = await event_tap.wait_for("customer.vehicle.delivered.v1", count=5,
                                         where=lambda e: e.tenantid == str(group.tenant_id))
    assert {e.data["delivery_date"] for e in delivered} == {TWO_YEARS_AGO.isoformat()}
    created = event_tap.matching("customer.customer.created.v1", where=lambda e: e.tenantid == str(group.tenant_id))
    assert len(created) == 5 and all(e.data["imported"] and e.data["external_id"] for e in created)

    # Every event the import wrote (payloads built without the catalog models, for speed) reads as its catalog type.
    async with group.runtime.sessionmaker() as session:
        payloads = [p for p in await session.scalars(sa.select(messaging.outbox.payload)) if
                    p.get("tenantid") == str(group.tenant_id)]
    assert len(payloads) >= 15
    for payload in payloads:
        event = CloudEvent.model_validate(payload)
        assert event.payload() is not None and event.data.get("imported", True)

    # The same file again (as GBK this time, as Excel on Chinese Windows saves it): nothing changes.
    again = await finished(client, key, (await upload(client, key, body.encode("gbk")))["id"])
    assert (again["encoding"], again["accepted"], again["updated"], again["unchanged"], again["rejected"]) == \
        ("gbk", 0, 0, 5, 0), again
    async with group.runtime.sessionmaker() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(Customer).where(
            Customer.tenant_id == group.tenant_id)) == 5
        # The stored upload is kept for the report's sake only; the job reads it back in chunks.
        assert await session.scalar(sa.select(sa.func.count()).select_from(ImportChunk).where(
            ImportChunk.job_id == uuid.UUID(again["id"]))) == 1


async def test_bad_rows_are_refused_alone_with_the_field_and_reason(client: httpx.AsyncClient, group: Group) -> None:
    key = integration_headers(group, ["imports:write", "customers:write", "vehicles:write"])
    good = (ext(), new_phone(), new_vin())
    lines = [HEADER_ZH,
             zh_row(*good),
             zh_row(ext(), "12345", new_vin()),                         # 3: bad phone
             zh_row(ext(), new_phone(), "LSV0000000000000X"),           # 4: bad VIN
             zh_row(ext(), new_phone(), new_vin(), store="B"),          # 5: a store the key does not have
             zh_row(ext(), new_phone(), new_vin(), store="ZZ"),         # 6: no such store
             zh_row(ext(), new_phone(), good[2]),                       # 7: the VIN of row 2's customer
             zh_row(ext(), new_phone(), new_vin(), consultant="nobody"),  # 8: unknown consultant
             "E-short,只有名字",                                          # 9: no phone column value
             ]
    job = await finished(client, key, (await upload(client, key, "\n".join(lines).encode()))["id"])
    assert (job["accepted"], job["rejected"]) == (1, 7), job
    refused = {r["row"]: (r["field"], r["reason"]) for r in await rows(client, key, job["id"], status="rejected")}
    assert refused[3][0] == "phone"
    assert refused[4][0] == "vin"
    assert refused[5] == ("store_code", "not one of your stores")
    assert refused[6] == ("store_code", "not one of your stores")
    assert refused[7][0] == "vin" and "another customer" in refused[7][1]
    assert refused[8][0] == "sales_consultant_no"
    assert refused[9][0] == "phone"
    report = await client.get(f"/api/v1/imports/{job['id']}/report", params={"format": "csv"}, headers=key)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
    lines = report.content.decode("utf-8-sig").splitlines()
    assert lines[0] == "row,status,key,customer_id,vehicle_id,visit_id,field,reason" and len(lines) == 1 + 8
    assert lines[2].startswith("3,rejected,") and ",phone," in lines[2]
    async with group.runtime.sessionmaker() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(Customer).where(
            Customer.tenant_id == group.tenant_id)) == 1  # nothing half-written for the refused rows


async def test_rest_upserts_by_external_id(client: httpx.AsyncClient, group: Group) -> None:
    key = integration_headers(group, ["customers:write", "vehicles:write", "visits:write"])
    external_id, vin, phone = ext(), new_vin(), new_phone()
    body = {"name": "李四", "phone": phone, "store_code": "A", "vin": vin, "purchase_date": "2026-01-02"}
    first = await client.put(f"/api/v1/integration/customers/{external_id}", json=body, headers=key)
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "accepted"
    repeat = await client.put(f"/api/v1/integration/customers/{external_id}", json=body, headers=key)
    assert (repeat.status_code, repeat.json()["status"]) == (200, "unchanged")
    assert repeat.json()["customer_id"] == first.json()["customer_id"]
    changed = await client.put(f"/api/v1/integration/customers/{external_id}", json={**body, "name": "李四四"},
                               headers=key)
    assert (changed.status_code, changed.json()["status"]) == (200, "updated")
    delivered = await client.put(f"/api/v1/integration/vehicles/{vin}/delivery",
                                 json={"delivery_date": "2026-01-05"}, headers=key)
    assert (delivered.status_code, delivered.json()["status"]) == (200, "updated"), delivered.text
    conflict = await client.put(f"/api/v1/integration/vehicles/{vin}/delivery",
                                json={"delivery_date": "2026-01-06"}, headers=key)
    assert conflict.status_code == 422 and conflict.json()["errors"][0]["field"] == "body.delivery_date"
    visit = {"vin": vin, "visit_type": "首保", "completed_at": "2026-03-01 10:00", "mileage_km": 5000}
    made = await client.put("/api/v1/integration/visits/RO-1", json=visit, headers=key)
    assert made.status_code == 201, made.text
    again = await client.put("/api/v1/integration/visits/RO-1", json=visit, headers=key)
    assert (again.status_code, again.json()["visit_id"]) == (200, made.json()["visit_id"])
    other_store = await client.put(f"/api/v1/integration/customers/{ext()}",
                                   json={"name": "王五", "store_code": "B", "phone": new_phone()}, headers=key)
    assert other_store.status_code == 422, other_store.text
    assert other_store.json()["errors"][0]["field"] == "body.store_code"
    vehicle_without_vin = await client.put(f"/api/v1/integration/customers/{ext()}", headers=key,
                                           json={"name": "王五", "store_code": "A", "phone": new_phone(),
                                                 "purchase_date": "2026-01-02"})
    assert vehicle_without_vin.json()["errors"][0]["field"] == "body.vin", vehicle_without_vin.text
    no_scope = await client.put(f"/api/v1/integration/customers/{ext()}", json=body,
                                headers=integration_headers(group, ["customers:read"]))
    assert no_scope.status_code == 403
    async with group.runtime.sessionmaker() as session:
        actions = [a for a in await session.scalars(sa.select(AuditEntry.action).where(
            AuditEntry.tenant_id == group.tenant_id, AuditEntry.record_id == uuid.UUID(first.json()["customer_id"])))]
    assert actions.count("create") == 1 and "update" in actions


async def test_a_staff_customer_is_matched_by_phone_not_duplicated(client: httpx.AsyncClient, group: Group) -> None:
    staff_made = await new_customer(client, group)
    phone = staff_made["phones"][0]["number"]
    key = integration_headers(group, ["customers:write"])
    resp = await client.put(f"/api/v1/integration/customers/{ext()}", headers=key,
                            json={"name": staff_made["name"], "phone": phone, "store_code": "A"})
    assert (resp.status_code, resp.json()["status"]) == (200, "updated"), resp.text
    assert resp.json()["customer_id"] == staff_made["id"]


@pytest.mark.parametrize("body, field", [
    (b"", "body"),
])
async def test_an_empty_upload_is_refused(client: httpx.AsyncClient, group: Group, body: bytes, field: str) -> None:
    resp = await client.post("/api/v1/imports", params={"kind": "customers"}, content=body,
                             headers={**group.headers(Role.ADMIN), "Content-Type": "text/csv"})
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == field


async def test_json_lines_of_deliveries_and_repair_orders(client: httpx.AsyncClient, group: Group) -> None:
    key = integration_headers(group, ["imports:write", "customers:write", "vehicles:write", "visits:write"])
    vin, phone = new_vin(), new_phone()
    made = await client.put(f"/api/v1/integration/customers/{ext()}", headers=key, json={
        "name": "赵六", "phone": phone, "store_code": "A", "vin": vin, "purchase_date": "2025-12-01"})
    assert made.status_code == 201, made.text
    deliveries = "\n".join(json.dumps(line, ensure_ascii=False) for line in [
        {"车架号": vin, "交车日期": "2025/12/3", "经销商集团": group.code},
        {"vin": vin, "delivery_date": "2025-12-03"},                       # the same again: unchanged
        {"vin": new_vin(), "delivery_date": "2025-12-03"},                 # not on file
        {"vin": vin, "delivery_date": "2025-12-03", "dealer_group": "someone-else"},
        ["not", "an", "object"],
    ]).encode()
    job = await finished(client, key, (await upload(client, key, deliveries, kind="deliveries",
                                                    content_type="application/x-ndjson"))["id"])
    outcome = {r["row"]: (r["status"], r["field"]) for r in await rows(client, key, job["id"])}
    assert outcome == {1: ("updated", None), 2: ("unchanged", None), 3: ("rejected", "vin"),
                       4: ("rejected", "dealer_group"), 5: ("rejected", "row")}, outcome
    visits = ("工单号,车架号,维修类型,结算时间,进厂里程\n"
              f"RO-{vin},{vin},首保,2026/3/1 10:30,5000\n"
              f"RO-{vin}-2,{vin},保养,2026-09-01 09:00,15000\n"
              f"RO-{vin}-3,{vin},洗车,2026-09-02 09:00,15100\n").encode()
    job = await finished(client, key, (await upload(client, key, visits, kind="visits"))["id"])
    assert (job["accepted"], job["rejected"]) == (2, 1), job
    [refused] = await rows(client, key, job["id"], status="rejected")
    assert refused["row"] == 4 and refused["field"] == "visit_type"
    async with group.runtime.sessionmaker() as session:
        vehicle = await session.scalar(sa.select(Vehicle).where(Vehicle.vin == vin))
        assert vehicle is not None and vehicle.mileage_km == 15000 and vehicle.delivery_date == date(2025, 12, 3)
        first = await session.scalar(sa.select(ServiceVisit).where(ServiceVisit.external_id == f"RO-{vin}"))
        # A settlement time without a zone is the store's local time (Asia/Shanghai, UTC+8).
        assert first is not None and first.completed_at.isoformat() == "2026-03-01T02:30:00+00:00"


async def test_a_file_for_another_dealer_groups_store_is_refused_row_by_row(client: httpx.AsyncClient,
                                                                            group: Group) -> None:
    admin = group.headers(Role.ADMIN)
    other = await make_group(group.runtime)
    csv = (f"external_id,name,phone,store_id\n{ext()},甲,{new_phone()},{other.store_a}\n"
           f"{ext()},乙,{new_phone()},{group.store_b}\n").encode()
    job = await finished(client, admin, (await upload(client, admin, csv))["id"])
    outcome = {r["row"]: (r["status"], r["field"]) for r in await rows(client, admin, job["id"])}
    assert outcome == {2: ("rejected", "store_id"), 3: ("accepted", None)}
    # A missing required column fails the job as a whole, saying which.
    bad = await finished(client, admin, (await upload(client, admin, b"name,phone\n\xe5\xbc\xa0,13800000000\n"))["id"])
    assert bad["status"] == "failed" and "external_id" in bad["error"] and bad["rows_done"] == 0
    # Another group's admin does not see the job.
    assert (await client.get(f"/api/v1/imports/{job['id']}", headers=other.headers(Role.ADMIN))).status_code == 404


async def test_a_job_a_dead_worker_left_is_taken_over_where_it_stopped(client: httpx.AsyncClient,
                                                                       group: Group) -> None:
    """A worker died after committing the file's first two records (their report rows and the job's counters go
    together); once its lease runs out another worker carries on with the third record, redoing nothing."""
    admin = group.headers(Role.ADMIN)
    people = [(ext(), new_phone(), new_vin()) for _ in range(5)]
    body = "\n".join([HEADER_ZH, *(zh_row(*p) for p in people)]).encode()
    job_id = new_id()
    async with group.runtime.sessionmaker() as session:
        async with session.begin():
            session.add(ImportJob(id=job_id, tenant_id=group.tenant_id, kind="customers", format="csv",
                                  encoding="auto", status="uploading", created_by=uuid.uuid4(),
                                  created_by_kind="staff", warnings=[], scope_store_ids=None))

        async def chunks():  # type: ignore[no-untyped-def]
            yield body

        size, sha = await store_upload(session, job_id, chunks(), 1 << 20)
        async with session.begin():
            job = await session.get(ImportJob, job_id)
            assert job is not None
            # What the dead worker had committed: two records reported, then its lease ran out.
            job.size_bytes, job.sha256, job.status, job.rows_done, job.updated = size, sha, "running", 2, 2
            job.lease_until = utcnow() - timedelta(seconds=1)
            session.add_all([ImportRow(job_id=job_id, row=r, status="updated", key=people[r - 2][0]) for r in (2, 3)])
    group.runtime.import_runner_wakeup()
    done = await finished(client, admin, str(job_id))
    assert (done["status"], done["rows_done"], done["accepted"], done["updated"]) == ("done", 5, 3, 2), done
    assert [(r["row"], r["status"]) for r in await rows(client, admin, str(job_id))] == [
        (2, "updated"), (3, "updated"), (4, "accepted"), (5, "accepted"), (6, "accepted")]
    async with group.runtime.sessionmaker() as session:
        made = set(await session.scalars(sa.select(Customer.external_id).where(Customer.tenant_id == group.tenant_id)))
    assert made == {p[0] for p in people[2:]}  # the first two were the dead worker's (here: never really written)


async def test_the_same_number_as_phone_and_phone2_is_one_phone(client: httpx.AsyncClient, group: Group) -> None:
    key = integration_headers(group, ["customers:write"])
    phone = new_phone()
    local = f"{phone[3:6]} {phone[6:10]} {phone[10:]}"
    resp = await client.put(f"/api/v1/integration/customers/{ext()}", headers=key,
                            json={"name": "钱七", "phone": phone, "phone2": local, "store_code": "A"})
    assert resp.status_code == 201, resp.text
    async with group.runtime.sessionmaker() as session:
        customer = await session.get(Customer, uuid.UUID(resp.json()["customer_id"]))
        assert customer is not None and [p.e164 for p in customer.phones] == [phone]


class Stalling(ImportRunner):
    """A runner whose first batch is slow to report (``slow``: the next batch looks up before it commits), and whose
    job another worker takes over once that batch commits (``taken_over``: its claim replaces this one's)."""

    slow = False
    taken_over = False
    reported = False
    takeover: asyncio.Task[None] | None = None

    async def _hold(self, session: Any, claim: Claim, **counters: Any) -> None:
        if self.takeover is not None:
            await self.takeover  # the other worker's claim has landed before anything else is held
        first_report = bool(counters) and not self.reported
        if first_report:
            self.reported = True
            if self.slow:
                await asyncio.sleep(0.5)
        await super()._hold(session, claim, **counters)
        if first_report and self.taken_over:
            # Lands once this batch commits (it waits for the batch's lock on the job row).
            self.takeover = asyncio.get_running_loop().create_task(self._take_over(claim))

    async def _finish(self, session: Any, claim: Claim, *args: Any) -> None:
        if self.takeover is not None:
            await self.takeover
        await super()._finish(session, claim, *args)

    async def _take_over(self, claim: Claim) -> None:
        async with self.sessionmaker() as session, session.begin():
            await session.execute(sa.update(ImportJob).where(ImportJob.id == claim.job_id).values(
                lease_owner=uuid.uuid4()))


async def leased_job(group: Group, lines: list[str], header: str = HEADER_ZH, *, by: uuid.UUID | None = None,
                     stores: list[str] | None = None) -> Claim:
    """A CSV job already claimed by a test's runner (so the service's own import loop leaves it alone); uploaded
    by staff, or by the integration key ``by`` for ``stores``."""
    body = "\n".join([header, *lines]).encode()
    claim = Claim(new_id(), uuid.uuid4())
    async with group.runtime.sessionmaker() as session:
        async with session.begin():
            session.add(ImportJob(id=claim.job_id, tenant_id=group.tenant_id, kind="customers", format="csv",
                                  encoding="auto", status="running", lease_until=utcnow() + timedelta(minutes=5),
                                  lease_owner=claim.owner, created_by=by or uuid.uuid4(),
                                  created_by_kind="integration" if by else "staff", warnings=[],
                                  scope_store_ids=[str(group.stores[s]) for s in stores] if by and stores else None))

        async def chunks():  # type: ignore[no-untyped-def]
            yield body

        size, sha = await store_upload(session, claim.job_id, chunks(), 1 << 20)
        async with session.begin():
            await session.execute(sa.update(ImportJob).where(ImportJob.id == claim.job_id).values(
                size_bytes=size, sha256=sha))
    return claim


def small_batches(group: Group, in_flight: int = 3, rows: int = 2, **stalls: bool) -> Stalling:
    """Batches of ``rows`` records, ``in_flight`` at a time."""
    runtime = group.runtime
    settings = runtime.settings.model_copy(update={"import_batch_rows": rows, "import_batches_in_flight": in_flight})
    runner = Stalling(runtime.sessionmaker, runtime.outbox, settings)
    for name, value in stalls.items():
        setattr(runner, name, value)
    return runner


async def outcome(client: httpx.AsyncClient, group: Group, job_id: uuid.UUID
                  ) -> tuple[dict[str, Any], dict[int, dict[str, Any]], dict[str, str]]:
    """The job, its report by row, and the dealer group's customers' names by external id."""
    admin = group.headers(Role.ADMIN)
    job = (await client.get(f"/api/v1/imports/{job_id}", headers=admin)).json()
    report = {r["row"]: r for r in await rows(client, admin, str(job_id))}
    async with group.runtime.sessionmaker() as session:
        names = dict((await session.execute(sa.select(Customer.external_id, Customer.name).where(
            Customer.tenant_id == group.tenant_id))).all())
    return job, report, names


async def test_batches_in_flight_together_see_each_others_numbers(client: httpx.AsyncClient, group: Group) -> None:
    """The third batch looks up before the first commits, and still refuses a number the first batch gave another
    customer."""
    a, b, c, d, e, f, g = ((ext(), new_phone(), new_vin()) for _ in range(7))
    # Batches: [a b] [c e] [d-with-a's-number g] [a-again f].
    claim = await leased_job(group, [zh_row(*a), zh_row(*b), zh_row(*c), zh_row(*e), zh_row(d[0], a[1], d[2]),
                                     zh_row(*g), zh_row(*a, name="张三丰"), zh_row(*f)])
    await small_batches(group, slow=True).run(claim)
    done, report, names = await outcome(client, group, claim.job_id)
    assert (done["status"], done["accepted"], done["updated"], done["rejected"]) == ("done", 6, 1, 1), done
    assert report[6]["status"] == "rejected" and report[6]["field"] == "phone", report[6]
    assert report[8]["status"] == "updated" and report[8]["customer_id"] == report[2]["customer_id"]
    assert names == {a[0]: "张三丰", **{p[0]: "张三" for p in (b, c, e, f, g)}}


async def test_a_customer_the_batch_before_created_is_updated_not_duplicated(client: httpx.AsyncClient,
                                                                             group: Group) -> None:
    """Whether the first batch has committed when the second looks up or not (then the customer looks new, the
    insert conflicts and the batch is redone record by record), the second updates that customer."""
    a, b, c = ((ext(), new_phone(), new_vin()) for _ in range(3))
    claim = await leased_job(group, [zh_row(*a), zh_row(*b), zh_row(*c), zh_row(*a, name="张三丰")])
    await small_batches(group, slow=True).run(claim)
    done, report, names = await outcome(client, group, claim.job_id)
    assert (done["status"], done["accepted"], done["updated"], done["rejected"]) == ("done", 3, 1, 0), done
    assert report[5]["status"] == "updated" and report[5]["customer_id"] == report[2]["customer_id"]
    assert names == {a[0]: "张三丰", b[0]: "张三", c[0]: "张三"}


async def test_a_worker_whose_job_was_taken_over_commits_nothing_more(client: httpx.AsyncClient,
                                                                      group: Group) -> None:
    people = [(ext(), new_phone(), new_vin()) for _ in range(6)]
    claim = await leased_job(group, [zh_row(*p) for p in people])
    with pytest.raises(LeaseLost):
        await small_batches(group, in_flight=1, taken_over=True).run(claim)
    job, report, names = await outcome(client, group, claim.job_id)
    assert (job["status"], job["rows_done"], job["accepted"]) == ("running", 2, 2), job
    assert sorted(report) == [2, 3] and set(names) == {people[0][0], people[1][0]}


async def test_a_worker_whose_job_was_taken_over_does_not_finish_it(client: httpx.AsyncClient, group: Group) -> None:
    people = [(ext(), new_phone(), new_vin()) for _ in range(2)]
    claim = await leased_job(group, [zh_row(*p) for p in people])
    with pytest.raises(LeaseLost):
        await small_batches(group, taken_over=True).run(claim)
    job, report, _ = await outcome(client, group, claim.job_id)
    assert (job["status"], job["rows_done"]) == ("running", 2), job  # the new holder finishes it


def with_file_number(row: str, number: str) -> str:
    return f"{row},{number}"


async def test_records_conflicting_in_the_database_are_redone_one_by_one(client: httpx.AsyncClient,
                                                                         group: Group) -> None:
    """Two new customers of one batch with the same customer number (档案号): the batch's insert conflicts, and
    record by record the first keeps the number while the second is refused naming the field."""
    a, b = ((ext(), new_phone(), new_vin()) for _ in range(2))
    number = f"D{uuid.uuid4().hex[:10]}"
    claim = await leased_job(group, [with_file_number(zh_row(*a), number), with_file_number(zh_row(*b), number)],
                             header=HEADER_ZH + ",客户档案号")
    await small_batches(group).run(claim)
    job, report, names = await outcome(client, group, claim.job_id)
    assert (job["status"], job["accepted"], job["rejected"]) == ("done", 1, 1), job
    assert report[3]["status"] == "rejected" and report[3]["field"] == "customer_no", report[3]
    assert set(names) == {a[0]}


async def test_a_record_by_record_pass_cut_short_is_reported_as_it_was_done(client: httpx.AsyncClient,
                                                                             group: Group,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker stalls (another takes the job over) after the first record of a conflicting batch's
    record-by-record pass committed: that record kept its report row, so the worker taking over reports it as
    created, not as "unchanged" as it would find it, and counts it once."""
    a, b, c = ((ext(), new_phone(), new_vin()) for _ in range(3))
    number = f"D{uuid.uuid4().hex[:10]}"
    claim = await leased_job(group, [with_file_number(zh_row(*a), ""), with_file_number(zh_row(*b), number),
                                     with_file_number(zh_row(*c), number), with_file_number("孙八", "")],
                             header=HEADER_ZH + ",客户档案号")
    one = ImportRunner._one
    calls = 0

    async def stalling(self: ImportRunner, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise LeaseLost(claim.job_id)
        return await one(self, *args)

    monkeypatch.setattr(ImportRunner, "_one", stalling)
    with pytest.raises(LeaseLost):
        await small_batches(group, rows=4).run(claim)
    job, report, _ = await outcome(client, group, claim.job_id)
    assert (job["rows_done"], job["accepted"], list(report)) == (0, 1, [2]), job
    monkeypatch.setattr(ImportRunner, "_one", one)

    taking_over = Claim(claim.job_id, uuid.uuid4())
    async with group.runtime.sessionmaker() as session, session.begin():
        await session.execute(sa.update(ImportJob).where(ImportJob.id == claim.job_id).values(
            lease_owner=taking_over.owner, lease_until=utcnow() + timedelta(minutes=5)))
    await small_batches(group, rows=4).run(taking_over)
    job, report, names = await outcome(client, group, claim.job_id)
    assert (job["status"], job["accepted"], job["unchanged"], job["rejected"]) == ("done", 2, 0, 2), job
    assert [report[r]["status"] for r in range(2, 6)] == ["accepted", "accepted", "rejected", "rejected"]
    assert (report[4]["field"], report[5]["field"]) == ("customer_no", "name"), report
    assert {a[0], b[0]} <= set(names) and c[0] not in names


async def test_a_batch_redone_one_by_one_gets_the_rows_the_next_batch_had_locked(client: httpx.AsyncClient,
                                                                                  group: Group) -> None:
    """Customer Y is in two consecutive batches. The first conflicts after the second has looked up (and locked Y);
    the second rolls back and waits, so the first's record-by-record pass updates Y instead of waiting on the
    second's lock until a timeout refuses it; then the second is redone."""
    y, c, d, e = ((ext(), new_phone(), new_vin()) for _ in range(4))
    header = HEADER_ZH + ",客户档案号"
    first = await leased_job(group, [with_file_number(zh_row(*y), "")], header=header)
    await small_batches(group).run(first)
    number = f"D{uuid.uuid4().hex[:10]}"
    claim = await leased_job(group, [
        with_file_number(zh_row(*y, name="一批"), ""), with_file_number(zh_row(*c), number),
        with_file_number(zh_row(*d), number),  # the same customer number: the first batch's insert conflicts
        with_file_number(zh_row(*y, name="二批"), ""), with_file_number(zh_row(*e), "")], header=header)
    await small_batches(group, in_flight=2, rows=3).run(claim)
    job, report, names = await outcome(client, group, claim.job_id)
    assert (job["status"], job["accepted"], job["updated"], job["rejected"]) == ("done", 2, 2, 1), job
    assert [report[r]["status"] for r in range(2, 7)] == ["updated", "accepted", "rejected", "updated", "accepted"]
    assert names[y[0]] == "二批"


async def test_a_worker_whose_job_was_taken_over_stops_in_its_record_by_record_pass(client: httpx.AsyncClient,
                                                                                     group: Group) -> None:
    """The second batch conflicts in the database (the same customer number twice) and is redone record by
    record after the takeover landed: none of its records is written."""
    a, b, c, d = ((ext(), new_phone(), new_vin()) for _ in range(4))
    number = f"D{uuid.uuid4().hex[:10]}"
    claim = await leased_job(group, [with_file_number(zh_row(*a), ""), with_file_number(zh_row(*b), ""),
                                     with_file_number(zh_row(*c), number), with_file_number(zh_row(*d), number)],
                             header=HEADER_ZH + ",客户档案号")
    with pytest.raises(LeaseLost):
        await small_batches(group, in_flight=2, taken_over=True).run(claim)
    job, report, names = await outcome(client, group, claim.job_id)
    assert (job["status"], job["rows_done"]) == ("running", 2), job
    assert set(names) == {a[0], b[0]}


async def test_a_long_import_keeps_the_worker_alive(client: httpx.AsyncClient, group: Group) -> None:
    """A job is one step of the worker's import loop however long its file; each batch that commits counts as a
    heartbeat, so the liveness probe does not restart a worker minutes into a big import."""
    import time

    loop = group.runtime.import_loop
    stale = time.monotonic() - 3600
    loop.beat = stale
    loop.touch()
    assert loop.beat > stale + 3000 and group.runtime.imports.progress == loop.touch

    beats: list[float] = []
    people = [(ext(), new_phone(), new_vin()) for _ in range(6)]
    claim = await leased_job(group, [zh_row(*p) for p in people])
    runner = small_batches(group, in_flight=1)
    runner.progress = lambda: beats.append(time.monotonic())
    await runner.run(claim)
    job, _, _ = await outcome(client, group, claim.job_id)
    assert (job["status"], job["accepted"]) == ("done", 6)
    assert len(beats) >= 3  # one per batch of two, as each commits


async def test_a_vehicle_in_a_customer_upsert_needs_the_vehicles_scope(client: httpx.AsyncClient,
                                                                     group: Group) -> None:
    body = {"name": "孙八", "phone": new_phone(), "store_code": "A", "vin": new_vin(), "delivery_date": "2026-01-05"}
    external_id = ext()
    refused = await client.put(f"/api/v1/integration/customers/{external_id}", json=body,
                               headers=integration_headers(group, ["customers:write"]))
    assert refused.status_code == 403 and "vehicles:write" in refused.json()["detail"]
    async with group.runtime.sessionmaker() as session:
        assert await session.scalar(sa.select(Customer).where(Customer.external_id == external_id)) is None
    without_vehicle = await client.put(f"/api/v1/integration/customers/{external_id}", headers=integration_headers(
        group, ["customers:write"]), json={k: v for k, v in body.items() if k not in ("vin", "delivery_date")})
    assert without_vehicle.status_code == 201, without_vehicle.text


async def test_a_resent_record_with_an_older_odometer_is_unchanged(client: httpx.AsyncClient, group: Group) -> None:
    """A repair order read the odometer since the sales system did: the sales record sent again is history, not a
    refusal of the whole record."""
    key = integration_headers(group, ["customers:write", "vehicles:write", "visits:write"])
    external_id, vin = ext(), new_vin()
    body = {"name": "周九", "phone": new_phone(), "store_code": "A", "vin": vin, "purchase_date": "2026-01-02",
            "mileage_km": 12}
    assert (await client.put(f"/api/v1/integration/customers/{external_id}", json=body, headers=key)).status_code == 201
    visit = {"vin": vin, "visit_type": "首保", "completed_at": "2026-03-01 10:00", "mileage_km": 5000}
    assert (await client.put(f"/api/v1/integration/visits/{ext()}", json=visit, headers=key)).status_code == 201
    again = await client.put(f"/api/v1/integration/customers/{external_id}", json=body, headers=key)
    assert (again.status_code, again.json()["status"]) == (200, "unchanged"), again.text
    renamed = await client.put(f"/api/v1/integration/customers/{external_id}", json={**body, "name": "周九九"},
                               headers=key)
    assert (renamed.status_code, renamed.json()["status"]) == (200, "updated"), renamed.text
    async with group.runtime.sessionmaker() as session:
        vehicle = await session.scalar(sa.select(Vehicle).where(Vehicle.vin == vin))
        assert vehicle is not None and vehicle.mileage_km == 5000


async def test_the_same_record_sent_twice_at_once_matching_a_staff_customer(client: httpx.AsyncClient,
                                                                           group: Group) -> None:
    """A client retrying after a timeout: both requests adopt the staff-entered customer with that phone; the one
    that locks it second finds it under this external id, and updates it instead of refusing the phone."""
    for _ in range(3):
        staff_made = await new_customer(client, group)
        key = integration_headers(group, ["customers:write"])
        body = {"name": staff_made["name"], "phone": staff_made["phones"][0]["number"], "store_code": "A"}
        external_id = ext()
        both = await asyncio.gather(*(client.put(f"/api/v1/integration/customers/{external_id}", json=body,
                                                 headers=key) for _ in range(2)))
        assert [r.status_code for r in both] == [200, 200], [r.text for r in both]
        assert {r.json()["customer_id"] for r in both} == {staff_made["id"]}


async def test_a_nul_character_in_a_file_is_refused_naming_its_field(client: httpx.AsyncClient,
                                                                     group: Group) -> None:
    good, bad = (ext(), new_phone(), new_vin()), (ext(), new_phone(), new_vin())
    body = "\n".join([HEADER_ZH, zh_row(*good), zh_row(*bad, name="张\x00三")]).encode()
    job = await upload(client, group.headers(Role.ADMIN), body)
    done = await finished(client, group.headers(Role.ADMIN), job["id"])
    assert (done["accepted"], done["rejected"]) == (1, 1), done
    [row] = [r for r in await rows(client, group.headers(Role.ADMIN), job["id"]) if r["status"] == "rejected"]
    assert (row["row"], row["field"], row["key"]) == (3, "name", bad[0]) and "NUL" in row["reason"]


async def test_records_of_a_customer_staff_merged_away_apply_to_the_survivor(client: httpx.AsyncClient,
                                                                            group: Group) -> None:
    key = integration_headers(group, ["customers:write"])
    external_id = ext()
    body = {"name": "吴十", "phone": new_phone(), "store_code": "A"}
    made = await client.put(f"/api/v1/integration/customers/{external_id}", json=body, headers=key)
    assert made.status_code == 201, made.text
    survivor = await new_customer(client, group)
    merged = await client.post(f"/api/v1/customers/{survivor['id']}/merge",
                               json={"duplicate_id": made.json()["customer_id"]},
                               headers=group.headers(Role.ADMIN, **{"If-Match": "*"}))
    assert merged.status_code == 200, merged.text
    again = await client.put(f"/api/v1/integration/customers/{external_id}", json=body, headers=key)
    assert again.status_code == 200 and again.json()["customer_id"] == survivor["id"], again.text
    changed = await client.put(f"/api/v1/integration/customers/{external_id}", json={**body, "gender": "female"},
                               headers=key)
    assert (changed.status_code, changed.json()["status"]) == (200, "updated"), changed.text
    async with group.runtime.sessionmaker() as session:
        kept = await session.get(Customer, uuid.UUID(survivor["id"]))
        assert kept is not None and kept.gender == "female"


async def test_two_ids_merged_into_one_customer_do_not_take_turns_changing_it(client: httpx.AsyncClient,
                                                                              group: Group) -> None:
    """The DMS keeps sending both records staff merged: the survivor's own record has the last word; the other one
    only fills what is empty and adds its number, and sending both again changes nothing."""
    admin = group.headers(Role.ADMIN)
    kept_id, merged_id = ext(), ext()
    kept_phone, merged_phone = new_phone(), new_phone()
    body = "\n".join([HEADER_ZH + ",地址", f"{kept_id},周一,{kept_phone},,,A,,,,,,,,",
                      f"{merged_id},周一一,{merged_phone},男,,A,,,,,,,,某地"]).encode()
    await finished(client, admin, (await upload(client, admin, body))["id"])
    async with group.runtime.sessionmaker() as session:
        found = {c.external_id: c.id for c in await session.scalars(sa.select(Customer).where(
            Customer.tenant_id == group.tenant_id, Customer.external_id.in_([kept_id, merged_id])))}
    merged = await client.post(f"/api/v1/customers/{found[kept_id]}/merge",
                               json={"duplicate_id": str(found[merged_id])},
                               headers=group.headers(Role.ADMIN, **{"If-Match": "*"}))
    assert merged.status_code == 200, merged.text
    # The merge filled the survivor's gaps and took the number: nothing left to change, on each resend.
    for _ in range(2):
        job = await finished(client, admin, (await upload(client, admin, body))["id"])
        report = {r["key"]: r["status"] for r in await rows(client, admin, job["id"])}
        assert report == {kept_id: "unchanged", merged_id: "unchanged"}, report
    async with group.runtime.sessionmaker() as session:
        survivor = await session.get(Customer, found[kept_id])
        assert survivor is not None and (survivor.name, survivor.gender, survivor.address) == ("周一", "male", "某地")
        assert survivor.primary_phone == kept_phone and {p.e164 for p in survivor.phones} >= {kept_phone,
                                                                                           merged_phone}


async def test_a_staff_customer_two_records_point_to_is_taken_over_once(client: httpx.AsyncClient,
                                                                       group: Group) -> None:
    """A customer staff entered with two numbers; one file gives each number its own source id: the first record
    takes the customer over, the second is refused as its numbers' customer now has that id, and a resend of the
    file gives the same report."""
    admin = group.headers(Role.ADMIN)
    first, second = new_phone(), new_phone()
    staff_made = await new_customer(client, group, phones=[{"number": first, "primary": True}, {"number": second}])
    e1, e2 = ext(), ext()
    body = "\n".join([HEADER_ZH, f"{e1},{staff_made['name']},{first},,,A,,,,,,,",
                      f"{e2},{staff_made['name']},{second},,,A,,,,,,,"]).encode()
    for expected in ("updated", "unchanged"):
        job = await finished(client, admin, (await upload(client, admin, body))["id"])
        report = {r["key"]: r for r in await rows(client, admin, job["id"])}
        assert report[e1]["status"] == expected and report[e1]["customer_id"] == staff_made["id"], report
        assert (report[e2]["status"], report[e2]["field"]) == ("rejected", "phone"), report
        assert f"external id {e1}" in report[e2]["reason"]
    async with group.runtime.sessionmaker() as session:
        customer = await session.get(Customer, uuid.UUID(staff_made["id"]))
        assert customer is not None and customer.external_id == e1


async def test_a_file_ending_inside_a_quoted_cell_fails_instead_of_swallowing_its_last_records(
        client: httpx.AsyncClient, group: Group) -> None:
    admin = group.headers(Role.ADMIN)
    body = "\n".join([HEADER_ZH, zh_row(ext(), new_phone(), new_vin(), name='"老客户'),
                      zh_row(ext(), new_phone(), new_vin()), zh_row(ext(), new_phone(), new_vin())]).encode()
    job = await finished(client, admin, (await upload(client, admin, body))["id"])
    assert job["status"] == "failed" and job["error"] == "a quoted field opened on line 2 is never closed", job
    assert job["accepted"] == 0


async def test_a_nul_in_a_records_key_is_reported_not_retried_for_ever(client: httpx.AsyncClient,
                                                                        group: Group) -> None:
    admin = group.headers(Role.ADMIN)
    lines = [{"external_id": "E\u00001", "name": "钱七", "phone": new_phone(), "store_code": "A", "备\u0000注": 1},
             {"external_id": ext(), "name": "孙八", "phone": new_phone(), "store_code": "A"}]
    body = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines).encode()
    job = await finished(client, admin, (await upload(client, admin, body, content_type="application/x-ndjson"))["id"])
    assert (job["status"], job["accepted"], job["rejected"]) == ("done", 1, 1), job
    report = {r["row"]: r for r in await rows(client, admin, job["id"])}
    assert (report[1]["key"], report[1]["field"]) == ("E\\x001", "external_id"), report[1]
    assert job["warnings"] == ["line 1: keys not used for customers: 备\\x00注"]


async def test_id_numbers_typed_full_width_and_purchase_after_delivery(client: httpx.AsyncClient,
                                                                        group: Group) -> None:
    key = integration_headers(group, ["customers:write", "vehicles:write"])
    full_width = "１１０１０５１９４９１２３１００２Ｘ"
    made = await client.put(f"/api/v1/integration/customers/{ext()}", headers=key, json={
        "name": "冯九", "phone": new_phone(), "store_code": "A", "id_number": full_width})
    assert made.status_code == 201, made.text
    async with group.runtime.sessionmaker() as session:
        customer = await session.get(Customer, uuid.UUID(made.json()["customer_id"]))
        assert customer is not None and customer.id_number == "11010519491231002X"

    external_id, vin = ext(), new_vin()
    base = {"name": "陈十", "phone": new_phone(), "store_code": "A", "vin": vin}
    delivered = await client.put(f"/api/v1/integration/customers/{external_id}", headers=key,
                                 json={**base, "purchase_date": "2024-03-01", "delivery_date": "2024-03-05"})
    assert delivered.status_code == 201, delivered.text
    later = await client.put(f"/api/v1/integration/customers/{external_id}", headers=key,
                             json={**base, "purchase_date": "2024-04-01"})
    assert later.status_code == 422 and later.json()["errors"][0]["field"] == "body.purchase_date", later.text
    nul = await client.put("/api/v1/integration/customers/ab%00c", headers=key, json=base)
    assert nul.status_code == 422 and nul.json()["errors"][0]["field"] == "path.external_id", nul.text


async def test_two_customers_never_get_one_phone_or_id_number_at_once(client: httpx.AsyncClient,
                                                                      group: Group) -> None:
    """Two source records with the same phone, sent at the same time: one is created, the other refused (the
    same locks as staff creates take); an ID number on file in the store is another customer's too."""
    key = integration_headers(group, ["customers:write"])
    for _ in range(4):
        phone = new_phone()
        answers = await asyncio.gather(*(client.put(f"/api/v1/integration/customers/{ext()}", headers=key,
                                                    json={"name": "郑一", "phone": phone, "store_code": "A"})
                                         for _ in range(2)))
        assert sorted(r.status_code for r in answers) == [201, 422], [r.text for r in answers]
        [refused] = [r for r in answers if r.status_code == 422]
        assert refused.json()["errors"][0]["field"] == "body.phone"
    staff_made = await new_customer(client, group, id_number="11010519491231002X")
    taken = await client.put(f"/api/v1/integration/customers/{ext()}", headers=key, json={
        "name": "郑二", "phone": new_phone(), "store_code": "A", "id_number": "11010519491231002X"})
    assert taken.status_code == 422 and taken.json()["errors"][0]["field"] == "body.id_number", taken.text
    assert staff_made["id"]


async def test_a_stopping_worker_hands_its_job_back_between_batches(client: httpx.AsyncClient,
                                                                    group: Group) -> None:
    """SIGTERM mid-file (a rolling deploy): the batch under way commits, the lease is released, and another worker
    (here the service's own import loop) goes on at once from the next record, instead of after the lease."""
    from customer_svc.imports.jobs import HandedBack

    people = [(ext(), new_phone(), new_vin()) for _ in range(6)]
    claim = await leased_job(group, [zh_row(*p) for p in people])
    runner = small_batches(group, in_flight=1)
    runner.stop = asyncio.Event()
    runner.progress = runner.stop.set  # stop as the first batch commits
    with pytest.raises(HandedBack):
        await runner.run(claim)
    async with group.runtime.sessionmaker() as session:
        job = await session.get(ImportJob, claim.job_id)
        assert job is not None and job.rows_done >= 2 and job.lease_owner != claim.owner
    done = await finished(client, group.headers(Role.ADMIN), str(claim.job_id))
    assert (done["status"], done["accepted"], done["rejected"], done["rows_done"]) == ("done", 6, 0, 6), done
    reported = await rows(client, group.headers(Role.ADMIN), str(claim.job_id))
    assert sorted(r["row"] for r in reported) == list(range(2, 8))


async def test_one_id_number_for_two_records_of_a_file_is_refused_the_second_time(client: httpx.AsyncClient,
                                                                                 group: Group) -> None:
    header = "客户编号,姓名,手机,门店编码,身份证号"
    first, second = ext(), ext()
    body = "\n".join([header, f"{first},张三,{new_phone()},A,11010519491231002X",
                      f"{second},李四,{new_phone()},A,11010519491231002X",
                      f"{first},张三丰,{new_phone()},A,11010519491231002X"]).encode()
    job = await upload(client, group.headers(Role.ADMIN), body)
    done = await finished(client, group.headers(Role.ADMIN), job["id"])
    report = {r["row"]: r for r in await rows(client, group.headers(Role.ADMIN), job["id"])}
    assert (done["accepted"], done["updated"], done["rejected"]) == (1, 1, 1), done
    assert (report[3]["status"], report[3]["field"]) == ("rejected", "id_number"), report[3]
    assert report[4]["status"] == "updated"  # the same customer again keeps its number


async def test_imports_need_the_write_scope_of_what_they_write(client: httpx.AsyncClient, group: Group) -> None:
    """As the upserts of the same records do: visits need visits:write at upload; a customer file's vehicles need
    vehicles:write, refused row by row (the customers without one are taken)."""
    refused = await client.post("/api/v1/imports", params={"kind": "visits"}, content=b"x",
                                headers={**integration_headers(group, ["imports:write", "customers:write"]),
                                         "Content-Type": "text/csv"})
    assert refused.status_code == 403 and "visits:write" in refused.json()["detail"], refused.text
    admin = group.headers(Role.ADMIN)
    key = await client.post("/api/v1/api-keys", headers=admin, json={
        "name": "CRM feed", "scopes": ["imports:write", "customers:write"], "store_ids": [str(group.stores["A"])]})
    assert key.status_code == 201, key.text
    with_car, without = (ext(), new_phone(), new_vin()), ext()
    claim = await leased_job(group, [zh_row(*with_car), f"{without},李四,{new_phone()},男,,A,,,,,,,"],
                             by=uuid.UUID(key.json()["id"]), stores=["A"])
    await small_batches(group).run(claim)
    done, report, names = await outcome(client, group, claim.job_id)
    assert (done["status"], done["accepted"], done["rejected"]) == ("done", 1, 1), done
    assert report[2]["field"] == "vin" and "vehicles:write" in report[2]["reason"]
    assert without in names and with_car[0] not in names


async def test_a_key_revoked_or_narrowed_after_its_upload_stops_or_narrows_the_job(client: httpx.AsyncClient,
                                                                                  group: Group) -> None:
    """The worker acts for the key as it is when the job runs, not as it was at the upload."""
    admin = group.headers(Role.ADMIN)
    key = await client.post("/api/v1/api-keys", headers=admin, json={
        "name": "DMS feed", "scopes": ["imports:write", "customers:write", "vehicles:write"],
        "store_ids": [str(group.stores["A"]), str(group.stores["B"])]})
    assert key.status_code == 201, key.text
    key_id = uuid.UUID(key.json()["id"])
    a, b = (ext(), new_phone(), new_vin()), (ext(), new_phone(), new_vin())
    narrowed = await client.patch(f"/api/v1/api-keys/{key_id}", json={"store_ids": [str(group.stores["A"])]},
                                  headers={**admin, "If-Match": "*"})
    assert narrowed.status_code == 200, narrowed.text
    claim = await leased_job(group, [zh_row(*a), zh_row(*b, store="B")], by=key_id, stores=["A", "B"])
    await small_batches(group).run(claim)
    done, report, names = await outcome(client, group, claim.job_id)
    assert (done["status"], done["accepted"], done["rejected"]) == ("done", 1, 1), done
    assert report[3]["field"] == "store_code" and set(names) == {a[0]}

    revoked = await client.delete(f"/api/v1/api-keys/{key_id}", headers=admin)
    assert revoked.status_code in (200, 204), revoked.text
    c = (ext(), new_phone(), new_vin())
    claim = await leased_job(group, [zh_row(*c)], by=key_id, stores=["A"])
    await small_batches(group).run(claim)
    done, report, names = await outcome(client, group, claim.job_id)
    assert (done["status"], done["rows_done"]) == ("failed", 0) and "revoked" in done["error"], done
    assert c[0] not in names


async def test_a_staff_edit_and_an_upsert_of_one_customer_never_deadlock(client: httpx.AsyncClient, group: Group,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Both take the store's identity locks before the customer's row lock (the windows between them widened
    here): one waits for the other, and the staff edit answers 200 or, its version taken, 412; never a 500."""
    import customer_svc.customers.service as staff_service
    import customer_svc.imports.upsert as intake

    key = integration_headers(group, ["customers:write"])
    external_id, phone = ext(), new_phone()
    made = await client.put(f"/api/v1/integration/customers/{external_id}", headers=key,
                            json={"name": "冯一", "phone": phone, "store_code": "A"})
    assert made.status_code == 201, made.text
    customer_id = made.json()["customer_id"]
    etag = (await client.get(f"/api/v1/customers/{customer_id}", headers=group.headers(Role.ADMIN))).headers["etag"]
    staff_locks, intake_locks = staff_service.advisory_locks, intake.advisory_locks

    async def staff_slowly(session: Any, keys: list[str]) -> None:
        await asyncio.sleep(0.3)
        await staff_locks(session, keys)

    async def intake_slowly(session: Any, keys: list[str]) -> None:
        await intake_locks(session, keys)
        await asyncio.sleep(0.3)

    monkeypatch.setattr(staff_service, "advisory_locks", staff_slowly)
    monkeypatch.setattr(intake, "advisory_locks", intake_slowly)

    async def upsert() -> httpx.Response:
        await asyncio.sleep(0.05)
        return await client.put(f"/api/v1/integration/customers/{external_id}", headers=key,
                                json={"name": "冯一一", "phone": phone, "store_code": "A"})

    staff, integration = await asyncio.gather(
        client.patch(f"/api/v1/customers/{customer_id}", json={"phones": [{"number": phone}, {"number": new_phone()}]},
                     headers=group.headers(Role.ADMIN, **{"If-Match": etag})), upsert())
    assert integration.status_code == 200, integration.text
    assert staff.status_code in (200, 412), staff.text


async def test_an_id_number_two_customers_already_hold_does_not_refuse_their_records(client: httpx.AsyncClient,
                                                                                     group: Group) -> None:
    """Data from before the rule may give one ID number to two customers: each one's record, its number unchanged,
    still applies; only giving the number to a third is refused."""
    key = integration_headers(group, ["customers:write"])
    number = "11010519491231002X"
    people = [(ext(), new_phone()) for _ in range(2)]
    for external_id, phone in people:
        made = await client.put(f"/api/v1/integration/customers/{external_id}", headers=key,
                                json={"name": "陈二", "phone": phone, "store_code": "A"})
        assert made.status_code == 201, made.text
        async with group.runtime.sessionmaker() as session, session.begin():  # as older data left them
            await session.execute(sa.update(Customer).where(Customer.external_id == external_id).values(
                id_number=number))
    for external_id, phone in people:
        again = await client.put(f"/api/v1/integration/customers/{external_id}", headers=key, json={
            "name": "陈二二", "phone": phone, "store_code": "A", "id_number": number})
        assert (again.status_code, again.json()["status"]) == (200, "updated"), again.text
    third = await client.put(f"/api/v1/integration/customers/{ext()}", headers=key, json={
        "name": "陈三", "phone": new_phone(), "store_code": "A", "id_number": number})
    assert third.status_code == 422 and third.json()["errors"][0]["field"] == "body.id_number"


async def test_a_file_sent_again_after_its_sales_consultant_left_changes_nothing(client: httpx.AsyncClient,
                                                                               group: Group) -> None:
    """A departed consultant is refused where a record would put them somewhere new, and accepted where every place
    the record puts them already holds them (the re-import of an unchanged file is all "unchanged")."""
    admin = group.headers(Role.ADMIN)
    consultant = f"{Role.SALES_CONSULTANT.value}-A"
    delivered, pending, other = ((ext(), new_phone(), new_vin()) for _ in range(3))
    lines = [zh_row(*delivered, consultant=consultant), zh_row(*pending, delivered=None, consultant=consultant),
             zh_row(*other, delivered=None)]
    first = await finished(client, admin, (await upload(client, admin, "\n".join([HEADER_ZH, *lines]).encode()))["id"])
    assert (first["accepted"], first["rejected"]) == (3, 0), first
    left = await client.patch(f"/api/v1/staff/{await staff_id(client, group, Role.SALES_CONSULTANT)}",
                              json={"active": False}, headers=group.headers(**{"If-Match": "*"}))
    assert left.status_code == 200, left.text

    again = await finished(client, admin, (await upload(client, admin, "\n".join([
        HEADER_ZH, *lines,
        zh_row(ext(), new_phone(), new_vin(), consultant=consultant),  # 5: a new customer for them
        zh_row(*other, delivered=None, consultant=consultant),  # 6: a customer on file someone else serves
    ]).encode()))["id"])
    report = {r["row"]: (r["status"], r["field"]) for r in await rows(client, admin, again["id"])}
    assert report == {2: ("unchanged", None), 3: ("unchanged", None), 4: ("unchanged", None),
                      5: ("rejected", "sales_consultant_no"), 6: ("rejected", "sales_consultant_no")}, report

    today = date.today().isoformat()
    deliveries = (f"车架号,交车日期,销售顾问工号\n{delivered[2]},{TWO_YEARS_AGO.isoformat()},{consultant}\n"
                  f"{pending[2]},{today},{consultant}\n{other[2]},{today},{consultant}\n")
    job = await finished(client, admin, (await upload(client, admin, deliveries.encode(), kind="deliveries"))["id"])
    report = {r["row"]: (r["status"], r["field"]) for r in await rows(client, admin, job["id"])}
    # The pending vehicle already names them as its seller (a delivery without the column would too).
    assert report == {2: ("unchanged", None), 3: ("updated", None), 4: ("rejected", "sales_consultant_no")}, report


async def test_a_key_revoked_or_narrowed_mid_file_stops_or_narrows_the_job_at_the_next_batch(
        client: httpx.AsyncClient, group: Group) -> None:
    """Checked in every batch's transaction: the batch under way rolls back, the job is handed back, and the next
    claim (the service's own import loop here) acts for the key as it is then."""
    from customer_svc.imports.jobs import KeyChanged

    admin = group.headers(Role.ADMIN)
    key = await client.post("/api/v1/api-keys", headers=admin, json={
        "name": "DMS feed", "scopes": ["imports:write", "customers:write", "vehicles:write"],
        "store_ids": [str(group.stores["A"]), str(group.stores["B"])]})
    assert key.status_code == 201, key.text
    key_id = uuid.UUID(key.json()["id"])

    def changing_key_before_batch(runner: ImportRunner, number: int, change: Any) -> None:
        original, calls = runner._report, itertools.count(1)

        async def report(session: Any, claim: Claim, batch: Any) -> None:
            if next(calls) == number:
                resp = await change()
                assert resp.status_code in (200, 204), resp.text
            await original(session, claim, batch)

        runner._report = report  # type: ignore[method-assign]

    # Narrowed to store A while the second batch is written: store B's records from there on are refused.
    people = [(ext(), new_phone(), new_vin()) for _ in range(6)]
    stores = ["A", "A", "B", "A", "A", "B"]
    claim = await leased_job(group, [zh_row(*p, store=s) for p, s in zip(people, stores)], by=key_id,
                             stores=["A", "B"])
    runner = small_batches(group, in_flight=1)
    changing_key_before_batch(runner, 2, lambda: client.patch(
        f"/api/v1/api-keys/{key_id}", json={"store_ids": [str(group.stores["A"])]}, headers={**admin, "If-Match": "*"}))
    with pytest.raises(KeyChanged):
        await runner.run(claim)
    done = await finished(client, admin, str(claim.job_id))
    _, report, names = await outcome(client, group, claim.job_id)
    assert (done["status"], done["accepted"], done["rejected"], done["rows_done"]) == ("done", 4, 2, 6), done
    assert (report[4]["field"], report[7]["field"]) == ("store_code", "store_code"), report
    assert {p[0] for p in people} & set(names) == {p[0] for p, s in zip(people, stores) if s == "A"}

    # Revoked while the second batch is written: the first batch stands, the job fails, nothing more is written.
    people = [(ext(), new_phone(), new_vin()) for _ in range(4)]
    claim = await leased_job(group, [zh_row(*p) for p in people], by=key_id, stores=["A"])
    runner = small_batches(group, in_flight=1)
    changing_key_before_batch(runner, 2, lambda: client.delete(f"/api/v1/api-keys/{key_id}", headers=admin))
    with pytest.raises(KeyChanged):
        await runner.run(claim)
    done = await finished(client, admin, str(claim.job_id))
    _, report, names = await outcome(client, group, claim.job_id)
    assert (done["status"], done["rows_done"], done["accepted"]) == ("failed", 2, 2) and "revoked" in done["error"]
    assert {p[0] for p in people} & set(names) == {people[0][0], people[1][0]}


async def test_values_as_dms_exports_and_spreadsheets_write_them(client: httpx.AsyncClient, group: Group) -> None:
    """Numeric ids in JSON Lines, phones a spreadsheet wrote as numbers, date columns exported as date-times, a
    settlement date without its time, full-width VINs and plates: read as meant. A phone whose digits Excel
    rounded away is refused, saying so."""
    admin = group.headers(Role.ADMIN)
    external, vin, plate_digits = 9_000_000 + next(_ids), new_vin(), f"{next(_ids) % 100000:05d}"
    phone = new_phone()
    full_width = str.maketrans("0123456789ABCDEFGHJKLMNPRSTUVWXYZ", "０１２３４５６７８９ＡＢＣＤＥＦＧＨＪＫＬＭＮＰＲＳＴＵＶＷＸＹＺ")
    lines = [{"external_id": external, "name": "钱七", "phone": float(phone[3:]), "store_code": "A",
              "vin": vin.translate(full_width), "plate": "粤Ｂ" + plate_digits.translate(full_width),
              "purchase_date": "2024-05-01 00:00:00", "delivery_date": "2024/5/3 0:00", "since": "2024年5月1日"},
             {"external_id": ext(), "name": "孙八", "phone": "1.39E+10", "store_code": "A"}]
    body = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines).encode()
    job = await finished(client, admin, (await upload(client, admin, body, content_type="application/x-ndjson"))["id"])
    report = {r["row"]: r for r in await rows(client, admin, job["id"])}
    assert report[1]["status"] == "accepted" and report[1]["key"] == str(external), report[1]
    assert (report[2]["status"], report[2]["field"]) == ("rejected", "phone") and "scientific" in report[2]["reason"]
    async with group.runtime.sessionmaker() as session:
        vehicle = await session.scalar(sa.select(Vehicle).where(Vehicle.vin == vin))
        customer = await session.scalar(sa.select(Customer).where(Customer.tenant_id == group.tenant_id,
                                                                  Customer.external_id == str(external)))
    assert vehicle is not None and (vehicle.plate, vehicle.delivery_date) == ("粤B" + plate_digits, date(2024, 5, 3))
    assert customer is not None and customer.primary_phone == phone

    visits = f"工单号,车架号,维修类型,结算日期,进厂里程\nRO-{vin},{vin},保养,2026/3/1,5000\n"
    job = await finished(client, admin, (await upload(client, admin, visits.encode(), kind="visits"))["id"])
    assert (job["accepted"], job["rejected"]) == (1, 0), job
    async with group.runtime.sessionmaker() as session:
        visit = await session.scalar(sa.select(ServiceVisit).where(ServiceVisit.external_id == f"RO-{vin}"))
    # A date alone is the store's midnight (Asia/Shanghai, UTC+8).
    assert visit is not None and visit.completed_at.isoformat() == "2026-02-28T16:00:00+00:00"


async def test_an_unexpected_error_fails_the_job_instead_of_its_being_taken_over_for_ever(
        client: httpx.AsyncClient, group: Group, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error a worker taking the job over would meet again (not the database's or the network's): the job
    fails naming it, and the batches committed before it stand."""
    import customer_svc.imports.jobs as jobs

    people = [(ext(), new_phone(), new_vin()) for _ in range(4)]
    poison, keys = people[2][0], jobs.batch_keys

    def batch_keys(kind: str, record: Any) -> set[str]:
        if record.external_id == poison:
            raise KeyError("a bug")
        return keys(kind, record)

    monkeypatch.setattr(jobs, "batch_keys", batch_keys)
    claim = await leased_job(group, [zh_row(*p) for p in people])
    await small_batches(group, in_flight=1).run(claim)
    done, _, names = await outcome(client, group, claim.job_id)
    assert (done["status"], done["rows_done"], done["accepted"]) == ("failed", 2, 2), done
    assert "unexpected error (KeyError)" in done["error"]
    assert {p[0] for p in people} & set(names) == {people[0][0], people[1][0]}
    async with group.runtime.sessionmaker() as session:
        job = await session.get(ImportJob, claim.job_id)
        assert job is not None and job.lease_owner is None


async def test_a_database_error_that_is_no_conflict_is_not_answered_send_it_again(
        client: httpx.AsyncClient, group: Group, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a concurrent writer's error (unique key, deadlock, serialization, lock wait) is a 409 to retry; a
    statement cut off by its timeout is the server's error, a 500 the operator is alerted to."""
    import asyncpg
    from sqlalchemy.exc import DBAPIError

    import customer_svc.imports.service as intake_service

    async def times_out(self: Any, kind: str, items: Any) -> Any:
        raise DBAPIError("SELECT", None, asyncpg.QueryCanceledError("canceling statement due to statement timeout"))

    monkeypatch.setattr(intake_service.Intake, "apply", times_out)
    key = integration_headers(group, ["customers:write"])
    resp = await client.put(f"/api/v1/integration/customers/{ext()}", headers=key,
                            json={"name": "王一", "phone": new_phone(), "store_code": "A"})
    assert resp.status_code == 500, resp.text


async def test_a_batch_and_a_rest_upsert_racing_for_one_new_phone_give_it_to_one_customer(
        client: httpx.AsyncClient, group: Group, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch holds its numbers' identity locks (shared) from its lookups to its commit: a REST upsert of one of
    them, sent while the batch is about to write, waits for it and then finds the number taken."""
    import customer_svc.imports.upsert as upsert
    from customer_svc.models import CustomerPhone

    key = integration_headers(group, ["customers:write"])
    phone, other = new_phone(), (ext(), new_phone(), new_vin())
    first_write = upsert.Intake.write
    racing: list[asyncio.Task[httpx.Response]] = []

    async def another_writer_meanwhile(self: Any, writes: Any) -> None:
        if not racing:
            racing.append(asyncio.create_task(client.put(
                f"/api/v1/integration/customers/{ext()}", headers=key,
                json={"name": "抢先", "phone": phone, "store_code": "A"})))
            await asyncio.sleep(0.5)
            assert not racing[0].done()  # it waits for the batch's identity lock
        await first_write(self, writes)

    monkeypatch.setattr(upsert.Intake, "write", another_writer_meanwhile)
    claim = await leased_job(group, [zh_row(ext(), phone, new_vin()), zh_row(*other)])
    await small_batches(group, in_flight=1).run(claim)
    done, _, _ = await outcome(client, group, claim.job_id)
    assert (done["status"], done["accepted"], done["rejected"]) == ("done", 2, 0), done
    refused = await racing[0]
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "body.phone", refused.text
    async with group.runtime.sessionmaker() as session:
        holders = await session.scalar(sa.select(sa.func.count()).select_from(CustomerPhone).where(
            CustomerPhone.tenant_id == group.tenant_id, CustomerPhone.e164 == phone))
    assert holders == 1


async def test_a_batch_waits_for_another_writers_identity_lock_before_it_locks_any_row(
        client: httpx.AsyncClient, group: Group) -> None:
    """A staff create or edit holding the bucket of a number of the batch (exclusive) makes the batch wait before
    its lookups, holding nothing another writer could wait for; then it goes on as usual."""
    from customer_svc.customers.service import identity_keys
    from customer_svc.imports.jobs import REDONE
    from shared.db.base import advisory_locks

    people = [(ext(), new_phone(), new_vin()) for _ in range(2)]
    claim = await leased_job(group, [zh_row(*p) for p in people])
    redone = REDONE.labels("customers")._value.get()
    async with group.runtime.sessionmaker() as other, other.begin():
        await advisory_locks(other, identity_keys(group.store_a, [people[0][1]]))
        job = asyncio.create_task(small_batches(group, in_flight=1).run(claim))
        await asyncio.sleep(0.5)
        assert not job.done()
    await asyncio.wait_for(job, 10)
    done, _, names = await outcome(client, group, claim.job_id)
    assert (done["status"], done["accepted"], done["rejected"]) == ("done", 2, 0), done
    assert {p[0] for p in people} <= set(names) and REDONE.labels("customers")._value.get() == redone
