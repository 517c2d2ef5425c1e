"""Child processes the bench starts (uvicorn apps); each is stopped by its own handle, never by name."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Server:
    """A uvicorn app in a child process, ready once ``ready_path`` answers 200."""

    def __init__(self, name: str, args: list[str], port: int, log: Path, env: dict[str, str] | None = None,
                 ready_path: str = "/healthz") -> None:
        self.name = name
        self.args = args
        self.port = port
        self.log = log
        self.env = env or {}
        self.ready_path = ready_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Server:
        out = self.log.open("ab")
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "services"), env.get("PYTHONPATH")]))
        # cwd is the bench's scratch directory: no .env or var/ of the checkout is picked up.
        self.proc = subprocess.Popen([sys.executable, *self.args], stdout=out, stderr=out, env=env,
                                     cwd=self.log.parent)
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}{self.ready_path}"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback only
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready on port {self.port}: {self.log.read_text()[-3000:]}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def cpu_seconds(pid: int | None) -> float:
    """utime+stime of a process (Linux), to show where the CPU went during a run."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
