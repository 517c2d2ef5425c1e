"""``make bench-scheduler``: the follow-up scheduler draining a burst, beside the raw claim rate of the same Postgres.

One run is self-contained: a fresh database (followup_svc's schema, migrated with Alembic) holding one dealer
group with one store, its default playbook, 1,000 customers (marketing consent given) with a vehicle each,
and 1,000,000 pending follow-ups: 900,000 due months ahead and 100,000 falling due at once (within the second
before the run starts, on the service clock). Their rules are 70% messages (``owner_monthly_care``, a monthly
series whose next cycle each firing plans, and ``insurance_renewal``) and 30% call tasks (``post_delivery_calls``).

1. The due query as the scheduler sends it, under ``EXPLAIN (ANALYZE, BUFFERS)``: it must read the partial
   index ``ix_followup_due`` and stop after one batch, whatever the number of pending rows.
2. ``raw_claim_per_s``: 2 connections loop ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1000)``,
   one commit per batch, over the same 100,000 due rows; they are then put back and the table vacuumed.
3. ``fired_per_s``: 2 worker processes loop ``Scheduler.fire_due`` (batch 1000) until nothing is due. Each batch claims
   its rows, checks each one, creates the tasks, marks the rows, plans the next cycles and appends the outbox
   events, and commits. Fired means the row left ``scheduled`` (fired or skipped), committed.
   ``lag_p99_s`` is the 99th percentile of (``fired_at`` - ``due_at``) over the burst: how long the backlog
   takes to drain. The relay does not run (the scheduler only writes outbox rows). The run stops after
   ``--max-seconds`` (150) if the burst is not drained by then, and says so; the rest counts as late until then.

The last line printed is one JSON object: ``fired_per_s``, ``lag_p99_s``, ``raw_claim_per_s``, ``ratio`` (and
``due_query_ms``). Targets: fired_per_s >= 5,000 and ratio >= 0.25.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import sys
import shutil
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from multiprocessing import get_context
from typing import Any

import asyncpg
import sqlalchemy as sa

from bench.__main__ import machine
from followup_svc.app import MIGRATIONS, FollowupRuntime
from followup_svc.models import CustomerView, Rule, StaffView, StoreView, VehicleView
from followup_svc.playbooks.seeding import ensure_default_rules
from shared.calendar import DEFAULT_HOURS
from followup_svc.scheduling.scheduler import Scheduler
from followup_svc.settings import FollowupSettings
from shared.auth.tokens import generate_keypair
from shared.db import migrations
from shared.db.base import utcnow
from shared.ids import new_id
from shared.testing import infra

CONSULTANTS = 20
KEYS = ["fired_per_s", "lag_p99_s", "raw_claim_per_s", "ratio", "due_query_ms"]
TARGETS = {"fired_per_s": 5000.0, "ratio": 0.25}
#: rule key -> (share of the rows in twentieths, step, anchor = due - this)
RULES = {"owner_monthly_care": (7, 1, "3 months"), "insurance_renewal": (7, 0, "-45 days"),
         "post_delivery_calls": (6, 0, "3 days")}
#: CPU seconds the scheduler's Python process(es) used while draining (printed beside the wall time).
CPU_USED: list[float] = []
DUE_SQL = ("SELECT * FROM followup.followup WHERE state = 'scheduled' AND due_at <= $1 "
           "ORDER BY due_at LIMIT {batch} FOR UPDATE SKIP LOCKED")
RAW_CLAIM_SQL = ("UPDATE followup.followup SET state = 'claimed' WHERE id IN (SELECT id FROM followup.followup "
                 "WHERE state = 'scheduled' AND due_at <= $1 ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED)")


def pg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


def settings_for(url: str, public_key: str, var_dir: str, pool: int) -> FollowupSettings:
    """The worker's settings; no broker (the scheduler only writes outbox rows), the clock movable."""
    return FollowupSettings(database_url=url, amqp_url=None, environment="test", test_clock=True, log_json=False,
                            log_level="WARNING", jwt_public_key=public_key, var_dir=var_dir, db_pool_size=pool,
                            db_max_overflow=0)


# --- seeding ------------------------------------------------------------------------------------------------


