"""Helpers for pause tests: networks of real nodes on 127.0.0.1 and signed eval results.

Every node is real uvicorn (in a thread of the test process, or a child process), with
sync and the pause coordinator running; eval results are real signed ``eval_result``
entries whose metric values the test chooses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from waiting import wait_until as wait_until  # re-exported: the kit's one way to wait

from node.home import NodeHome
from node.home.netsetup import create_network
from node.net.client import PeerClient
from node.net.process import ServeProcess, ServeThread, free_ports

ROOT = Path(__file__).resolve().parents[2]
SUITE_DIGEST = hashlib.sha256(b"tripwire-core test suite").hexdigest()
TASK_DIGEST = hashlib.sha256(b"arithmetic-add test task").hexdigest()


def make_network(
    workdir: Path,
    labs: Sequence[str],
    *,
    auto: str | Sequence[str] = "pause-on-breach",
    sync_interval_s: float = 0.2,
    propose_delay_s: float = 0.5,
    certificate_stagger_s: float = 0.2,
    poll_interval_s: float = 0.2,
    observers: Sequence[str] = (),
    **kwargs: Any,
) -> list[NodeHome]:
    """Homes on one network (demo policy installed) with short sync and coordinator timings."""
    homes = create_network(workdir, list(labs), ports=free_ports(len(labs)), observers=observers, **kwargs)
    rules = [auto] * len(labs) if isinstance(auto, str) else list(auto)
    for h, rule in zip(homes, rules, strict=True):
        cfg = h.config.model_copy(
            update={
                "sync": h.config.sync.model_copy(
                    update={"interval_s": sync_interval_s, "timeout_s": 2.0, "max_backoff_s": 1.0}
                ),
                "votes": {
                    "auto": rule,
                    "propose_delay_s": propose_delay_s,
                    "certificate_stagger_s": certificate_stagger_s,
                    "poll_interval_s": poll_interval_s,
                },
            }
        )
        h.save_config(cfg)
    return homes


class Node(ServeThread):
    """A home served by real uvicorn in a background thread (sync + coordinator)."""

    def __init__(self, home: NodeHome, *, coordinate: bool = True, sync: bool = True) -> None:
        super().__init__(home, sync=sync, coordinate=coordinate)

    @property
    def coordinator(self) -> Any:
        return self.app.state.node.extra.get("coordinator")

    def status(self, key: Any = None, member: str | None = None) -> dict[str, Any]:
        """``GET /v1/status`` as it is on the wire (parsed by the client's contract first)."""
        with PeerClient(self.url, key or self.home.key, member or self.home.lab) as c:
            return c.status().to_json()


def settled(nodes: Sequence[Node]) -> bool:
    """Every node's coordinator has judged all it holds and has nothing left to do: no action
    waiting for its delay, and its last pass saw the store as it is now. A node in this state
    publishes nothing more until a new entry arrives, so "nobody else published X" can be
    asserted once it holds, without sleeping past the delays."""
    return all(n.coordinator is not None and n.coordinator.settled for n in nodes)


class NodeProcess(ServeProcess):
    """``tripwire serve --home DIR`` as a child process (killable with SIGKILL)."""

    def __init__(self, home_dir: Path, port: int) -> None:
        super().__init__(home_dir, port, env={"PYTHONPATH": str(ROOT)})

    def status(self, home: NodeHome) -> dict[str, Any]:
        """``GET /v1/status``, signed with ``home``'s key (a member of the network)."""
        with PeerClient(self.url, home.key, home.lab) as c:
            return c.status().to_json()


def result_body(
    acc: str,
    *,
    stderr: str = "0.02",
    step: int = 100,
    flop: str = "1E15",
    model: str = "run-1",
    logp: str = "-3.0",
) -> dict[str, Any]:
    """A signed-able ``eval_result`` body for the demo policy's indicator (arithmetic-add acc)."""
    return {
        "suite": {"id": "tripwire-core", "version": "1.0.0", "digest": SUITE_DIGEST},
        "model": {
            "name": model,
            "commitment": hashlib.sha256(f"{model}:{step}".encode()).hexdigest(),
            "checkpoint_step": step,
            "training_flop": flop,
        },
        "tasks": [
            {
                "name": "arithmetic-add",
                "digest": TASK_DIGEST,
                "n": 500,
                "metrics": {
                    "acc": {"value": acc, "stderr": stderr},
                    "mean_logp_correct": {"value": logp, "stderr": "0.05"},
                },
                "items_root": hashlib.sha256(f"items:{model}:{step}".encode()).hexdigest(),
            }
        ],
        "runtime": {"device": "cpu"},
        "started_at": "2025-01-01T00:00:00Z",
        "finished_at": "2025-01-01T00:01:00Z",
    }


def paused_locally(home: NodeHome) -> bool:
    """Whether the home's store holds a valid pause certificate not ended by a resume."""
    from node.pause.view import local_analysis

    a, _ = local_analysis(home)
    return bool(a.paused)


def count(home: NodeHome, kind: str, lab: str | None = None) -> int:
    return len(home.store.entries(kind=kind, lab=lab))


# --- in-process meshes (no HTTP): deterministic protocol tests ----------------------------------


class Mesh:
    """Homes whose coordinators run on demand and whose stores are synced by copying feeds.

    The protocol logic is the same as in the served node; only the transport is a loop, so
    tests can choose exactly which entries each node holds and in what order.
    """

    def __init__(self, homes: Sequence[NodeHome], rules: Sequence[str] | str = "pause-on-breach") -> None:
        from node.pause.coordinator import Coordinator
        from node.pause.planner import VotesConfig

        self.homes = list(homes)
        rules = [rules] * len(self.homes) if isinstance(rules, str) else list(rules)
        self.coords = {
            h.lab: Coordinator(h, config=VotesConfig(auto=r, propose_delay_s=0, certificate_stagger_s=0))  # type: ignore[arg-type]
            for h, r in zip(self.homes, rules, strict=True)
        }

    def home(self, lab: str) -> NodeHome:
        return next(h for h in self.homes if h.lab == lab)

    def sync(self, labs: Sequence[str] | None = None) -> int:
        """Copy every missing entry between the given homes (default all); returns how many."""
        members = [h for h in self.homes if labs is None or h.lab in labs]
        moved = 0
        for src in members:
            for dst in members:
                if src is dst:
                    continue
                have = dst.store.heads()
                for lab, head in src.store.heads().items():
                    after = have[lab].seq if lab in have else 0
                    if head.seq > after:
                        out = dst.store.ingest(src.store.feed(lab, after=after, limit=10_000))
                        moved += sum(1 for o in out if o.status == "accepted")
        return moved

    def step(self, labs: Sequence[str] | None = None) -> list[tuple[str, str, str]]:
        """Run each coordinator in turn, delivering what it published before the next runs."""
        published = []
        for h in self.homes:
            if labs is None or h.lab in labs:
                published += [(h.lab, k, e) for k, e in self.coords[h.lab].run_once(force=True)]
                self.sync(labs)
        return published

    def settle(self, labs: Sequence[str] | None = None, rounds: int = 20) -> list[tuple[str, str, str]]:
        """Run coordinators and sync until nothing changes."""
        published = []
        for _ in range(rounds):
            new = self.step(labs)
            moved = self.sync(labs)
            published += new
            if not new and not moved:
                return published
        raise AssertionError("the mesh did not settle")
