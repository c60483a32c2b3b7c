"""Write Tripwire's deterministic protocol test vectors (spec §11).

Fixed key seeds and a fixed clock make every byte reproducible: Ed25519 signatures are
deterministic (RFC 8032), and nothing here reads the time or a random source. Run from
the repository root::

    python specs/vectors/generate.py          # rewrite specs/vectors/**/*.json
    python specs/vectors/check.py             # verify every vector with protocol/

``tests/protocol/test_vectors.py`` regenerates in memory and byte-compares with the files.
Other implementations consume the files; ``check.py`` documents each ``procedure``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(HERE.parents[1]))

from protocol.canonical import canonical_bytes, digest_of, entry_id, format_time  # noqa: E402
from protocol.entries import (  # noqa: E402
    EvalResultBody,
    Metric,
    ModelRef,
    NoteBody,
    PauseCertificateBody,
    PauseProposalBody,
    SuiteRef,
    TaskResult,
    Trigger,
    VoteBody,
    build_statement,
    pause_proposal_id,
    sign_statement,
)
from protocol.envelope import (  # noqa: E402
    ENTRY_PAYLOAD_TYPE,
    ROSTER_PAYLOAD_TYPE,
    Envelope,
    EnvelopeSignature,
    pae,
    sign_payload,
)
from protocol.feed import EquivocationProof  # noqa: E402
from protocol.keys import SigningKey  # noqa: E402
from protocol.merkle import (  # noqa: E402
    Checkpoint,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    log_leaf,
    merkle_root,
    root_from_hashes,
    sign_checkpoint,
)
from protocol.quorum import verify_certificate  # noqa: E402
from protocol.roster import (  # noqa: E402
    Roster,
    RosterChain,
    RosterPin,
    draft_roster,
    parse_roster,
    roster_envelope,
    verify_entry,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
"""The fixed clock every vector is dated from."""


def at(days: float = 0, minutes: float = 0) -> str:
    return format_time(T0 + timedelta(days=days, minutes=minutes))


def key(name: str) -> SigningKey:
    """Deterministic Ed25519 key: seed = SHA-256("tripwire/vectors/" + name)."""
    return SigningKey.from_seed(seed_of(name))


def seed_of(name: str) -> bytes:
    return hashlib.sha256(b"tripwire/vectors/" + name.encode()).digest()


KEY_NAMES = ("alpha-1", "alpha-2", "beta-1", "gamma-1", "regulator-1", "mallory-1")
POLICY_DIGEST = digest_of({"policy": "tripwire-vectors"})
SUITE = SuiteRef(id="tripwire-core", version="1", digest=digest_of({"suite": "tripwire-core"}))
OTHER_NETWORK = hashlib.sha256(b"some other network").hexdigest()


def draft(version: int, alpha_keys: list[str], *, previous: str | None, network: str | None) -> Roster:
    k = {n: key(n).public_key for n in KEY_NAMES}
    return draft_roster(
        network_name="tripwire-vectors",
        labs=[
            ("alpha", "Alpha Labs", [k[n] for n in alpha_keys], "https://alpha.example/", 2),
            ("beta", "Beta Research", [k["beta-1"]], "https://beta.example/", 1),
            ("gamma", "Gamma AI", [k["gamma-1"]], "https://gamma.example/", 1),
        ],
        observers=[("regulator", "Example Safety Institute", [k["regulator-1"]])],
        pause_weight=3,
        resume_weight=3,
        roster_threshold=2,
        policy_digest=POLICY_DIGEST,
        suites=[SUITE],
        issued_at=at(days=30 * (version - 1)),
        expires=at(days=365 + 30 * (version - 1)),
        version=version,
        previous=previous,
        network=network,
    )


def env_json(e: Envelope) -> dict[str, Any]:
    return e.to_dict()


def sign_raw(payload: bytes, *names: str, payload_type: str = ENTRY_PAYLOAD_TYPE) -> Envelope:
    """Sign arbitrary payload bytes (negative vectors need payloads no model would build)."""
    return sign_payload(payload, payload_type, [key(n) for n in names])


@dataclass
class World:
    """The deterministic three-lab network every vector is drawn from."""

    genesis: Envelope
    v2: Envelope
    network: str
    v1_id: str
    chain1: RosterChain
    chain2: RosterChain
    entries: dict[str, tuple[Envelope, str]] = field(default_factory=dict)
    statements: dict[str, dict[str, Any]] = field(default_factory=dict)
    item_records: list[dict[str, Any]] = field(default_factory=list)

    def chain_json(self, *, v2: bool = False) -> list[dict[str, Any]]:
        return [env_json(self.genesis), *([env_json(self.v2)] if v2 else [])]

    def statement(self, name: str) -> dict[str, Any]:
        return dict(self.statements[name])

    def env(self, name: str) -> Envelope:
        return self.entries[name][0]

    def eid(self, name: str) -> str:
        return self.entries[name][1]

    def add(self, name: str, signer: str, **fields: Any) -> tuple[Envelope, str]:
        st = build_statement(network=self.network, **fields)
        self.statements[name] = st.to_json()
        out = sign_statement(st, key(signer))
        self.entries[name] = out
        return out

    def sign_statement_dict(self, st: dict[str, Any], *signers: str) -> Envelope:
        return sign_raw(canonical_bytes(st), *signers)


def build_world() -> World:
    g = draft(1, ["alpha-1"], previous=None, network=None)
    genesis = roster_envelope(g, [key("alpha-1"), key("beta-1"), key("gamma-1")])
    network = entry_id(genesis.payload_bytes())
    r2 = draft(2, ["alpha-2"], previous=network, network=network)
    v2 = roster_envelope(r2, [key("alpha-1"), key("alpha-2"), key("beta-1")])
    w = World(
        genesis=genesis,
        v2=v2,
        network=network,
        v1_id=network,
        chain1=RosterChain.from_envelopes([genesis]),
        chain2=RosterChain.from_envelopes([genesis, v2]),
    )
    w.item_records = [
        {"item": f"bio-{i:03d}", "correct": i % 4 != 3, "choice": "ABCD"[i % 4]} for i in range(4)
    ]
    items_root = merkle_root([canonical_bytes(r) for r in w.item_records]).hex()
    result = EvalResultBody(
        suite=SUITE,
        model=ModelRef(
            name="alpha-frontier-7b",
            commitment=hashlib.sha256(b"alpha-frontier-7b weights").hexdigest(),
            checkpoint_step=12000,
            training_flop="1200000000000000000000",
            parameters=7_000_000_000,
        ),
        tasks=[
            TaskResult(
                name="bio-uplift-mcq",
                digest=digest_of({"task": "bio-uplift-mcq"}),
                n=4,
                metrics={"accuracy": Metric(value="0.75", stderr="0.2165")},
                items_root=items_root,
            )
        ],
        runtime={"torch": "2.13.0", "device": "cpu"},
        started_at=at(days=1),
        finished_at=at(days=1, minutes=5),
    )
    _, r1 = w.add("alpha-1", "alpha-1", lab="alpha", seq=1, prev=None, issued_at=at(days=1, minutes=6),
                  kind="eval_result", body=result)
    trigger = Trigger(result=r1, lab="alpha", rule="bio-uplift", policy_digest=POLICY_DIGEST)
    proposal = PauseProposalBody(
        proposal_id=pause_proposal_id(trigger), trigger=trigger, observed="0.75", level="0.7",
        rationale="accuracy reached the breach level",
    )
    pid = proposal.proposal_id
    _, a2 = w.add("alpha-2", "alpha-1", lab="alpha", seq=2, prev=r1, issued_at=at(days=1, minutes=10),
                  kind="pause_proposal", body=proposal)
    _, a3 = w.add("alpha-3", "alpha-1", lab="alpha", seq=3, prev=a2, issued_at=at(days=1, minutes=20),
                  kind="vote", body=VoteBody(proposal_id=pid, action="pause", decision="pause"))
    _, b1 = w.add("beta-1", "beta-1", lab="beta", seq=1, prev=None, issued_at=at(days=1, minutes=30),
                  kind="vote", body=VoteBody(proposal_id=pid, action="pause", decision="pause",
                                             rationale="agree"))
    w.add("gamma-1", "gamma-1", lab="gamma", seq=1, prev=None, issued_at=at(days=1, minutes=40),
          kind="vote", body=VoteBody(proposal_id=pid, action="pause", decision="object",
                                     rationale="the standard error is too wide"))
    cert = PauseCertificateBody(
        proposal_id=pid, action="pause", roster_version=1, proposal=w.env("alpha-2"),
        votes=[w.env("alpha-3"), w.env("beta-1"), w.env("gamma-1")],
    )
    w.add("beta-2", "beta-1", lab="beta", seq=2, prev=b1, issued_at=at(days=1, minutes=50),
          kind="pause_certificate", body=cert)
    # After the v2 rotation, alpha signs with its new key (spec §7.4).
    w.add("alpha-4", "alpha-2", lab="alpha", seq=4, prev=a3, issued_at=at(days=31),
          kind="note", body=NoteBody(text="key rotated to alpha-2", refs=[w.v1_id]))
    return w


# --- positive vectors ----------------------------------------------------------------------


CANONICAL_CASES: list[tuple[str, str]] = [
    ("empty_object", "{}"),
    ("key_order", '{"b": 1, "a": 2, "c": {"z": true, "y": null}}'),
    ("integers", '{"max": 9007199254740991, "min": -9007199254740991, "zero": 0, "neg": -1}'),
    ("decimal_strings", '{"value": "0.7342", "stderr": "0.0113", "flop": "1200000000000000000000"}'),
    ("escapes", '{"s": "quote \\" backslash \\\\ tab \\t nl \\n ctl \\u001f del \\u007f slash \\/"}'),
    ("non_ascii_raw", '{"name": "Laboratoire \\u00e9toile \u2603"}'),
    ("utf16_key_order", '{"\\ud83d\\ude00": 1, "\\ue000": 2, "a": 3}'),
    ("nested_arrays", '{"a": [[], [1, [2, [3]]], {"k": []}]}'),
    ("literals", '{"t": true, "f": false, "n": null}'),
]


def canonical_vectors() -> dict[str, Any]:
    cases = []
    for name, text in CANONICAL_CASES:
        canon = canonical_bytes(json.loads(text))
        cases.append({"name": name, "input": text, "canonical": canon.decode("utf-8"),
                      "canonical_hex": canon.hex(), "sha256": entry_id(canon)})
    return {"description": "RFC 8785 canonical bytes (spec §2). Parse input, canonicalize, "
            "compare bytes with canonical_hex; sha256 is the entry_id of those bytes.", "cases": cases}


def pae_vectors() -> dict[str, Any]:
    cases = []
    for name, ptype, body in [
        ("dsse_official", "http://example.com/HelloWorld", b"hello world"),
        ("empty_body", ENTRY_PAYLOAD_TYPE, b""),
        ("entry_type", ENTRY_PAYLOAD_TYPE, b'{"a":1}'),
        ("utf8_type", "application/vnd.example.\u00e9", b"\x00\xff"),
    ]:
        cases.append({"name": name, "payload_type": ptype, "body_hex": body.hex(),
                      "pae_hex": pae(ptype, body).hex(), "pae_text": pae(ptype, body).decode("latin-1")})
    return {"description": "DSSE v1 pre-authentication encoding (spec §3.2). pae_text is the "
            "latin-1 rendering of pae_hex.", "cases": cases}


def key_vectors() -> dict[str, Any]:
    out = []
    for n in KEY_NAMES:
        k = key(n)
        out.append({"name": n, "seed_hex": seed_of(n).hex(), "public_key": k.public_key.b64,
                    "keyid": k.keyid, "pkcs8_pem": k.to_pem().decode("ascii")})
    sig = key("alpha-1").sign(b"tripwire")
    return {"description": "Ed25519 keys from fixed seeds (spec §1). keyid = SHA-256 of the raw "
            "public key; pkcs8_pem is the unencrypted PKCS#8 form of the seed.",
            "keys": out,
            "signature": {"key": "alpha-1", "message_hex": b"tripwire".hex(),
                          "signature_b64": base64.b64encode(sig).decode()}}


def roster_vectors(w: World) -> dict[str, Any]:
    return {
        "description": "Genesis roster and a v2 update that rotates alpha's key (spec §7). "
        "network_id = SHA-256 of the genesis payload bytes.",
        "network_id": w.network,
        "versions": [
            {"version": 1, "roster_id": w.v1_id, "envelope": env_json(w.genesis),
             "statement": json.loads(w.genesis.payload_bytes()), "signed_by": ["alpha", "beta", "gamma"]},
            {"version": 2, "roster_id": entry_id(w.v2.payload_bytes()), "envelope": env_json(w.v2),
             "statement": json.loads(w.v2.payload_bytes()), "signed_by_v1_labs": ["alpha", "beta"],
             "signed_by_v2_labs": ["alpha", "beta"]},
        ],
    }


def entry_vectors(w: World) -> dict[str, Any]:
    out = []
    for name in ("alpha-1", "alpha-2", "alpha-3", "beta-1", "gamma-1", "beta-2", "alpha-4"):
        env, eid = w.entries[name]
        payload = env.payload_bytes()
        out.append({"name": name, "statement": w.statement(name), "payload_hex": payload.hex(),
                    "pae_sha256": hashlib.sha256(pae(env.payloadType, payload)).hexdigest(),
                    "envelope": env_json(env), "entry_id": eid})
    return {
        "description": "Signed feed entries (spec §3, §4). payload = canonical statement bytes; "
        "entry_id = SHA-256(payload). Verify each against roster.json's chain; alpha-4 is "
        "signed with the rotated key of roster v2.",
        "item_records": w.item_records,
        "item_records_root": merkle_root([canonical_bytes(r) for r in w.item_records]).hex(),
        "heads": {"alpha": {"seq": 4, "entry_id": w.eid("alpha-4")},
                  "beta": {"seq": 2, "entry_id": w.eid("beta-2")},
                  "gamma": {"seq": 1, "entry_id": w.eid("gamma-1")}},
        "entries": out,
    }


def certificate_vectors(w: World) -> dict[str, Any]:
    cert = PauseCertificateBody.model_validate(w.statement("beta-2")["body"])
    result = verify_certificate(cert, w.chain2)
    return {
        "description": "A pause certificate (spec §6.5), verifiable from the roster alone.",
        "certificate": cert.model_dump(mode="json"),
        "expected": {"proposal_id": result.proposal_id, "action": result.action,
                     "threshold": result.threshold, "weight": result.weight,
                     "signed": sorted(result.signed), "objected": sorted(result.objected),
                     "abstained": sorted(result.abstained), "missing": sorted(result.missing),
                     "passed": bool(result)},
    }


def _alt_vote(w: World) -> Envelope:
    """A second, different alpha entry at seq 3: the equivocation used in several vectors."""
    st = w.statement("alpha-3")
    st["body"] = {**st["body"], "decision": "abstain"}
    return w.sign_statement_dict(st, "alpha-1")


def equivocation_vectors(w: World) -> dict[str, Any]:
    alt = _alt_vote(w)
    ea = w.env("alpha-3")
    ids = {entry_id(ea.payload_bytes()): ea, entry_id(alt.payload_bytes()): alt}
    a_id, b_id = sorted(ids)
    proof = EquivocationProof(lab="alpha", seq=3, a=ids[a_id], b=ids[b_id], a_id=a_id, b_id=b_id)
    return {"description": "A portable equivocation proof (spec §4.4): two entries of alpha at "
            "seq 3, a_id < b_id.", "proof": proof.model_dump(mode="json"), "proof_id": proof.proof_id}


def log_ids(w: World) -> list[bytes]:
    order = ("alpha-1", "alpha-2", "alpha-3", "beta-1", "gamma-1", "beta-2")
    return [log_leaf(w.eid(n)) for n in order]


def checkpoint_vectors(w: World) -> dict[str, Any]:
    leaves = log_ids(w)
    hashes = [leaf_hash(x) for x in leaves]
    cps = []
    for size, minutes in ((4, 60), (6, 70)):
        cp = Checkpoint(protocol="tripwire/1", network=w.network, node="beta",
                        size=size, root=root_from_hashes(hashes[:size]).hex(),
                        issued_at=at(days=1, minutes=minutes))
        cps.append({"checkpoint": cp.model_dump(mode="json"), "envelope": env_json(sign_checkpoint(cp, key("beta-1")))})
    return {
        "description": "Signed checkpoints of beta's accepted-entry log (spec §5.5). Leaf i is "
        "the ASCII bytes of the i-th accepted entry_id (hex), in acceptance order.",
        "leaves_hex": [x.hex() for x in leaves],
        "checkpoints": cps,
        "consistency": {"old_size": 4, "new_size": 6,
                        "proof": [p.hex() for p in consistency_proof(4, hashes)]},
        "inclusion": {"index": 5, "size": 6, "leaf_hash": hashes[5].hex(),
                      "proof": [p.hex() for p in inclusion_proof(5, hashes)]},
    }


RFC6962_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                  "606162636465666768696a6b6c6d6e6f"]


def merkle_vectors() -> dict[str, Any]:
    leaves = [bytes.fromhex(x) for x in RFC6962_LEAVES]
    hashes = [leaf_hash(x) for x in leaves]
    small = []
    for n in range(9):
        small.append({
            "size": n,
            "root": root_from_hashes(hashes[:n]).hex(),
            "inclusion": [{"index": i, "proof": [p.hex() for p in inclusion_proof(i, hashes[:n])]}
                          for i in range(n)],
            "consistency": [{"old_size": m, "proof": [p.hex() for p in consistency_proof(m, hashes[:n])]}
                            for m in range(n + 1)],
        })
    large = []
    for n, idx, olds in ((1000, (0, 1, 511, 512, 999), (1, 7, 500, 512, 999)),
                         (65537, (0, 32768, 65535, 65536), (1, 65536, 65535))):
        hs = [leaf_hash(i.to_bytes(8, "big")) for i in range(n)]
        large.append({
            "size": n,
            "root": root_from_hashes(hs).hex(),
            "inclusion": [{"index": i, "leaf_hash": hs[i].hex(),
                           "proof": [p.hex() for p in inclusion_proof(i, hs)]} for i in idx],
            "consistency": [{"old_size": m, "old_root": root_from_hashes(hs[:m]).hex(),
                             "proof": [p.hex() for p in consistency_proof(m, hs)]} for m in olds],
        })
    return {
        "description": "RFC 9162 Merkle trees (spec §5). 'small' uses the RFC 6962 reference "
        "leaves (hex) for sizes 0..8 with every inclusion and consistency proof; 'large' uses "
        "leaf i = 8-byte big-endian i.",
        "empty_root": hashlib.sha256(b"").hexdigest(),
        "leaves_hex": RFC6962_LEAVES,
        "small": small,
        "large": large,
    }


# --- negative vectors -----------------------------------------------------------------------


def neg(name: str, description: str, procedure: str, error: str, code: str, message: str,
        **inputs: Any) -> tuple[str, dict[str, Any]]:
    return name, {"name": name, "description": description, "procedure": procedure,
                  "expected": {"error": error, "code": code, "message": message}, **inputs}


def negative_vectors(w: World) -> list[tuple[str, dict[str, Any]]]:
    chain1, chain2 = w.chain_json(), w.chain_json(v2=True)
    n: list[tuple[str, dict[str, Any]]] = []

    def entry(name: str, description: str, error: str, code: str, message: str, envelope: Any,
              chain: list[dict[str, Any]] = chain1, **extra: Any) -> None:
        env = envelope.to_dict() if isinstance(envelope, Envelope) else envelope
        n.append(neg(name, description, "entry", error, code, message, roster_chain=chain,
                     envelope=env, **extra))

    def stmt(base: str, **changes: Any) -> dict[str, Any]:
        st = w.statement(base)
        st.update(changes)
        return st

    good = w.env("alpha-1")
    sig = bytearray(base64.b64decode(good.signatures[0].sig))
    sig[0] ^= 1
    entry("bad_signature", "one bit of alpha's signature flipped", "SignatureError", "bad-signature",
          "signature does not verify", Envelope(payloadType=good.payloadType, payload=good.payload,
          signatures=[EnvelopeSignature(keyid=good.signatures[0].keyid, sig=base64.b64encode(sig).decode())]))
    entry("unknown_key", "alpha's statement signed by a key no roster lists", "UnknownKeyError",
          "unknown-key", "no signature is by a key the roster lists", sign_raw(good.payload_bytes(), "mallory-1"))
    entry("keyid_of_other_lab", "alpha's statement signed by beta's roster key", "UnknownKeyError",
          "unknown-key", "signed with a key of beta", sign_raw(good.payload_bytes(), "beta-1"))
    entry("vote_from_observer", "the regulator (an observer) publishes a vote", "ObserverVoteError",
          "observer-vote", "observers can never vote",
          w.sign_statement_dict(stmt("beta-1", lab="regulator"), "regulator-1"))
    entry("observer_feed_entry", "the regulator publishes a note: observers have no feed",
          "UnknownLabError", "unknown-lab", "observers have no feed",
          w.sign_statement_dict(stmt("alpha-4", lab="regulator", seq=1, prev=None,
                                     issued_at=at(days=2)), "regulator-1"))
    entry("unknown_lab", "a lab the roster does not list", "UnknownLabError", "unknown-lab",
          "lab 'delta' is not in roster v1",
          w.sign_statement_dict(stmt("alpha-1", lab="delta"), "mallory-1"))
    entry("wrong_network", "alpha's entry for another network", "WrongNetworkError", "wrong-network",
          "entry is for network", w.sign_statement_dict(stmt("alpha-1", network=OTHER_NETWORK), "alpha-1"))
    st = stmt("alpha-4", issued_at=at(days=2))
    float_payload = canonical_bytes(st).replace(b'"refs":[', b'"weight":0.5,"refs":[')
    entry("float_in_body", "a JSON float in the body (decimal strings only)", "FloatInSignedDataError",
          "float-in-signed-data", "use a decimal string", sign_raw(float_payload, "alpha-1"))
    entry("oversized_field", "a note of 9000 characters (limit 8192)", "OversizeError", "oversize",
          "body.text", w.sign_statement_dict(stmt("alpha-4", issued_at=at(days=2),
                                                   body={"text": "x" * 9000, "refs": []}), "alpha-1"))
    spaced = json.dumps(w.statement("alpha-1"), sort_keys=True).encode()
    entry("non_canonical_payload", "valid JSON with spaces: not the RFC 8785 bytes", "CanonicalFormError",
          "non-canonical", "not its RFC 8785 canonical form", sign_raw(spaced, "alpha-1"))
    dup = canonical_bytes(w.statement("alpha-1")).replace(b'{"body":', b'{"body":{},"body":', 1)
    entry("duplicate_key_in_payload", "a key repeated in the statement object", "CanonicalFormError",
          "non-canonical", "duplicate key 'body'", sign_raw(dup, "alpha-1"))
    big = canonical_bytes(w.statement("alpha-1")).replace(b'"seq":1', b'"seq":9007199254740992')
    entry("integer_out_of_range", "seq beyond 2^53-1", "CanonicalFormError", "non-canonical",
          "outside", sign_raw(big, "alpha-1"))
    # --- hostile decimals and strings (spec §2.1, §2.2, §2.4) ---
    def with_metric(value: str | None = None, stderr: str | None = None, flop: str | None = None) -> Envelope:
        st = w.statement("alpha-1")
        body = json.loads(json.dumps(st["body"]))
        acc = body["tasks"][0]["metrics"]["accuracy"]
        acc.update({k: v for k, v in (("value", value), ("stderr", stderr)) if v is not None})
        if flop is not None:
            body["model"]["training_flop"] = flop
        return w.sign_statement_dict({**st, "body": body}, "alpha-1")

    entry("metric_value_out_of_domain", "a metric value of 1E70 (domain: magnitude at most 1E15)",
          "NumericDomainError", "numeric-domain", "body.tasks.0.metrics.accuracy.value: 1E70 is out of range",
          with_metric(value="1E70"))
    entry("metric_value_exponent_out_of_domain", "a metric value of 1E-999 (at most 30 decimal places)",
          "NumericDomainError", "numeric-domain", "1E-999 has 999 decimal places", with_metric(value="1E-999"))
    entry("metric_value_too_many_digits", "a metric value with 40 significant digits (at most 30)",
          "NumericDomainError", "numeric-domain", "has 40 significant digits",
          with_metric(value="0." + "7" * 40))
    entry("stderr_negative", "a negative standard error", "NumericDomainError", "numeric-domain",
          "body.tasks.0.metrics.accuracy.stderr: -0.2 is out of range", with_metric(stderr="-0.2"))
    entry("training_flop_not_positive", "training compute of 0 FLOP (domain: 1 to 1E40)",
          "NumericDomainError", "numeric-domain", "body.model.training_flop: 0 is out of range",
          with_metric(flop="0"))
    entry("training_flop_out_of_domain", "training compute of 1E41 FLOP (domain: 1 to 1E40)",
          "NumericDomainError", "numeric-domain", "body.model.training_flop: 1E41 is out of range",
          with_metric(flop="1E41"))
    plan_body = {"model": "alpha-frontier-70b", "planned_flop": "1E24", "cadence": "4", "ladder": ["alpha-frontier-7b"]}

    def plan_stmt(**changes: Any) -> Envelope:
        st = stmt("alpha-1", seq=1, kind="training_plan", body={**plan_body, **changes})
        return w.sign_statement_dict(st, "alpha-1")

    entry("training_plan_compute_not_positive", "a training plan of 0 FLOP (training compute: 1 to 1E40)",
          "NumericDomainError", "numeric-domain", "body.planned_flop: 0 is out of range", plan_stmt(planned_flop="0"))
    entry("training_plan_cadence_one", "a training plan whose evaluation cadence is 1 (must grow compute)",
          "SchemaError", "schema", "cadence 1 must be greater than 1", plan_stmt(cadence="1"))
    entry("training_plan_empty_ladder", "a training plan extrapolating from no model", "SchemaError", "schema",
          "body.ladder", plan_stmt(ladder=[]))
    bad_case = {"proposal_id": "0" * 64, "plan": "1" * 64,
                "documents": [{"name": "case.pdf", "sha256": hashlib.sha256(b"case").hexdigest()}]}
    entry("safety_case_id_mismatch", "a safety case whose proposal_id is not the digest of its plan and documents",
          "SchemaError", "schema", "proposal_id is not the digest of the plan and documents",
          w.sign_statement_dict(stmt("alpha-1", seq=1, kind="safety_case", body=bad_case), "alpha-1"))
    # No serializer writes a lone surrogate, so these payloads are assembled byte by byte;
    # the non-ASCII character takes verifiers off any ASCII-only fast path.
    noted = canonical_bytes(stmt("alpha-4", issued_at=at(days=2), body={"text": "café", "refs": []}))
    entry("lone_surrogate_in_key", 'a member name escaped \\ud800 (a lone surrogate) beside non-ASCII text',
          "CanonicalFormError", "non-canonical", "lone surrogate in a key of $",
          sign_raw(b'{"\\ud800":0,' + noted[1:], "alpha-1"))
    entry("lone_surrogate_in_string", 'a note text ending in escaped \\udc00 (a lone surrogate)',
          "CanonicalFormError", "non-canonical", "lone surrogate in the string at .body.text",
          sign_raw(noted.replace("café".encode(), "café\\udc00".encode()), "alpha-1"))
    deep = stmt("alpha-4", issued_at=at(days=2), body={"text": "deep", "refs": [], "x": "HOLE"})
    for _ in range(30):  # statement, body and 30 arrays: 32 levels, the most allowed
        deep["body"]["x"] = [deep["body"]["x"]]
    entry("nesting_depth_33", "an empty array at nesting level 33 (limit 32)", "OversizeError", "oversize",
          "nested deeper than 32 levels", sign_raw(canonical_bytes(deep).replace(b'"HOLE"', b"[]"), "alpha-1"))
    entry("expired_roster_vote", "a vote offered after roster v1 expired (now = 2026-02-01)",
          "RosterExpiredError", "roster-expired", "no new votes are accepted",
          w.env("beta-1"), now=at(days=396))
    entry("wrong_payload_type", "a feed entry carried as a roster payload", "EnvelopeError", "bad-envelope",
          "is not a feed entry", sign_raw(good.payload_bytes(), "alpha-1", payload_type=ROSTER_PAYLOAD_TYPE))
    entry("bad_base64_payload", "payload is not base64", "EnvelopeError", "bad-envelope", "invalid base64",
          {**good.to_dict(), "payload": "!!!not-base64!!!"})
    entry("no_signatures", "an envelope with an empty signature list", "EnvelopeError", "bad-envelope",
          "signatures", {**good.to_dict(), "signatures": []})
    entry("prev_set_at_seq1", "seq 1 must have prev null", "SchemaError", "schema",
          "prev must be null exactly when seq is 1",
          w.sign_statement_dict(stmt("alpha-1", prev=w.eid("beta-1")), "alpha-1"))
    entry("unknown_kind", "kind outside the eight defined kinds", "SchemaError", "schema", "kind",
          w.sign_statement_dict(stmt("alpha-4", kind="announcement", issued_at=at(days=2)), "alpha-1"))
    entry("timestamp_not_utc", "issued_at with an offset instead of Z", "SchemaError", "schema",
          "issued_at", w.sign_statement_dict(stmt("alpha-1", issued_at="2025-01-02T00:06:00+00:00"),
                                              "alpha-1"))
    entry("timestamp_non_ascii_digits", "issued_at spelled with Arabic-Indic digits (U+0660..U+0669)",
          "SchemaError", "schema", "issued_at",
          w.sign_statement_dict(stmt("alpha-1", issued_at="\u0662\u0660\u0662\u0665-01-02T00:06:00Z"),
                                "alpha-1"))
    bad_prop = stmt("alpha-2")
    bad_prop["body"] = {**bad_prop["body"], "proposal_id": "0" * 64}
    entry("proposal_id_mismatch", "a pause proposal whose id is not the digest of its trigger",
          "SchemaError", "schema", "proposal_id is not the digest of the trigger",
          w.sign_statement_dict(bad_prop, "alpha-1"))
    entry("unknown_field_in_statement", "an extra top-level field", "SchemaError", "schema",
          "Extra inputs are not permitted", w.sign_statement_dict(stmt("alpha-1", extra="x"), "alpha-1"))
    entry("superseded_key_after_rotation", "alpha's rotated-out key signs an entry dated after v2",
          "UnknownKeyError", "unknown-key", "no signature is by a key the roster lists",
          w.sign_statement_dict(stmt("alpha-4"), "alpha-1"), chain=chain2)

    # --- feed runs (spec §4.5) ---
    a1, a2, a3 = (w.env(x).to_dict() for x in ("alpha-1", "alpha-2", "alpha-3"))
    n.append(neg("seq_gap", "alpha's run jumps from seq 1 to seq 3", "feed", "SeqGapError", "seq-gap",
                 "seq 2 is missing", roster_chain=chain1, envelopes=[a1, a3]))
    n.append(neg("wrong_prev", "alpha seq 2 whose prev is not the id of seq 1", "feed", "PrevMismatchError",
                 "prev-mismatch", "is not the id of seq 1", roster_chain=chain1,
                 envelopes=[a1, w.sign_statement_dict(stmt("alpha-2", prev=w.eid("beta-1")), "alpha-1").to_dict()]))
    n.append(neg("equivocation_same_seq", "two different alpha entries at seq 3", "feed", "EquivocationError",
                 "equivocation", "signed two different entries at seq 3", roster_chain=chain1,
                 envelopes=[a1, a2, a3, _alt_vote(w).to_dict()]))

    # --- roster chains (spec §7) ---
    g, v2 = env_json(w.genesis), env_json(w.v2)
    r2 = draft(2, ["alpha-2"], previous=w.network, network=w.network)

    def roster_neg(name: str, description: str, error: str, code: str, message: str,
                   envs: list[dict[str, Any]], **extra: Any) -> None:
        n.append(neg(name, description, "roster_chain", error, code, message, roster_chain=envs, **extra))

    alt1 = roster_envelope(draft(1, ["alpha-1", "alpha-2"], previous=None, network=None),
                           [key("alpha-1"), key("beta-1"), key("gamma-1")])
    roster_neg("roster_rollback", "a different version 1 offered after v2", "RosterRollbackError",
               "roster-rollback", "is not newer than the current version 2", [g, v2, env_json(alt1)])
    r3 = draft(3, ["alpha-2"], previous=w.network, network=w.network)
    roster_neg("roster_version_skip", "version 3 offered on top of version 1", "RosterVersionError",
               "roster-version", "expected exactly 2",
               [g, env_json(roster_envelope(r3, [key("alpha-1"), key("alpha-2"), key("beta-1")]))])
    roster_neg("roster_update_short_of_threshold", "v2 signed by one v1 lab (2 required)",
               "RosterThresholdError", "roster-threshold", "signed by 1 lab(s) of v1; 2 required",
               [g, env_json(roster_envelope(r2, [key("beta-1")]))])
    roster_neg("roster_update_short_of_new_threshold", "v2 signed by alpha's old key and beta: "
               "only beta holds a v2 key", "RosterThresholdError", "roster-threshold",
               "signed by 1 of its own lab(s); 2 required",
               [g, env_json(roster_envelope(r2, [key("alpha-1"), key("beta-1")]))])
    two_keys = draft(2, ["alpha-1", "alpha-2"], previous=w.network, network=w.network)
    roster_neg("roster_update_same_lab_two_keys", "v2 signed by two keys of one lab: a lab counts once",
               "RosterThresholdError", "roster-threshold", "signed by 1 lab(s) of v1; 2 required",
               [g, env_json(roster_envelope(two_keys, [key("alpha-1"), key("alpha-2")]))])
    roster_neg("genesis_missing_founder", "genesis lacks gamma's signature", "RosterThresholdError",
               "roster-threshold", "lacks signatures of founding labs: gamma",
               [env_json(roster_envelope(draft(1, ["alpha-1"], previous=None, network=None),
                                         [key("alpha-1"), key("beta-1")]))])
    roster_neg("roster_update_expired", "v2 applied after its own expiry", "RosterExpiredError",
               "roster-expired", "expired at", [g, v2], now=at(days=400))
    wrong_prev = draft(2, ["alpha-2"], previous=OTHER_NETWORK, network=w.network)
    roster_neg("roster_update_wrong_previous", "v2 names another roster as previous", "RosterError",
               "roster", "previous is not the current roster's id",
               [g, env_json(roster_envelope(wrong_prev, [key("alpha-1"), key("alpha-2"), key("beta-1")]))])

    # --- certificates (spec §6.5) ---
    cert = w.statement("beta-2")["body"]

    def cert_neg(name: str, description: str, error: str, code: str, message: str, body: dict[str, Any],
                 chain: list[dict[str, Any]] = chain1) -> None:
        n.append(neg(name, description, "certificate", error, code, message, roster_chain=chain,
                     certificate=body))

    cert_neg("duplicate_signer_counted_twice", "alpha's vote listed twice, beta's omitted: weight 2 of 3",
             "InsufficientQuorumError", "insufficient-quorum", "has weight 2 of 3",
             {**cert, "votes": [a3, a3, w.env("gamma-1").to_dict()]})
    cert_neg("certificate_padded_with_votes", "four votes on a three-lab roster: refused before any signature check",
             "QuorumError", "quorum", "at most one counted vote per lab",
             {**cert, "votes": [a3, w.env("beta-1").to_dict(), w.env("gamma-1").to_dict(), a3]})
    cert_neg("certificate_insufficient_quorum", "votes of beta and gamma only (gamma objects)",
             "InsufficientQuorumError", "insufficient-quorum", "has weight 1 of 3",
             {**cert, "votes": [w.env("beta-1").to_dict(), w.env("gamma-1").to_dict()]})
    cert_neg("certificate_proposal_mismatch", "proposal_id names another proposal", "QuorumError", "quorum",
             "does not match its proposal_id", {**cert, "proposal_id": "1" * 64})
    late = w.sign_statement_dict(stmt("gamma-1", issued_at=at(days=31),
                                      body={**w.statement("gamma-1")["body"], "decision": "pause"}),
                                 "gamma-1")
    cert_neg("certificate_vote_after_supersession", "a vote dated after v2 counted under v1", "QuorumError",
             "quorum", "after roster v1 was superseded by v2",
             {**cert, "votes": [a3, late.to_dict()]}, chain=chain2)
    expired = w.sign_statement_dict(stmt("gamma-1", issued_at=at(days=366),
                                         body={**w.statement("gamma-1")["body"], "decision": "pause"}),
                                    "gamma-1")
    cert_neg("certificate_vote_after_expiry", "a vote dated after roster v1 expired", "RosterExpiredError",
             "roster-expired", "after roster v1 expired", {**cert, "votes": [a3, expired.to_dict()]})
    beta_alt = w.sign_statement_dict(stmt("beta-1", body={**w.statement("beta-1")["body"], "rationale": "x"}),
                                     "beta-1")
    cert_neg("certificate_vote_equivocation", "two different beta votes at seq 1", "EquivocationError",
             "equivocation", "two different entries of lab 'beta' at seq 1",
             {**cert, "votes": [a3, w.env("beta-1").to_dict(), beta_alt.to_dict()]})
    cert_neg("certificate_vote_from_observer", "a regulator vote inside a certificate", "ObserverVoteError",
             "observer-vote", "observers can never vote",
             {**cert, "votes": [a3, w.sign_statement_dict(stmt("beta-1", lab="regulator"), "regulator-1").to_dict()]})

    # --- equivocation proofs (spec §4.4) ---
    a_id, b_id = sorted((w.eid("alpha-1"), w.eid("alpha-2")))
    by_id = {w.eid("alpha-1"): a1, w.eid("alpha-2"): a2}
    n.append(neg("equivocation_proof_different_seq", "a 'proof' pairing alpha seq 1 and seq 2",
                 "equivocation_proof", "EquivocationError", "equivocation", "entries differ in lab or seq",
                 roster_chain=chain1, proof={"lab": "alpha", "seq": 1, "a": by_id[a_id], "b": by_id[b_id],
                                             "a_id": a_id, "b_id": b_id}))
    n.append(neg("equivocation_proof_forged_entry", "a 'proof' whose second entry alpha never signed",
                 "equivocation_proof", "UnknownKeyError", "unknown-key", "signed with a key of beta",
                 roster_chain=chain1, proof=_forged_proof(w)))

    # --- Merkle proofs and checkpoints (spec §5) ---
    hs = [leaf_hash(bytes.fromhex(x)) for x in RFC6962_LEAVES]
    root7 = root_from_hashes(hs[:7])
    proof = [p.hex() for p in inclusion_proof(2, hs[:7])]
    n.append(neg("merkle_inclusion_wrong_index", "a valid proof for leaf 2 presented for leaf 3",
                 "merkle_inclusion", "MerkleProofError", "bad-merkle-proof", "does not lead to the expected root",
                 leaf_hash=hs[2].hex(), index=3, size=7, proof=proof, root=root7.hex()))
    n.append(neg("merkle_inclusion_short_proof", "the last proof hash dropped", "merkle_inclusion",
                 "MerkleProofError", "bad-merkle-proof", "shorter than the tree is deep",
                 leaf_hash=hs[2].hex(), index=2, size=7, proof=proof[:-1], root=root7.hex()))
    cproof = [p.hex() for p in consistency_proof(3, hs[:7])]
    n.append(neg("merkle_consistency_rewritten", "old root of a rewritten log", "merkle_consistency",
                 "MerkleProofError", "bad-merkle-proof", "does not reproduce the old root",
                 old_size=3, new_size=7, proof=cproof, old_root=root_from_hashes([hs[0], hs[2], hs[1]]).hex(),
                 new_root=root7.hex()))
    cp = Checkpoint(protocol="tripwire/1", network=w.network, node="beta", size=6,
                    root=root_from_hashes([leaf_hash(x) for x in log_ids(w)]).hex(),
                    issued_at=at(days=1, minutes=70))
    n.append(neg("checkpoint_signed_by_other_lab", "beta's checkpoint signed by gamma", "checkpoint",
                 "SignatureError", "bad-signature", "does not verify under lab 'beta'",
                 roster_chain=chain1, envelope=sign_checkpoint(cp, key("gamma-1")).to_dict()))
    return n


def _forged_proof(w: World) -> dict[str, Any]:
    alt = w.sign_statement_dict({**w.statement("alpha-3"), "body": {**w.statement("alpha-3")["body"],
                                 "decision": "object"}}, "beta-1")
    ea = w.env("alpha-3")
    ids = {w.eid("alpha-3"): ea.to_dict(), entry_id(alt.payload_bytes()): alt.to_dict()}
    a_id, b_id = sorted(ids)
    return {"lab": "alpha", "seq": 3, "a": ids[a_id], "b": ids[b_id], "a_id": a_id, "b_id": b_id}


# --- roster pins and the governing version (spec §7.7) ---------------------------------------


def pinned_v2(w: World) -> Envelope:
    """v2 that rotates alpha's key, removes gamma and pins every v1 lab at its head."""
    base = draft(2, ["alpha-2"], previous=w.network, network=w.network).model_dump(mode="json")
    pins = [RosterPin(lab="alpha", seq=3, entry_id=w.eid("alpha-3")),
            RosterPin(lab="beta", seq=2, entry_id=w.eid("beta-2")),
            RosterPin(lab="gamma", seq=1, entry_id=w.eid("gamma-1"))]
    r2 = parse_roster({**base, "labs": [m for m in base["labs"] if m["id"] != "gamma"],
                       "pins": [p.model_dump(mode="json") for p in pins]})
    return roster_envelope(r2, [key("alpha-1"), key("alpha-2"), key("beta-1")])


