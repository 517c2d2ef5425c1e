"""A private RabbitMQ node for fault tests: stop it, kill it, restart it, without touching anyone else's broker."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available() -> bool:
    return shutil.which("rabbitmq-server") is not None and shutil.which("rabbitmqctl") is not None


class BrokerNode:
    def __init__(self) -> None:
        self.name = f"aftercare-faults-{uuid.uuid4().hex[:8]}@localhost"
        self.port = _free_port()
        self.dist_port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="aftercare-rmq-"))
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        return {**os.environ,
                "RABBITMQ_CONF_ENV_FILE": str(self.dir / "env.conf"),
                "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
                "RABBITMQ_NODENAME": self.name,
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self.dir / "log"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "plugins"),
                "RABBITMQ_PID_FILE": str(self.dir / "pid")}

    def _ctl(self, *args: str) -> None:
        subprocess.run(["rabbitmqctl", "-n", self.name, *args], check=True, capture_output=True, timeout=120,
                       env=self._env())

    def _wait_port(self, up: bool, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    if up:
                        return
            except OSError:
                if not up:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"broker node {self.name} did not go {'up' if up else 'down'}")

    def start(self) -> BrokerNode:
        (self.dir / "mnesia").mkdir(exist_ok=True)
        (self.dir / "log").mkdir(exist_ok=True)
        (self.dir / "env.conf").write_text(
            f"NODENAME={self.name}\nERL_EPMD_ADDRESS=127.0.0.1\n"
            'export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"\n')
        (self.dir / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (self.dir / "plugins").write_text("[].\n")
        try:
            user = pwd.getpwnam("rabbitmq")
            for p in [self.dir, *self.dir.rglob("*")]:
                os.chown(p, user.pw_uid, user.pw_gid)
        except KeyError:
            pass
        subprocess.run(["rabbitmq-server", "-detached"], check=True, env=self._env(), capture_output=True, timeout=60)
        self._wait_port(up=True)
        self._ctl("await_startup")
        return self

    def stop_app(self) -> None:
        """The broker stops serving (every connection drops); its data stays."""
        self._ctl("stop_app")
        self._wait_port(up=False)

    def start_app(self) -> None:
        self._ctl("start_app")
        self._ctl("await_startup")
        self._wait_port(up=True)

    def restart(self) -> None:
        """A real restart of the whole node (the Erlang VM goes away), data kept on disk."""
        self._ctl("stop")
        self._wait_port(up=False)
        self.start()

    def destroy(self) -> None:
        try:
            self._ctl("stop")
        except Exception:  # noqa: BLE001 - already down
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    async def astop_app(self) -> None:
        await asyncio.to_thread(self.stop_app)

    async def astart_app(self) -> None:
        await asyncio.to_thread(self.start_app)

    async def arestart(self) -> None:
        await asyncio.to_thread(self.restart)
