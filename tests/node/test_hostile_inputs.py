"""Hostile signed data over real HTTP: each bad entry is refused with its code, never a 500.

A member can sign any bytes. A lone surrogate in a member name used to raise an encoding
error from the UTF-16 key sort (HTTP 500, sinking the whole batch), and an extreme metric
value was accepted and then broke every node's verdicts. Spec §0.3, §2.1, §2.2, §12.6.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from http_nodes import ThreadedNode, now_str

from node.net.auth import sign_request
from protocol.canonical import canonical_bytes, entry_id
from protocol.entries import build_statement
from protocol.envelope import ENTRY_PAYLOAD_TYPE, Envelope, sign_payload

H = hashlib.sha256(b"hostile inputs").hexdigest()


@pytest.fixture
def node(sqlite_network: list[Any]) -> Iterator[ThreadedNode]:
    """alpha served over real HTTP on 127.0.0.1 (no sync); beta and gamma push to it."""
    with ThreadedNode(sqlite_network[0]) as n:
        n.alpha, n.beta, n.gamma = sqlite_network
        yield n


def statement(home: Any, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """A valid seq-1 statement of ``home``'s lab, as JSON (to be altered before signing)."""
    return build_statement(network=home.store.network_id(), lab=home.lab, seq=1, prev=None,
                           issued_at=now_str(), kind=kind, body=body).to_json()


def eval_result(acc: str) -> dict[str, Any]:
    return {
        "suite": {"id": "tripwire-core", "version": "1", "digest": H},
        "model": {"name": "gamma-run", "commitment": H, "checkpoint_step": 100, "training_flop": "1.5E18"},
        "tasks": [{"name": "arith", "digest": H, "n": 100, "metrics": {"acc": {"value": acc, "stderr": "0.04"}},
                   "items_root": H}],
        "started_at": "2025-01-01T00:00:00Z",
        "finished_at": "2025-01-01T00:05:00Z",
    }


def signed(home: Any, payload: bytes) -> Envelope:
    return sign_payload(payload, ENTRY_PAYLOAD_TYPE, [home.key])


def lone_surrogate_in_key(home: Any) -> Envelope:
    # No serializer writes a lone surrogate: splice the escaped member name into canonical
    # bytes that also carry non-ASCII text (the path that reached the UTF-16 key sort).
    payload = canonical_bytes(statement(home, "note", {"text": "café"}))
    return signed(home, b'{"\\ud800":0,' + payload[1:])


def metric_value_out_of_domain(home: Any) -> Envelope:
    st = statement(home, "eval_result", eval_result("0.75"))
    st["body"]["tasks"][0]["metrics"]["acc"]["value"] = "1E70"
    return signed(home, canonical_bytes(st))


def post(node: ThreadedNode, key: Any, batch: list[dict[str, Any]]) -> httpx.Response:
    body = json.dumps(batch).encode()
    headers = {"content-type": "application/json", **sign_request(key, "POST", node.url + "/v1/envelopes", body)}
    return httpx.post(node.url + "/v1/envelopes", content=body, headers=headers, timeout=10)


def test_batch_refuses_each_hostile_entry_with_its_code_and_accepts_the_valid_one(node: ThreadedNode) -> None:
    surrogate = lone_surrogate_in_key(node.beta)
    extreme = metric_value_out_of_domain(node.gamma)
    valid = signed(node.gamma, canonical_bytes(statement(node.gamma, "eval_result", eval_result("0.75"))))

    r = post(node, node.beta.key, [surrogate.to_dict(), extreme.to_dict(), valid.to_dict()])

    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["status"] for x in res] == ["rejected", "rejected", "accepted"]
    assert res[0]["code"] == "non-canonical" and "lone surrogate" in res[0]["reason"]
    assert res[1]["code"] == "numeric-domain" and "1E70" in res[1]["reason"]
    assert res[2]["entry_id"] == entry_id(valid.payload_bytes())
    heads = node.alpha.store.heads()
    assert "beta" not in heads
    assert heads["gamma"].seq == 1 and heads["gamma"].entry_id == entry_id(valid.payload_bytes())


@pytest.mark.parametrize(
    ("build", "code"),
    [(lone_surrogate_in_key, "non-canonical"), (metric_value_out_of_domain, "numeric-domain")],
    ids=["lone_surrogate_in_key", "metric_value_out_of_domain"],
)
def test_single_hostile_entry_is_a_problem_not_a_crash(node: ThreadedNode, build: Any, code: str) -> None:
    env = build(node.gamma)
    body = json.dumps(env.to_dict()).encode()
    headers = {"content-type": "application/json", **sign_request(node.gamma.key, "POST", node.url + "/v1/envelopes", body)}
    r = httpx.post(node.url + "/v1/envelopes", content=body, headers=headers, timeout=10)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code
    assert node.alpha.store.heads() == {}
