"""Logs mask personal data and carry request ids; health, readiness and metrics endpoints; errors never leak."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi import APIRouter

from customer_svc.app import CustomerRuntime
from shared.http.app import create_app
from shared.observability.logging import configure_logging
from shared.pii import mask_phone
from tests.conftest import Infra


def test_logs_are_json_with_phones_and_names_masked(capsys: pytest.CaptureFixture[str]) -> None:
    import structlog

    configure_logging("test_svc", "INFO", json=True)
    structlog.get_logger("t").info("called customer", name="张三丰", phone="+8613800138000",
                                   note="customer asked to call 138 0013 8000 later".replace(" 0013 8000", "00138000"))
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["name"] == "张**" and line["phone"] == "+86138****8000"
    assert "13800138000" not in json.dumps(line, ensure_ascii=False)
    assert line["service"] == "test_svc" and line["level"] == "info"
    assert mask_phone("tel 13912345678.") == "tel 139****5678."
    for written, masked in [("请回电 138 0013 8000", "请回电 138****8000"), ("138-0013-8000", "138****8000"),
                            ("+86 138 0013 8000", "+86 138****8000"), ("１３８００１３８０００", "１３８****８０００"),
                            ("座机0755-86001234", "座机0755-****1234"), ("010 6512 3456", "010 ****3456"),
                            ("订单 20231105123456789", "订单 20231105123456789"), ("2023-11-05 10:30", "2023-11-05 10:30"),
                            ("VIN LSVAU218XN2183294", "VIN LSVAU218XN2183294")]:
        assert mask_phone(written) == masked, written


@pytest.fixture
async def app_client(customer_runtime: CustomerRuntime) -> httpx.AsyncClient:
    boom = APIRouter()

    @boom.get("/boom")
    async def explode() -> None:
        raise RuntimeError("secret internal detail: password=hunter2")

    app = create_app(title="t", description="t", runtimes=[customer_runtime], routers=[boom], run_workers=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t")


async def test_request_id_echoed_or_generated(app_client: httpx.AsyncClient) -> None:
    given = await app_client.get("/healthz", headers={"X-Request-ID": "front-end-42"})
    assert given.headers["x-request-id"] == "front-end-42"
    made = await app_client.get("/healthz")
    assert len(made.headers["x-request-id"]) == 32


async def test_unexpected_error_is_a_bare_problem(app_client: httpx.AsyncClient) -> None:
    resp = await app_client.get("/boom", headers={"X-Request-ID": "rid-1"})
    assert resp.status_code == 500 and resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["request_id"] == "rid-1" and "hunter2" not in resp.text and "RuntimeError" not in resp.text


async def test_health_readiness_and_metrics(app_client: httpx.AsyncClient) -> None:
    assert (await app_client.get("/healthz")).json() == {"status": "ok"}
    ready = await app_client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    metrics = (await app_client.get("/metrics")).text
    assert 'http_requests_total{method="GET",route="/healthz"' in metrics


async def readiness_with(infra_env: Infra, **settings: str) -> httpx.Response:
    runtime = CustomerRuntime(infra_env.customer_settings(**settings))
    app = create_app(title="t", description="t", runtimes=[runtime], routers=[], run_workers=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        resp = await client.get("/readyz")
    await runtime.dispose()
    return resp


async def test_readiness_fails_when_the_database_is_down(infra_env: Infra) -> None:
    resp = await readiness_with(infra_env, database_url="postgresql+asyncpg://postgres@127.0.0.1:1/x")
    assert resp.status_code == 503
    assert resp.json()["checks"]["database"].startswith("down") and resp.json()["checks"]["broker"] == "ok"


async def test_broker_outage_does_not_make_the_api_unready(infra_env: Infra) -> None:
    resp = await readiness_with(infra_env, amqp_url="amqp://guest:guest@127.0.0.1:1/")
    assert resp.status_code == 200  # the outbox keeps the events; the API goes on serving
    assert resp.json()["checks"]["database"] == "ok" and resp.json()["checks"]["broker"].startswith("down")


async def test_a_hanging_broker_check_answers_readiness_within_the_probe_timeout() -> None:
    """A black-holed broker (informational) and a slow database check run at once, each cut at its limit: the
    answer comes within the probe's 4 s, and says ready."""
    import time

    from fastapi import FastAPI

    from shared.observability.health import CHECK_SECONDS, health_router

    async def database() -> None:
        await asyncio.sleep(CHECK_SECONDS - 0.5)

    async def broker() -> None:
        await asyncio.sleep(60)

    app = FastAPI()
    app.include_router(health_router({"database": database}, {"broker": broker}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        started = time.monotonic()
        resp = await client.get("/readyz")
    assert time.monotonic() - started < CHECK_SECONDS + 1 < 4
    assert resp.status_code == 200 and resp.json()["checks"] == {"database": "ok", "broker": "down: TimeoutError"}


@pytest.mark.parametrize("sqlstate, status", [("40P01", 409), ("40001", 409), ("22012", 500)])
async def test_a_deadlock_or_serialization_failure_is_a_conflict_to_retry(customer_runtime: CustomerRuntime,
                                                                          sqlstate: str, status: int) -> None:
    """Raised by Postgres itself (with that SQLSTATE): the transaction was rolled back for another to go on, and the
    same request succeeds when sent again; any other database error stays a bare 500."""
    import sqlalchemy as sa

    failing = APIRouter()

    @failing.get("/fails")
    async def fails() -> None:
        async with customer_runtime.sessionmaker() as session:
            await session.execute(sa.text(f"DO $$ BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = '{sqlstate}'; END $$"))

    app = create_app(title="t", description="t", runtimes=[customer_runtime], routers=[failing], run_workers=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://t") as client:
        resp = await client.get("/fails")
    assert resp.status_code == status and resp.headers["content-type"] == "application/problem+json", resp.text
    assert "boom" not in resp.text
