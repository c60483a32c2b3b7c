"""The node's HTTP API over real uvicorn on 127.0.0.1, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from http_nodes import ThreadedNode, note_at, notes

from node.home.netsetup import observer_key
from node.net.auth import sign_request
from protocol.canonical import entry_id
from protocol.keys import SigningKey
from protocol.merkle import leaf_hash, log_leaf, verify_checkpoint, verify_consistency, verify_inclusion

PROBLEM = "application/problem+json"


def _tune(home: Any, **server: Any) -> None:
    home.config = home.config.model_copy(update={"server": home.config.server.model_copy(update=server)})


def _serve(homes: list[Any], tmp_path: Any):
    alpha = homes[0]
    _tune(alpha, max_body_bytes=64 * 1024)
    with ThreadedNode(alpha) as n:
        n.alpha, n.beta, n.gamma = homes
        n.observer = observer_key(tmp_path / "net", "regulator")
        yield n


@pytest.fixture
def node(sqlite_network, tmp_path):
    """alpha served over HTTP (no sync) on SQLite, with a small body limit to exercise 413."""
    yield from _serve(sqlite_network, tmp_path)


@pytest.fixture
def node_db(network, tmp_path):
    """Like ``node``, on both database backends (for the paths that write and prove)."""
    yield from _serve(network, tmp_path)


def raw(node: ThreadedNode, key: SigningKey | None, method: str, target: str, body: bytes | None = None,
        headers: dict[str, str] | None = None, **sign_kw: Any) -> httpx.Response:
    h = {"content-type": "application/json"} if body is not None else {}
    if key is not None:
        h.update(sign_request(key, method, node.url + target, body, **sign_kw))
    h.update(headers or {})
    return httpx.request(method, node.url + target, content=body, headers=h, timeout=10)


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    doc = r.json()
    assert doc["status"] == status and doc["code"] == code, doc
    assert doc["type"] == f"urn:tripwire:problem:{code}" and doc["title"] and doc["detail"]
    return doc


def stored_state(home: Any) -> tuple[int, dict[str, Any], int]:
    return home.store.log_size(), home.store.heads(), len(home.store.equivocations())


# --- reads and authentication --------------------------------------------------------------------


def test_members_and_observers_read(node_db) -> None:
    node = node_db
    node.alpha.publish("note", {"text": "hello"})
    for key, who in ((node.beta.key, "beta"), (node.observer, "regulator")):
        c = node.client(key, who)
        heads = c.heads()
        assert heads["alpha"].seq == 1
        page = c.feed("alpha")
        assert [entry_id(e.payload_bytes()) for e in page.envelopes] == [heads["alpha"].entry_id]
        assert c.roster().version == 1
        st = c.status()
        assert st.node == "alpha" and st.paused is False and st.heads["alpha"].seq == 1
        assert c.equivocations() == []


def test_open_endpoints_need_no_signature(node) -> None:
    r = httpx.get(node.url + "/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "lab": "alpha"}
    r = httpx.get(node.url + "/metrics")
    assert r.status_code == 200 and "tripwire_http_requests_total" in r.text


STALE = datetime.now(UTC) - timedelta(hours=1)
AUTH_CASES = [
    ("unsigned", None, "GET", "/v1/heads", {}, 401, "unsigned-request"),
    ("unknown-key", "stranger", "GET", "/v1/heads", {}, 401, "unknown-request-key"),
    ("expired", "beta", "GET", "/v1/heads", {"created": STALE}, 401, "stale-request"),
    ("observer-push", "observer", "POST", "/v1/envelopes", {}, 403, "forbidden"),
    ("unsigned-push", None, "POST", "/v1/envelopes", {}, 401, "unsigned-request"),
]


@pytest.mark.parametrize(("who", "method", "target", "kw", "status", "code"),
                         [c[1:] for c in AUTH_CASES], ids=[c[0] for c in AUTH_CASES])
def test_authentication_failures_are_problems(node, who, method, target, kw, status, code) -> None:
    key = {"beta": node.beta.key, "observer": node.observer, "stranger": SigningKey.generate(), None: None}[who]
    body = json.dumps(notes(node.beta, 1)[0].to_dict()).encode() if method == "POST" else None
    before = stored_state(node.alpha)
    assert_problem(raw(node, key, method, target, body, **kw), status, code)
    assert stored_state(node.alpha) == before


def test_replayed_and_tampered_requests_are_refused(node) -> None:
    h = sign_request(node.beta.key, "GET", node.url + "/v1/heads")
    assert httpx.get(node.url + "/v1/heads", headers=h).status_code == 200
    assert_problem(httpx.get(node.url + "/v1/heads", headers=h), 401, "replayed-request")
    h = sign_request(node.beta.key, "GET", node.url + "/v1/feeds/alpha?after=0")
    assert_problem(httpx.get(node.url + "/v1/feeds/alpha?after=5", headers=h), 401, "bad-request-signature")
    body = json.dumps(notes(node.beta, 1)[0].to_dict()).encode()
    h = sign_request(node.beta.key, "POST", node.url + "/v1/envelopes", body)
    swapped = json.dumps(notes(node.beta, 1, prefix="other")[0].to_dict()).encode()
    r = httpx.post(node.url + "/v1/envelopes", content=swapped, headers={**h, "content-type": "application/json"})
    assert_problem(r, 401, "bad-request-signature")
    assert node.alpha.store.heads() == {}


def test_rate_limit_answers_429_with_retry_after(sqlite_network) -> None:
    network = sqlite_network
    alpha, beta = network[0], network[1]
    _tune(alpha, rate_limit_per_minute=3)
    with ThreadedNode(alpha) as n:
        c = n.client(beta.key, "beta")
        for _ in range(3):
            c.heads()
        r = raw(n, beta.key, "GET", "/v1/heads")
        assert_problem(r, 429, "rate-limited")
        assert int(r.headers["retry-after"]) >= 1
        # Buckets are per caller: another member is unaffected.
        assert n.client(network[2].key, "gamma").heads() == {}


def test_flooding_lab_is_slowed_by_its_byte_budget_and_changes_nothing(sqlite_network) -> None:
    """A lab pushing more bytes than ``ingest_bytes_per_minute`` allows (burst: two maximal
    bodies) is answered 429 with Retry-After before any entry is decoded, and nothing of the
    refused body is stored; other members keep their own budget."""
    alpha, beta, gamma = sqlite_network
    _tune(alpha, max_body_bytes=64 * 1024, ingest_bytes_per_minute=65_536)
    batch = [e.to_dict() for e in notes(beta, 40)]
    chunks = [batch[i : i + 10] for i in range(0, 40, 10)]
    bodies = [json.dumps(c).encode() for c in chunks]
    assert all(len(b) < 64 * 1024 for b in bodies) and 8 * sum(len(b) for b in bodies) > 2 * 64 * 1024
    with ThreadedNode(alpha) as n:
        answers = []
        for body in bodies * 8:  # far beyond a 128 KiB burst
            before = alpha.store.log_size()
            r = raw(n, beta.key, "POST", "/v1/envelopes", body)
            answers.append(r.status_code)
            if r.status_code == 429:
                assert_problem(r, 429, "rate-limited")
                assert int(r.headers["retry-after"]) >= 1 and "byte budget" in r.json()["detail"]
                assert alpha.store.log_size() == before, "a refused body stores nothing"
                break
        assert answers[-1] == 429 and set(answers[:-1]) == {200}
        # gamma's budget is its own
        r = raw(n, gamma.key, "POST", "/v1/envelopes", json.dumps([e.to_dict() for e in notes(gamma, 2)]).encode())
        assert r.status_code == 200, r.text


# --- writes ------------------------------------------------------------------------------------------


def test_single_envelope_accept_duplicate_and_forgery(node) -> None:
    env = notes(node.beta, 1)[0]
    body = json.dumps(env.to_dict()).encode()
    r = raw(node, node.beta.key, "POST", "/v1/envelopes", body)
    assert r.status_code == 200 and r.json()["status"] == "accepted" and r.json()["lab"] == "beta"
    r = raw(node, node.gamma.key, "POST", "/v1/envelopes", body)  # relayed by another lab: fine
    assert r.status_code == 200 and r.json()["status"] == "duplicate"
    before = stored_state(node.alpha)
    forged = note_at(node.beta, 2, entry_id(env.payload_bytes()), "forged", key=SigningKey.generate())
    assert_problem(raw(node, node.beta.key, "POST", "/v1/envelopes", json.dumps(forged.to_dict()).encode()),
                   422, "unknown-key")
    assert stored_state(node.alpha) == before


def test_batch_answers_per_envelope_and_stores_only_valid_ones(node_db) -> None:
    node = node_db
    good = notes(node.beta, 3)
    e1 = entry_id(good[0].payload_bytes())
    node.alpha.store.ingest([good[0]])
    equivocation = note_at(node.beta, 1, None, "a different first entry")
    forged = note_at(node.gamma, 1, None, "forged", key=SigningKey.generate())
    ahead = notes(node.gamma, 2)[1]  # seq 2 without seq 1: held
    batch = [good[1].to_dict(), {"garbage": True}, forged.to_dict(), good[2].to_dict(), good[0].to_dict(),
             ahead.to_dict(), "not an object"]
    r = raw(node, node.gamma.key, "POST", "/v1/envelopes", json.dumps(batch).encode())
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["status"] for x in res] == [
        "accepted", "rejected", "rejected", "accepted", "duplicate", "held", "rejected"]
    assert res[1]["code"] == "bad-envelope" and res[1]["reason"]
    assert res[2]["code"] in ("unknown-key", "bad-signature")
    assert res[0]["entry_id"] == entry_id(good[1].payload_bytes()) and res[4]["entry_id"] == e1
    # A second entry at seq 1 is an equivocation: refused, feed frozen past the fork.
    r = raw(node, node.gamma.key, "POST", "/v1/envelopes", json.dumps([equivocation.to_dict()]).encode())
    assert r.status_code == 200 and r.json()["results"][0]["code"] == "equivocation"
    heads = node.alpha.store.heads()
    assert heads["beta"].seq == 3 and "gamma" not in heads
    # Equivocation evidence is the one thing kept from a rejected entry, and it is served.
    proofs = node.client(node.beta.key, "beta").equivocations()
    assert len(proofs) == 1 and proofs[0]["proof"]["lab"] == "beta" and proofs[0]["proof"]["seq"] == 1


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


BODY_CASES = [
    ("not-json", b"{not json", "application/json", 400, "non-canonical"),
    ("not-utf8", b"\xff\xfe[]", "application/json", 400, "non-canonical"),
    ("deep-json", _deep(5000), "application/json", 400, "oversize"),
    ("number", b"42", "application/json", 400, "bad-request-body"),
    ("empty-batch", b"[]", "application/json", 400, "empty-batch"),
    ("duplicate-keys", b'{"payload":"a","payload":"b"}', "application/json", 400, "non-canonical"),
    ("float", b'[{"payloadType": 1.5}]', "application/json", 400, "float-in-signed-data"),
    ("text-plain", b"[]", "text/plain", 415, "unsupported-media-type"),
    ("no-content-type", b"[]", "", 415, "unsupported-media-type"),
    ("too-large", b"[" + b" " * (70 * 1024) + b"]", "application/json", 413, "body-too-large"),
]


@pytest.mark.parametrize(("body", "ctype", "status", "code"), [c[1:] for c in BODY_CASES],
                         ids=[c[0] for c in BODY_CASES])
def test_malformed_requests_are_4xx_and_change_nothing(node, body, ctype, status, code) -> None:
    before = stored_state(node.alpha)
    h = sign_request(node.beta.key, "POST", node.url + "/v1/envelopes", body)
    h["content-type"] = ctype
    if not ctype:
        del h["content-type"]
    r = httpx.post(node.url + "/v1/envelopes", content=body, headers=h, timeout=10)
    assert_problem(r, status, code)
    assert stored_state(node.alpha) == before


def test_oversized_streamed_body_without_content_length_is_413(node) -> None:
    def chunks():
        for _ in range(100):
            yield b" " * 1024

    r = httpx.post(node.url + "/v1/envelopes", content=chunks(),
                   headers={"content-type": "application/json"}, timeout=10)
    assert "content-length" not in r.request.headers
    assert_problem(r, 413, "body-too-large")


def test_declared_oversize_is_refused_before_the_body_is_read(node) -> None:
    # A raw socket: HTTP clients refuse to send a Content-Length they do not honour.
    import socket

    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as s:
        s.sendall(b"POST /v1/envelopes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 99999999\r\n\r\n[]")
        reply = b""
        while b"body-too-large" not in reply:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
        reply = reply.decode("latin-1")
    assert reply.startswith("HTTP/1.1 413"), reply
    assert "body-too-large" in reply


# --- feeds, entries, proofs --------------------------------------------------------------------------


def test_feed_paging_and_parameter_errors(node) -> None:
    for i in range(7):
        node.alpha.publish("note", {"text": f"n{i}"})
    c = node.client(node.beta.key, "beta")
    p1 = c.feed("alpha", after=0, limit=3)
    p2 = c.feed("alpha", after=3, limit=3)
    p3 = c.feed("alpha", after=6, limit=3)
    assert [len(p.envelopes) for p in (p1, p2, p3)] == [3, 3, 1] and p3.head.seq == 7
    ids = [entry_id(e.payload_bytes()) for p in (p1, p2, p3) for e in p.envelopes]
    assert ids == [entry_id(e.payload_bytes()) for e in node.alpha.store.feed("alpha", 0, 100)]
    assert c.feed("beta").envelopes == []
    assert_problem(raw(node, node.beta.key, "GET", "/v1/feeds/nobody"), 404, "unknown-lab")
    assert_problem(raw(node, node.beta.key, "GET", "/v1/feeds/alpha?limit=0"), 400, "invalid-request")
    assert_problem(raw(node, node.beta.key, "GET", "/v1/feeds/alpha?after=-1"), 400, "invalid-request")
    assert_problem(raw(node, node.beta.key, "GET", "/v1/feeds/BAD%20LAB"), 400, "invalid-request")
    assert_problem(raw(node, node.beta.key, "GET", "/v1/nothing"), 404, "not-found")


def test_entry_checkpoint_and_proofs_verify_offline(node_db) -> None:
    node = node_db
    ids = [node.alpha.publish("note", {"text": f"n{i}"}) for i in range(5)]
    c = node.client(node.observer, "regulator")
    e = c.entry(ids[2])
    assert e["entry_id"] == ids[2] and e["seq"] == 3 and e["statement"]["body"]["text"] == "n2"
    assert_problem(raw(node, node.observer, "GET", "/v1/entries/" + "0" * 64), 404, "entry-not-found")
    assert_problem(raw(node, node.observer, "GET", "/v1/certificates/" + "0" * 64), 404, "certificate-not-found")
    chain = node.alpha.store.roster_chain()
    cp = verify_checkpoint(c.checkpoint(), chain)
    assert cp.node == "alpha" and cp.size == 5
    proof = c.inclusion_proof(ids[2])
    assert proof["index"] == 2 and proof["size"] == 5
    verify_inclusion(leaf_hash(log_leaf(ids[2])), 2, 5, [bytes.fromhex(h) for h in proof["path"]], cp.root_bytes)
    old = verify_checkpoint(node.alpha.store.signed_checkpoint(node.alpha.key, "alpha", size=2), chain)
    cons = c.consistency_proof(2, 5)
    verify_consistency(2, 5, [bytes.fromhex(h) for h in cons["path"]], old.root_bytes, cp.root_bytes)
    assert_problem(raw(node, node.observer, "GET", "/v1/proofs/consistency?old=4&new=9"), 400, "bad-tree-sizes")
    assert_problem(raw(node, node.observer, "GET", f"/v1/proofs/inclusion?entry_id={ids[0]}&size=99"),
                   400, "size-beyond-log")
