"""``make bench-survey``: public survey answers per second through nginx, beside a bare FastAPI endpoint, and the
time the monthly satisfaction report takes over a year of 1,000,000 responses.

One run is self-contained: a fresh database (survey_svc's schema, migrated with Alembic) and RabbitMQ vhost, a
fresh key pair, and the data of :mod:`bench.survey_data` COPYed in (a year of history: 1,000,000 responses with
their invitations and the repair orders and deliveries they were about, 1,250,000 records in all; then 40,000
open invitations whose links the submission run answers), vacuumed and analysed.

1. ``submit_rps`` / ``p99_ms``: ``python -m survey_svc api`` (production settings, one uvicorn worker, no worker
   process) behind nginx (the committed gateway config rendered by ``aftercare.gateway.render`` with the
   per-client and public-answer limits raised: ``@rate``, ``@burst``, ``@public_rate``, ``@public_burst``);
   ``wrk -t2 -c32`` POSTs ``/api/v1/public/surveys/<token>/responses``, every
   request to its own open invitation (a used link would answer 409 and fail the run), each from its own device
   (User-Agent), with the service questionnaire's answers. Every request is validated, scored, checked for
   integrity (shared phone, same device) and stored with its events, as in production. The wrk run follows a
   2-second warm-up on other links. Only 2xx responses count.
2. ``bare_rps``: ``bench/bare_app.py``'s endpoint of the same path (parses the JSON body, stores nothing) behind
   its own nginx rendered the same way, with the same script; ``ratio`` = submit_rps / bare_rps.
3. ``report_seconds``: ``GET /api/v1/surveys/reports/satisfaction?group_by=month`` over that year through nginx
   by a tenant-wide user (every store): the median wall time of three requests.

The last line printed is one JSON object: ``submit_rps``, ``p99_ms``, ``bare_rps``, ``ratio``, ``report_seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg

from aftercare.gateway import Gateway, free_port, render
from bench import wrk
from bench.__main__ import machine
from bench.procs import Server, cpu_seconds
from bench.survey_data import SUBMIT_ANSWERS, seed
from survey_svc.app import MIGRATIONS
from survey_svc.settings import SurveySettings
from shared.auth.tokens import TokenIssuer, generate_keypair
from shared.db import migrations
from shared.testing import infra

KEYS = ["submit_rps", "p99_ms", "bare_rps", "ratio", "report_seconds"]
EXCHANGE = "aftercare.events"
HIGH_RATE, HIGH_BURST = "100000r/s", 100_000
TOKEN_KEY = "bench-survey-token-key"
YEAR = 2025
SUBMIT_PATH = "/api/v1/public/surveys/"

# Every request is built once in init(): thread ``tid`` takes the links first..last-1 with (n - first) % threads
# == tid, each answered from its own device. It cycles when it runs out (harmless for the bare app; for the
# service a reused link answers 409, which fails the run).
SUBMIT_SCRIPT = """
local next_tid = 0
local reqs = {}
local i = 0
function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end
function init(args)
  local first, last, threads = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])
  local body = %(body)s
  local n = 0
  for token in io.lines(%(tokens)s) do
    if n >= first and n < last and (n - first) %% threads == tid then
      reqs[#reqs + 1] = wrk.format("POST", "%(path)s" .. token .. "/responses",
        {["Content-Type"] = "application/json", ["User-Agent"] = "bench-phone-" .. n, ["Host"] = wrk.headers["Host"]},
        body)
    end
    n = n + 1
  end
end
function request()
  i = i + 1
  if i > #reqs then i = 1 end
  return reqs[i]
