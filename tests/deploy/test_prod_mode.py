"""scripts/prod-up.sh and prod-down.sh for real: a database and a vhost of its own, every service's api and
worker processes and nginx started, a login and a customer through the gateway, the event on RabbitMQ, and
nothing left running afterwards."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path

import asyncpg
import httpx

from aftercare.gateway import ROOT, free_port
from aftercare.services import SERVICE_MODULES
from shared.testing import infra
from shared.testing.events import EventTap

ADMIN_PASSWORD = f"pw-{uuid.uuid4().hex[:16]}"


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def run_script(name: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "scripts" / name)], env=env, capture_output=True, text=True, timeout=timeout)


async def test_prod_up_serves_through_the_gateway_and_prod_down_stops_everything(tmp_path: Path) -> None:
    db = f"aftercare_prod_{uuid.uuid4().hex[:10]}"
    vhost, amqp_url = await asyncio.to_thread(infra.create_vhost)
    port = free_port()
    prod_dir = tmp_path / "prod"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AFTERCARE_", "CUSTOMER_"))},
           "AFTERCARE_PROD_DIR": str(prod_dir), "AFTERCARE_PROD_DB": db, "AFTERCARE_AMQP_URL": amqp_url,
           "PORT": str(port), "AFTERCARE_PROD_API_WORKERS": "1", "AFTERCARE_PROD_ADMIN_PASSWORD": ADMIN_PASSWORD}
    tap = await EventTap(amqp_url, "aftercare.events").start()
    try:
        up = await asyncio.to_thread(run_script, "prod-up.sh", env)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert f"http://127.0.0.1:{port}" in up.stdout and ADMIN_PASSWORD in up.stdout
        # survey_svc's link key is generated once and kept; its links point at the gateway
        assert (prod_dir / "secrets" / "survey-token-key").stat().st_size >= 32
        assert f"answer links http://127.0.0.1:{port}/s/<token>" in up.stdout

        pid_files = sorted((prod_dir / "run").glob("*.pid")) + [prod_dir / "gateway" / "gateway.pid"]
        assert {p.name for p in pid_files} == {f"{s}-{kind}.pid" for s in SERVICE_MODULES for kind in ("api", "worker")} \
            | {"gateway.pid"}
        pids = [int(p.read_text()) for p in pid_files]
        assert all(alive(pid) for pid in pids)

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as gw:
            login = await gw.post("/api/v1/auth/login", json={"tenant": "demo", "employee_no": "admin",
                                                               "password": ADMIN_PASSWORD})
            assert login.status_code == 200, login.text
            auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
            stores = (await gw.get("/api/v1/stores", headers=auth)).json()
            store = stores["items"][0]["id"] if isinstance(stores, dict) else stores[0]["id"]
            created = await gw.post("/api/v1/customers", headers=auth,
                                    json={"store_id": store, "name": "生产模式", "phones": [{"number": "13900001234"}]})
            assert created.status_code == 201, created.text
            customer_id = created.json()["id"]
            # the public answer page is served by survey_svc through the gateway (its own HTML, even for a bad link)
            page = await gw.get("/s/not-a-real-token")
            assert page.status_code == 404 and page.headers["content-type"].startswith("text/html"), page.text
        # the worker process relayed it from the outbox to RabbitMQ
        [event] = await tap.wait_for("customer.customer.created.v1", subject=customer_id, timeout=20)
        assert event.source == "customer_svc"

        # every service connects as its own role, not as the superuser
        conn = await asyncpg.connect(infra.PG_ADMIN_DSN)
        try:
            users = {r["usename"] for r in await conn.fetch(
                "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", db)}
        finally:
            await conn.close()
        assert users == set(SERVICE_MODULES)

        down = await asyncio.to_thread(run_script, "prod-down.sh", env, 60)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not any(alive(pid) for pid in pids), [pid for pid in pids if alive(pid)]
        assert not list((prod_dir / "run").glob("*.pid"))
        async with httpx.AsyncClient() as plain:
            try:
                await plain.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                raise AssertionError("the gateway still answers")
            except httpx.ConnectError:
                pass
    finally:
        await asyncio.to_thread(run_script, "prod-down.sh", env, 60)
        await tap.close()
        await infra.drop_database(db)
        await asyncio.to_thread(infra.delete_vhost, vhost)
