"""A node as a child process: ``tripwire serve --home DIR`` started, probed, stopped.

Used by the demo (three real nodes), and by the multi-node tests and benchmarks that need
a node they can SIGKILL. The child gets its own session so that a Ctrl-C in the terminal
reaches only the parent, which then stops its nodes in order.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from protocol.errors import TransportError

if TYPE_CHECKING:
    from node.home import NodeHome


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (held together while chosen, then released)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class ServeProcessError(TransportError):
    """The node process exited early or never answered ``/healthz``."""

    code = "node-process"


class ServeProcess:
    """``tripwire serve --home DIR --host HOST --port PORT`` as a child process."""

    def __init__(
        self,
        home_dir: Path,
        port: int,
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.home_dir, self.port, self.host = Path(home_dir), port, host
        # A node with [tls] serves only HTTPS; `tls` is the client context for the probe.
        self.tls = tls
        self.url = f"{'https' if tls is not None else 'http'}://{host}:{port}"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log = log_path or self.home_dir / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True, timeout: float = 120.0) -> ServeProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "node.cli", "serve", "--home", str(self.home_dir),
                 "--host", self.host, "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServeProcessError(
                    f"node {self.home_dir.name} exited with {self.proc.returncode}; "
                    f"last output: {self.output()[-2000:]}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0, verify=self.tls or True).status_code == 200:
                    return
            except httpx.HTTPError as e:
                last = e
            time.sleep(0.05)
        raise ServeProcessError(f"node {self.home_dir.name} did not answer {self.url}/healthz within {timeout:.0f}s: {last}")

    def kill(self) -> None:
        """SIGKILL: the crash case (nothing flushed, nothing closed)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait; SIGKILL if it does not exit in time."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class ServeThread:
    """A node's server (uvicorn, with sync and the pause coordinator as configured) on a
    background thread of this process: for tests and for embedding a node in a program."""

    def __init__(
        self,
        home: NodeHome,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        sync: bool = True,
        coordinate: bool = True,
    ) -> None:
        from node.api.server import build_server

        self.home = home
        self.port = port or home.config.server.port
        self.url = f"{'https' if home.config.tls is not None else 'http'}://{host}:{self.port}"
        self.server = build_server(home, host, self.port, sync=sync, coordinate=coordinate)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name=f"tripwire-serve-{home.lab}")

    @property
    def app(self) -> Any:
        return self.server.config.app

    def start(self, timeout: float = 20.0) -> ServeThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ServeProcessError(f"node {self.home.lab} did not start serving on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=timeout)

    def __enter__(self) -> ServeThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