def roster_pin_vectors(w: World) -> dict[str, Any]:
    v2 = pinned_v2(w)
    chain = RosterChain.from_envelopes([w.genesis, v2])
    cases = []
    for lab, seq, issued_at, why in [
        ("alpha", 3, at(days=1, minutes=20), "at the pin, dated in v1's window"),
        ("alpha", 4, at(days=31), "after the pin, dated in v2's window"),
        ("alpha", 4, at(days=2), "after the pin, back-dated into v1's window"),
        ("gamma", 1, at(days=31), "at the pin, dated after v2 (clock skew): the pin keeps it in v1"),
        ("gamma", 2, at(days=2), "after the pin of a lab v2 removed, back-dated"),
        ("beta", 3, at(days=2), "after the pin, back-dated"),
    ]:
        cases.append({"lab": lab, "seq": seq, "issued_at": issued_at, "why": why,
                      "governing_version": chain.governing_version(lab, seq, issued_at)})
    entries = []
    for name in ("alpha-3", "gamma-1", "alpha-4"):
        entries.append({"name": name, "envelope": env_json(w.env(name)), "entry_id": w.eid(name),
                        "roster_version": verify_entry(w.env(name), chain).roster_version})
    return {
        "description": "A v2 roster with pins (spec §7.7): alpha's key rotated, gamma removed, every "
        "v1 lab pinned at its head. governing_version cases give (lab, seq, issued_at) and the version "
        "that governs that position; entries verify under the chain with the given roster_version.",
        "roster_chain": [env_json(w.genesis), env_json(v2)],
        "v2_statement": json.loads(v2.payload_bytes()),
        "governing_version": cases,
        "entries": entries,
    }


