"""Running the nginx gateway without Docker: render deploy/gateway/nginx.conf for local upstreams and start nginx.

Used by ``scripts/prod-up.sh``, the gateway tests and the benchmark. The rendered file differs from the
committed one only in upstream addresses, the listen port, the rate limits and bursts (per client, and the stricter
one of the public survey answers) and where nginx keeps its files.

    python -m aftercare.gateway start --port 8080 --workdir var/prod/gateway --upstream customer_svc=127.0.0.1:9001
    python -m aftercare.gateway stop --workdir var/prod/gateway
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import signal
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
           access_log: bool = True, burst: int | None = None, others_down: bool = False,
           public_rate: str | None = None, public_burst: int | None = None) -> Path:
    """Write a runnable config into ``workdir``; ``upstreams`` maps a service name to host:port addresses.
    With ``others_down`` (tests and benchmarks of one service) the services not given answer 503.
    ``rate`` / ``burst`` replace the per-client limit, ``public_rate`` / ``public_burst`` the per-address limit
    of the public survey answers (a benchmark posting answers from one address raises both)."""
    workdir.mkdir(parents=True, exist_ok=True)
    text = TEMPLATE.read_text()
    for name, addresses in upstreams.items():
        servers = "\n        ".join(f"server {a}; # @upstream {name}" for a in addresses)
        text, n = re.subn(rf"server \S+; # @upstream {re.escape(name)}", servers, text)
        if n != 1:
            raise ValueError(f"no upstream marker for {name} in {TEMPLATE}")
    for name in re.findall(r"# @upstream (\w+)", text):
        if name not in upstreams:
            if not others_down:
                raise ValueError(f"no address given for upstream {name}")
            text = re.sub(rf"server \S+; # @upstream {re.escape(name)}", "server 127.0.0.1:9 down;", text)
    text = re.sub(r"listen 8000;", f"listen 127.0.0.1:{port};", text)
    for marker, value in (("rate", rate), ("public_rate", public_rate)):
        if value:
            text, n = re.subn(rf"rate=\S+; # @{marker}\b", f"rate={value}; # @{marker}", text)
            if n < 1:
                raise ValueError(f"no {marker} marker in {TEMPLATE}")
    for marker, value in (("burst", burst), ("public_burst", public_burst)):
        if value is not None:
            text, n = re.subn(rf"burst=\d+( nodelay)?; # @{marker}\b", rf"burst={int(value)}\1; # @{marker}", text)
            if n < 1:
                raise ValueError(f"no {marker} marker in {TEMPLATE}")
    text = text.replace("/tmp/aftercare-gateway", str(workdir / "nginx"))
    if os.geteuid() == 0:
        # Started by root (CI, containers), nginx would run its workers as "nobody", who may not reach the temp
        # directories under workdir (a 0700 parent, say): bodies over the memory buffer would then fail with 500.
        owner = pwd.getpwuid(workdir.stat().st_uid).pw_name
        text = text.replace("worker_processes auto;", f"user {owner};\nworker_processes auto;", 1)
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

    def start(self, timeout: float = 10, detach: bool = False) -> Gateway:
        """``detach``: nginx gets its own session and outlives this process (stop it by :attr:`pid_file`)."""
        binary = nginx_binary()
        subprocess.run([binary, "-t", "-q", "-c", str(self.conf), "-p", str(self.conf.parent)], check=True)
        out = self.log.open("ab")
        self.proc = subprocess.Popen([binary, "-c", str(self.conf), "-p", str(self.conf.parent), "-g", "daemon off;"],
                                     stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=detach)
        out.close()
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

    @property
    def pid_file(self) -> Path:
        return self.conf.parent / "gateway.pid"

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


def stop_detached(workdir: Path, timeout: float = 10) -> bool:
    """Stop a gateway started with ``start --workdir``; True when one was running."""
    pid_file = workdir / "gateway.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().strip())
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        # a stale pid file may name a process that is not ours any more: nginx's command line names its config
        if cmdline.parent.exists() and str(workdir.resolve()) not in cmdline.read_bytes().decode(errors="replace"):
            raise ProcessLookupError
        os.kill(pid, signal.SIGQUIT)  # graceful: finish requests in flight
    except (ProcessLookupError, FileNotFoundError):
        pid_file.unlink(missing_ok=True)
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aftercare.gateway")
    sub = parser.add_subparsers(dest="cmd", required=True)
    start = sub.add_parser("start", help="render the config and start nginx in the background")
    start.add_argument("--port", type=int, required=True)
    start.add_argument("--workdir", type=Path, required=True)
    start.add_argument("--upstream", action="append", required=True, metavar="SERVICE=HOST:PORT",
                       help="repeat for each service, and for each replica of one")
    start.add_argument("--rate", help="e.g. 50r/s (default: the committed config's)")
    start.add_argument("--burst", type=int, help="default: the committed config's")
    start.add_argument("--public-rate", help="per-address limit of public survey answers, e.g. 5r/s "
                                             "(default: the committed config's)")
    start.add_argument("--public-burst", type=int, help="default: the committed config's")
    stop = sub.add_parser("stop", help="stop the nginx started with the same --workdir")
    stop.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.cmd == "stop":
        print("gateway stopped" if stop_detached(args.workdir) else "no gateway running")
        return
    upstreams: dict[str, list[str]] = {}
    for item in args.upstream:
        name, _, address = item.partition("=")
        upstreams.setdefault(name, []).append(address)
    stop_detached(args.workdir)
    conf = render(upstreams, args.port, args.workdir.resolve(), rate=args.rate, burst=args.burst,
                  public_rate=args.public_rate, public_burst=args.public_burst)
    gateway = Gateway(conf, args.port).start(detach=True)
    assert gateway.proc is not None
    gateway.pid_file.write_text(f"{gateway.proc.pid}\n")
    print(f"gateway (nginx pid {gateway.proc.pid}) on http://127.0.0.1:{args.port}, config {conf}")


if __name__ == "__main__":
    main()
