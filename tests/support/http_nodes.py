"""Real HTTP nodes for tests: uvicorn in a thread (same process) or in a subprocess.

No HTTP fakes: every request goes through a real socket on 127.0.0.1 to real uvicorn.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from waiting import wait_until as wait_until  # re-exported: the kit's one way to wait

from node.net.client import PeerClient
from node.net.process import ServeProcess, ServeThread
from protocol.canonical import format_time
from protocol.entries import NoteBody, build_statement, sign_statement
from protocol.envelope import Envelope
from protocol.feed import FeedWriter, Head
from protocol.keys import SigningKey

ROOT = Path(__file__).resolve().parents[2]


class ThreadedNode(ServeThread):
    """uvicorn serving ``home`` from a background thread of the test process (no sync by default)."""

    def __init__(self, home: Any, *, sync: bool = False, port: int | None = None) -> None:
        super().__init__(home, port=port, sync=sync)

    def client(self, key: SigningKey, member: str) -> PeerClient:
        return PeerClient(self.url, key, member)


class NodeProcess(ServeProcess):
    """``tripwire serve --home DIR`` as a child process (killable with SIGKILL)."""

    def __init__(self, home_dir: Path, port: int, env: dict[str, str] | None = None) -> None:
        super().__init__(home_dir, port, env={"PYTHONPATH": str(ROOT), **(env or {})})


# --- building entries ----------------------------------------------------------------------------


def now_str() -> str:
    return format_time(datetime.now(UTC).replace(microsecond=0))


def notes(home: Any, n: int, *, start: Head | None = None, key: SigningKey | None = None,
          prefix: str = "note") -> list[Envelope]:
    """``n`` chained note entries of ``home``'s lab from ``start`` (signed, not stored)."""
    writer = FeedWriter(home.store.network_id(), home.lab, key or home.key, start)
    return [writer.append("note", NoteBody(text=f"{prefix} {i}"), now_str())[0] for i in range(n)]


def note_at(home: Any, seq: int, prev: str | None, text: str, key: SigningKey | None = None) -> Envelope:
    st = build_statement(network=home.store.network_id(), lab=home.lab, seq=seq, prev=prev,
                         issued_at=now_str(), kind="note", body={"text": text})
    return sign_statement(st, key or home.key)[0]


def heads_of(homes: Sequence[Any]) -> list[dict[str, int]]:
    return [{lab: h.seq for lab, h in home.store.heads().items()} for home in homes]
