"""Forks are global (spec §4.4): an equivocation proof travels with sync, every node that
receives a valid one freezes the lab's feed, and honest relays are not blamed for the fork.

Real nodes on 127.0.0.1 (uvicorn in threads), real sync, both database backends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from http_nodes import ThreadedNode, notes, wait_until
from sqlalchemy import func, select

from node.home.netsetup import observer_key
from node.net.sync import Peer, Syncer
from node.store import Store
from node.store import models as m
from protocol.entries import decode_entry
from protocol.envelope import Envelope
from protocol.feed import EquivocationProof, Head
from protocol.keys import SigningKey


def _tune(home: Any) -> None:
    sync = home.config.sync.model_copy(update={"interval_s": 0.3, "timeout_s": 3.0, "max_backoff_s": 1.0})
    home.config = home.config.model_copy(update={"sync": sync})


def _id(env: Envelope) -> str:
    return decode_entry(env).entry_id


def _fork(gamma: Any) -> tuple[list[Envelope], list[Envelope]]:
    """Gamma's feed (3 entries) and another history that forks from it at seq 2."""
    real = notes(gamma, 3)
    other = notes(gamma, 2, start=Head(1, _id(real[0])), prefix="the other history")
    return real, other


def _counts(store: Store) -> dict[str, Any]:
    with store.engine.connect() as conn:
        rows = {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (m.entries, m.held, m.equivocations, m.feeds)}
    return rows | {"forks": store.forks(), "heads": store.heads()}


def _sync_once(home: Any, *nodes: ThreadedNode) -> dict[str, Any]:
    return asyncio.run(Syncer(home, [Peer(n.home.lab, n.url) for n in nodes], timeout_s=3.0).sync_once())


def test_fork_seen_by_one_node_freezes_feed_everywhere(network, tmp_path) -> None:
    alpha, beta, gamma = network
    real, other = _fork(gamma)
    gamma.store.ingest(real[:1])  # gamma's node holds its seq 1; beta holds nothing of gamma
    alpha.store.ingest(real[:2])
    assert alpha.store.ingest(other[:1])[0].code == "equivocation"  # only alpha saw the fork
    [proof] = alpha.store.equivocations()
    for home in network:
        _tune(home)
    regulator = observer_key(tmp_path / "net", "regulator")
    with ThreadedNode(alpha, sync=True) as a, ThreadedNode(beta, sync=True) as b, \
            ThreadedNode(gamma, sync=True) as g:
        wait_until(lambda: all(h.store.forks() == {"gamma": 2} for h in network), 30.0,
                   what="every node to freeze gamma's feed at the fork")
        # Positions before the fork are undisputed: every node still converges on them.
        wait_until(lambda: beta.store.heads().get("gamma") == Head(1, _id(real[0])), 30.0,
                   what="beta to hold gamma's seq 1")
        for node, home in ((a, alpha), (b, beta), (g, gamma)):
            assert [p.proof_id for p in home.store.equivocations()] == [proof.proof_id]
            home.store.equivocations()[0].verify(home.store.roster_chain())
            with node.client(regulator, "regulator") as c:
                assert [e.proof_id for e in c.status().equivocations] == [proof.proof_id]
                assert [e["proof_id"] for e in c.equivocations()] == [proof.proof_id]
            with node.client(home.key, home.lab) as c:
                # Nothing at or past the fork is taken, whichever history it extends.
                for env in (real[1], real[2], other[0], other[1]):
                    [r] = c.post_envelopes([env])
                    assert r.status in ("rejected", "duplicate"), (home.lab, r)
                    if r.status == "rejected":
                        assert r.code in ("feed-forked", "equivocation"), (home.lab, r)
        assert beta.store.heads()["gamma"].seq == gamma.store.heads()["gamma"].seq == 1
        assert alpha.store.heads()["gamma"] == Head(2, _id(real[1]))
        with pytest.raises(Exception, match="frozen"):
            gamma.publish("note", {"text": "after the fork"})
        # Every node relayed honestly: nobody is recorded as misbehaving.
        assert [h.store.misbehaviour() for h in network] == [[], [], []]


