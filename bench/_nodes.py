"""Helpers shared by the node benchmarks: networks, serve processes, baselines, PostgreSQL schemas."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protocol.canonical import format_time  # noqa: E402
from protocol.entries import NoteBody  # noqa: E402
from protocol.envelope import Envelope, pae  # noqa: E402
from protocol.feed import FeedWriter  # noqa: E402

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def signed_notes(home: Any, n: int, prefix: str = "bench") -> list[Envelope]:
    writer = FeedWriter(home.store.network_id(), home.lab, home.key, None)
    at = format_time(datetime.now(UTC).replace(microsecond=0))
    return [writer.append("note", NoteBody(text=f"{prefix} {home.lab} {i}"), at)[0] for i in range(n)]


def bare_verify_rate(envs: list[Envelope], key: Any, repeats: int) -> float:
    """Bare `cryptography` Ed25519 verifications per second of the same envelopes (min of repeats)."""
    pub = key.public_key._key
    items = [(pae(e.payloadType, e.payload_bytes()), base64.b64decode(e.signatures[0].sig)) for e in envs]
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for msg, sig in items:
            pub.verify(sig, msg)
        best = min(best, time.perf_counter() - t)
    return len(items) / best


class Serve:
    """`tripwire serve` in a child process."""

    def __init__(self, home_dir: Path, port: int, *, sync: bool = True, env: dict[str, str] | None = None) -> None:
        self.url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-c", "import sys; from node.cli import main; sys.exit(main())", "serve",
               "--home", str(home_dir), "--port", str(port), "--sync" if sync else "--no-sync"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait(self, timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return time.perf_counter()
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise TimeoutError(self.url)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def pg_schemas(base: str) -> tuple[Callable[[], str], Callable[[], None]] | None:
    """(new fresh-schema URL, drop them all), or None when PostgreSQL does not answer."""
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(base, connect_args={"connect_timeout": 3})
        with engine.connect() as c:
            c.execute(text("SELECT 1"))
    except Exception:
        return None
    made: list[str] = []

    def new() -> str:
        name = "bench_" + uuid.uuid4().hex[:12]
        with engine.begin() as c:
            c.execute(text(f'CREATE SCHEMA "{name}"'))
        made.append(name)
        return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{name}"

    def drop() -> None:
        with engine.begin() as c:
            for name in made:
                c.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        engine.dispose()

    return new, drop
