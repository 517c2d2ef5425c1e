"""Prometheus exposition for every kind of process.

- An API served by several uvicorn processes answers ``/metrics`` with the sum over all of them (prometheus_client's
  multiprocess mode): a scrape reaches one process at random, which alone would report a share of the traffic that
  jumps from scrape to scrape.
- A worker (relay, consumers, scheduler, dispatcher, imports) has no HTTP app: it serves ``/metrics`` on a port of
  its own (``worker_metrics_port``), else nothing of what it counts would be seen.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def share_between_processes(processes: int) -> str | None:
    """Call in the parent before uvicorn starts ``processes`` API processes: they then write their samples to files
    in a fresh directory (removed at exit), which ``/metrics`` adds up. One process keeps them in memory. A
    directory already set in the environment is used as it is (its owner cleans it)."""
    if os.environ.get(MULTIPROC_DIR) or processes <= 1:
        return os.environ.get(MULTIPROC_DIR)
    path = tempfile.mkdtemp(prefix="aftercare-metrics-")
    os.environ[MULTIPROC_DIR] = path
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def exposition() -> bytes:
    """The text format of this process's metrics, or of all the API's processes in multiprocess mode."""
    if os.environ.get(MULTIPROC_DIR):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()


def serve(port: int, host: str) -> Callable[[], None]:
    """``/metrics`` of this process on ``host:port`` (a thread of prometheus_client's own server); returns the stop."""
    server, thread = start_http_server(port, addr=host)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    return stop
