"""Spec vectors (spec §11): files are current, positives verify, negatives raise their error."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from protocol.canonical import canonical_bytes, entry_id, parse_canonical
from protocol.entries import PauseCertificateBody
from protocol.envelope import Envelope, pae
from protocol.errors import TripwireError
from protocol.feed import EquivocationProof, verify_feed
from protocol.keys import PublicKey, SigningKey
from protocol.merkle import (
    EMPTY_ROOT,
    leaf_hash,
    log_leaf,
    root_from_hashes,
    verify_checkpoint,
    verify_checkpoint_consistency,
    verify_consistency,
    verify_inclusion,
)
from protocol.quorum import verify_certificate
from protocol.roster import RosterChain, verify_entry

VECTORS = Path(__file__).resolve().parents[2] / "specs" / "vectors"
NEGATIVE = sorted(VECTORS.glob("negative/*.json"))


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def chain_of(envs: list[dict[str, Any]]) -> RosterChain:
    return RosterChain.from_envelopes([Envelope.parse(e) for e in envs])


def test_vector_files_are_current(gen: ModuleType) -> None:
    expected = gen.vectors()
    on_disk = {str(p.relative_to(VECTORS)) for p in [*VECTORS.glob("*.json"), *VECTORS.glob("negative/*.json")]}
    assert on_disk == set(expected), "run: python specs/vectors/generate.py"
    stale = [rel for rel, data in expected.items() if (VECTORS / rel).read_bytes() != data]
    assert not stale, f"stale vectors {stale}: run python specs/vectors/generate.py"


def test_required_negative_vectors_exist() -> None:
    names = {p.stem for p in NEGATIVE}
    required = {
        "equivocation_same_seq", "vote_from_observer", "bad_signature", "keyid_of_other_lab",
        "duplicate_signer_counted_twice", "seq_gap", "wrong_prev", "wrong_network", "float_in_body",
        "oversized_field", "expired_roster_vote", "roster_rollback", "roster_update_short_of_threshold",
        "non_canonical_payload",
        # hostile decimals and strings: refused at ingest with a code, never a crash
        "metric_value_out_of_domain", "metric_value_exponent_out_of_domain", "stderr_negative",
        "training_flop_not_positive", "lone_surrogate_in_key", "lone_surrogate_in_string",
        "nesting_depth_33",
    }
    assert required <= names
    assert len(names) >= 25


@pytest.mark.parametrize("path", NEGATIVE, ids=[p.stem for p in NEGATIVE])
def test_negative_vector(path: Path, check: ModuleType) -> None:
    vector = json.loads(path.read_text(encoding="utf-8"))
    assert vector["name"] == path.stem
    err = check.run_negative(vector)
    assert err.code == vector["expected"]["code"]
    assert vector["expected"]["message"] in err.diagnostics()


@pytest.mark.parametrize(
    "name", ["nesting_depth_33", "lone_surrogate_in_key", "lone_surrogate_in_string"],
    ids=["nesting_depth_33", "lone_surrogate_in_key", "lone_surrogate_in_string"],
)
def test_signer_refuses_what_a_hostile_payload_carries(name: str) -> None:
    # Spec §2.4, §2.1: one rule for signing and verifying, so canonical_bytes refuses the
    # parsed payload with the same code the verifier gives the bytes.
    vector = load(f"negative/{name}.json")
    payload = Envelope.parse(vector["envelope"]).payload_bytes()
    with pytest.raises(TripwireError) as signed:
        canonical_bytes(json.loads(payload))
    assert signed.value.code == vector["expected"]["code"]


def test_canonical_vectors() -> None:
    for case in load("canonical.json")["cases"]:
        canon = bytes.fromhex(case["canonical_hex"])
        assert canonical_bytes(json.loads(case["input"])) == canon, case["name"]
        assert canon.decode("utf-8") == case["canonical"]
        assert parse_canonical(canon) == json.loads(case["input"])
        assert entry_id(canon) == case["sha256"]


def test_pae_vectors_include_the_dsse_official_vector() -> None:
    cases = {c["name"]: c for c in load("pae.json")["cases"]}
    assert cases["dsse_official"]["pae_text"] == "DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    for c in cases.values():
        assert pae(c["payload_type"], bytes.fromhex(c["body_hex"])).hex() == c["pae_hex"]


def test_key_vectors() -> None:
    data = load("keys.json")
    for k in data["keys"]:
        sk = SigningKey.from_seed(bytes.fromhex(k["seed_hex"]))
        assert sk.keyid == k["keyid"] == PublicKey.from_b64(k["public_key"]).keyid
        assert SigningKey.from_pem(k["pkcs8_pem"].encode()).keyid == k["keyid"]
    s = data["signature"]
    pub = next(PublicKey.from_b64(k["public_key"]) for k in data["keys"] if k["name"] == s["key"])
    assert pub.verify(base64.b64decode(s["signature_b64"]), bytes.fromhex(s["message_hex"]))


def test_roster_and_entry_vectors_verify() -> None:
    roster = load("roster.json")
    chain = chain_of([v["envelope"] for v in roster["versions"]])
    assert chain.network_id == roster["network_id"]
    assert [v.roster_id for v in chain.versions] == [v["roster_id"] for v in roster["versions"]]
    data = load("entries.json")
    by_lab: dict[str, list[Envelope]] = {}
    for e in data["entries"]:
        env = Envelope.parse(e["envelope"])
        payload = bytes.fromhex(e["payload_hex"])
        assert env.payload_bytes() == payload == canonical_bytes(e["statement"])
        ve = verify_entry(env, chain)
        assert ve.entry_id == e["entry_id"]
        by_lab.setdefault(ve.lab, []).append(env)
    heads = {lab: verify_feed(envs, chain)[-1] for lab, envs in by_lab.items()}
    assert {lab: {"seq": h.seq, "entry_id": h.entry_id} for lab, h in heads.items()} == data["heads"]
    leaves = [canonical_bytes(r) for r in data["item_records"]]
    assert root_from_hashes([leaf_hash(x) for x in leaves]).hex() == data["item_records_root"]


def test_certificate_vector() -> None:
    roster = load("roster.json")
    chain = chain_of([v["envelope"] for v in roster["versions"]])
    data = load("certificate.json")
    result = verify_certificate(PauseCertificateBody.model_validate(data["certificate"]), chain)
    exp = data["expected"]
    assert (result.threshold, result.weight, bool(result)) == (exp["threshold"], exp["weight"], exp["passed"])
    assert sorted(result.signed) == exp["signed"] and sorted(result.objected) == exp["objected"]
    assert sorted(result.missing) == exp["missing"]


def test_equivocation_vector() -> None:
    chain = chain_of([v["envelope"] for v in load("roster.json")["versions"]])
    data = load("equivocation.json")
    proof = EquivocationProof.parse(data["proof"])
    proof.verify(chain)
    assert proof.proof_id == data["proof_id"]


def test_checkpoint_vector() -> None:
    chain = chain_of([v["envelope"] for v in load("roster.json")["versions"]])
    data = load("checkpoint.json")
    old, new = (verify_checkpoint(Envelope.parse(c["envelope"]), chain) for c in data["checkpoints"])
    assert old.model_dump(mode="json") == data["checkpoints"][0]["checkpoint"]
    c = data["consistency"]
    verify_checkpoint_consistency(old, new, [bytes.fromhex(p) for p in c["proof"]])
    leaves = [bytes.fromhex(x) for x in data["leaves_hex"]]
    entries = load("entries.json")["entries"]
    assert leaves[0] == log_leaf(entries[0]["entry_id"])
    i = data["inclusion"]
    verify_inclusion(bytes.fromhex(i["leaf_hash"]), i["index"], i["size"],
                     [bytes.fromhex(p) for p in i["proof"]], new.root_bytes)


def test_merkle_vectors() -> None:
    data = load("merkle.json")
    assert bytes.fromhex(data["empty_root"]) == EMPTY_ROOT
    hashes = [leaf_hash(bytes.fromhex(x)) for x in data["leaves_hex"]]
    for case in data["small"]:
        n = case["size"]
        root = bytes.fromhex(case["root"])
        assert root_from_hashes(hashes[:n]) == root
        for inc in case["inclusion"]:
            verify_inclusion(hashes[inc["index"]], inc["index"], n, [bytes.fromhex(p) for p in inc["proof"]], root)
        for con in case["consistency"]:
            m = con["old_size"]
            verify_consistency(m, n, [bytes.fromhex(p) for p in con["proof"]], root_from_hashes(hashes[:m]), root)
    for case in data["large"]:
        n, root = case["size"], bytes.fromhex(case["root"])
        for inc in case["inclusion"]:
            assert leaf_hash(inc["index"].to_bytes(8, "big")).hex() == inc["leaf_hash"]
            verify_inclusion(bytes.fromhex(inc["leaf_hash"]), inc["index"], n,
                             [bytes.fromhex(p) for p in inc["proof"]], root)
        for con in case["consistency"]:
            verify_consistency(con["old_size"], n, [bytes.fromhex(p) for p in con["proof"]],
                               bytes.fromhex(con["old_root"]), root)


def test_plan_vector() -> None:
    """plans.json (spec §6.12): a plan's state follows from the signed entries and the policy alone."""
    from protocol.pause import pause_state
    from protocol.plans import plan_states
    from protocol.policy import Policy
    from protocol.verdicts import ResultSummary

    data = load("plans.json")
    chain = chain_of(data["roster_chain"])
    held = [verify_entry(Envelope.parse(e["envelope"]), chain) for e in data["entries"]]
    assert [e.entry_id for e in held] == [e["entry_id"] for e in data["entries"]]
    r = verify_entry(Envelope.parse(data["results"][0]), chain)
    results = {r.entry_id: ResultSummary.from_body(r.statement.body.model_dump(mode="json"), lab=r.lab)}
    policy = Policy.from_obj(data["policy"])
    exp = data["expected"]
    ps = pause_state(held, chain)
    assert ps.proposals[exp["safety_case_id"]].status == exp["case_status"] and ps.paused is exp["paused"]
    plan = held[0]
    alone = plan_states([plan], results, policy, pause_state([plan], chain))[plan.entry_id]
    assert alone.to_json() == exp["plan_alone"]
    assert plan_states([plan], results, policy, ps)[plan.entry_id].to_json() == exp["plan_with_case"]


