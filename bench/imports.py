"""``make bench-import``: one CSV of 100,000 customers with their vehicles through the import worker, beside a raw
``COPY`` of the same file into the same Postgres.

One run is self-contained: a fresh database (customer_svc's schema, migrated with Alembic) holding one dealer group
with one store. The file is written first (UTF-8, Chinese Excel-style headers, every row a new customer with a phone,
a vehicle by VIN with its plate and dates, and a delivery one to three years ago), and stored as an upload is stored
(1 MiB chunks in ``import_chunk``).

1. ``copy_rows_per_s``: the same file ``COPY``-ed (CSV, header) into an unlogged table of text columns: the floor
   of what Postgres ingests on this machine, with no parsing, validation or relations.
2. ``rows_per_s``: the import worker in its own process (as in production) works the job from claim to ``done``:
   decoding and parsing the CSV, validating each record (phone numbers, VINs, plates, dates), looking up what
   exists, writing the customer, phone, vehicle, ownership, audit entries and the outbox events (created,
   registered, delivered) and the per-row report, a batch of 1,000 records per transaction. The relay does not run.
   ``peak_rss_mb`` is the worker process's peak resident memory; the same is measured for a file a tenth the size
   (``peak_rss_mb_small``), to show memory does not grow with the file.
3. The job's counts are checked (every record accepted, as many customers and vehicles as rows).

The last line printed is one JSON object: ``rows_per_s``, ``copy_rows_per_s``, ``ratio``, ``peak_rss_mb`` (and
``peak_rss_mb_small``). Target: rows_per_s >= 10,000, memory flat in the file size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import asyncpg
import sqlalchemy as sa
import uvloop

from bench.__main__ import machine
from bench.env import create_env, destroy_env, seed_tenant
from customer_svc.app import CustomerRuntime
from customer_svc.imports.jobs import store_upload
from customer_svc.models import Customer, ImportJob, Vehicle
from shared import gc_tuning
from shared.ids import new_id
from shared.validation import vin_check_digit

HEADER = "客户编号,姓名,手机,性别,生日,门店编码,车架号,车牌号,品牌,车型,购车日期,交车日期,里程\n"
_VIN = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
_PLATE = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def write_file(path: Path, rows: int, seed: int) -> None:
    rnd = random.Random(seed)
    today = date.today()
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(HEADER)
        for i in range(rows):
            vin = "LBV" + "".join(rnd.choice(_VIN) for _ in range(14))
            vin = vin[:8] + vin_check_digit(vin) + vin[9:]
            delivered = today - timedelta(days=rnd.randint(365, 3 * 365))
            plate = f"粤{rnd.choice(_PLATE)}{rnd.randint(0, 99999):05d}"
            f.write(f"B{seed}-{i:07d},客户{i},1{rnd.choice('3589')}{seed % 10}{i:08d},{rnd.choice('男女')},"
                    f"{rnd.randint(1960, 2000)}/{rnd.randint(1, 12)}/{rnd.randint(1, 28)},A,{vin},{plate},品牌甲,车型乙,"
                    f"{(delivered - timedelta(days=3)).isoformat()},{delivered.isoformat()},{rnd.randint(0, 80000)}\n")


async def raw_copy(dsn: str, path: Path) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        columns = [f"c{i}" for i in range(HEADER.count(",") + 1)]
        await conn.execute(f"CREATE UNLOGGED TABLE bench_raw ({', '.join(c + ' text' for c in columns)})")
        started = time.perf_counter()
        with path.open("rb") as f:
            await conn.copy_to_table("bench_raw", source=f, columns=columns, format="csv", header=True)
        return time.perf_counter() - started
    finally:
        await conn.execute("DROP TABLE IF EXISTS bench_raw")
        await conn.close()


async def queue_job(runtime: CustomerRuntime, tenant_id: uuid.UUID, subject: uuid.UUID, path: Path) -> uuid.UUID:
    """The file stored and queued exactly as ``POST /api/v1/imports`` does it."""
    job_id = new_id()
    async with runtime.sessionmaker() as session:
        async with session.begin():
            session.add(ImportJob(id=job_id, tenant_id=tenant_id, kind="customers", format="csv", encoding="auto",
                                  filename=path.name, status="uploading", created_by=subject,
                                  created_by_kind="staff", warnings=[], scope_store_ids=None))

        async def body():  # type: ignore[no-untyped-def]
            with path.open("rb") as f:
                while piece := f.read(64 * 1024):
                    yield piece

        size, sha = await store_upload(session, job_id, body(), 1 << 40)
        async with session.begin():
            await session.execute(sa.update(ImportJob).where(ImportJob.id == job_id).values(
                size_bytes=size, sha256=sha, status="queued"))
    return job_id


async def worker(settings_json: str, job_id: str) -> None:
    """The child process: claim and work the job, then print the seconds taken and the peak RSS."""
    from customer_svc.settings import CustomerSettings

    runtime = CustomerRuntime(CustomerSettings.model_validate_json(settings_json))
    gc_tuning.settle()  # as ``run_worker`` does
    try:
        started = time.perf_counter()
        while await runtime.imports.run_once():
            pass
        elapsed = time.perf_counter() - started
        postgres_cpu = await backends_cpu(runtime)
    finally:
        await runtime.dispose()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"job": job_id, "seconds": elapsed, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                      "postgres_cpu_seconds": postgres_cpu, "peak_rss_mb": usage.ru_maxrss / 1024}), flush=True)


async def backends_cpu(runtime: CustomerRuntime) -> float | None:
    """CPU seconds of the Postgres backends serving the worker's pool (read from /proc: Postgres runs on this
    machine); None where they cannot be read."""
    async with runtime.sessionmaker() as session:
        pids = (await session.scalars(sa.text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"))).all()
    total = 0.0
    try:
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None
    return total


async def run_worker(settings_json: str, job_id: uuid.UUID) -> dict[str, float]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.imports", "--worker", settings_json,
                                                str(job_id), stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode:
        raise SystemExit(f"import worker failed ({proc.returncode})")
    return json.loads(out.decode().strip().splitlines()[-1])


async def main(rows: int) -> dict[str, float]:
    print(f"Aftercare import bench: {machine()}", flush=True)
    env = await create_env()
    try:
        settings = env.settings()
        runtime = CustomerRuntime(settings)
        tenant = await seed_tenant(runtime, role="admin")
        subject = uuid.uuid4()
        figures: dict[str, float] = {}
        for label, n in (("small", rows // 10), ("full", rows)):
            path = env.workdir / f"customers-{n}.csv"
            write_file(path, n, seed=1 if label == "small" else 2)
            print(f"{label}: {n:,} rows, {path.stat().st_size / 1e6:.1f} MB", flush=True)
            job_id = await queue_job(runtime, tenant.tenant_id, subject, path)
            result = await run_worker(settings.model_dump_json(), job_id)
            async with runtime.sessionmaker() as session:
                job = await session.get(ImportJob, job_id)
                assert job is not None
                if (job.status, job.accepted, job.rejected) != ("done", n, 0):
                    raise SystemExit(f"import not clean: {job.status} accepted={job.accepted} "
                                     f"rejected={job.rejected} error={job.error}")
            pg_cpu = result["postgres_cpu_seconds"]
            print(f"  worker: {result['seconds']:.1f} s, {n / result['seconds']:,.0f} rows/s, "
                  f"{result['cpu_seconds']:.1f} s of CPU (Postgres: "
                  f"{'?' if pg_cpu is None else f'{pg_cpu:.1f} s'}), peak RSS {result['peak_rss_mb']:.0f} MB",
                  flush=True)
            if label == "small":
                figures["peak_rss_mb_small"] = round(result["peak_rss_mb"], 1)
            else:
                figures["rows_per_s"] = round(n / result["seconds"])
                figures["peak_rss_mb"] = round(result["peak_rss_mb"], 1)
                copy_seconds = await raw_copy(env.database_url.replace("postgresql+asyncpg", "postgresql"), path)
                figures["copy_rows_per_s"] = round(n / copy_seconds)
                print(f"  raw COPY of the same file: {copy_seconds:.2f} s, {figures['copy_rows_per_s']:,} rows/s",
                      flush=True)
        async with runtime.sessionmaker() as session:
            customers = await session.scalar(sa.select(sa.func.count()).select_from(Customer))
            vehicles = await session.scalar(sa.select(sa.func.count()).select_from(Vehicle))
        expected = rows + rows // 10
        if (customers, vehicles) != (expected, expected):
            raise SystemExit(f"expected {expected} customers and vehicles, found {customers} and {vehicles}")
        await runtime.dispose()
        figures["ratio"] = round(figures["rows_per_s"] / figures["copy_rows_per_s"], 3)
        return figures
    finally:
        await destroy_env(env)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--worker", nargs=2, metavar=("SETTINGS_JSON", "JOB_ID"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        uvloop.run(worker(*args.worker))  # the worker's loop in production (``shared.cli``)
    else:
        figures = asyncio.run(main(args.rows))
        print(json.dumps({k: figures[k] for k in ("rows_per_s", "copy_rows_per_s", "ratio", "peak_rss_mb",
                                                  "peak_rss_mb_small")}))
