"""Running the nginx gateway without Docker: render deploy/gateway/nginx.conf for local upstreams and start nginx.

Used by ``scripts/prod-up.sh``, the gateway tests and the benchmark. The rendered file differs from the
committed one only in upstream addresses, the listen port, the rate limit and where nginx keeps its files.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "gateway" / "nginx.conf"


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx-light)")
    return found


def render(upstreams: dict[str, list[str]], port: int, workdir: Path, rate: str | None = None,
           access_log: bool = True) -> Path:
    """Write a runnable config into ``workdir``; ``upstreams`` maps a service name to host:port addresses."""
    workdir.mkdir(parents=True, exist_ok=True)
    text = TEMPLATE.read_text()
    for name, addresses in upstreams.items():
        servers = "\n        ".join(f"server {a}; # @upstream {name}" for a in addresses)
        text, n = re.subn(rf"server \S+; # @upstream {re.escape(name)}", servers, text)
        if n != 1:
            raise ValueError(f"no upstream marker for {name} in {TEMPLATE}")
    for name in re.findall(r"# @upstream (\w+)", text):
        if name not in upstreams:
            raise ValueError(f"no address given for upstream {name}")
    text = re.sub(r"listen 8000;", f"listen 127.0.0.1:{port};", text)
    if rate:
        text = re.sub(r"rate=\S+; # @rate", f"rate={rate}; # @rate", text)
    text = text.replace("/tmp/aftercare-gateway", str(workdir / "nginx"))
    if not access_log:
        text = text.replace("access_log /dev/stdout json;", "access_log off;")
    conf = workdir / "nginx.conf"
    conf.write_text(text)
    return conf


class Gateway:
    """nginx in the foreground as a child process (stopped with :meth:`stop`)."""

    def __init__(self, conf: Path, port: int, log: Path | None = None) -> None:
        self.conf = conf
        self.port = port
        self.log = log or conf.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10) -> Gateway:
        binary = nginx_binary()
        subprocess.run([binary, "-t", "-q", "-c", str(self.conf), "-p", str(self.conf.parent)], check=True)
        out = self.log.open("ab")
        self.proc = subprocess.Popen([binary, "-c", str(self.conf), "-p", str(self.conf.parent), "-g", "daemon off;"],
                                     stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