def pin_negative_vectors(w: World) -> list[tuple[str, dict[str, Any]]]:
    chain = [env_json(w.genesis), env_json(pinned_v2(w))]
    n: list[tuple[str, dict[str, Any]]] = []

    def after(base: str, signer: str, seq: int, prev: str, **changes: Any) -> dict[str, Any]:
        st = {**w.statement(base), "seq": seq, "prev": prev, "issued_at": at(days=2), **changes}
        return w.sign_statement_dict(st, signer).to_dict()

    n.append(neg("entry_after_removal_pin", "gamma, removed by v2 which pins it at seq 1, writes seq 2 "
                 "back-dated into v1's window", "entry", "RevokedError", "revoked",
                 "lab 'gamma' is not in roster v2 or later", roster_chain=chain,
                 envelope=after("gamma-1", "gamma-1", 2, w.eid("gamma-1"))))
    n.append(neg("rotated_key_after_pin", "alpha's key rotated out by v2 signs seq 4, after v2's pin "
                 "at seq 3, back-dated into v1's window", "entry", "RevokedError", "revoked",
                 "follows roster v2's pin at seq 3", roster_chain=chain,
                 envelope=after("alpha-4", "alpha-1", 4, w.eid("alpha-3"))))
    late_vote = after("beta-1", "beta-1", 3, w.eid("beta-2"))
    cert = {**w.statement("beta-2")["body"], "votes": [w.env("alpha-3").to_dict(), late_vote]}
    n.append(neg("backdated_entry_after_pin", "beta's vote at seq 3, after v2's pin at seq 2, back-dated "
                 "into v1's window and counted under v1", "certificate", "QuorumError", "quorum",
                 "it is governed by v2, not v1", roster_chain=chain, certificate=cert))
    alt = w.sign_statement_dict({**w.statement("alpha-3"), "body": {**w.statement("alpha-3")["body"],
                                 "decision": "abstain"}}, "alpha-1")
    n.append(neg("entry_at_pin_not_pinned", "a different alpha entry at seq 3, where v2 pins another",
                 "entry", "PinMismatchError", "pin-mismatch", "is not the entry roster v2 pins there",
                 roster_chain=chain, envelope=alt.to_dict()))
    base = draft(2, ["alpha-2"], previous=w.network, network=w.network).model_dump(mode="json")
    stranger = parse_roster({**base, "pins": [{"lab": "delta", "seq": 0, "entry_id": None}]})
    n.append(neg("roster_update_pins_stranger", "v2 pins 'delta', which is no lab of v1", "roster_chain",
                 "RosterError", "roster", "pins delta, not a lab of v1",
                 roster_chain=[env_json(w.genesis), env_json(roster_envelope(
                     stranger, [key("alpha-1"), key("alpha-2"), key("beta-1")]))]))
    return n


