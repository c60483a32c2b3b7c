"""Several `tripwire serve` processes on 127.0.0.1: convergence, SIGKILL, partitions, relays."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from http_nodes import NodeProcess, wait_until

from node.home import NodeHome
from node.home.config import PeerConfig
from node.home.netsetup import create_network, observer_key
from node.net.client import PeerClient
from node.net.process import ServeThread, free_ports
from protocol.errors import TransportError

pytestmark = pytest.mark.slow

ENV = {"TRIPWIRE_SYNC__INTERVAL_S": "0.5", "TRIPWIRE_SYNC__TIMEOUT_S": "3", "TRIPWIRE_SYNC__MAX_BACKOFF_S": "2"}


def _net(tmp_path: Path, labs: list[str], per_lab: int = 0) -> tuple[Path, list[int]]:
    ports = free_ports(len(labs))
    homes = create_network(tmp_path / "net", labs, ports=ports, observers=["regulator"])
    for h in homes:
        if per_lab:
            from http_nodes import notes

            h.store.ingest(notes(h, per_lab))
        h.close()
    return tmp_path / "net", ports


def _heads(url: str, key: Any) -> dict[str, int]:
    try:
        with PeerClient(url, key, "regulator", timeout=5) as c:
            return {lab: h.seq for lab, h in c.heads().items()}
    except TransportError:
        return {}


def _converged(nodes: list[NodeProcess], key: Any, want: dict[str, int]) -> bool:
    return all(_heads(n.url, key) == want for n in nodes)


@pytest.fixture
def procs():
    started: list[NodeProcess] = []
    yield started
    for p in started:
        p.stop()


def _start(procs: list[NodeProcess], root: Path, lab: str, port: int) -> NodeProcess:
    p = NodeProcess(root / lab, port, env=ENV)
    procs.append(p)
    return p.start()


def test_four_nodes_converge_including_entries_published_by_another_process(tmp_path, procs) -> None:
    labs = ["a", "b", "c", "d"]
    root, ports = _net(tmp_path, labs, per_lab=40)
    obs = observer_key(root, "regulator")
    nodes = [_start(procs, root, lab, port) for lab, port in zip(labs, ports, strict=True)]
    want = {lab: 40 for lab in labs}
    wait_until(lambda: _converged(nodes, obs, want), 60, 0.3, "initial convergence")
    # The CLI (another process) signs into b's database while b serves: b notices and pushes.
    with NodeHome.open(root / "b") as b:
        for i in range(3):
            b.publish("note", {"text": f"late {i}"})
    want["b"] = 43
    wait_until(lambda: _converged(nodes, obs, want), 30, 0.2, "entries published outside the server")
    assert all("Traceback" not in n.output() for n in nodes)


class PageGate:
    """Makes a real node serve feed pages only up to a chosen entry until released: a peer
    that syncs from it stops mid-sync at a point the test picks, however fast the machine."""

    def __init__(self, upto: int) -> None:
        self.upto = upto
        self.open = threading.Event()
        self.held = 0

    def install(self, app: Any) -> None:
        gate = self

        @app.middleware("http")
        async def hold_pages(request: Any, call_next: Any) -> Any:
            if request.url.path.startswith("/v1/feeds/") and int(request.query_params.get("after", "0")) >= gate.upto:
                gate.held += 1
                while not gate.open.is_set():
                    await asyncio.sleep(0.02)
            return await call_next(request)


def test_node_killed_mid_sync_loses_nothing_and_converges_after_restart(tmp_path, procs) -> None:
    """d syncs 900 entries in pages of 50 from three real nodes that serve only the first 100
    entries of every feed until released: d is SIGKILLed while it waits for the next page
    (mid-sync by construction), keeps a consistent prefix, and converges after a restart."""
    labs = ["a", "b", "c", "d"]
    ports = free_ports(len(labs))
    homes = create_network(tmp_path / "net", labs, ports=ports, observers=["regulator"])
    from http_nodes import notes

    for h in homes[:3]:
        h.store.ingest(notes(h, 300))
    homes[3].close()
    root = tmp_path / "net"
    obs = observer_key(root, "regulator")
    gate = PageGate(upto=100)
    # The sources only serve: a source that synced would push d the rest of its feed as soon
    # as d's gap fell under the push threshold, past the gate, and d would never stop mid-sync.
    sources = [ServeThread(h, port=port, sync=False, coordinate=False)
               for h, port in zip(homes[:3], ports[:3], strict=True)]
    for s in sources:
        gate.install(s.app)
        s.start()
    try:
        d = NodeProcess(root / "d", ports[3], env={**ENV, "TRIPWIRE_SYNC__BATCH": "50"})
        procs.append(d)
        d.start()
        # d holds the first 100 entries of every feed and is waiting for the next page.
        try:
            wait_until(lambda: _heads(d.url, obs) == {"a": 100, "b": 100, "c": 100} and gate.held > 0, 120, 0.05,
                       "d holding the first pages and asking for the next")
        except AssertionError as e:
            # Say where d stood, so a failure on a loaded machine can be read, not guessed at.
            raise AssertionError(f"{e}; d's heads {_heads(d.url, obs)}, pages held {gate.held}; "
                                 f"d's log ends:\n{d.output()[-3000:]}") from e
        d.kill()
        with NodeHome.open(root / "d") as dh:
            before = {lab: h.seq for lab, h in dh.store.heads().items()}
            # What survived the kill is a consistent prefix of each feed, and the log matches it.
            assert before == {"a": 100, "b": 100, "c": 100}
            assert dh.store.log_size() == 300
            for lab, seq in before.items():
                assert len(dh.store.feed(lab, 0, 1000)) == seq
        gate.open.set()
        d.start()
        want = {"a": 300, "b": 300, "c": 300}
        wait_until(lambda: _heads(d.url, obs) == want, 90, 0.3, "convergence after restart")
        with NodeHome.open(root / "d") as dh:
            assert dh.store.log_size() == 900
    finally:
        gate.open.set()
        for s in sources:
            s.stop()
        for h in homes[:3]:
            h.close()


def test_partition_heals(tmp_path, procs) -> None:
    labs = ["a", "b", "c"]
    root, ports = _net(tmp_path, labs)
    obs = observer_key(root, "regulator")
    a, b, c = (_start(procs, root, lab, port) for lab, port in zip(labs, ports, strict=True))
    c.kill()  # c is unreachable
    for lab in ("a", "b"):
        with NodeHome.open(root / lab) as h:
            for i in range(5):
                h.publish("note", {"text": f"{lab} {i}"})
    wait_until(lambda: _converged([a, b], obs, {"a": 5, "b": 5}), 30, 0.2, "a and b")
    with NodeHome.open(root / "c") as h:
        h.publish("note", {"text": "c was offline"})
    c.start()
    want = {"a": 5, "b": 5, "c": 1}
    wait_until(lambda: _converged([a, b, c], obs, want), 40, 0.2, "the healed partition")


def test_labs_that_cannot_reach_each_other_converge_through_a_third(tmp_path, procs) -> None:
    labs = ["a", "b", "c"]
    root, ports = _net(tmp_path, labs)
    dead = free_ports(1)[0]  # nothing listens here: a and c cannot reach each other
    for lab, other in (("a", "c"), ("c", "a")):
        with NodeHome.open(root / lab) as h:
            peers = [p if p.lab != other else PeerConfig(lab=other, url=f"http://127.0.0.1:{dead}")
                     for p in h.config.peers]
            h.save_config(h.config.model_copy(update={"peers": peers}))
    obs = observer_key(root, "regulator")
    nodes = [_start(procs, root, lab, port) for lab, port in zip(labs, ports, strict=True)]
    for lab in ("a", "c"):
        with NodeHome.open(root / lab) as h:
            for i in range(4):
                h.publish("note", {"text": f"{lab} {i}"})
    want = {"a": 4, "c": 4}
    wait_until(lambda: _converged(nodes, obs, want), 40, 0.2, "relay convergence through b")
