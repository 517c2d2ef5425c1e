"""The command line every service shares: ``api``, ``worker``, ``migrate``, ``wait-migrated``, ``downgrade``,
``parked list|replay``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
import uvicorn
import uvloop

from shared import gc_tuning
from shared.db import migrations
from shared.events.envelope import CloudEvent
from shared.messaging.amqp import list_parked, replay_parked
from shared.observability import metrics
from shared.observability.logging import configure_logging
from shared.periodic import drain
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings

log = structlog.get_logger("cli")

#: How long a stopping worker lets its relay and periodic loops finish the step under way before cancelling what is
#: left: below the pods' 30 s ``terminationGracePeriodSeconds`` (deploy/k8s), so that closing the pools and
#: connections still fits before the SIGKILL.
DRAIN_SECONDS = 20.0
#: An API keeps an idle connection open this long: past nginx's upstream keep-alive (60 s, deploy/gateway).
UPSTREAM_KEEP_ALIVE_SECONDS = 75
#: ``wait-migrated``: how long an api or worker pod's init container waits for the migrate Job (it then fails, and
#: the kubelet starts it again with back-off), and how often it looks.
WAIT_MIGRATED_SECONDS = 300.0
WAIT_MIGRATED_EVERY = 2.0

ExtraCommand = tuple[Callable[[argparse.ArgumentParser], None], Callable[[ServiceRuntime, argparse.Namespace], Awaitable[Any]]]


async def heartbeat(runtime: ServiceRuntime, path: Path, stop: asyncio.Event, every: float = 10) -> None:
    """Touch ``path`` while the worker is healthy; a liveness probe restarts the process when the file goes stale
    (a relay stuck on a half-open connection, consumers that never came back)."""
    while not stop.is_set():
        if runtime.worker_alive():
            path.touch()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def run_worker(runtime: ServiceRuntime, drain_seconds: float = DRAIN_SECONDS) -> None:
    """Relay and consumers until SIGINT/SIGTERM, then a drain of ``drain_seconds`` (a second signal cuts it short);
    several replicas may run side by side."""
    stop, hurry = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, lambda: (hurry if stop.is_set() else stop).set())
    try:
        gc_tuning.settle()
        settings = runtime.settings
        stop_metrics = (metrics.serve(settings.worker_metrics_port, settings.worker_metrics_host)
                        if settings.worker_metrics_port else None)
        tasks = runtime.start_workers(stop)
        if settings.worker_heartbeat_file:
            tasks.append(asyncio.create_task(heartbeat(runtime, settings.worker_heartbeat_file, stop)))
        await stop.wait()
        log.info("worker_stopping", drain_seconds=drain_seconds)
        await drain(tasks, stop, drain_seconds, hurry)
        await runtime.dispose()
        if stop_metrics is not None:
            stop_metrics()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def wait_migrated(settings: ServiceSettings, migrations_dir: Path, timeout: float,
                        every: float = WAIT_MIGRATED_EVERY) -> bool:
    """Until the service's schema is at this code's migration head (or past it, see ``migrations.is_migrated``):
    the init container of every api and worker pod, so that new code never starts on the old schema while the
    migrate Job runs, or when it did not run at all. False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    seen = None
    while True:
        try:
            # bounded: asyncpg's own connect timeout (60 s) would outlast the deadline on an unroutable host
            current = await asyncio.wait_for(migrations.current_revisions(settings),
                                             max(deadline - time.monotonic(), 1))
            if migrations.is_migrated(current, settings, migrations_dir):
                log.info("schema_migrated", revisions=sorted(current))
                return True
            state = f"at {', '.join(sorted(current)) or 'no revision'}"
        except Exception as exc:  # noqa: BLE001 - Postgres may not be reachable yet: keep asking until the deadline
            state = f"{type(exc).__name__}: {exc}"
        if state != seen:
            log.info("waiting_for_migration", schema=settings.schema_name, state=state[:300])
            seen = state
        left = deadline - time.monotonic()
        if left <= 0:
            log.error("schema_not_migrated", schema=settings.schema_name, state=state[:300], timeout=timeout)
            return False
        await asyncio.sleep(min(every, left))


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
    worker = sub.add_parser("worker", help="run the outbox relay and event consumers")
    worker.add_argument("--drain-seconds", type=float, default=DRAIN_SECONDS,
                        help="on SIGTERM, how long the step under way may take before it is cancelled")
    sub.add_parser("migrate", help="upgrade this service's schema to the newest migration")
    wait = sub.add_parser("wait-migrated", help="wait until this service's schema is at the newest migration "
                                                "(exit 1 on timeout)")
    wait.add_argument("--timeout", type=float, default=WAIT_MIGRATED_SECONDS)
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
        # Idle connections are kept longer than the gateway keeps its upstream ones (nginx: 60 s): else nginx may
        # send a request down a connection uvicorn is closing (its default is 5 s), and answer it 502.
        uvicorn.run(f"{app_factory.__module__}:{app_factory.__name__}", factory=True, host=args.host,
                    port=args.port, workers=args.workers, log_config=None, access_log=False,
                    timeout_keep_alive=UPSTREAM_KEEP_ALIVE_SECONDS)
    elif args.cmd == "worker":
        # uvloop, as uvicorn uses for the API: the worker is event-loop bound (thousands of small database,
        # broker and provider round trips a second), and uvloop's loop costs a fraction of asyncio's.
        uvloop.run(run_worker(build_runtime(settings), args.drain_seconds))
    elif args.cmd == "migrate":
        migrations.upgrade(settings, migrations_dir)
    elif args.cmd == "wait-migrated":
        if not settings.database_url:
            raise SystemExit("wait-migrated needs the service's database URL (embedded mode creates its own tables)")
        logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)  # its "Context impl" on every poll
        raise SystemExit(0 if asyncio.run(wait_migrated(settings, migrations_dir, args.timeout)) else 1)
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
