"""HTTP figures through nginx: authenticated customer read and create vs a bare FastAPI endpoint."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from aftercare.gateway import Gateway, free_port, render
from bench import wrk
from bench.env import BenchEnv, Tenant
from bench.procs import Server, cpu_seconds

HIGH_RATE = "100000r/s"


@dataclass
class HttpOptions:
    duration: float = 10
    connections: int = 32
    threads: int = 2
    warmup: float = 2
    seed_customers: int = 64
    runs: tuple[str, ...] = ("bare", "get", "post")


def _post_json(url: str, body: dict[str, Any], token: str) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback only
        return json.loads(resp.read())


def seed_customers(base_url: str, tenant: Tenant, n: int) -> list[str]:
    """Customers created through the API itself (the normal write path), with a phone, tags and a consent."""
    ids = []
    for i in range(n):
        body = {"store_id": str(tenant.store_id), "name": f"基准客户{i}", "phones": [{"number": f"+86158{i:08d}"}],
                "tags": ["bench", "vip"] if i % 2 else ["bench"], "gender": "female" if i % 2 else "male",
                "consents": [{"channel": "sms", "purpose": "service", "granted": True, "source": "bench"}]}
        ids.append(_post_json(f"{base_url}/api/v1/customers", body, tenant.token)["id"])
    return ids


def check_read(url: str, customer_id: str, token: str) -> None:
    """One read through nginx before measuring: the right record, its ETag, phones unmasked for this role."""
    req = urllib.request.Request(f"{url}/api/v1/customers/{customer_id}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback only
        body, etag = json.loads(resp.read()), resp.headers.get("ETag")
    if body.get("id") != customer_id or not etag or not body.get("phones") or body.get("pii_masked"):
        raise RuntimeError(f"unexpected read through the gateway: {etag} {body}")


class Stack:
    """One uvicorn app behind its own nginx (the committed config, rendered with a high rate limit, no access log)."""

    def __init__(self, name: str, server: Server, workdir: Path) -> None:
        self.name = name
        self.server = server
        self.gateway_port = free_port()
        conf = render({"customer_svc": [f"127.0.0.1:{server.port}"]}, self.gateway_port, workdir / f"nginx-{name}",
                      rate=HIGH_RATE, access_log=False, others_down=True)
        self.gateway = Gateway(conf, self.gateway_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def start(self) -> Stack:
        self.server.start()
        self.gateway.start()
        return self

    def stop(self) -> None:
        self.gateway.stop()
        self.server.stop()


def db_sessions(env: BenchEnv) -> int:
    """Connections ever opened to the bench database (pg_stat_database.sessions): pool churn shows up here."""
    async def count() -> int:
        conn = await asyncpg.connect(env.database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return int(await conn.fetchval("SELECT sessions FROM pg_stat_database WHERE datname = current_database()"))
        finally:
            await conn.close()
    return asyncio.run(count())


def measure(stack: Stack, script: Path, opts: HttpOptions, label: str, env: BenchEnv,
            script_args: list[str] | None = None, warmup_args: list[str] | None = None) -> wrk.WrkResult:
    if opts.warmup:
        wrk.run(stack.url, script, threads=opts.threads, connections=opts.connections, duration=opts.warmup,
                script_args=warmup_args or script_args)
    sessions0 = db_sessions(env)
    cpu0, t0 = cpu_seconds(stack.server.pid), time.monotonic()
    result = wrk.run(stack.url, script, threads=opts.threads, connections=opts.connections, duration=opts.duration,
                     script_args=script_args)
    cpu = (cpu_seconds(stack.server.pid) - cpu0) / (time.monotonic() - t0)
    opened = db_sessions(env) - sessions0 - 1  # less our own counting connection
    flag = "" if result.non_2xx == 0 and result.socket_errors == 0 else \
        f"  !! non-2xx {result.non_2xx}, socket errors {result.socket_errors}"
    per_req = cpu / result.ok_rps * 1000 if result.ok_rps else float("nan")
    print(f"  {label:<22} {result.ok_rps:7.0f} req/s  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:7.2f} ms  "
          f"app CPU {cpu * 100:3.0f}% ({per_req:.2f} ms/req)  db conns opened {opened}{flag}", flush=True)
    if result.non_2xx > result.requests * 0.001:
        raise RuntimeError(f"{label}: {result.non_2xx} of {result.requests} responses were not 2xx:\n{result.raw}")
    return result


def run_http(env: BenchEnv, tenant: Tenant, opts: HttpOptions) -> dict[str, float]:
    work = env.workdir
    customer = Stack("customer", Server("customer_svc api", ["-m", "customer_svc", "api", "--port", str(port := free_port())],
                                        port, work / "customer_svc.log", env.service_env()), work)
    bare = Stack("bare", Server("bare app", ["-m", "bench.bare_app", "--port", str(bport := free_port())], bport,
                                work / "bare_app.log"), work)
    stacks = [customer, bare]
    try:
        for s in stacks:
            s.start()
        print(f"  customer_svc api pid {customer.server.pid} behind nginx :{customer.gateway_port}; "
              f"bare app pid {bare.server.pid} behind nginx :{bare.gateway_port}", flush=True)
        ids = seed_customers(f"http://127.0.0.1:{customer.server.port}", tenant, opts.seed_customers)
        check_read(customer.url, ids[0], tenant.token)
        get_script = wrk.write_get_script(work / "get.lua", ids, tenant.token)
        post_script = wrk.write_post_script(work / "post.lua", str(tenant.store_id), tenant.token)
        print(f"  seeded {len(ids)} customers; wrk -t{opts.threads} -c{opts.connections} -d{opts.duration:g}s "
              f"(after a {opts.warmup:g}s warm-up each)", flush=True)
        out: dict[str, float] = {}
        if "bare" in opts.runs:
            r = measure(bare, get_script, opts, "bare FastAPI GET", env)
            out.update(bare_rps=round(r.ok_rps, 1), bare_p99_ms=round(r.p99_ms, 2))
        if "get" in opts.runs:
            r = measure(customer, get_script, opts, "GET /customers/{id}", env)
            out.update(get_customer_rps=round(r.ok_rps, 1), get_customer_p99_ms=round(r.p99_ms, 2))
        if "post" in opts.runs:
            r = measure(customer, post_script, opts, "POST /customers", env, script_args=["1"], warmup_args=["0"])
            out.update(create_customer_rps=round(r.ok_rps, 1), create_customer_p99_ms=round(r.p99_ms, 2))
    finally:
        for s in stacks:
            s.stop()
    if out.get("bare_rps") and out.get("get_customer_rps"):
        out["get_ratio"] = round(out["get_customer_rps"] / out["bare_rps"], 3)
    return out


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
