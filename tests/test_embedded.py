"""Embedded mode (what `make run` starts): SQLite under var/, the in-process bus with the same
outbox/inbox guarantees, the demo seed; and the settings that choose between the two modes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from aftercare.embedded import create_embedded_app
from customer_svc.app import CustomerRuntime
from customer_svc.bootstrap import DEMO_PASSWORD
from customer_svc.settings import CustomerSettings
from survey_svc.invitations.tokens import token_for
from shared.cli import parked
from shared.events.envelope import CloudEvent
from shared.messaging.consumer import EventConsumer, Subscription
from shared.messaging.memory import InProcessBus, db_parker
from shared.testing.waiting import eventually
from tests.customer_svc.factories import new_vin
from tests.followup_svc.conftest import local_today

PLATFORM_ENV = ("AFTERCARE_DATABASE_URL", "AFTERCARE_AMQP_URL", "CUSTOMER_DATABASE_URL", "CUSTOMER_AMQP_URL",
                "FOLLOWUP_DATABASE_URL", "FOLLOWUP_AMQP_URL", "NOTIFY_DATABASE_URL", "NOTIFY_AMQP_URL",
                "SURVEY_DATABASE_URL", "SURVEY_AMQP_URL", "SURVEY_PUBLIC_BASE_URL", "SURVEY_TOKEN_KEY",
                "AFTERCARE_JWT_PUBLIC_KEY", "CUSTOMER_JWT_PRIVATE_KEY")


@pytest.fixture
def embedded_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in PLATFORM_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AFTERCARE_VAR_DIR", str(tmp_path / "var"))
    return tmp_path / "var"


@pytest.fixture
async def embedded(embedded_env: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_embedded_app()
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://embedded") as client:
            yield client


async def test_make_run_platform_works_end_to_end(embedded: httpx.AsyncClient, embedded_env: Path) -> None:
    assert (embedded_env / "customer_svc.db").exists()
    login = await embedded.post("/api/v1/auth/login",
                                json={"tenant": "demo", "employee_no": "admin", "password": DEMO_PASSWORD})
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    stores = (await embedded.get("/api/v1/stores", headers=headers)).json()
    assert len(stores) == 2
    staff = (await embedded.get("/api/v1/staff", headers=headers, params={"limit": 50})).json()["items"]
    assert {r for s in staff for r in s["roles"]} >= {"sales_consultant", "service_advisor", "cs_agent", "admin",
                                                      "sales_manager", "service_manager", "cs_manager", "cs_director"}
    c = await embedded.post("/api/v1/customers", headers=headers,
                            json={"store_id": stores[0]["id"], "name": "嵌入式", "phones": [{"number": "13700000001"}]})
    assert c.status_code == 201, c.text
    read = await embedded.get(f"/api/v1/customers/{c.json()['id']}", headers=headers)
    assert read.status_code == 200 and read.json()["phones"][0]["number"] == "+8613700000001"
    assert read.headers["etag"] == 'W/"1"'

    async def timeline() -> list | None:
        items = (await embedded.get(f"/api/v1/customers/{c.json()['id']}/timeline", headers=headers)).json()["items"]
        return items or None

    [entry] = await eventually(timeline, timeout=10)
    assert entry["event_type"] == "customer.customer.created.v1"
    assert (await embedded.get("/readyz")).json()["status"] == "ok"

    # A bulk import runs on SQLite too (no COPY there: multi-row inserts), with its report.
    code = stores[0]["code"]
    csv = f"客户编号,姓名,手机,门店编码,车架号,交车日期\nE-1,甲,13700000002,{code},{new_vin()},2025-01-02\n".encode()
    job = await embedded.post("/api/v1/imports", params={"kind": "customers"}, content=csv,
                              headers={**headers, "Content-Type": "text/csv"})
    assert job.status_code == 202, job.text

    async def imported() -> dict | None:
        found = (await embedded.get(f"/api/v1/imports/{job.json()['id']}", headers=headers)).json()
        return found if found["status"] == "done" else None

    assert (await eventually(imported, timeout=10))["accepted"] == 1
    report = await embedded.get(f"/api/v1/imports/{job.json()['id']}/report", params={"format": "csv"},
                                headers=headers)
    assert report.status_code == 200 and report.text.count("accepted") == 1
    assert "customer.customer.created.v1" in (await embedded.get("/asyncapi.json")).json()["channels"].__str__()


async def test_in_process_bus_dedups_retries_and_parks(embedded_env: Path) -> None:
    runtime = CustomerRuntime(CustomerSettings(), InProcessBus(retry_delays_ms=[10, 10]))
    await runtime.prepare()
    calls: list[str] = []

    async def flaky(session, event: CloudEvent) -> None:  # type: ignore[no-untyped-def]
        calls.append(event.data["kind"])
        if event.data["kind"] == "poison":
            raise ValueError("cannot handle")

    consumer = EventConsumer("probe", runtime.sessionmaker, runtime.messaging.inbox,
                             [Subscription("flaky", ("test.#",), flaky)])
    assert runtime.bus is not None
    runtime.bus.attach(consumer, db_parker(runtime.sessionmaker, runtime.messaging.parked))
    good = CloudEvent(id=uuid.uuid4(), source="t", type="test.thing.v1", time="2026-11-23T00:00:00Z", data={"kind": "good"})
    poison = CloudEvent(id=uuid.uuid4(), source="t", type="test.thing.v1", time="2026-11-23T00:00:00Z", data={"kind": "poison"})

    assert await runtime.bus.publish_batch([good, good, poison]) == [None, None, None]
    assert calls == ["good", "poison", "poison", "poison"]  # duplicate skipped; poison tried 3 times
    listed = await parked(runtime, "list", None)
    assert [p["message_id"] for p in listed] == [str(poison.id)] and listed[0]["attempts"] == 3
    await runtime.dispose()


def test_settings_choose_the_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in PLATFORM_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AFTERCARE_VAR_DIR", str(tmp_path))
    embedded = CustomerSettings()
    assert embedded.embedded and embedded.effective_database_url.startswith("sqlite+aiosqlite:///")
    monkeypatch.setenv("AFTERCARE_DATABASE_URL", "postgresql+asyncpg://u@db/platform")
    monkeypatch.setenv("AFTERCARE_AMQP_URL", "amqp://u:p@mq/")
    prod = CustomerSettings()
    assert not prod.embedded and prod.database_url == "postgresql+asyncpg://u@db/platform"
    monkeypatch.setenv("CUSTOMER_DATABASE_URL", "postgresql+asyncpg://customer_svc@db/platform")
    assert CustomerSettings().database_url == "postgresql+asyncpg://customer_svc@db/platform"


async def test_embedded_follow_up_plan_fires_with_the_test_clock(embedded_env: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The follow-up engine on SQLite and the in-process bus: a delivery plans, the test clock makes it fire."""
    monkeypatch.setenv("FOLLOWUP_TEST_CLOCK", "true")
    monkeypatch.setenv("FOLLOWUP_SCHEDULER_POLL_SECONDS", "0.1")
    app = create_embedded_app()
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://embedded") as client:
        login = await client.post("/api/v1/auth/login",
                                  json={"tenant": "demo", "employee_no": "admin", "password": DEMO_PASSWORD})
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        store = (await client.get("/api/v1/stores", headers=headers)).json()[0]["id"]
        customer = (await client.post("/api/v1/customers", headers=headers, json={
            "store_id": store, "name": "嵌入式车主", "relationship_type": "owner",
            "phones": [{"number": "13700000002"}]})).json()
        vehicle = (await client.post("/api/v1/vehicles", headers=headers,
                                     json={"customer_id": customer["id"], "vin": new_vin()})).json()
        delivered = await client.post(f"/api/v1/vehicles/{vehicle['id']}/delivery", headers=headers,
                                      json={"delivery_date": local_today().isoformat()})
        assert delivered.status_code == 200, delivered.text

        async def plan() -> list | None:
            resp = await client.get("/api/v1/followups", headers=headers,
                                    params={"vehicle_id": vehicle["id"], "limit": 100})
            items = resp.json()["items"] if resp.status_code == 200 else []
            return items if len(items) >= 17 else None

        items = await eventually(plan, timeout=10)
        assert {i["rule_key"] for i in items} >= {"post_delivery_call_3h", "post_delivery_calls", "maintenance_reminder"}
        moved = await client.put("/api/v1/test-clock", headers=headers, json={"advance_seconds": 86400})
        assert moved.status_code == 200, moved.text

        async def call_task() -> list | None:
            resp = await client.get("/api/v1/tasks", headers=headers, params={"customer_id": customer["id"]})
            tasks = resp.json()["items"] if resp.status_code == 200 else []
            return tasks or None

        [task] = await eventually(call_task, timeout=10)
        assert task["title"] == "提车3小时关怀电话" and task["status"] == "open"

        # The thank-you message (4 h after delivery) reached notify_svc over the in-process bus; it is sent through
        # the console channel when its time comes in the store's local time (notify keeps the real clock).
        async def thanks() -> list | None:
            resp = await client.get("/api/v1/messages", headers=headers, params={"customer_id": customer["id"]})
            items = resp.json()["items"] if resp.status_code == 200 else []
            return [m for m in items if m["template"] == "purchase_thanks"] or None

        [message] = await eventually(thanks, timeout=10)
        assert message["source"] == "followup" and message["purpose"] == "service"
        assert message["status"] in ("queued", "held", "sent") and message["channels"] == ["wechat", "sms"]