end
"""

def gateway_for(app_port: int, workdir: Path) -> Gateway:
    """nginx for one app as survey_svc's upstream: the committed config, the per-client and public-answer limits
    raised (every request comes from one address here), no access log."""
    port = free_port()
    conf = render({"survey_svc": [f"127.0.0.1:{app_port}"]}, port, workdir, rate=HIGH_RATE, burst=HIGH_BURST,
                  public_rate=HIGH_RATE, public_burst=HIGH_BURST, access_log=False, others_down=True)
    return Gateway(conf, port)


def post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback only
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def get(url: str, token: str) -> tuple[int, bytes, float]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as resp:  # noqa: S310 - loopback only
        body = resp.read()
        return resp.status, body, time.perf_counter() - started


def run_wrk(label: str, url: str, script: Path, first: int, last: int, args: argparse.Namespace,
            pid: int | None) -> wrk.WrkResult:
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    result = wrk.run(url, script, threads=2, connections=args.connections, duration=args.duration,
                     script_args=[str(first), str(last), "2"])
    cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
    flag = "" if result.non_2xx == 0 and result.socket_errors == 0 else \
        f"  !! non-2xx {result.non_2xx}, socket errors {result.socket_errors}"
    print(f"  {label:<30} {result.ok_rps:7.0f} req/s  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:7.2f} ms  "
          f"app CPU {cpu * 100:3.0f}%{flag}", flush=True)
    return result


async def count_answers(url: str) -> int:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM survey.response WHERE invitation_id IN "
                                       "(SELECT id FROM survey.invitation WHERE idempotency_key LIKE 'open:%')"))
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> dict[str, float]:
    started = time.monotonic()
    print(f"Aftercare survey bench: {machine()}", flush=True)
    print("  (servers, nginx, wrk and Postgres share these cores with whatever else runs: figures are noisy)")
    workdir = Path(tempfile.mkdtemp(prefix="aftercare-bench-survey-"))
    db_name, url = await infra.create_database()
    vhost, amqp_url = await asyncio.to_thread(infra.create_vhost)
    stacks: list[tuple[Server, Gateway]] = []
    try:
        private, public = generate_keypair()
        (workdir / "jwt_public.pem").write_text(public)
        settings = SurveySettings(database_url=url, amqp_url=amqp_url, environment="test", token_key=TOKEN_KEY)
        await asyncio.to_thread(migrations.upgrade, settings, MIGRATIONS)
        t0 = time.monotonic()
        seeded = await seed(settings, args.responses, YEAR, args.invitations)
        print(f"  COPYed {args.responses:,} responses with their invitations and {args.responses * 5 // 4:,} "
              f"records, and {args.invitations:,} open invitations, in {time.monotonic() - t0:.0f} s "
              f"(vacuumed and analysed)", flush=True)
        tokens = workdir / "tokens.txt"
        tokens.write_text("\n".join(seeded.tokens) + "\n")
        script = workdir / "submit.lua"
        # ASCII JSON (\\u escapes): LuaJIT's string literals know no \\u, the service's JSON parser does.
        script.write_text(SUBMIT_SCRIPT % {"body": wrk.lua_string(json.dumps({"answers": SUBMIT_ANSWERS})),
                                           "tokens": wrk.lua_string(str(tokens)), "path": SUBMIT_PATH})

        env = {"SURVEY_ENVIRONMENT": "prod", "SURVEY_DATABASE_URL": url, "SURVEY_AMQP_URL": amqp_url,
               "SURVEY_EXCHANGE": EXCHANGE, "SURVEY_JWT_PUBLIC_KEY": str(workdir / "jwt_public.pem"),
               "SURVEY_TOKEN_KEY": TOKEN_KEY, "SURVEY_VAR_DIR": str(workdir / "var"), "SURVEY_LOG_LEVEL": "WARNING"}
        survey_port, bare_port = free_port(), free_port()
        survey = Server("survey_svc api", ["-m", "survey_svc", "api", "--port", str(survey_port)], survey_port,
                        workdir / "survey_svc.log", env)
        bare = Server("bare app", ["-m", "bench.bare_app", "--port", str(bare_port)], bare_port,
                      workdir / "bare_app.log")
        for server, name in ((survey, "survey"), (bare, "bare")):
            gateway = gateway_for(server.port, workdir / f"nginx-{name}")
            stacks.append((server, gateway))
            server.start()
            gateway.start()
        (survey, survey_gw), (bare, bare_gw) = stacks
        survey_url, bare_url = f"http://127.0.0.1:{survey_gw.port}", f"http://127.0.0.1:{bare_gw.port}"
        print(f"  survey_svc api pid {survey.pid} behind nginx :{survey_gw.port}; bare app pid {bare.pid} behind "
              f"nginx :{bare_gw.port}", flush=True)

        # One answer through nginx before measuring (the last link: never used by wrk), and a second one refused.
        last = seeded.tokens[-1]
        status, text = post(f"{survey_url}{SUBMIT_PATH}{last}/responses", {"answers": SUBMIT_ANSWERS})
        again, _ = post(f"{survey_url}{SUBMIT_PATH}{last}/responses", {"answers": SUBMIT_ANSWERS})
        if status != 201 or again != 409:
            raise RuntimeError(f"unexpected answer through the gateway: {status} {text} / then {again}")

        n = len(seeded.tokens) - 1
        warm = n // 10
        print(f"\nAnswer submissions through nginx: wrk -t2 -c{args.connections} -d{args.duration:g}s "
              f"(after a {args.warmup:g}s warm-up each)", flush=True)
        wrk.run(bare_url, script, threads=2, connections=args.connections, duration=args.warmup,
                script_args=["0", str(warm), "2"])
        bare_r = run_wrk("bare FastAPI POST", bare_url, script, warm, n, args, bare.pid)
        wrk.run(survey_url, script, threads=2, connections=args.connections, duration=args.warmup,
                script_args=["0", str(warm), "2"])
        before = await count_answers(url)
        submit_r = run_wrk("POST public survey answer", survey_url, script, warm, n, args, survey.pid)
        stored = await count_answers(url) - before
        if submit_r.non_2xx > submit_r.requests * 0.001 or submit_r.requests > n - warm:
            raise RuntimeError(f"{submit_r.non_2xx} of {submit_r.requests} answers were refused (more requests "
                               f"than links? raise --invitations)\n{submit_r.raw}")
        print(f"  answers stored during the run: {stored:,} (wrk counted {submit_r.requests - submit_r.non_2xx:,} "
              f"2xx; a few may land after wrk stops counting)", flush=True)

        print(f"\nMonthly satisfaction report over {YEAR} (tenant-wide, {len(seeded.store_ids)} stores) through "
              f"nginx", flush=True)
        issuer = TokenIssuer(private, settings.jwt_issuer, settings.jwt_audience)
        token, _ = issuer.issue(subject=seeded.admin_id, tenant_id=seeded.tenant_id, store_ids=[], roles=["admin"],
                                ttl=timedelta(hours=1))
        report_url = (f"{survey_url}/api/v1/surveys/reports/satisfaction?group_by=month&from={YEAR}-01-01"
                      f"&to={YEAR}-12-31")
        times = []
        for attempt in range(args.report_runs):
            status, body, took = get(report_url, token)
            report = json.loads(body)
            times.append(took)
            print(f"  run {attempt + 1}: {took:.2f} s ({report['totals']['responses']:,} responses, "
                  f"{len(report['rows'])} months, NPS {report['totals']['nps']})", flush=True)
        if report["totals"]["responses"] < args.responses:
            raise RuntimeError(f"the report counted {report['totals']['responses']} responses")
        store_url = report_url + f"&store_id={seeded.store_ids[0]}"
        _, _, one_store = get(store_url, token)
        print(f"  one store ({args.responses // len(seeded.store_ids):,} responses): {one_store:.2f} s", flush=True)
        report_seconds = statistics.median(times)
    finally:
        for server, gateway in stacks:
            gateway.stop()
            server.stop()
        await infra.drop_database(db_name)
        await asyncio.to_thread(infra.delete_vhost, vhost)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nDone in {time.monotonic() - started:.0f} s, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return {"submit_rps": round(submit_r.ok_rps, 1), "p99_ms": round(submit_r.p99_ms, 2),
            "bare_rps": round(bare_r.ok_rps, 1), "ratio": round(submit_r.ok_rps / bare_r.ok_rps, 3),
            "report_seconds": round(report_seconds, 3)}


def run() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.survey", description=__doc__.split("\n\n")[0])
    parser.add_argument("--responses", type=int, default=1_000_000, help="responses in the report's year")
    parser.add_argument("--invitations", type=int, default=40_000, help="open links for the submission runs")
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of wrk warm-up before each run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--report-runs", type=int, default=3)
    figures = asyncio.run(main(parser.parse_args()))
    print(json.dumps({k: figures[k] for k in KEYS}), flush=True)


if __name__ == "__main__":
    run()
