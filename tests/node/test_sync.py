"""Peer sync against real HTTP servers: convergence, eager push, hostile and slow peers."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from http_nodes import ThreadedNode, heads_of, notes, wait_until

from node.home import NodeHome
from node.home.netsetup import observer_key
from node.net.sync import Peer, Syncer
from protocol.canonical import entry_id
from protocol.entries import ENTRY_PAYLOAD_TYPE
from protocol.envelope import Envelope, sign_payload
from protocol.keys import SigningKey


def _sync_once(home: Any, peers: list[Peer], **kw: Any) -> dict[str, Any]:
    return asyncio.run(Syncer(home, peers, **kw).sync_once())


def _peer(node: ThreadedNode) -> Peer:
    return Peer(node.home.lab, node.url)


def test_sync_once_pulls_and_pushes_until_all_hold_everything(sqlite_network) -> None:
    alpha, beta, gamma = sqlite_network
    for home, n in ((alpha, 3), (beta, 4), (gamma, 5)):
        for i in range(n):
            home.publish("note", {"text": f"{home.lab} {i}"})
    with ThreadedNode(beta) as b, ThreadedNode(gamma) as g:
        summary = _sync_once(alpha, [_peer(b), _peer(g)])
        assert all(s["ok"] for s in summary.values()), summary
        assert summary["beta"]["pushed"] == 3 and summary["gamma"]["pushed"] == 3
        assert summary["beta"]["fetched"] + summary["gamma"]["fetched"] == 9
        _sync_once(beta, [Peer("gamma", g.url)])
    want = {"alpha": 3, "beta": 4, "gamma": 5}
    assert heads_of([alpha, beta, gamma]) == [want, want, want]
    # The same entries, not just the same counts.
    assert alpha.store.heads() == beta.store.heads() == gamma.store.heads()


def _tune_sync(home: Any, **sync: Any) -> None:
    home.config = home.config.model_copy(update={"sync": home.config.sync.model_copy(update=sync)})


def _first_pull_done(nodes: list[ThreadedNode]) -> bool:
    """Every node's first pull round with every peer has ended: succeeded, or failed (a peer
    not serving yet) and backed off for at least an interval."""
    syncers = [n.app.state.node.syncer for n in nodes]
    return all(st.last_ok is not None or st.failures > 0 for s in syncers for st in s.states.values())


def test_eager_push_delivers_new_entries_well_within_one_interval(sqlite_network) -> None:
    for home in sqlite_network:
        _tune_sync(home, interval_s=30.0)  # only eager push can deliver in time
    alpha, beta, gamma = sqlite_network
    with ThreadedNode(alpha, sync=True) as a, ThreadedNode(beta, sync=True) as b, ThreadedNode(gamma, sync=True) as g:
        # The first pull round with every peer is over (peers learned each other's heads, or
        # backed off), so the next pull is an interval away: the entry can only arrive by push.
        wait_until(lambda: _first_pull_done([a, b, g]), 20.0, interval=0.02, what="every node's first pull round")
        eid = alpha.publish("note", {"text": "urgent"})
        # Well inside the 30 s pull interval, however loaded the machine: only a push delivers.
        wait_until(lambda: beta.store.get(eid) is not None and gamma.store.get(eid) is not None, 20.0,
                   interval=0.02, what="the pushed entry")


# --- hostile peers: a tiny real HTTP server serving crafted responses -------------------------------


class Hostile:
    """A real HTTP server that answers /v1/heads, /v1/feeds/<lab> and (when given)
    /v1/equivocations with crafted bodies; anything else is 404.

    With ``stall``, every GET is held unanswered until the server is closed (a peer slower
    than any timeout, without a guessed delay); ``stalled`` counts the requests held."""

    def __init__(self, heads: dict[str, Any], feeds: dict[str, bytes], stall: bool = False,
                 proofs: bytes | None = None) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                if outer.stall:
                    with outer.lock:
                        outer.stalled += 1
                    outer.release.wait()
                    return
                status = 200
                if self.path.startswith("/v1/heads"):
                    body = json.dumps(outer.heads).encode()
                elif self.path.startswith("/v1/feeds/"):
                    lab = self.path.split("/")[3].split("?")[0]
                    body = outer.feeds.get(lab, b'{"envelopes": []}')
                elif self.path.startswith("/v1/equivocations") and outer.proofs is not None:
                    body = outer.proofs
                else:
                    status, body = 404, b'{"code": "not-found", "detail": "no such route"}'
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            def do_POST(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"results": []}')

        self.heads, self.feeds, self.stall, self.proofs = heads, feeds, stall, proofs
        self.release, self.lock, self.stalled = threading.Event(), threading.Lock(), 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Hostile:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _page(lab: str, envs: list[Any], raw: bytes | None = None) -> bytes:
    return raw if raw is not None else json.dumps(
        {"lab": lab, "after": 0, "envelopes": [e.to_dict() for e in envs], "head": None}).encode()


def _crafted(mode: str, gamma: Any, real: list[Any]) -> tuple[bytes, str]:
    """(feed body for lab gamma, expected misbehaviour code) per hostile mode."""
    if mode == "forged":
        forged = notes(gamma, 3, key=SigningKey.generate(), prefix="forged")
        return _page("gamma", forged), "unknown-key"
    if mode == "truncated":
        return _page("gamma", real)[:-40], "bad-peer-response"
    if mode == "reordered":
        return _page("gamma", [real[1], real[0], real[2]]), "bad-feed-page"
    if mode == "equivocating":
        alt = notes(gamma, 3, prefix="the other history")
        return _page("gamma", alt[2:]), "equivocation"
    if mode == "non-canonical":
        # Validly signed by gamma's own key, but over pretty-printed (non-canonical) bytes.
        stmt = json.loads(real[1].payload_bytes())
        payload = json.dumps(stmt, indent=1, sort_keys=True).encode()
        bad = sign_payload(payload, ENTRY_PAYLOAD_TYPE, [gamma.key])
        return _page("gamma", [real[0], bad, real[2]]), "non-canonical"
    raise AssertionError(mode)


@pytest.mark.parametrize("mode", ["forged", "truncated", "reordered", "equivocating", "non-canonical"])
def test_hostile_peer_is_refused_and_recorded_while_honest_sync_continues(network, mode) -> None:
    alpha, beta, gamma = network
    real = notes(gamma, 3)
    if mode == "equivocating":
        alpha.store.ingest(real)  # alpha already holds gamma's real history
    beta.store.ingest(real)
    for i in range(4):
        beta.publish("note", {"text": f"b{i}"})
    body, code = _crafted(mode, gamma, real)
    claimed = entry_id(real[2].payload_bytes())
    if mode == "equivocating":  # the hostile peer's head names the other history's seq 3
        claimed = entry_id(Envelope.parse(json.loads(body)["envelopes"][0]).payload_bytes())
    heads = {"gamma": {"seq": 3, "entry_id": claimed}}
    with ThreadedNode(beta) as b, Hostile(heads, {"gamma": body}) as h:
        syncer = Syncer(alpha, [Peer("beta", b.url), Peer("gamma", h.url)], timeout_s=2.0)
        summary = asyncio.run(syncer.sync_once())
        hostile = syncer.peer_status()["gamma"]
        assert summary["beta"]["ok"], summary
        assert alpha.store.heads()["beta"].seq == 4  # honest sync went on
        if mode == "truncated":
            assert not summary["gamma"]["ok"] and code in summary["gamma"]["error"]
        assert code in [r["code"] for r in hostile["misbehaviour"]], hostile
        # Recorded in the database, with where the data came from, not only in memory.
        records = alpha.store.misbehaviour("gamma")
        assert [r.code for r in records] == [code] and hostile["misbehaviour_total"] == 1, records
        assert records[0].url.startswith(f"{h.url}/v1/feeds/gamma?after=") and records[0].lab == "gamma"
        assert records[0].reason and records[0].serial == 1
        sent = json.loads(body)["envelopes"] if mode != "truncated" else []
        # The refused entry: the first one served (reordered: real seq 2 served first;
        # non-canonical: the second, after a good first one).
        refused = 1 if mode == "non-canonical" else 0
        first = entry_id(Envelope.parse(sent[refused]).payload_bytes()) if sent else None
        want_seq = {"forged": 1, "truncated": 1, "reordered": 2, "equivocating": 3, "non-canonical": 2}[mode]
        assert (records[0].seq, records[0].entry_id) == (want_seq, first), records[0]
        assert alpha.store.misbehaviour("beta") == []
        # Another round with the honest peer completes gamma's real feed.
        _sync_once(alpha, [Peer("beta", b.url)])
    assert [entry_id(e.payload_bytes()) for e in alpha.store.feed("gamma")] == [
        entry_id(e.payload_bytes()) for e in real]
    proofs = alpha.store.equivocations()
    assert (len(proofs) == 1 and proofs[0].lab == "gamma") if mode == "equivocating" else proofs == []


def test_misbehaviour_records_survive_a_restart_and_are_pruned_at_the_bound(network, tmp_path) -> None:
    alpha, _, gamma = network
    alpha.store.misbehaviour_per_peer = 3
    body, code = _crafted("forged", gamma, [])
    with Hostile({"gamma": {"seq": 3, "entry_id": "ab" * 32}}, {"gamma": body}) as h:
        for _ in range(5):  # one refused page per round
            _sync_once(alpha, [Peer("gamma", h.url)], timeout_s=2.0)
    assert [r.serial for r in alpha.store.misbehaviour("gamma")] == [5, 4, 3]  # oldest pruned
    alpha.close()
    alpha = network[0] = NodeHome.open(alpha.path)  # a restart; the fixture closes the new one
    kept = alpha.store.misbehaviour("gamma")
    assert [(r.serial, r.code, r.lab, r.seq) for r in kept] == [(n, code, "gamma", 1) for n in (5, 4, 3)]
    count = alpha.store.misbehaviour_counts()["gamma"]
    assert (count.total, count.kept) == (5, 3)
    regulator = observer_key(tmp_path / "net", "regulator")
    with ThreadedNode(alpha, sync=True) as node, node.client(regulator, "regulator") as c:
        st = c.status()
        assert st.peers["gamma"].misbehaviour_total == 5
        assert [r.serial for r in st.peers["gamma"].misbehaviour] == [5, 4, 3]
        assert st.peers["beta"].misbehaviour == [] and st.peers["beta"].misbehaviour_total == 0
        assert {p: (c.total, c.kept) for p, c in st.misbehaviour.items()} == {"gamma": (5, 3)}
        doc = c.misbehaviour("gamma", limit=2)
        assert [r["serial"] for r in doc["records"]] == [5, 4] and doc["counts"]["gamma"]["total"] == 5
        assert doc["records"][0]["url"].startswith(h.url + "/v1/feeds/gamma?after=0")


def test_slow_peer_cannot_stall_sync_with_others(sqlite_network) -> None:
    alpha, beta, _ = sqlite_network
    for i in range(3):
        beta.publish("note", {"text": f"b{i}"})
    # gamma never answers while the test runs; alpha's per-peer timeout (1 s) must cut it loose.
    with ThreadedNode(beta) as b, Hostile({}, {}, stall=True) as slow:
        summary = _sync_once(alpha, [Peer("beta", b.url), Peer("gamma", slow.url)], timeout_s=1.0)
        # Sync returned while gamma still held its request unanswered: it did not wait for it.
        assert slow.stalled >= 1 and not slow.release.is_set()
    assert summary["beta"]["ok"] and not summary["gamma"]["ok"]
    assert "peer-unavailable" in summary["gamma"]["error"]
    assert alpha.store.heads()["beta"].seq == 3
