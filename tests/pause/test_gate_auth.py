"""A gate polling by URL acts only on its node's signed pause state (spec §6.9).

Real HTTP throughout: a real node served by uvicorn on 127.0.0.1, and a hostile HTTP server
of the test's own on 127.0.0.1 standing between the gate and the node. The hostile server
forwards each request to the node and then rewrites the answer: the man in the middle a gate
must not believe.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pausekit import Mesh, Node, make_network, result_body

from node.home import NodeHome
from node.net.client import PeerClient
from node.pause.gate import TrainingGate
from protocol.canonical import format_time, utcnow
from protocol.errors import ConfigurationError
from protocol.pausestate import pause_state_statement, sign_pause_state, verify_pause_state

LABS = ["alpha", "beta", "gamma"]

#: (status, headers, body) the hostile server sends back, given the node's answer and the query.
Rewrite = Callable[[int, dict[str, str], bytes, dict[str, str]], tuple[int, dict[str, str], bytes]]


class HostileProxy:
    """A man in the middle on 127.0.0.1: forwards the gate's request to the node, then answers
    whatever ``rewrite`` makes of the node's answer."""

    def __init__(self, upstream: str, rewrite: Rewrite) -> None:
        self.upstream = upstream
        self.rewrite = rewrite
        self.seen: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy.seen.append(self.path)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                try:
                    r = httpx.get(proxy.upstream + self.path, headers=headers, timeout=5)
                    code, got, body = r.status_code, dict(r.headers), r.content
                except httpx.HTTPError:
                    code, got, body = 502, {}, b""
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                status, out_headers, out = proxy.rewrite(code, got, body, query)
                self.send_response(status)
                for k, v in out_headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HostileProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _json(obj: Any, status: int = 200, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"content-type": "application/json", **headers}, json.dumps(obj).encode()


@pytest.fixture
def homes(tmp_path: Path) -> Iterator[list[NodeHome]]:
    hs = make_network(tmp_path / "net", LABS)
    yield hs
    for h in hs:
        h.close()


@pytest.fixture
def alpha_node(homes: list[NodeHome]) -> Iterator[Node]:
    node = Node(homes[0], coordinate=False, sync=False).start()
    yield node
    node.stop()


def _pause(homes: list[NodeHome]) -> None:
    """alpha's result breaches; the three labs vote and certify a pause (in their stores)."""
    homes[0].publish("eval_result", result_body("0.66", step=200))
    Mesh(homes).settle()


def _url_gate(url: str, homes: list[NodeHome], **kw: Any) -> TrainingGate:
    """alpha's gate polling ``url``, trusting alpha under alpha's roster chain."""
    kw.setdefault("roster", homes[0].store.roster_chain())
    return TrainingGate(url, key=homes[0].key, member="alpha", poll_interval_s=0, grace_s=0, **kw)


def _genuine_answer(node: Node, nonce: str) -> bytes:
    with PeerClient(node.url, node.home.key, node.home.lab) as c:
        code, _, body = c.request("GET", "/v1/status/pause", params={"nonce": nonce})
    assert code == 200, body
    return body


# --- what a man in the middle tries ---------------------------------------------------------------


def test_mitm_unpaused_answer_stops_gate(homes: list[NodeHome], alpha_node: Node) -> None:
    _pause(homes)
    with HostileProxy(alpha_node.url, lambda *_: _json({"paused": False})) as mitm:
        gate = _url_gate(mitm.url, homes)
        d = gate.check(1)
        gate.close()
    assert mitm.seen and mitm.seen[0].startswith("/v1/status/pause?nonce=")
    assert d.stop and d.source == "unauthenticated"
    assert "cannot authenticate the answer" in d.reason and "bad-envelope" in d.reason
    assert "TRAINING STOPPED" in d.message()


