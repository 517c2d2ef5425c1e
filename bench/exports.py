"""``python -m bench.exports``: the survey-response export streamed over a year of responses, its rate and the
service's memory, a month's export beside a year's.

One run is self-contained: a fresh database (survey_svc's schema, migrated with Alembic) and RabbitMQ vhost, and
the data of :mod:`bench.survey_data` COPYed in (default 300,000 responses over 2025 in its stores, vacuumed and
analysed). ``python -m survey_svc api`` (production settings, one uvicorn worker) serves; a tenant-wide admin
reads ``GET /api/v1/surveys/exports/responses`` straight from the service (no gateway: nginx would buffer).

1. January first (about a twelfth of the rows), then the whole year, for each format (``csv``, ``ndjson``):
   rows, MB, seconds and rows per second, the client reading as fast as it can.
2. ``peak_rss_mb_month`` / ``peak_rss_mb_year``: the service process's peak resident memory (``VmHWM``) after
   the January exports, and after the year's. Streaming keeps them close: memory does not grow with the export.

The last line printed is one JSON object: ``rows_per_s`` (year, CSV), ``ndjson_rows_per_s``, ``peak_rss_mb_month``,
``peak_rss_mb_year``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

from aftercare.gateway import free_port
from bench.__main__ import machine
from bench.procs import Server
from bench.survey_data import seed
from survey_svc.app import MIGRATIONS
from survey_svc.settings import SurveySettings
from shared.auth.tokens import TokenIssuer, generate_keypair
from shared.db import migrations
from shared.testing import infra

EXCHANGE = "aftercare.events"
TOKEN_KEY = "bench-exports-token-key"
YEAR = 2025
PATH = "/api/v1/surveys/exports/responses"


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pull(url: str, token: str) -> tuple[int, int, float]:
    """Rows, bytes and seconds of one export, read in 64 KiB pieces as they come."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    started = time.monotonic()
    size = lines = 0
    with urllib.request.urlopen(request, timeout=600) as resp:  # noqa: S310 - loopback only
        while piece := resp.read(65536):
            size += len(piece)
            lines += piece.count(b"\n")
    return lines, size, time.monotonic() - started


async def main(args: argparse.Namespace) -> dict[str, float]:
    print(f"Aftercare export bench: {machine()}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="aftercare-bench-exports-"))
    db_name, url = await infra.create_database()
    vhost, amqp_url = await asyncio.to_thread(infra.create_vhost)
    server: Server | None = None
    try:
        private, public = generate_keypair()
        (workdir / "jwt_public.pem").write_text(public)
        settings = SurveySettings(database_url=url, amqp_url=amqp_url, environment="test", token_key=TOKEN_KEY)
        await asyncio.to_thread(migrations.upgrade, settings, MIGRATIONS)
        t0 = time.monotonic()
        seeded = await seed(settings, args.responses, YEAR, 0)
        print(f"  COPYed {args.responses:,} responses over {YEAR} in {time.monotonic() - t0:.0f} s", flush=True)
        env = {"SURVEY_ENVIRONMENT": "prod", "SURVEY_DATABASE_URL": url, "SURVEY_AMQP_URL": amqp_url,
               "SURVEY_EXCHANGE": EXCHANGE, "SURVEY_JWT_PUBLIC_KEY": str(workdir / "jwt_public.pem"),
               "SURVEY_TOKEN_KEY": TOKEN_KEY, "SURVEY_VAR_DIR": str(workdir / "var"), "SURVEY_LOG_LEVEL": "WARNING"}
        port = free_port()
        server = Server("survey_svc api", ["-m", "survey_svc", "api", "--port", str(port)], port,
                        workdir / "survey_svc.log", env).start()
        issuer = TokenIssuer(private, settings.jwt_issuer, settings.jwt_audience)
        token, _ = issuer.issue(subject=seeded.admin_id, tenant_id=seeded.tenant_id, store_ids=[], roles=["admin"],
                                ttl=timedelta(hours=1))
        base = f"http://127.0.0.1:{port}{PATH}"
        figures: dict[str, float] = {}
        for label, period in (("month", f"from={YEAR}-01-01&to={YEAR}-01-31"),
                              ("year", f"from={YEAR}-01-01&to={YEAR}-12-31")):
            for fmt in ("csv", "ndjson"):
                lines, size, took = await asyncio.to_thread(pull, f"{base}?format={fmt}&{period}", token)
                rows = lines - 1 if fmt == "csv" else lines
                print(f"  {label:5} {fmt:6} {rows:>9,} rows {size / 1e6:7.1f} MB {took:6.2f} s "
                      f"{rows / took:>10,.0f} rows/s", flush=True)
                if label == "year":
                    figures["rows_per_s" if fmt == "csv" else "ndjson_rows_per_s"] = round(rows / took)
                    if rows < args.responses:
                        raise RuntimeError(f"the year's export held {rows} rows")
            figures[f"peak_rss_mb_{label}"] = round(peak_rss_mb(server.pid or 0), 1)
            print(f"  service peak RSS after the {label}: {figures[f'peak_rss_mb_{label}']} MB", flush=True)
    finally:
        if server is not None:
            server.stop()
        await infra.drop_database(db_name)
        await asyncio.to_thread(infra.delete_vhost, vhost)
        shutil.rmtree(workdir, ignore_errors=True)
    return figures


def run() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.exports", description=__doc__.split("\n\n")[0])
    parser.add_argument("--responses", type=int, default=300_000, help="responses over the year")
    figures = asyncio.run(main(parser.parse_args()))
    print(json.dumps(figures))


if __name__ == "__main__":
    run()