# --- output ---------------------------------------------------------------------------------


def _scope_json(scope: Any) -> Any:
    """A scope as signed (None: every run)."""
    return None if scope is None else scope.model_dump(mode="json", exclude_none=True)


def pause_vectors(w: World) -> dict[str, Any]:
    """Pause-state cases (spec §6.6): entries held, heads, and the state every party derives."""
    from protocol.pause import pause_state

    pid = PauseProposalBody.model_validate(w.statement("alpha-2")["body"]).proposal_id
    gamma_later = w.sign_statement_dict(
        {**w.statement("gamma-1"), "seq": 2, "prev": w.eid("gamma-1"), "issued_at": at(days=1, minutes=41),
         "body": {"proposal_id": pid, "action": "pause", "decision": "pause", "rationale": "changed my mind"}},
        "gamma-1",
    )
    gamma_later_id = entry_id(gamma_later.payload_bytes())

    def cert(name: str, signer: str, lab: str, seq: int, prev: str | None, votes: list[Envelope],
             roster_version: int = 1, issued: str = at(days=1, minutes=55)) -> Envelope:
        body = PauseCertificateBody(proposal_id=pid, action="pause", roster_version=roster_version,
                                    proposal=w.env("alpha-2"), votes=votes)
        st = build_statement(network=w.network, lab=lab, seq=seq, prev=prev, issued_at=issued,
                             kind="pause_certificate", body=body)
        return sign_statement(st, key(signer))[0]

    gamma_cert = cert("gamma-3", "gamma-1", "gamma", 3, gamma_later_id, [w.env("alpha-3"), gamma_later])
    unpublished = w.sign_statement_dict(
        {**w.statement("gamma-1"), "body": {"proposal_id": pid, "action": "pause", "decision": "pause",
                                            "rationale": "never published"}},
        "gamma-1",
    )
    alpha_cert = cert("alpha-5", "alpha-2", "alpha", 5, w.eid("alpha-4"), [w.env("alpha-3"), unpublished],
                      issued=at(days=32))
    wrong_version = cert("gamma-2", "gamma-1", "gamma", 2, w.eid("gamma-1"),
                         [w.env("alpha-3"), w.env("beta-1")], roster_version=9)
    # A discretionary pause (spec §6.11), scoped to runs past 1E24 FLOP: beta asks on its own
    # judgement citing one document by digest; the three labs vote; gamma certifies.
    from protocol.entries import DiscretionaryTrigger, DocRef, pause_proposal_id
    from protocol.scope import Scope

    doc = DocRef(name="probe-anomaly.md", sha256=hashlib.sha256(b"an activation-probe anomaly").hexdigest())
    trig = DiscretionaryTrigger(kind="discretionary", lab="beta", evidence=[doc], opened_at=at(days=32))
    scope = Scope(kind="compute_above", flop="1E24")
    dpid = pause_proposal_id(trig, scope)

    def feed_entry(signer: str, lab: str, seq: int, prev: str | None, minutes: float, kind: str,
                   body: Any) -> Envelope:
        st = build_statement(network=w.network, lab=lab, seq=seq, prev=prev, issued_at=at(days=32, minutes=minutes),
                             kind=kind, body=body)
        return sign_statement(st, key(signer))[0]

    d_prop = feed_entry("beta-1", "beta", 3, w.eid("beta-2"), 0, "pause_proposal", PauseProposalBody(
        proposal_id=dpid, trigger=trig, observed="0", level="0", rationale="a probe anomaly no rule measures",
        scope=scope))
    d_prop_id = entry_id(d_prop.payload_bytes())
    vote = {"proposal_id": dpid, "action": "pause", "decision": "pause", "rationale": "the evidence convinces us"}
    d_beta = feed_entry("beta-1", "beta", 4, d_prop_id, 1, "vote", vote)
    d_gamma = feed_entry("gamma-1", "gamma", 2, w.eid("gamma-1"), 2, "vote", vote)
    d_alpha = feed_entry("alpha-2", "alpha", 5, w.eid("alpha-4"), 2, "vote", vote)
    d_cert = feed_entry("gamma-1", "gamma", 3, entry_id(d_gamma.payload_bytes()), 3, "pause_certificate",
                        PauseCertificateBody(proposal_id=dpid, action="pause", roster_version=2, proposal=d_prop,
                                             votes=[d_alpha, d_beta, d_gamma]))
    base = ["alpha-1", "alpha-2", "alpha-3"]
    cases = [
        ("certified", "beta's certificate carries alpha's and beta's pause votes: paused",
         [w.env(n) for n in [*base, "beta-1", "gamma-1", "beta-2"]]),
        ("later_vote_not_counted",
         "gamma objected first, then voted pause; a certificate counting the later vote is invalid "
         "for a party holding gamma's feed (spec §6.5 step 7a)",
         [*[w.env(n) for n in [*base, "gamma-1"]], gamma_later, gamma_cert]),
        ("unpublished_vote_not_counted",
         "the certificate carries a gamma vote at seq 1, where gamma's feed holds its objection: "
         "a vote never published does not count (spec §6.5 step 7b)",
         [*[w.env(n) for n in [*base, "alpha-4", "gamma-1"]], alpha_cert]),
        ("discretionary_scoped",
         "beta asks for a pause on its own judgement, citing a document by SHA-256, scoped to runs past "
         "1E24 FLOP; the labs' own votes reach the quorum and gamma's certificate pauses that scope, beside "
         "the breach pause beta's earlier certificate holds (spec §6.10, §6.11)",
         [*[w.env(n) for n in [*base, "alpha-4", "beta-1", "beta-2", "gamma-1"]], d_prop, d_alpha, d_beta,
          d_gamma, d_cert]),
        ("invalid_certificate_flagged",
         "a certificate naming a roster version nobody holds is flagged and ignored; the valid one counts",
         [*[w.env(n) for n in [*base, "beta-1", "gamma-1", "beta-2"]], wrong_version]),
    ]
    out = []
    for name, description, envs in cases:
        held = [verify_entry(e, w.chain2) for e in envs]
        heads: dict[str, int] = {}
        for e in held:
            heads[e.lab] = max(heads.get(e.lab, 0), e.seq)
        state = pause_state(held, w.chain2, heads=heads, held_ids={e.entry_id for e in held}.__contains__)
        out.append({
            "name": name,
            "description": description,
            "entries": [env_json(e) for e in envs],
            "heads": heads,
            "expected": {
                "paused": state.paused,
                "active": sorted(state.active),
                "resumed": sorted(state.resumed),
                "scopes": {pid: _scope_json(state.scope_of(pid)) for pid in sorted(state.active)},
                "flags": [{"kind": f.kind, "lab": f.lab, "code": f.code} for f in state.flags],
            },
        })
    return {
        "description": "Pause state (spec §6.6): for each case, verify the entries against the roster "
        "chain (genesis and v2), give the heads as the feeds held, and derive the pause state.",
        "roster_chain": w.chain_json(v2=True),
        "cases": out,
    }