@pytest.mark.parametrize("case", ["behind_on_the_other_branch", "same_head_other_branch", "after_the_proof"])
def test_relay_of_forked_feed_not_blamed(network, case) -> None:
    alpha, beta, gamma = network
    real, other = _fork(gamma)
    beta.store.ingest(real[: 2 if case == "same_head_other_branch" else 3])  # beta: an honest relay
    for i in range(2):
        beta.publish("note", {"text": f"beta {i}"})
    if case == "after_the_proof":
        alpha.store.ingest(real[:2] + other[:1])  # alpha already holds the proof
    else:
        alpha.store.ingest(real[:1] + other[:1])  # alpha holds the other history at seq 2
    with ThreadedNode(beta) as b:
        summary = _sync_once(alpha, b)
        assert summary["beta"]["ok"], summary
        assert alpha.store.forks() == {"gamma": 2}
        [proof] = alpha.store.equivocations()
        assert {proof.a_id, proof.b_id} == {_id(real[1]), _id(other[0])}
        assert alpha.store.misbehaviour("beta") == []  # the relay is not blamed for gamma's fork
        assert alpha.store.heads()["beta"].seq == 2  # and its own entries still sync
        assert alpha.store.heads()["gamma"].seq == 2 and alpha.store.feed("gamma", 2) == []
        # The next round offers the relay the proof, and it freezes the feed there too.
        _sync_once(alpha, b)
        assert beta.store.forks() == {"gamma": 2}
        assert [p.proof_id for p in beta.store.equivocations()] == [proof.proof_id]
        assert alpha.store.misbehaviour("beta") == []


def _forged_b(gamma: Any, real: list[Envelope]) -> dict[str, Any]:
    """A proof whose second entry is signed by a key the roster does not list for gamma."""
    [forged] = notes(gamma, 1, start=Head(1, _id(real[0])), key=SigningKey.generate(), prefix="forged")
    return _proof_dict("gamma", 2, real[1], forged)


def _proof_dict(lab: str, seq: int, x: Envelope, y: Envelope) -> dict[str, Any]:
    (a_id, a), (b_id, b) = sorted([(_id(x), x), (_id(y), y)], key=lambda t: t[0])
    return {"lab": lab, "seq": seq, "a": a.to_dict(), "b": b.to_dict(), "a_id": a_id, "b_id": b_id}


BAD_PROOFS = {
    "forged_entry": (_forged_b, "unknown-key"),
    "not_an_equivocation": (lambda g, r: _proof_dict("gamma", 1, r[0], r[1]), "equivocation"),
    "ids_do_not_match": (lambda g, r: {**_proof_dict("gamma", 2, r[1], r[2]), "a_id": "0" * 64}, "equivocation"),
    "same_entry_twice": (lambda g, r: {**_proof_dict("gamma", 1, r[0], r[0])}, "schema"),
    "malformed": (lambda g, r: {"lab": "gamma", "seq": 2}, "schema"),
}


def test_bad_equivocation_proof_refused_changes_nothing(network, tmp_path) -> None:
    alpha, beta, gamma = network
    real, other = _fork(gamma)
    beta.store.ingest(real[:1])
    good = EquivocationProof.model_validate(_proof_dict("gamma", 2, real[1], other[0]))
    with ThreadedNode(beta) as b, b.client(alpha.key, "alpha") as c:
        before = _counts(beta.store)
        for name, (make, code) in BAD_PROOFS.items():
            bad = make(gamma, real)
            status, _, body = c.request("POST", "/v1/equivocations", content=_json(bad))
            assert (status, json.loads(body)["code"]) == (422, code), (name, body)
            assert _counts(beta.store) == before, name
        # In a batch each proof gets its own result; only the valid one changes anything.
        results = c.post_equivocations([good])
        assert [(r["status"], r["proof_id"]) for r in results] == [("accepted", good.proof_id)]
        assert beta.store.forks() == {"gamma": 2}
        status, _, body = c.request("POST", "/v1/equivocations",
                                    content=_json([BAD_PROOFS["forged_entry"][0](gamma, real),
                                                   good.model_dump(mode="json")]))
        assert status == 200
        assert [(r["status"], r["code"]) for r in json.loads(body)["results"]] == [
            ("rejected", "unknown-key"), ("duplicate", None)]
        assert len(beta.store.equivocations()) == 1
        # Observers read proofs but cannot offer them.
        with b.client(observer_key(tmp_path / "net", "regulator"), "regulator") as obs:
            assert obs.request("POST", "/v1/equivocations", content=_json(good.model_dump(mode="json")))[0] == 403
            assert [e["proof_id"] for e in obs.equivocations()] == [good.proof_id]


def _json(data: Any) -> bytes:
    return json.dumps(data).encode()