def test_forecast_vector() -> None:
    """forecasts.json (spec §6.13): scores and track record follow from the signed entries and
    the policy alone; malformed bodies are refused with the stated error."""
    from protocol.entries import ForecastBody
    from protocol.policy import Policy
    from protocol.track import score_forecasts, track_records
    from protocol.verdicts import ResultSummary

    data = load("forecasts.json")
    chain = chain_of(data["roster_chain"])
    held = [verify_entry(Envelope.parse(e["envelope"]), chain) for e in data["entries"]]
    assert [e.entry_id for e in held] == [e["entry_id"] for e in data["entries"]]
    policy = Policy.from_obj(data["policy"])
    results = [(e, ResultSummary.from_body(e.statement.body.model_dump(mode="json"), lab=e.lab))
               for e in held if e.kind == "eval_result"]
    scores = score_forecasts([e for e in held if e.kind == "forecast"], results, policy)
    assert [scores[f].to_json() for f in sorted(scores)] == data["expected"]["scores"]
    assert {s["status"] for s in data["expected"]["scores"]} == {"scored", "pending", "late"}
    assert [t.to_json() for t in track_records(scores.values()).values()] == data["expected"]["track"]
    for case in data["negative"]:
        with pytest.raises(TripwireError) as e:
            ForecastBody.for_rules(case["body"], [r.id for r in policy.rules])
        assert (e.value.code, e.value.message) == (case["expected"]["code"], case["expected"]["message"]), case["name"]