PLAN_POLICY: dict[str, Any] = {
    "id": "plans-vector", "version": 1, "title": "Plans vector policy", "description": "one forecast rule",
    "rules": [{
        "id": "bio-uplift", "domain": "bio",
        "indicator": {"suite": SUITE.id, "task": "bio-uplift-mcq", "metric": "accuracy", "direction": "higher_is_riskier"},
        "alert_level": "0.5", "breach_level": "0.7", "uncertainty": {"method": "upper_bound", "z": "1"},
        "cadence": {"compute_multiple": "2", "max_days": 30},
        "forecast": {"horizon": "4", "z": "1"},
        "actions": {"warn": ["alert"], "breach": ["alert", "pause_proposal"]},
    }],
}


def plan_vectors(w: World) -> dict[str, Any]:
    """A training plan, its safety case, votes and accept certificate (spec §6.12)."""
    from protocol.entries import DocRef, SafetyCaseBody, TrainingPlanBody, safety_case_id
    from protocol.pause import pause_state
    from protocol.plans import plan_states
    from protocol.policy import Policy
    from protocol.quorum import quorum_weight
    from protocol.verdicts import ResultSummary

    def add(lab: str, signer: str, seq: int, prev: str, days: float, kind: str, body: Any) -> tuple[Envelope, str]:
        st = build_statement(network=w.network, lab=lab, seq=seq, prev=prev, issued_at=at(days=days), kind=kind, body=body)
        return sign_statement(st, key(signer))

    plan = TrainingPlanBody(model="alpha-frontier-70b", planned_flop="1E24", cadence="4",
                            ladder=["alpha-frontier-7b"], domains=["bio"], rationale="the next size of the recipe")
    p_env, p_id = add("alpha", "alpha-2", 5, w.eid("alpha-4"), 32, "training_plan", plan)
    docs = [DocRef(name="case.pdf", sha256=hashlib.sha256(b"the safety case").hexdigest())]
    cid = safety_case_id(p_id, docs)
    c_env, c_id = add("alpha", "alpha-2", 6, p_id, 32.1, "safety_case",
                      SafetyCaseBody(proposal_id=cid, plan=p_id, documents=docs, rationale="held-out red-team results"))
    va_env, _ = add("alpha", "alpha-2", 7, c_id, 32.2, "vote", VoteBody(proposal_id=cid, action="accept", decision="accept"))
    vb_env, vb_id = add("beta", "beta-1", 3, w.eid("beta-2"), 32.3, "vote", VoteBody(proposal_id=cid, action="accept", decision="accept"))
    cert = PauseCertificateBody(proposal_id=cid, action="accept", roster_version=2, proposal=c_env, votes=[va_env, vb_env])
    k_env, k_id = add("beta", "beta-1", 4, vb_id, 32.4, "pause_certificate", cert)
    envs = [p_env, c_env, va_env, vb_env, k_env]
    held = [verify_entry(e, w.chain2) for e in envs]
    policy = Policy.from_obj(PLAN_POLICY)
    r1 = verify_entry(w.env("alpha-1"), w.chain2)
    results = {r1.entry_id: ResultSummary.from_body(r1.statement.body.model_dump(mode="json"), lab="alpha")}
    before = plan_states(held[:1], results, policy, pause_state(held[:1], w.chain2))[p_id]
    ps = pause_state(held, w.chain2)
    after = plan_states(held[:1], results, policy, ps)[p_id]
    return {
        "description": "Training plan and safety case (spec §6.12). Verify the entries against the "
        "roster chain; with the policy and alpha-1's result, the plan alone is needs-safety-case (one "
        "ladder compute value: no trend, stop at what the ladder measured); with the safety case, "
        "its two accept votes and beta's accept certificate (roster v2's pause quorum, as it sets no "
        "safety-case quorum) it is accepted.",
        "roster_chain": w.chain_json(v2=True),
        "policy": PLAN_POLICY,
        "results": [env_json(w.env("alpha-1"))],
        "entries": [{"envelope": env_json(e), "entry_id": entry_id(e.payload_bytes())} for e in envs],
        "expected": {
            "safety_case_id": cid,
            "quorum_weight": quorum_weight(held[1], w.chain2.current.roster),
            "case_status": ps.proposals[cid].status,
            "certificate": k_id,
            "paused": ps.paused,
            "plan_alone": before.to_json(),
            "plan_with_case": after.to_json(),
        },
    }


