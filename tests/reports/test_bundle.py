"""Evidence bundles verify offline, and every kind of tampering is caught by the right check."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from synthetic import SyntheticNetwork, synthetic_network

from protocol.canonical import canonical_bytes
from protocol.entries import parse_statement, sign_statement
from protocol.envelope import Envelope
from reports.bundle import EvidenceBundle, LogProver, parse_bundle, select_entries, verify_bundle
from reports.errors import EvidenceError


def _statement(env: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(env["payload"]))


def _set_statement(env: dict[str, Any], st: dict[str, Any]) -> None:
    env["payload"] = base64.b64encode(canonical_bytes(st)).decode()


def _index_of(doc: dict[str, Any], kind: str, pick: int = 0) -> int:
    hits = [i for i, e in enumerate(doc["entries"]) if _statement(e)["kind"] == kind]
    return hits[pick]


# Each tamper edits the bundle's JSON the way an attacker with a text editor would.


def edit_metric(doc: dict[str, Any], net: SyntheticNetwork) -> None:
    i = _index_of(doc, "eval_result", -1)
    st = _statement(doc["entries"][i])
    st["body"]["tasks"][0]["metrics"]["acc"]["value"] = "0.1000"
    _set_statement(doc["entries"][i], st)


def edit_metric_and_resign(doc: dict[str, Any], net: SyntheticNetwork) -> None:
    # The lab itself rewrites history: its signature is valid, but the feed link and the
    # node's signed log both still commit to the original entry.
    i = _index_of(doc, "eval_result", -1)
    st = _statement(doc["entries"][i])
    st["body"]["tasks"][0]["metrics"]["acc"]["value"] = "0.1000"
    env, _ = sign_statement(parse_statement(st), net.keys[st["lab"]])
    doc["entries"][i] = env.to_dict()


def drop_vote(doc: dict[str, Any], net: SyntheticNetwork) -> None:
    i = _index_of(doc, "vote", 1)
    del doc["entries"][i]
    del doc["proofs"][i]


def swap_signature(doc: dict[str, Any], net: SyntheticNetwork) -> None:
    a, b = _index_of(doc, "vote", 0), _index_of(doc, "eval_result", 0)
    doc["entries"][a]["signatures"], doc["entries"][b]["signatures"] = (
        doc["entries"][b]["signatures"],
        doc["entries"][a]["signatures"],
    )


def change_roster(doc: dict[str, Any], net: SyntheticNetwork) -> None:
    env = doc["roster_chain"][0]
    st = json.loads(base64.b64decode(env["payload"]))
    st["quorum"]["pause"]["weight"] = 1
    env["payload"] = base64.b64encode(canonical_bytes(st)).decode()


def alter_claim(doc: dict[str, Any], net: SyntheticNetwork) -> None:
    for fc in doc["claims"]["fields"]:
        for ptr in fc["values"]:
            if ptr.endswith("/metrics/acc/value"):
                fc["values"][ptr] = "0.9999"
                return
    raise AssertionError("no metric claim found")


def alter_verdict(doc: dict[str, Any], net: SyntheticNetwork) -> None:
    for vc in doc["claims"]["verdicts"]:
        if vc["verdict"] == "breach":
            vc["verdict"] = "ok"
            return
    raise AssertionError("no breach verdict found")


def alter_tally(doc: dict[str, Any], net: SyntheticNetwork) -> None:
    doc["claims"]["tallies"][0]["weight"] += 1


def drop_tally(doc: dict[str, Any], net: SyntheticNetwork) -> None:
    doc["claims"]["tallies"].clear()


def break_merkle(doc: dict[str, Any], net: SyntheticNetwork) -> None:
    path = doc["proofs"][3]["path"]
    path[0] = ("0" if path[0][0] != "0" else "1") + path[0][1:]


def wrong_leaf_index(doc: dict[str, Any], net: SyntheticNetwork) -> None:
    doc["proofs"][3]["index"] += 1


def reorder_feed(doc: dict[str, Any], net: SyntheticNetwork) -> None:
    lab = _statement(doc["entries"][0])["lab"]
    idx = [i for i, e in enumerate(doc["entries"]) if _statement(e)["lab"] == lab][:2]
    for key in ("entries", "proofs"):
        doc[key][idx[0]], doc[key][idx[1]] = doc[key][idx[1]], doc[key][idx[0]]


def swap_policy(doc: dict[str, Any], net: SyntheticNetwork) -> None:
    doc["policy"]["rules"][0]["breach_level"] = "0.95"


def forge_checkpoint(doc: dict[str, Any], net: SyntheticNetwork) -> None:
    st = json.loads(base64.b64decode(doc["checkpoint"]["payload"]))
    st["size"] += 1
    doc["checkpoint"]["payload"] = base64.b64encode(canonical_bytes(st)).decode()


def break_certificate(doc: dict[str, Any], net: SyntheticNetwork) -> None:
    # Removing a vote from inside the certificate: the lab re-signs it, so the signature is
    # fine, but the certificate no longer reaches the quorum.
    i = _index_of(doc, "pause_certificate")
    st = _statement(doc["entries"][i])
    st["body"]["votes"] = st["body"]["votes"][:1]
    env, _ = sign_statement(parse_statement(st), net.keys[st["lab"]])
    doc["entries"][i] = env.to_dict()


def forge_equivocation(doc: dict[str, Any], net: SyntheticNetwork) -> None:
    p = doc["equivocations"][0]
    p["b"] = p["a"]


TAMPERS: list[tuple[Callable[[dict[str, Any], SyntheticNetwork], None], set[str]]] = [
    (edit_metric, {"entry signatures", "merkle proofs"}),
    (edit_metric_and_resign, {"feed chains", "merkle proofs"}),
    (drop_vote, {"feed chains", "claims"}),
    (swap_signature, {"entry signatures"}),
    (change_roster, {"roster chain"}),
    (alter_claim, {"claims"}),
    (alter_verdict, {"claims"}),
    (alter_tally, {"claims"}),
    (drop_tally, {"claims"}),
    (break_merkle, {"merkle proofs"}),
    (wrong_leaf_index, {"merkle proofs"}),
    (reorder_feed, {"feed chains"}),
    (swap_policy, {"policy digest"}),
    (forge_checkpoint, {"checkpoint"}),
    # An invalid certificate is flagged, not fatal: the signed data no longer shows it counted.
    (break_certificate, {"merkle proofs", "claims"}),
    (forge_equivocation, {"equivocation proofs"}),
]


def test_untampered_bundle_passes_every_check(verified: Any) -> None:
    assert verified.ok
    assert [c.status for c in verified.checks].count("fail") == 0
    assert {c.name for c in verified.checks if c.status == "pass"} >= {
        "roster chain",
        "entry signatures",
        "feed chains",
        "checkpoint",
        "merkle proofs",
        "certificates",
        "equivocation proofs",
        "claims",
    }
    assert verified.verified is not None and verified.verified.analysis.status == "paused"


def test_bundle_roundtrips_through_json(bundle: EvidenceBundle) -> None:
    again = parse_bundle(json.loads(bundle.to_json_bytes()))
    assert again == bundle
    assert verify_bundle(again).ok


@pytest.mark.parametrize(("tamper", "expected"), TAMPERS, ids=[t.__name__ for t, _ in TAMPERS])
def test_tampering_is_caught(
    tamper: Callable[[dict[str, Any], SyntheticNetwork], None],
    expected: set[str],
    bundle: EvidenceBundle,
    net: SyntheticNetwork,
) -> None:
    doc = json.loads(bundle.to_json_bytes())
    tamper(doc, net)
    try:
        tampered = parse_bundle(doc)
    except EvidenceError:
        pytest.fail("tampering should produce a well-formed bundle that fails verification")
    report = verify_bundle(tampered)
    failed = {c.name for c in report.checks if c.status == "fail" and not c.summary.startswith("not checked")}
    assert not report.ok
    assert report.verified is None
    assert expected <= failed, (expected, failed, report.failures())
    with pytest.raises(EvidenceError, match="does not verify"):
        report.require()


def test_roster_pin_accepts_the_real_genesis_and_refuses_another(bundle: EvidenceBundle) -> None:
    genesis = Envelope.parse(bundle.roster_chain[0].to_dict())
    pinned = verify_bundle(bundle, genesis)
    assert pinned.ok and pinned.verified is not None and pinned.verified.pinned
    assert next(c for c in pinned.checks if c.name == "roster pin").status == "pass"

    other = synthetic_network(3, 2, seed=99).chain.envelopes()[0]
    refused = verify_bundle(bundle, other)
    pin = next(c for c in refused.checks if c.name == "roster pin")
    assert pin.status == "fail" and "not the trusted genesis" in pin.summary
    assert not refused.ok


def test_a_whole_forged_network_fails_only_against_a_pin(net: SyntheticNetwork) -> None:
    # Someone mints their own roster with their own keys: self-consistent, so only the
    # pin (the genesis the regulator trusts) can refuse it.
    forged = synthetic_network(3, 8, seed=1234).bundle()
    assert verify_bundle(forged).ok
    assert not verify_bundle(forged, net.chain.envelopes()[0]).ok


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "must be a JSON object"),
        ({"format": "something-else"}, "not a Tripwire evidence bundle"),
        ({"format": "tripwire-evidence/1"}, "evidence bundle field"),
    ],
    ids=["not-object", "wrong-format", "missing-fields"],
)
def test_malformed_bundles_are_refused_with_a_reason(doc: Any, message: str) -> None:
    with pytest.raises(EvidenceError, match=message):
        parse_bundle(doc)


def test_since_keeps_feeds_contiguous_and_pulls_in_referenced_entries(net: SyntheticNetwork) -> None:
    from protocol.canonical import parse_time

    cert = next(e for e in net.entries if e.kind == "pause_certificate")
    since = parse_time(cert.statement.issued_at)
    cited = select_entries(net.entries, since)
    kinds = {e.kind for e in cited}
    # The certificate pulls in its proposal; the proposal pulls in the breaching result.
    assert {"pause_certificate", "pause_proposal", "eval_result", "vote"} <= kinds
    b = net.bundle(since=since)
    assert verify_bundle(b).ok
    assert len(b.entries) < len(net.bundle().entries)


def test_log_prover_matches_rfc9162_proofs() -> None:
    from protocol.merkle import inclusion_proof, leaf_hash, merkle_root

    for n in (1, 2, 3, 5, 8, 13, 64, 100):
        leaves = [f"{i:064x}".encode() for i in range(n)]
        hashes = [leaf_hash(x) for x in leaves]
        prover = LogProver(hashes)
        assert prover.root == merkle_root(leaves)
        for i in range(n):
            assert prover.proof(i) == inclusion_proof(i, hashes)