def test_redirect_stops_gate(homes: list[NodeHome], alpha_node: Node) -> None:
    # The redirect points at the genuine node: following it would even give a valid answer.
    def redirect(code: int, headers: dict[str, str], body: bytes, query: dict[str, str]) -> Any:
        return 302, {"location": f"{alpha_node.url}/v1/status/pause?nonce={query['nonce']}"}, b""

    with HostileProxy(alpha_node.url, redirect) as mitm:
        gate = _url_gate(mitm.url, homes)
        d = gate.check(1)
        gate.close()
    assert d.stop and d.source == "unauthenticated"
    assert "HTTP 302 redirect" in d.reason and "never follow redirects" in d.reason
    assert len(mitm.seen) == 1


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (lambda: _json([{"paused": False}]), "an envelope must be a JSON object"),
        (lambda: _json({"payloadType": "x"}), "malformed envelope"),
        (lambda: (200, {"content-type": "text/html"}, b"<html>not paused</html>"), "not JSON"),
        (lambda: _json({"code": "boom"}, status=500), "HTTP 500"),
    ],
    ids=["json-list", "missing-keys", "not-json", "server-error"],
)
def test_json_list_answer_stops_gate(
    homes: list[NodeHome], alpha_node: Node, answer: Callable[[], Any], expected: str
) -> None:
    """A list, an object of the wrong shape, non-JSON or an error status: a stop, never a raise."""
    with HostileProxy(alpha_node.url, lambda *_: answer()) as mitm:
        gate = _url_gate(mitm.url, homes)
        d = gate.check(1)
        gate.close()
    assert d.stop and d.source == "unauthenticated"
    assert expected in d.reason


def test_replayed_signed_answer_stops_gate(homes: list[NodeHome], alpha_node: Node) -> None:
    """A genuine unpaused answer recorded before the pause, replayed after it."""
    recorded = _genuine_answer(alpha_node, "ab" * 32)
    # The recording is genuine: it verifies for the challenge it answered.
    verify_pause_state(
        json.loads(recorded), homes[0].store.roster_chain(), node="alpha", nonce="ab" * 32, now=utcnow()
    )
    _pause(homes)
    with HostileProxy(alpha_node.url, lambda *_: (200, {"content-type": "application/json"}, recorded)) as mitm:
        gate = _url_gate(mitm.url, homes)
        d = gate.check(1)
        gate.close()
    assert d.stop and d.source == "unauthenticated"
    assert "replayed answer" in d.reason and "pause-state-nonce" in d.reason


@pytest.mark.parametrize("claims", ["alpha", "beta"], ids=["claims-alpha", "claims-beta"])
def test_answer_signed_by_other_lab_stops_gate(homes: list[NodeHome], alpha_node: Node, claims: str) -> None:
    """beta, a roster lab, signs a fresh "not paused" for the gate's own nonce."""
    beta = homes[1]
    chain = beta.store.roster_chain()
    _pause(homes)

    def forge(code: int, headers: dict[str, str], body: bytes, query: dict[str, str]) -> Any:
        st = pause_state_statement(
            network=chain.network_id, node=claims, issued_at=format_time(utcnow()), nonce=query["nonce"],
            paused=False, roster_version=chain.current.version,
        )
        return _json(sign_pause_state(st, beta.key).to_dict())

    with HostileProxy(alpha_node.url, forge) as mitm:
        gate = _url_gate(mitm.url, homes)
        d = gate.check(1)
        gate.close()
    assert d.stop and d.source == "unauthenticated"
    if claims == "alpha":
        assert "signed with a key of beta" in d.reason and "unknown-key" in d.reason
    else:
        assert "speaks for node 'beta'; the gate trusts 'alpha'" in d.reason


def test_answer_of_another_network_stops_gate(homes: list[NodeHome], alpha_node: Node, tmp_path: Path) -> None:
    other = make_network(tmp_path / "other", ["alpha"])
    try:
        with Node(other[0], coordinate=False, sync=False) as impostor:
            gate = TrainingGate(
                impostor.url, key=other[0].key, member="alpha", roster=homes[0].store.roster_chain(),
                poll_interval_s=0, grace_s=0,
            )
            d = gate.check(1)
            gate.close()
    finally:
        other[0].close()
    assert d.stop and "wrong-network" in d.reason


def test_stale_answer_stops_gate(homes: list[NodeHome], alpha_node: Node) -> None:
    # The gate's clock is an hour ahead of the node's signature: outside the 300 s window.
    gate = _url_gate(alpha_node.url, homes, wall_clock=lambda: utcnow() + timedelta(hours=1))
    d = gate.check(1)
    gate.close()
    assert d.stop and "pause-state-stale" in d.reason and "window 300s" in d.reason


def test_gate_without_a_roster_stops_at_its_first_answer(homes: list[NodeHome], alpha_node: Node) -> None:
    gate = TrainingGate(alpha_node.url, key=homes[0].key, member="alpha", poll_interval_s=0)
    d = gate.check(1)
    gate.close()
    assert d.stop and d.source == "unauthenticated" and "no roster" in d.reason


# --- the genuine node ------------------------------------------------------------------------------


def _roster_file(home: NodeHome, path: Path) -> Path:
    path.write_text(json.dumps([e.to_dict() for e in home.store.roster_chain().envelopes()]))
    return path