async def seed_group(runtime: FollowupRuntime, customers: int) -> tuple[uuid.UUID, uuid.UUID, dict[str, Any]]:
    """One dealer group: a store, 20 sales consultants, the default rules, customers with one vehicle each."""
    tenant, store = new_id(), new_id()
    consultants = [new_id() for _ in range(CONSULTANTS)]
    now = utcnow()
    async with runtime.sessionmaker() as session, session.begin():
        session.add(StoreView(id=store, tenant_id=tenant, code="A", name="Bench store A", timezone="Asia/Shanghai",
                              business_hours=DEFAULT_HOURS, active=True))
        session.add_all(StaffView(id=sid, tenant_id=tenant, name=f"Bench consultant {n}", roles=["sales_consultant"],
                                  store_ids=[str(store)], active=True) for n, sid in enumerate(consultants))
        await ensure_default_rules(session, tenant, now)
        people, cars = [], []
        for i in range(customers):
            cid, vid, consultant = new_id(), new_id(), consultants[i % CONSULTANTS]
            people.append(dict(id=cid, tenant_id=tenant, store_id=store, name=f"客户{i:04d}", phone=f"+86139{i:08d}",
                               relationship="owner", do_not_call=False, assigned_sales_id=consultant, tags=[],
                               consents={"wechat:marketing": True, "sms:marketing": True}, lost=False, updated_at=now))
            cars.append(dict(id=vid, tenant_id=tenant, store_id=store, customer_id=cid, vin=f"LBENCH{i:011d}",
                             plate=f"粤B{i:05d}", brand="Bench", model="Model B", selling_consultant_id=consultant,
                             delivery_date=date(2025, 1, 1), mileage_readings=[], maintenance_count=0,
                             declined_items=[], updated_at=now))
        await session.execute(sa.insert(CustomerView), people)
        await session.execute(sa.insert(VehicleView), cars)
        rules = {r.key: r for r in await session.scalars(sa.select(Rule).where(Rule.tenant_id == tenant))}
    return tenant, store, {"rules": rules, "vehicles": [(c["id"], c["customer_id"]) for c in cars]}


async def seed_followups(conn: asyncpg.Connection, tenant: uuid.UUID, store: uuid.UUID, rules: dict[str, Rule],
                         vehicles: list[tuple[uuid.UUID, uuid.UUID]], pending: int, due: int,
                         burst_at: datetime) -> None:
    """``pending`` rows in one INSERT … SELECT; every (pending / due)-th one (spread over the heap, as rows planned
    at different times are) falls due in the second before ``burst_at``, the others 30 to 240 days after it."""
    await conn.execute("CREATE TEMP TABLE bench_vehicle (n int PRIMARY KEY, id uuid, customer_id uuid)")
    await conn.copy_records_to_table("bench_vehicle", records=[(n, v, c) for n, (v, c) in enumerate(vehicles)])
    await conn.execute("CREATE TEMP TABLE bench_rule (n int PRIMARY KEY, rule_id uuid, rule_key text, purpose text, "
                       "step int, shift interval)")
    slots = []
    for key, (share, step, shift) in RULES.items():
        rule = rules[key]
        slots += [(rule.id, key, rule.definition.get("purpose", "service"), step, shift)] * share
    assert len(slots) == 20
    await conn.executemany("INSERT INTO bench_rule VALUES ($1, $2, $3, $4, $5, $6::text::interval)",
                           [(n, *slot) for n, slot in enumerate(slots)])
    every = pending // due
    # Bulk load as a restore does: secondary indexes dropped, the rows inserted, the indexes built again (from
    # their own definitions, so they are exactly the migration's).
    indexes = await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'followup' AND "
                               "tablename = 'followup' AND indexname NOT IN (SELECT conname FROM pg_constraint)")
    for ix in indexes:
        await conn.execute(f'DROP INDEX followup."{ix["indexname"]}"')
    await conn.execute(f"""
        INSERT INTO followup.followup (id, tenant_id, store_id, rule_id, rule_key, occurrence_key, subject_type,
            subject_id, customer_id, vehicle_id, anchor_at, step, due_at, state, attempts, purpose, context,
            created_at, updated_at)
        SELECT gen_random_uuid(), $1, $2, r.rule_id, r.rule_key,
               r.rule_key || ':vehicle:' || v.id || ':b' || g || ':' || r.step, 'vehicle', v.id, v.customer_id, v.id,
               d.due - r.shift, r.step, d.due, 'scheduled', 0, r.purpose, jsonb_build_object('series', 'b' || g),
               $3, $3
        FROM generate_series(1, $4) AS g
        JOIN bench_vehicle v ON v.n = (hashint4(g)::bigint % {len(vehicles)} + {len(vehicles)}) % {len(vehicles)}
        JOIN bench_rule r ON r.n = (hashint4(g + 1)::bigint % 20 + 20) % 20
        CROSS JOIN LATERAL (SELECT CASE WHEN g % {every} = 0
            THEN $5::timestamptz - (g % 1000) * interval '1 millisecond'
            ELSE $5::timestamptz + interval '30 days' + (g % 300000) * interval '1 minute' END AS due) d
    """, tenant, store, utcnow(), pending, burst_at)
    for ix in indexes:
        await conn.execute(ix["indexdef"])


