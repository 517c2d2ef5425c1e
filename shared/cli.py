"""The command line every service shares: ``api``, ``worker``, ``migrate``, ``downgrade``, ``parked list|replay``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import uvicorn
import uvloop

from shared import gc_tuning
from shared.db import migrations
from shared.events.envelope import CloudEvent
from shared.messaging.amqp import list_parked, replay_parked
from shared.observability import metrics
from shared.observability.logging import configure_logging
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings

ExtraCommand = tuple[Callable[[argparse.ArgumentParser], None], Callable[[ServiceRuntime, argparse.Namespace], Awaitable[Any]]]


async def heartbeat(runtime: ServiceRuntime, path: Path, stop: asyncio.Event, every: float = 10) -> None:
    """Touch ``path`` while the worker is healthy; a liveness probe restarts the process when the file goes stale
    (a relay stuck on a half-open connection, consumers that never came back)."""
    while not stop.is_set():
        if runtime.worker_alive():
            path.touch()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def run_worker(runtime: ServiceRuntime) -> None:
    """Relay and consumers until SIGINT/SIGTERM; several replicas may run side by side."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    gc_tuning.settle()
    settings = runtime.settings
    stop_metrics = (metrics.serve(settings.worker_metrics_port, settings.worker_metrics_host)
                    if settings.worker_metrics_port else None)
    tasks = runtime.start_workers(stop)
    if settings.worker_heartbeat_file:
        tasks.append(asyncio.create_task(heartbeat(runtime, settings.worker_heartbeat_file, stop)))
    await stop.wait()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await runtime.dispose()
    if stop_metrics is not None:
        stop_metrics()


async def parked(runtime: ServiceRuntime, action: str, message_id: str | None) -> Any:
    """Inspect or replay parked events: the ``<service>.parked`` queue, or the table in embedded mode."""
    settings = runtime.settings
    if not settings.embedded:
        assert settings.amqp_url
        if action == "list":
            return await list_parked(settings.amqp_url, runtime.name)
        return {"replayed": await replay_parked(settings.amqp_url, runtime.name, message_id)}
    model = runtime.messaging.parked
    async with runtime.sessionmaker() as session:
        rows = list((await session.scalars(sa.select(model).order_by(model.parked_at))).all())
        if action == "list":
            return [{"message_id": str(r.id), "type": r.event_type, "attempts": r.attempts, "error": r.error} for r in rows]
        replayed = 0
        for row in rows:
            if message_id and str(row.id) != message_id:
                continue
            await runtime.consumer.handle(CloudEvent.model_validate(row.payload))
            await session.delete(row)
            replayed += 1
        await session.commit()
        return {"replayed": replayed}


def service_main(settings_cls: type[ServiceSettings], build_runtime: Callable[..., ServiceRuntime],
                 app_factory: Callable[..., Any], migrations_dir: Path,
                 extra: dict[str, ExtraCommand] | None = None) -> None:
    name = settings_cls.service_name
    parser = argparse.ArgumentParser(prog=f"python -m {name}")
    sub = parser.add_subparsers(dest="cmd", required=True)
    api = sub.add_parser("api", help="serve the REST API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8001)
    api.add_argument("--workers", type=int, default=1)
    sub.add_parser("worker", help="run the outbox relay and event consumers")
    sub.add_parser("migrate", help="upgrade this service's schema to the newest migration")
    down = sub.add_parser("downgrade", help="downgrade this service's schema")
    down.add_argument("revision", nargs="?", default="base")
    park = sub.add_parser("parked", help="list or replay events parked after failing every retry")
    park.add_argument("action", choices=["list", "replay"])
    park.add_argument("--id", dest="message_id", help="replay only this message id")
    for cmd, (configure, _) in (extra or {}).items():
        configure(sub.add_parser(cmd))
    args = parser.parse_args()

    settings = settings_cls()
    configure_logging(name, settings.log_level, settings.log_json)
    if args.cmd == "api":
        metrics.share_between_processes(args.workers)
        uvicorn.run(f"{app_factory.__module__}:{app_factory.__name__}", factory=True, host=args.host,
                    port=args.port, workers=args.workers, log_config=None, access_log=False)
    elif args.cmd == "worker":
        # uvloop, as uvicorn uses for the API: the worker is event-loop bound (thousands of small database,
        # broker and provider round trips a second), and uvloop's loop costs a fraction of asyncio's.
        uvloop.run(run_worker(build_runtime(settings)))
    elif args.cmd == "migrate":
        migrations.upgrade(settings, migrations_dir)
    elif args.cmd == "downgrade":
        migrations.downgrade(settings, migrations_dir, args.revision)
    else:
        async def run(fn: Callable[[ServiceRuntime], Awaitable[Any]]) -> Any:
            runtime = build_runtime(settings)
            try:
                return await fn(runtime)
            finally:
                await runtime.dispose()

        if args.cmd == "parked":
            result = asyncio.run(run(lambda rt: parked(rt, args.action, args.message_id)))
        else:
            result = asyncio.run(run(lambda rt: extra[args.cmd][1](rt, args)))  # type: ignore[index]
        print(json.dumps(result, ensure_ascii=False, indent=2, default=str))
