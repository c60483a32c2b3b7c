"""Store basics on both backends: publish, ingest, heads, feed, proofs."""

from __future__ import annotations

from protocol.merkle import leaf_hash, verify_consistency, verify_inclusion


def test_publish_and_replicate(network):
    alpha, beta, _ = network
    ids = [alpha.publish("note", {"text": f"n{i}"}) for i in range(4)]
    out = beta.store.ingest(alpha.store.feed("alpha"))
    assert [o.status for o in out] == ["accepted"] * 4
    assert beta.store.heads()["alpha"].entry_id == ids[-1]
    idx, size, path = beta.store.inclusion_proof(ids[2])
    root = bytes.fromhex(beta.store.log_root())
    verify_inclusion(leaf_hash(ids[2].encode()), idx, size, [bytes.fromhex(p) for p in path], root)
    old = bytes.fromhex(beta.store.log_root(2))
    verify_consistency(2, 4, [bytes.fromhex(p) for p in beta.store.consistency_proof(2)], old, root)
