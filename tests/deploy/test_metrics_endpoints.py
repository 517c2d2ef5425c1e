"""``/metrics`` from real processes, as a deployment runs them: an API of two uvicorn processes answers every scrape
with the sum over both (a scrape reaches one of them at random), and a worker, which has no API, serves its own
metrics on its metrics port: what its relay published and what its import jobs did. The API also keeps idle
connections open past uvicorn's 5 s default, as the gateway expects."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from aftercare.gateway import free_port
from bench.env import create_env, destroy_env, seed_tenant
from bench.imports import queue_job, write_file
from customer_svc.app import CustomerRuntime


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name}


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await check():
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.2)


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "customer_svc", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


async def test_api_metrics_add_up_its_processes_and_a_worker_serves_its_own(tmp_path: Path) -> None:
    bench = await create_env()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        api_port, metrics_port = free_port(), free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AFTERCARE_", "CUSTOMER_",
                                                                              "PROMETHEUS_"))},
               **bench.service_env(), "CUSTOMER_WORKER_METRICS_PORT": str(metrics_port)}
        processes.append(start(["api", "--port", str(api_port), "--workers", "2"], env, tmp_path / "api.log"))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=10) as api:
            await eventually(lambda: _ok(api.get("/healthz")))
            # An idle connection outlives uvicorn's default 5 s (the gateway reuses its upstream ones for 60 s).
            reader, writer = await asyncio.open_connection("127.0.0.1", api_port)
            for pause in (0, 6):
                await asyncio.sleep(pause)
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n")
                await writer.drain()
                assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 200"), pause
                await asyncio.wait_for(reader.readuntil(b'{"status":"ok"}'), 5)
            writer.close()
            # New connections each (the two processes share the listening socket), answered 401 without a token.
            requests = 40
            for _ in range(requests):
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as fresh:
                    assert (await fresh.get("/api/v1/stores")).status_code == 401
            key = (("method", "GET"), ("route", "/api/v1/stores"), ("service", "customer_svc"), ("status", "401"))
            for _ in range(8):  # whichever process answers the scrape
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as fresh:
                    scraped = (await fresh.get("/metrics")).text
                assert samples(scraped, "http_requests_total")[key] == requests, scraped[-2000:]

        # The worker: a small import, then its metrics port tells what it did.
        runtime = CustomerRuntime(bench.settings())
        try:
            tenant = await seed_tenant(runtime, role="admin")
            path = tmp_path / "customers.csv"
            write_file(path, 30, seed=7)
            await queue_job(runtime, tenant.tenant_id, tenant.tenant_id, path)
        finally:
            await runtime.dispose()
        processes.append(start(["worker"], env, tmp_path / "worker.log"))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{metrics_port}", timeout=10) as worker:
            async def imported_and_relayed() -> bool:
                text = (await worker.get("/metrics")).text
                # the import's events (created, registered, delivered per record) go out through its relay
                return samples(text, "import_jobs_finished_total").get(
                    (("kind", "customers"), ("status", "done"))) == 1 and samples(
                    text, "outbox_published_total").get((("service", "customer_svc"),), 0) >= 90
            await eventually(imported_and_relayed)
            text = (await worker.get("/metrics")).text
        assert samples(text, "import_records_total")[(("kind", "customers"), ("outcome", "accepted"))] == 30
        assert (("kind", "customers"),) not in samples(text, "import_batches_redone_total")
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        await destroy_env(bench)
    for p in processes:
        assert p.returncode == 0, (tmp_path / "worker.log").read_text()[-3000:]


async def _ok(response: Awaitable[httpx.Response]) -> bool:
    return (await response).status_code == 200
