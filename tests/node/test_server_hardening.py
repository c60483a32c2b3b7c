"""A hostile peer against a real node: idle and slow connections, connection floods, request
smuggling framings, captured signed requests replayed elsewhere or after a restart, and the
files a node keeps (signing key, database). Real uvicorn on 127.0.0.1, real databases."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_nodes import ROOT, NodeProcess, ThreadedNode, wait_until

from node.home import NodeHome
from node.net.auth import sign_request
from node.net.process import free_ports
from node.store import Store
from node.store.nonces import NonceTable

PROBLEM = "application/problem+json"


def _tune(home: Any, **server: Any) -> None:
    home.config = home.config.model_copy(update={"server": home.config.server.model_copy(update=server)})


def _tune_file(home: Any, **server: Any) -> None:
    """Write server settings to node.toml (for `tripwire serve` child processes)."""
    _tune(home, **server)
    home.save_config(home.config)


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=30)
    return s


def _read_until_closed(s: socket.socket, timeout: float = 30.0) -> bytes:
    """Everything the server sends until it closes the connection (bounded)."""
    s.settimeout(timeout)
    buf = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return buf
        if not chunk:
            return buf
        buf += chunk


def _problem(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert PROBLEM.encode() in head.lower(), head
    return status, json.loads(body)


# --- connections ---------------------------------------------------------------------------------


def test_idle_partial_connections_are_cut(sqlite_network) -> None:
    alpha = sqlite_network[0]
    _tune_file(alpha, header_timeout_s=1.0)
    node = NodeProcess(alpha.path, alpha.config.server.port).start()
    try:
        silent = [_connect(node.url) for _ in range(10)]
        partial = [_connect(node.url) for _ in range(10)]
        for s in partial:
            s.sendall(b"GET /v1/heads HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        # Each connection is closed by the server (bounded wait, not a timing assertion).
        answers = [_read_until_closed(s) for s in silent + partial]
        for raw in answers:
            if raw:  # a 408 problem before the close
                status, doc = _problem(raw)
                assert status == 408 and doc["code"] == "request-timeout"
        # The node still serves.
        assert httpx.get(node.url + "/healthz", timeout=10).status_code == 200
    finally:
        node.stop()
    assert "did not send its request line and headers" in node.output()


def test_slow_request_body_is_cut(sqlite_network) -> None:
    alpha = sqlite_network[0]
    _tune(alpha, body_timeout_s=1.0)
    with ThreadedNode(alpha) as node:
        s = _connect(node.url)
        s.sendall(b"POST /v1/envelopes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n[")
        _read_until_closed(s)  # returns once the server closes the connection
        s.close()
        assert httpx.get(node.url + "/healthz", timeout=10).status_code == 200


def test_connections_beyond_the_cap_are_refused(sqlite_network) -> None:
    alpha = sqlite_network[0]
    _tune(alpha, max_connections=50, max_connections_per_client=4, header_timeout_s=120.0)
    with ThreadedNode(alpha) as node:
        held = [_connect(node.url) for _ in range(4)]
        server = node.server
        wait_until(lambda: len(server.server_state.connections) >= 4, 30, what="4 connections accepted")
        extra = _connect(node.url)
        status, doc = _problem(_read_until_closed(extra))
        assert status == 503 and doc["code"] == "too-many-connections"
        assert "127.0.0.1 holds its limit of 4 connections" in doc["detail"]
        for s in held:
            s.close()
        wait_until(lambda: len(server.server_state.connections) == 0, 30, what="held connections released")
        assert httpx.get(node.url + "/healthz", timeout=10).status_code == 200


# --- framing -------------------------------------------------------------------------------------

FRAMING = [
    ("cl-te", b"POST /v1/envelopes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "Transfer-Encoding"),
    ("te-cl", b"POST /v1/envelopes HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
              b"Content-Length: 4\r\n\r\n0\r\n\r\n", "Content-Length"),
    ("two-hosts", b"GET /v1/heads HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n", "Host"),
]


@pytest.mark.parametrize(("request_bytes", "named"), [c[1:] for c in FRAMING], ids=[c[0] for c in FRAMING])
def test_cl_te_request_is_refused(sqlite_network, request_bytes, named) -> None:
    alpha = sqlite_network[0]
    with ThreadedNode(alpha) as node:
        s = _connect(node.url)
        # A smuggled second request rides behind the first: it must never be answered.
        s.sendall(request_bytes + b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        raw = _read_until_closed(s)
        status, doc = _problem(raw)
        assert status == 400 and doc["code"] == "bad-http-request" and named in doc["detail"]
        assert raw.count(b"HTTP/1.1") == 1
    assert alpha.store.log_size() == 0


# --- request binding and replay (spec §8) ---------------------------------------------------------


def test_signed_request_replayed_at_other_node_is_refused(sqlite_network) -> None:
    alpha, beta, gamma = sqlite_network
    with ThreadedNode(alpha) as a, ThreadedNode(beta) as b:
        h = sign_request(gamma.key, "GET", a.url + "/v1/heads")
        assert httpx.get(a.url + "/v1/heads", headers=h, timeout=10).status_code == 200
        # Replayed verbatim (Host still names alpha): refused, naming the node it was for.
        r = httpx.get(b.url + "/v1/heads", headers={**h, "host": a.url.removeprefix("http://")}, timeout=10)
        assert r.status_code == 401 and r.json()["code"] == "misdirected-request", r.text
        assert a.url.removeprefix("http://") in r.json()["detail"]
        # Replayed with the Host rewritten to beta: the signature does not cover beta.
        h2 = sign_request(gamma.key, "GET", a.url + "/v1/heads")
        r = httpx.get(b.url + "/v1/heads", headers=h2, timeout=10)
        assert r.status_code == 401 and r.json()["code"] == "bad-request-signature", r.text
        assert "@authority" in r.json()["detail"]


def test_unbound_signed_request_is_refused(sqlite_network) -> None:
    alpha, beta = sqlite_network[0], sqlite_network[1]
    with ThreadedNode(alpha) as a:
        h = sign_request(beta.key, "GET", a.url + "/v1/heads", components=("@method", "@path", "@query"))
        r = httpx.get(a.url + "/v1/heads", headers=h, timeout=10)
        assert r.status_code == 401 and "must cover @authority" in r.json()["detail"]


def test_signature_covering_target_uri_and_headers_is_accepted(sqlite_network) -> None:
    alpha, beta = sqlite_network[0], sqlite_network[1]
    with ThreadedNode(alpha) as a:
        url = a.url + "/v1/feeds/alpha?after=0&limit=5"
        extra = {"user-agent": "hostile-lab/1", "host": a.url.removeprefix("http://")}
        h = sign_request(beta.key, "GET", url, components=("@method", "@target-uri", "@scheme", "user-agent", "host"),
                         headers=extra)
        r = httpx.get(url, headers={**h, "user-agent": extra["user-agent"]}, timeout=10)
        assert r.status_code == 200, r.text
        # A component the node cannot check is refused by name.
        h = sign_request(beta.key, "GET", url, components=("@method", "@target-uri", "x-absent"),
                         headers={"x-absent": "1"})
        r = httpx.get(url, headers=h, timeout=10)
        assert r.status_code == 401 and r.json()["code"] == "uncheckable-signature-component"
        assert "x-absent" in r.json()["detail"]


def test_replay_after_restart_is_refused(network) -> None:
    alpha, beta = network[0], network[1]
    node = NodeProcess(alpha.path, alpha.config.server.port).start()
    try:
        h = sign_request(beta.key, "GET", node.url + "/v1/heads")
        assert httpx.get(node.url + "/v1/heads", headers=h, timeout=10).status_code == 200
        node.kill()  # a crash: nothing is flushed on the way out
        node.start()
        r = httpx.get(node.url + "/v1/heads", headers=h, timeout=10)
        assert r.status_code == 401 and r.json()["code"] == "replayed-request", r.text
        fresh = sign_request(beta.key, "GET", node.url + "/v1/heads")
        assert httpx.get(node.url + "/v1/heads", headers=fresh, timeout=10).status_code == 200
    finally:
        node.stop()


def test_nonce_table_refuses_replays_and_prunes_expired_nonces(db_url) -> None:
    with Store.open(db_url) as store:
        table = NonceTable(store.engine, prune_every_s=0)
        assert table.remember("k", "nonce-1", now=1000, expires=1010)
        assert not table.remember("k", "nonce-1", now=1005, expires=1015)
        assert table.remember("other", "nonce-1", now=1005, expires=1015)  # per keyid
        assert table.remember("k", "nonce-2", now=1005, expires=1015)
        assert len(table) == 3
        # Past its expiry the row is pruned with the next write, and the pair is free again.
        assert table.remember("k", "nonce-3", now=1012, expires=1020)
        assert len(table) == 3
        assert table.remember("k", "nonce-1", now=1012, expires=1020)
        full = NonceTable(store.engine, prune_every_s=0, max_entries=4)
        from node.errors import ReplayedRequestError

        with pytest.raises(ReplayedRequestError, match="full"):
            full.remember("k", "nonce-9", now=1012, expires=1020)


# --- files ---------------------------------------------------------------------------------------


def _serve_cli(home: Path, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli", "serve", "--home", str(home), "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "300"},
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604], ids=["world-and-group", "group", "world"])
def test_world_readable_key_refuses_to_start(tmp_path, mode) -> None:
    home = NodeHome.init(tmp_path / "alpha", "alpha", port=free_ports(1)[0])
    home.close()
    key = tmp_path / "alpha" / "keys" / "signing.pem"
    key.chmod(mode)
    done = _serve_cli(tmp_path / "alpha", home.config.server.port)
    out = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2, out
    assert "[key-file]" in out and f"chmod 600 {key}" in out and "serving" not in out
    key.chmod(0o600)
    with NodeHome.open(tmp_path / "alpha") as opened:
        assert opened.key.keyid == home.key.keyid


def test_database_and_key_files_are_private(sqlite_network) -> None:
    alpha = sqlite_network[0]
    db = alpha.path / "tripwire.db"
    alpha.publish("note", {"text": "x"})  # a write: the -wal and -shm files exist now
    files = [db, alpha.path / "keys" / "signing.pem", db.with_name("tripwire.db-wal"), db.with_name("tripwire.db-shm")]
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    # A database loosened later (a copy, a restore) is tightened again when the node opens it.
    db.chmod(0o644)
    with NodeHome.open(alpha.path):
        assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_serve_answers_misdirected_problem_over_real_process(sqlite_network) -> None:
    """`tripwire serve` (a child process) checks @authority against its bind address."""
    alpha, beta = sqlite_network[0], sqlite_network[1]
    port = free_ports(1)[0]
    node = NodeProcess(alpha.path, port).start()
    try:
        good = sign_request(beta.key, "GET", node.url + "/v1/heads")
        assert httpx.get(node.url + "/v1/heads", headers=good, timeout=10).status_code == 200
        other = f"http://127.0.0.1:{alpha.config.server.port + 1}"
        bad = sign_request(beta.key, "GET", other + "/v1/heads")
        r = httpx.get(node.url + "/v1/heads", headers={**bad, "host": other.removeprefix("http://")}, timeout=10)
        assert r.status_code == 401 and r.json()["code"] == "misdirected-request"
    finally:
        node.stop()
