"""``python -m bench`` (``make bench``): see the package docstring; the last line printed is the JSON summary."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from importlib import metadata

from bench.env import create_env, destroy_env, seed_tenant
from bench.http import HttpOptions, loadavg, run_http
from bench.relay import RelayOptions, run_relay
from customer_svc.app import CustomerRuntime

KEYS = ["get_customer_rps", "get_customer_p99_ms", "create_customer_rps", "bare_rps", "get_ratio", "relay_eps",
        "raw_publish_eps", "relay_ratio"]
TARGETS = {"get_ratio": 0.40, "relay_ratio": 0.50}


def machine() -> str:
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in
                         ("fastapi", "uvicorn", "uvloop", "httptools", "sqlalchemy", "asyncpg", "aio-pika"))
    return (f"{os.cpu_count()} CPUs ({model or platform.machine()}), Python {platform.python_version()}, {versions}; "
            f"load {loadavg()}")


async def main(args: argparse.Namespace) -> dict[str, float]:
    figures: dict[str, float] = {}
    started = time.monotonic()
    print(f"Aftercare bench: {machine()}", flush=True)
    print("  (servers, nginx, wrk, Postgres and RabbitMQ share these cores with whatever else runs: figures are noisy)")
    env = await create_env()
    if args.db_pool_size:
        env.extra_service_env = {"CUSTOMER_DB_POOL_SIZE": str(args.db_pool_size), "CUSTOMER_DB_MAX_OVERFLOW": "0"}
    try:
        print(f"  fresh database {env.db_name}, vhost {env.vhost}, scratch {env.workdir}", flush=True)
        if not args.skip_http:
            runtime = CustomerRuntime(env.settings())
            try:
                tenant = await seed_tenant(runtime)
            finally:
                await runtime.dispose()
            print("\nHTTP through nginx (customer_svc: Postgres + RabbitMQ settings, 1 uvicorn worker, uvloop+httptools)")
            http_opts = HttpOptions(duration=args.duration, connections=args.connections, warmup=args.warmup,
                                    runs=tuple(args.http.split(",")))
            figures.update(await asyncio.to_thread(run_http, env, tenant, http_opts))
        if not args.skip_relay:
            print("\nOutbox relay vs raw publish (RabbitMQ confirms, quorum queue)")
            relay_opts = RelayOptions(events=args.events, rounds=args.rounds, batch_size=args.batch_size)
            figures.update(await run_relay(env, relay_opts))
    finally:
        await destroy_env(env)
    print(f"\nDone in {time.monotonic() - started:.0f}s, load {loadavg()}")
    for key, target in TARGETS.items():
        if key in figures:
            print(f"  {key} = {figures[key]:.3f} (target >= {target:.2f}: {'met' if figures[key] >= target else 'MISSED'})")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of wrk warm-up before each run (default 2)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--events", type=int, default=20_000, help="outbox events per relay/raw run (default 20000)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating raw/relay rounds; the best of each counts")
    parser.add_argument("--batch-size", type=int, default=None, help="relay batch size (default: the service setting)")
    parser.add_argument("--http", default="bare,get,post", help="which HTTP runs (default bare,get,post)")
    parser.add_argument("--db-pool-size", type=int, default=None,
                        help="run customer_svc with this pool size and no overflow (default: its production settings)")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-relay", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(main(args))
    print(json.dumps({k: result.get(k) for k in KEYS}), flush=True)
    sys.exit(0)