FORECAST_POLICY: dict[str, Any] = {
    "id": "forecasts-vector", "version": 1, "title": "Forecasts vector policy",
    "description": "a rule the results measure and one they do not",
    "rules": [
        PLAN_POLICY["rules"][0],
        {
            "id": "cyber-ctf", "domain": "cyber",
            "indicator": {"suite": SUITE.id, "task": "cyber-ctf", "metric": "solve_rate", "direction": "higher_is_riskier"},
            "alert_level": "0.3", "breach_level": "0.5", "uncertainty": {"method": "point"},
            "forecast": {"horizon": "4", "level": "0.9"},
            "actions": {"warn": ["alert"], "breach": ["alert"]},
        },
    ],
}


def forecast_vectors(w: World) -> dict[str, Any]:
    """Forecasts on record and their scores (spec §6.13): scored inside, scored outside,
    pending and late, a lab's track record, and malformed bodies refused."""
    from protocol.entries import ForecastBody
    from protocol.errors import TripwireError
    from protocol.policy import Policy
    from protocol.track import score_forecasts, track_records
    from protocol.verdicts import ResultSummary

    policy = Policy.from_obj(FORECAST_POLICY)
    feed: list[tuple[Envelope, str]] = []

    def add(kind: str, body: Any) -> str:
        prev = feed[-1][1] if feed else w.eid("gamma-1")
        seq = len(feed) + 2
        st = build_statement(network=w.network, lab="gamma", seq=seq, prev=prev, issued_at=at(days=40, minutes=seq),
                             kind=kind, body=body)
        env, eid = sign_statement(st, key("gamma-1"))
        feed.append((env, eid))
        return eid

    def result(model: str, flop: str, acc: str) -> str:
        return add("eval_result", EvalResultBody(
            suite=SUITE,
            model=ModelRef(name=model, commitment=hashlib.sha256(model.encode()).hexdigest(), checkpoint_step=1000,
                           training_flop=flop),
            tasks=[TaskResult(name="bio-uplift-mcq", digest=digest_of({"task": "bio-uplift-mcq"}), n=400,
                              metrics={"accuracy": Metric(value=acc, stderr="0.02")}, items_root="0" * 64)],
            started_at=at(days=40), finished_at=at(days=40, minutes=1),
        ))

    def forecast(model: str, planned: str, value: str, low: str, high: str, **extra: Any) -> str:
        preds = [{"rule": "bio-uplift", "value": value, "low": low, "high": high}]
        preds += extra.pop("more", [])
        return add("forecast", ForecastBody.for_rules(
            {"model": model, "planned_flop": planned, "policy_digest": policy.digest, "predictions": preds, **extra},
            [r.id for r in policy.rules]))

    result("gamma-frontier-13b", "1E22", "0.71")
    inside = forecast("gamma-frontier-70b", "5E22", "0.78", "0.72", "0.84", ladder=["gamma-frontier-13b"],
                      more=[{"rule": "cyber-ctf", "value": "0.2", "low": "0.1", "high": "0.3", "level": "0.9"}],
                      note="pre-registered before the run")
    outside = forecast("gamma-frontier-34b", "2E22", "0.65", "0.60", "0.70")
    pending = forecast("gamma-frontier-140b", "1E23", "0.85", "0.78", "0.92")
    late = forecast("gamma-frontier-13b", "1E22", "0.71", "0.70", "0.72")
    result("gamma-frontier-70b", "5.2E22", "0.80")
    result("gamma-frontier-34b", "1.9E22", "0.74")
    result("gamma-frontier-70b", "5E22", "0.90")  # also in the window, later: the first counts
    held = [verify_entry(env, w.chain2) for env, _ in feed]
    results = [(e, ResultSummary.from_body(e.statement.body.model_dump(mode="json"), lab=e.lab))
               for e in held if e.kind == "eval_result"]
    scores = score_forecasts([e for e in held if e.kind == "forecast"], results, policy)
    assert [scores[f].status for f in (inside, outside, pending, late)] == ["scored", "scored", "pending", "late"]

    good = {"model": "m", "planned_flop": "1E22", "policy_digest": policy.digest,
            "predictions": [{"rule": "bio-uplift", "value": "0.5", "low": "0.4", "high": "0.6"}]}

    def bad(name: str, description: str, change: Any) -> dict[str, Any]:
        body = json.loads(json.dumps(good))
        change(body)
        try:
            ForecastBody.for_rules(body, [r.id for r in policy.rules])
        except TripwireError as e:
            return {"name": name, "description": description, "body": body,
                    "expected": {"error": type(e).__name__, "code": e.code, "message": e.message}}
        raise AssertionError(f"forecast negative {name} was accepted")

    negative = [
        bad("low_above_high", "the interval's low end is above its high end",
            lambda b: b["predictions"][0].update(low="0.7", value="0.7", high="0.6")),
        bad("value_outside_interval", "the predicted value lies outside its own interval",
            lambda b: b["predictions"][0].update(value="0.9")),
        bad("duplicate_rule", "two predictions for one rule", lambda b: b["predictions"].append(dict(b["predictions"][0]))),
        bad("unknown_rule", "a prediction for a rule the policy does not have",
            lambda b: b["predictions"][0].update(rule="no-such-rule")),
        bad("bad_decimal", "a value that is not decimal text", lambda b: b["predictions"][0].update(value="0.5.1")),
        bad("float_value", "a JSON number where decimal text is required", lambda b: b["predictions"][0].update(value=0.5)),
        bad("compute_out_of_domain", "planned compute beyond the training-compute domain",
            lambda b: b.update(planned_flop="1E41")),
        bad("no_predictions", "a forecast that predicts nothing", lambda b: b.update(predictions=[])),
    ]
    return {
        "description": "Forecasts on record (spec §6.13). Verify gamma's entries against the roster chain; "
        "score every forecast against the first eval_result of the same lab and model within ±10% of its "
        "planned compute, in feed order, under the inline policy: one scored inside its interval (its "
        "cyber-ctf rule unknown: the result lacks the metric), one scored outside, one pending, one late "
        "(published after the result it would be scored against). `negative`: bodies refused when checked "
        "against the policy, each with the expected error.",
        "roster_chain": w.chain_json(v2=True),
        "policy": FORECAST_POLICY,
        "entries": [{"envelope": env_json(env), "entry_id": eid} for env, eid in feed],
        "expected": {
            "scores": [scores[f].to_json() for f in sorted(scores)],
            "track": [t.to_json() for t in track_records(scores.values()).values()],
        },
        "negative": negative,
    }