async def test_embedded_serves_the_survey_answer_page_at_its_own_address(
        embedded_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """survey_svc on SQLite in the one process: staff invite a customer, the link points at this server (no gateway
    in embedded mode), the customer answers on /s/<token> and gets the thank-you page, then the "already answered"
    one."""
    monkeypatch.setenv("PORT", "18123")
    app = create_embedded_app()
    survey = app.state.runtimes["survey_svc"]
    assert survey.settings.public_base_url == "http://127.0.0.1:18123"
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://embedded") as client:
        login = await client.post("/api/v1/auth/login",
                                  json={"tenant": "demo", "employee_no": "admin", "password": DEMO_PASSWORD})
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        store = (await client.get("/api/v1/stores", headers=headers)).json()[0]["id"]
        customer = (await client.post("/api/v1/customers", headers=headers, json={
            "store_id": store, "name": "问卷车主", "phones": [{"number": "13700000003"}]})).json()
        vehicle = (await client.post("/api/v1/vehicles", headers=headers, json={
            "customer_id": customer["id"], "vin": "LSVAU218XN2183294"})).json()
        visit = (await client.post("/api/v1/visits", headers=headers, json={
            "vehicle_id": vehicle["id"], "visit_type": "maintenance",
            "completed_at": datetime.now(UTC).isoformat()})).json()

        async def invited() -> dict | None:  # once survey_svc has the demo group's stores and default surveys
            resp = await client.post("/api/v1/surveys/invitations", headers=headers, json={
                "survey": "service_satisfaction", "store_id": store, "customer_id": customer["id"],
                "about_type": "visit", "about_id": visit["id"]})
            return resp.json() if resp.status_code == 201 else None

        invitation = await eventually(invited, timeout=10)
        assert "links in them open here: http://127.0.0.1:18123/s/<token>" in capsys.readouterr().out
        token = token_for(survey.settings.token_secret, uuid.UUID(invitation["id"]))
        assert survey.settings.answer_link(token) == f"http://127.0.0.1:18123/s/{token}"

        page = await client.get(f"/s/{token}")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "维修满意度调查" in page.text and "<form" in page.text
        answers = {"q1": "satisfied", "q2": "very_satisfied", "q3": "satisfied", "q4": "satisfied",
                   "q5": "satisfied", "q6": "yes"}
        done = await client.post(f"/s/{token}", data=answers)
        assert done.status_code == 200 and "提交成功" in done.text, done.text
        again = await client.get(f"/s/{token}")
        assert again.status_code == 200 and "您已完成调查" in again.text
        unknown = await client.get("/s/no-such-token")
        assert unknown.status_code == 404 and "链接无效" in unknown.text

        async def answered() -> list | None:
            resp = await client.get("/api/v1/surveys/responses", headers=headers,
                                    params={"customer_id": customer["id"]})
            return resp.json()["items"] if resp.status_code == 200 and resp.json()["items"] else None

        [response] = await eventually(answered, timeout=10)
        assert response["satisfaction_index"] is not None