@pytest.mark.parametrize("trust", ["roster-chain", "roster-file", "pinned-network", "home"])
def test_genuine_unpaused_answer_lets_training_continue(
    homes: list[NodeHome], alpha_node: Node, tmp_path: Path, trust: str
) -> None:
    t = [0.0]
    if trust == "home":
        gate = TrainingGate(homes[0], poll_interval_s=5, grace_s=0, check_local=False, clock=lambda: t[0])
        assert gate.url == alpha_node.url
    else:
        extra: dict[str, Any] = {
            "roster-chain": {},
            "roster-file": {"roster": _roster_file(homes[0], tmp_path / "roster.json")},
            "pinned-network": {"roster": None, "network": homes[0].store.network_id()},
        }[trust]
        gate = _url_gate(alpha_node.url, homes, clock=lambda: t[0], **extra)
        gate.config = gate.config.model_copy(update={"poll_interval_s": 5})
    try:
        d = gate.check(1)
        assert d.proceed and d.source == "node" and "not paused (signed by node alpha" in d.reason, d.reason
        assert gate.last_pause_state is not None and gate.last_pause_state.statement.node == "alpha"
        first_nonce = gate.last_pause_state.statement.nonce
        assert gate.check(2).source == "cached"  # within the poll interval
        t[0] = 6.0
        d = gate.check(3)
        assert d.proceed and d.source == "node"
        # Every poll sends a fresh challenge.
        assert gate.last_pause_state.statement.nonce != first_nonce
    finally:
        gate.close()


def test_genuine_paused_answer_stops(homes: list[NodeHome], alpha_node: Node) -> None:
    _pause(homes)
    gate = _url_gate(alpha_node.url, homes)
    d = gate.check(7)
    gate.close()
    assert d.stop and d.source == "node" and d.paused
    assert "the network is paused (signed by node alpha" in d.reason and "pause certificate" in d.reason
    assert d.details["certificates"][0]["proposal_id"] == d.paused[0]
    # The signed list is the one the node's status reports.
    with PeerClient(alpha_node.url, homes[0].key, "alpha") as c:
        status = c.status()
    assert [c.proposal_id for c in status.pause.certificates] == list(d.paused)


# --- configuration and the home gate ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"network": "ab"}, "network"),
        ({"roster": "missing.json"}, "cannot read"),
        ({"network": "0" * 64}, "is not network 0000"),
    ],
    ids=["bad-network-id", "missing-roster-file", "roster-of-another-network"],
)
def test_gate_trust_configuration_errors(homes: list[NodeHome], tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    if "network" in kwargs and kwargs["network"] == "0" * 64:
        kwargs = {**kwargs, "roster": _roster_file(homes[0], tmp_path / "r.json")}
    with pytest.raises(ConfigurationError, match=match):
        TrainingGate("http://127.0.0.1:1", key=homes[0].key, member="alpha", **kwargs)


def test_home_gate_stops_instead_of_raising_on_a_store_error(homes: list[NodeHome]) -> None:
    home = homes[0]
    gate = TrainingGate(home, poll_interval_s=0, fail_closed=False)
    # The database goes away under the gate: reads hit an empty file without tables.
    home.store.close()
    for f in home.path.glob("tripwire.db*"):
        f.rename(f.with_name("moved-" + f.name))
    d = gate.check(1)
    assert d.stop and d.source == "local" and "cannot read the local store" in d.reason
    gate.close()


def test_genuine_envelope_of_another_type_stops_gate(homes: list[NodeHome], alpha_node: Node) -> None:
    """alpha's own signed checkpoint, served in place of its pause state: the type is bound."""
    with PeerClient(alpha_node.url, homes[0].key, "alpha") as c:
        checkpoint = c.checkpoint().to_dict()
    with HostileProxy(alpha_node.url, lambda *_: _json(checkpoint)) as mitm:
        gate = _url_gate(mitm.url, homes)
        d = gate.check(1)
        gate.close()
    assert d.stop and "is not a pause state" in d.reason and "bad-envelope" in d.reason


@pytest.mark.parametrize("nonce", ["", "short", "AB" * 32, "ab" * 65], ids=["empty", "short", "upper", "long"])
def test_pause_state_route_refuses_a_bad_nonce(homes: list[NodeHome], alpha_node: Node, nonce: str) -> None:
    with PeerClient(alpha_node.url, homes[0].key, "alpha") as c:
        code, headers, body = c.request("GET", "/v1/status/pause", params={"nonce": nonce})
    assert code == 400 and headers["content-type"].startswith("application/problem+json"), body