async def vacuum(conn: asyncpg.Connection) -> None:
    await conn.execute("VACUUM ANALYZE followup.followup")
    await conn.execute("VACUUM ANALYZE followup.task")
    await conn.execute("VACUUM ANALYZE followup.outbox_message")


# --- measurements -------------------------------------------------------------------------------------------


async def explain_due(conn: asyncpg.Connection, at: datetime, batch: int) -> tuple[float, str, list[str]]:
    """The due query under EXPLAIN (ANALYZE, BUFFERS), in a transaction rolled back (it takes row locks)."""
    tr = conn.transaction()
    await tr.start()
    try:
        text = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + DUE_SQL.format(batch=batch), at)  # warms the cache
        plan = await conn.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + DUE_SQL.format(batch=batch), at)
    finally:
        await tr.rollback()
    doc = json.loads(plan)[0] if isinstance(plan, str) else plan[0]
    indexes: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            indexes.append(node["Index Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(doc["Plan"])
    return doc["Execution Time"], "\n".join("    " + r[0] for r in text), indexes


async def raw_claim(dsn: str, at: datetime, batch: int, workers: int) -> tuple[int, float]:
    """Claim-and-mark only: how fast this Postgres hands out due rows with SKIP LOCKED, committed per batch."""
    conns = [await asyncpg.connect(dsn) for _ in range(workers)]
    try:
        async def loop(conn: asyncpg.Connection) -> int:
            total = 0
            while True:
                status = await conn.execute(RAW_CLAIM_SQL, at, batch)
                n = int(status.split()[-1])
                if n == 0:
                    return total
                total += n

        started = time.perf_counter()
        claimed = sum(await asyncio.gather(*(loop(c) for c in conns)))
        return claimed, time.perf_counter() - started
    finally:
        for c in conns:
            await c.close()


async def drain(runtime: FollowupRuntime, batch: int, workers: int, deadline: float) -> float:
    """``workers`` scheduler loops in this process until nothing is due (or ``deadline``, a ``time.time()``);
    returns the wall time."""
    scheduler = Scheduler(runtime.sessionmaker, runtime.outbox, runtime.clock, batch)

    async def due_left() -> bool:
        # Shaped like the due query so that it reads ix_followup_due (an EXISTS would scan the heap).
        async with runtime.engine.connect() as conn:
            return (await conn.scalar(sa.text(
                "SELECT 1 FROM followup.followup WHERE state = 'scheduled' AND due_at <= :at ORDER BY due_at LIMIT 1"),
                {"at": runtime.clock.now()})) is not None

    async def loop() -> None:
        while time.time() < deadline:
            if await scheduler.fire_due() == 0:
                if not await due_left():
                    return
                await asyncio.sleep(0.005)  # the rest is locked by the other worker: wait for its commit

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(loop() for _ in range(workers)))
    CPU_USED.append(time.process_time() - cpu)
    return time.perf_counter() - started


def _process_worker(url: str, public_key: str, var_dir: str, burst_ts: float, batch: int, ready: Any, go: Any,
                    cpu: Any, max_seconds: float) -> None:
    """One worker process (like ``python -m followup_svc worker``): one scheduler loop with its own pool."""
    async def run() -> None:
        runtime = FollowupRuntime(settings_for(url, public_key, var_dir, 2))
        try:
            async with runtime.engine.connect() as conn:  # connect and warm up before the start line
                await conn.execute(sa.text("SELECT 1"))
            ready.wait()
            await asyncio.to_thread(go.wait)
            runtime.clock.offset = datetime.fromtimestamp(burst_ts, UTC) - utcnow()
            await drain(runtime, batch, 1, time.time() + max_seconds)
            cpu.put(CPU_USED[-1])
        finally:
            await runtime.dispose()

    asyncio.run(run())


async def drain_in_processes(url: str, public_key: str, var_dir: str, burst_at: datetime, batch: int,
                             workers: int, max_seconds: float) -> float:
    ctx = get_context("spawn")
    ready, go, cpu = ctx.Barrier(workers + 1), ctx.Event(), ctx.Queue()
    procs = []
    for _ in range(workers):
        procs.append(ctx.Process(target=_process_worker, args=(
            url, public_key, var_dir, burst_at.timestamp(), batch, ready, go, cpu, max_seconds)))
        procs[-1].start()
    await asyncio.to_thread(ready.wait, 120)
    started = time.perf_counter()
    go.set()
    await asyncio.to_thread(lambda: [p.join() for p in procs])
    seconds = time.perf_counter() - started
    if any(p.exitcode for p in procs):
        raise RuntimeError(f"a worker process failed: exit codes {[p.exitcode for p in procs]}")
    CPU_USED.extend(cpu.get() for _ in procs)
    return seconds


async def outcome(conn: asyncpg.Connection, burst_at: datetime, stopped_at: datetime) -> dict[str, Any]:
    """What the burst became. Rows still due when a time limit stopped the run count as late until then (so the
    lag is a lower bound)."""
    row = await conn.fetchrow("""
        WITH burst AS (
            SELECT state, attempts,
                   extract(epoch FROM CASE WHEN state = 'scheduled' THEN $2 ELSE coalesce(fired_at, updated_at) END
                                      - due_at) AS lag
            FROM followup.followup WHERE due_at <= $1)
        SELECT count(*) FILTER (WHERE state = 'fired') AS fired, count(*) FILTER (WHERE state = 'skipped') AS skipped,
               count(*) FILTER (WHERE state = 'failed') AS failed, count(*) FILTER (WHERE attempts > 0) AS retried,
               count(*) FILTER (WHERE state = 'scheduled') AS left,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY lag) AS lag_p99,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY lag) AS lag_p50
        FROM burst""", burst_at, stopped_at)
    result = dict(row)
    result["tasks"] = await conn.fetchval("SELECT count(*) FROM followup.task")
    result["outbox"] = await conn.fetchval("SELECT count(*) FROM followup.outbox_message")
    result["next_cycles"] = await conn.fetchval(
        "SELECT count(*) FROM followup.followup WHERE rule_key = 'owner_monthly_care' AND step = 2")
    result["pending"] = await conn.fetchval("SELECT count(*) FROM followup.followup WHERE state = 'scheduled'")
    return result


def top_profile(profile: cProfile.Profile, limit: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("cumulative").print_stats(limit)
    out.write("\n--- by own time ---\n")
    stats.sort_stats("tottime").print_stats(limit)
    return out.getvalue()


# --- the run --------------------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> dict[str, float | None]:
    started = time.monotonic()
    print(f"Aftercare scheduler bench: {machine()}", flush=True)
    figures: dict[str, float | None] = {}
    db_name, url = await infra.create_database()
    var_dir = tempfile.mkdtemp(prefix="aftercare-bench-scheduler-")
    _, public_key = generate_keypair()
    runtime: FollowupRuntime | None = None
    try:
        settings = settings_for(url, public_key, var_dir, 10)
        print(f"  fresh database {db_name}; migrating followup_svc", flush=True)
        await asyncio.to_thread(migrations.upgrade, settings, MIGRATIONS)
        runtime = FollowupRuntime(settings)
        dsn = pg_dsn(url)
        conn = await asyncpg.connect(dsn)
        try:
            t = time.monotonic()
            tenant, store, seeded = await seed_group(runtime, args.customers)
            # The burst falls due at this instant of the service clock; the run starts there.
            burst_at = utcnow() + timedelta(days=1)
            await seed_followups(conn, tenant, store, seeded["rules"], seeded["vehicles"], args.pending, args.due,
                                 burst_at)
            await vacuum(conn)
            print(f"  seeded {args.pending:,} pending follow-ups ({args.due:,} due at once), {args.customers:,} "
                  f"customers and vehicles in {time.monotonic() - t:.0f}s", flush=True)

            due_ms, plan, indexes = await explain_due(conn, burst_at, args.batch)
            figures["due_query_ms"] = round(due_ms, 2)
            print(f"\nDue query with {args.pending:,} pending rows, {args.due:,} due (batch {args.batch}): "
                  f"{due_ms:.2f} ms, index {', '.join(indexes) or 'NONE'}\n{plan}", flush=True)
            if "ix_followup_due" not in indexes:
                print("  WARNING: the due query does not use ix_followup_due", flush=True)

            print(f"\nRaw SKIP LOCKED batch claim ({args.workers} connections, batch {args.batch}, commit per batch)")
            claimed, seconds = await raw_claim(dsn, burst_at, args.batch, args.workers)
            figures["raw_claim_per_s"] = round(claimed / seconds, 1)
            print(f"  {claimed:,} rows in {seconds:.2f}s: {claimed / seconds:,.0f} rows/s", flush=True)
            if claimed != args.due:
                raise RuntimeError(f"the raw claim took {claimed} rows, expected {args.due}")
            await conn.execute("UPDATE followup.followup SET state = 'scheduled' WHERE state = 'claimed'")
            await vacuum(conn)

            mode = "processes" if args.processes else "asyncio tasks in one process"
            print(f"\nScheduler.fire_due ({args.workers} workers as {mode}, batch {args.batch})", flush=True)
            # The service clock reads burst_at when the workers start.
            if args.processes:
                seconds = await drain_in_processes(url, public_key, var_dir, burst_at, args.batch, args.workers,
                                                   args.max_seconds)
            else:
                runtime.clock.offset = burst_at - utcnow()
                profile = cProfile.Profile() if args.profile else None
                if profile:
                    profile.enable()
                seconds = await drain(runtime, args.batch, args.workers, time.time() + args.max_seconds)
                if profile:
                    profile.disable()
                    print(top_profile(profile, args.profile), flush=True)
            result = await outcome(conn, burst_at, burst_at + timedelta(seconds=seconds))
            handled = result["fired"] + result["skipped"]
            figures["fired_per_s"] = round(handled / seconds, 1)
            figures["lag_p99_s"] = round(result["lag_p99"], 2) if result["lag_p99"] is not None else None
            figures["ratio"] = round(figures["fired_per_s"] / figures["raw_claim_per_s"], 3)
            cpu = sum(CPU_USED)
            print(f"  {handled:,} follow-ups in {seconds:.2f}s: {handled / seconds:,.0f} fired/s; lag p50 "
                  f"{result['lag_p50']:.2f}s, p99 {result['lag_p99']:.2f}s; scheduler CPU {cpu:.1f}s "
                  f"({cpu / max(handled, 1) * 1000:.2f} ms per follow-up)", flush=True)
            print(f"  fired {result['fired']:,}, skipped {result['skipped']:,}, failed {result['failed']:,}, "
                  f"retried {result['retried']:,}, still due {result['left']:,}; tasks {result['tasks']:,}, outbox "
                  f"events {result['outbox']:,}, next monthly cycles planned {result['next_cycles']:,}; "
                  f"pending now {result['pending']:,}", flush=True)
            if result["left"]:
                print(f"  WARNING: stopped by --max-seconds {args.max_seconds:.0f} with {result['left']:,} still due: "
                      "fired_per_s is over the time run, the lag a lower bound", flush=True)
            if result["failed"] or result["outbox"] != handled:
                print("  WARNING: some follow-ups failed or have no outbox event", flush=True)

            after_ms, _, _ = await explain_due(conn, burst_at + timedelta(seconds=seconds + 60), args.batch)
            figures["due_query_after_ms"] = round(after_ms, 2)
            print(f"\nDue query after the run ({result['left']:,} due, {result['pending']:,} pending, before vacuum): "
                  f"{after_ms:.2f} ms", flush=True)
        finally:
            await conn.close()
    finally:
        if runtime is not None:
            await runtime.dispose()
        await infra.drop_database(db_name)
        shutil.rmtree(var_dir, ignore_errors=True)
    print(f"\nDone in {time.monotonic() - started:.0f}s (database dropped)")
    for key, target in TARGETS.items():
        value = figures.get(key)
        if value is not None:
            print(f"  {key} = {value:,.3f} (target >= {target:,.2f}: {'met' if value >= target else 'MISSED'})")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.scheduler", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pending", type=int, default=1_000_000, help="pending follow-ups (default 1,000,000)")
    parser.add_argument("--due", type=int, default=100_000, help="of which due at once (default 100,000)")
    parser.add_argument("--customers", type=int, default=1_000, help="customers, one vehicle each (default 1,000)")
    parser.add_argument("--workers", type=int, default=2, help="scheduler workers and raw-claim connections (2)")
    parser.add_argument("--batch", type=int, default=1000,
                        help="batch size of both (default 1000, FOLLOWUP_SCHEDULER_BATCH_SIZE's default)")
    parser.add_argument("--max-seconds", type=float, default=150,
                        help="stop the scheduler run after this long even if the burst is not drained (default 150)")
    parser.add_argument("--in-process", dest="processes", action="store_false",
                        help="run the scheduler workers as asyncio tasks in this process instead of one process "
                             "each (as deployed: N worker processes)")
    parser.add_argument("--profile", type=int, nargs="?", const=40, default=0, metavar="N",
                        help="cProfile the scheduler run (in-process workers) and print the top N functions")
    args = parser.parse_args()
    if args.profile:
        args.processes = False  # cProfile sees this process only
    if args.pending % args.due:
        parser.error("--pending must be a multiple of --due")
    result = asyncio.run(main(args))
    print(json.dumps({k: result.get(k) for k in KEYS}), flush=True)
    sys.exit(0)