def dumps(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8")


def vectors() -> dict[str, bytes]:
    """Every vector file, by path relative to specs/vectors/."""
    w = build_world()
    files = {
        "canonical.json": canonical_vectors(),
        "pae.json": pae_vectors(),
        "keys.json": key_vectors(),
        "roster.json": roster_vectors(w),
        "entries.json": entry_vectors(w),
        "certificate.json": certificate_vectors(w),
        "equivocation.json": equivocation_vectors(w),
        "checkpoint.json": checkpoint_vectors(w),
        "merkle.json": merkle_vectors(),
    }
    out = {name: dumps(obj) for name, obj in files.items()}
    for name, obj in negative_vectors(w):
        out[f"negative/{name}.json"] = dumps(obj)
    out["roster_pins.json"] = dumps(roster_pin_vectors(w))
    out["pause.json"] = dumps(pause_vectors(w))
    out["plans.json"] = dumps(plan_vectors(w))
    out["forecasts.json"] = dumps(forecast_vectors(w))
    for name, obj in pin_negative_vectors(w):
        out[f"negative/{name}.json"] = dumps(obj)
    return out


def main() -> None:
    files = vectors()
    for stale in [*HERE.glob("*.json"), *HERE.glob("negative/*.json")]:
        if str(stale.relative_to(HERE)) not in files:
            stale.unlink()
    for rel, data in files.items():
        path = HERE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    print(f"wrote {len(files)} vector files under {HERE.name}/")


if __name__ == "__main__":
    main()
