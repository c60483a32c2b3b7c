"""Store behaviour on SQLite and PostgreSQL: every class of bad data is refused with a clear
code and changes nothing; the hold, equivocation proofs, rosters and the node log."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from node.errors import EntryNotFoundError, NetworkMismatchError, NoRosterError
from node.home import NodeHome
from node.home.netsetup import sign_by_all
from node.store import Store
from node.store import models as m
from protocol.canonical import format_time, parse_time, utcnow
from protocol.entries import ENTRY_PAYLOAD_TYPE, build_statement, decode_entry, sign_statement
from protocol.envelope import ROSTER_PAYLOAD_TYPE, Envelope, sign_payload
from protocol.errors import (
    MerkleProofError,
    OversizeError,
    RosterError,
    RosterRollbackError,
    RosterThresholdError,
    RosterVersionError,
)
from protocol.feed import EquivocationProof, FeedWriter, Head
from protocol.keys import SigningKey
from protocol.merkle import leaf_hash, verify_consistency, verify_inclusion
from protocol.roster import draft_roster, roster_envelope

NOW = "2025-06-01T00:00:00Z"


def counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (m.entries, m.held, m.equivocations, m.feeds, m.rosters)
        } | {"log": store.log_size()}


def writer(home, *, key=None, lab=None, network=None, head=None) -> FeedWriter:
    chain = home.store.roster_chain()
    return FeedWriter(network or chain.network_id, lab or home.lab, key or home.key, head)


def note(w: FeedWriter, text: str = "x") -> Envelope:
    return w.append("note", {"text": text}, NOW)[0]


# --- bad data: refused, clear code, nothing written ----------------------------------------------


def _forged_other_key(net):
    alpha, beta, _ = net
    return note(writer(alpha, key=beta.key))


def _forged_bad_sig(net):
    env = note(writer(net[0]))
    sig = env.signatures[0]
    bad = base64.b64encode(bytes(64)).decode()
    return Envelope(
        payloadType=env.payloadType, payload=env.payload, signatures=[{"keyid": sig.keyid, "sig": bad}]
    )


def _unknown_lab(net):
    return note(writer(net[0], lab="zeta", key=SigningKey.generate()))


def _observer_feed(net):
    return note(writer(net[0], lab="regulator", key=SigningKey.generate()))


def _wrong_network(net):
    return note(writer(net[0], network="0" * 64))


def _wrong_prev(net):
    alpha = net[0]
    alpha.publish("note", {"text": "first"})
    net[1].store.ingest(alpha.store.feed("alpha"))
    return note(writer(alpha, head=Head(1, "f" * 64)))


def _oversize_field(net):
    alpha = net[0]
    payload = json.dumps(
        {
            "body": {"refs": [], "text": "x" * 9000},
            "issued_at": NOW,
            "kind": "note",
            "lab": "alpha",
            "network": alpha.store.network_id(),
            "prev": None,
            "protocol": "tripwire/1",
            "seq": 1,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    return sign_payload(payload, ENTRY_PAYLOAD_TYPE, [alpha.key])


def _oversize_envelope(net):
    return {
        "payloadType": ENTRY_PAYLOAD_TYPE,
        "payload": "A" * 2_000_000,
        "signatures": [{"keyid": "", "sig": "AA"}],
    }


def _non_canonical(net):
    alpha = net[0]
    st = build_statement(
        network=alpha.store.network_id(),
        lab="alpha",
        seq=1,
        prev=None,
        issued_at=NOW,
        kind="note",
        body={"text": "x"},
    )
    payload = json.dumps(st.to_json(), indent=1).encode()
    return sign_payload(payload, ENTRY_PAYLOAD_TYPE, [alpha.key])


def _float(net):
    alpha = net[0]
    payload = (
        b'{"body":{"text":"x"},"issued_at":"'
        + NOW.encode()
        + b'","kind":"note","lab":"alpha","network":"'
        + alpha.store.network_id().encode()
        + b'","prev":null,"protocol":"tripwire/1","seq":1.0}'
    )
    return sign_payload(payload, ENTRY_PAYLOAD_TYPE, [alpha.key])


def _wrong_type(net):
    env = note(writer(net[0]))
    return Envelope(payloadType=ROSTER_PAYLOAD_TYPE, payload=env.payload, signatures=env.signatures)


def _malformed(net):
    return {"payloadType": ENTRY_PAYLOAD_TYPE, "payload": "!!!", "signatures": []}


def _bad_schema(net):
    alpha = net[0]
    payload = (
        b'{"body":{"extra":1,"text":"x"},"issued_at":"' + NOW.encode() + b'","kind":"note","lab":"alpha",'
        b'"network":"' + alpha.store.network_id().encode() + b'","prev":null,"protocol":"tripwire/1","seq":1}'
    )
    return sign_payload(payload, ENTRY_PAYLOAD_TYPE, [alpha.key])


BAD = [
    ("forged-other-labs-key", _forged_other_key, "unknown-key"),
    ("forged-signature-bytes", _forged_bad_sig, "bad-signature"),
    ("unknown-lab", _unknown_lab, "unknown-lab"),
    ("observer-has-no-feed", _observer_feed, "unknown-lab"),
    ("wrong-network", _wrong_network, "wrong-network"),
    ("wrong-prev", _wrong_prev, "prev-mismatch"),
    ("oversize-field", _oversize_field, "oversize"),
    ("oversize-envelope", _oversize_envelope, "oversize"),
    ("non-canonical-json", _non_canonical, "non-canonical"),
    ("float-in-signed-data", _float, "float-in-signed-data"),
    ("wrong-payload-type", _wrong_type, "bad-envelope"),
    ("malformed-envelope", _malformed, "bad-envelope"),
    ("unknown-body-field", _bad_schema, "schema"),
]


@pytest.mark.parametrize(("make", "code"), [(b[1], b[2]) for b in BAD], ids=[b[0] for b in BAD])
def test_bad_data_refused_and_nothing_written(network, make, code):
    _alpha, beta, _ = network
    env = make(network)
    before = counts(beta.store)
    [out] = beta.store.ingest([env])
    assert out.status == "rejected"
    assert out.code == code, out.reason
    assert out.reason
    assert counts(beta.store) == before


def test_bad_entries_do_not_spoil_good_ones_in_a_batch(network):
    alpha, beta, _ = network
    good = [alpha.store.get(alpha.publish("note", {"text": str(i)})).envelope for i in range(3)]
    bad = _forged_other_key(network)
    outs = beta.store.ingest([good[0], bad, good[1], good[2]])
    assert [o.status for o in outs] == ["accepted", "rejected", "accepted", "accepted"]
    assert beta.store.heads()["alpha"].seq == 3


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_parallel_signature_checks_keep_order_and_refusals(network, workers):
    # Large batches are verified on a thread pool; outcomes must still line up with the
    # offered envelopes, forgeries in every part of the batch must be refused, and the
    # result must not depend on how many threads checked it.
    alpha, beta, _ = network
    beta.store.verify_workers = workers
    w = writer(alpha)
    envs = [note(w, str(i)) for i in range(150)]
    forged_at = {5, 70, 149}
    offered = [_forged_bad_sig(network) if i in forged_at else e for i, e in enumerate(envs)]
    outs = beta.store.ingest(offered)
    assert [o.status for o in outs[:5]] == ["accepted"] * 5
    for i in forged_at:
        assert outs[i].status == "rejected" and outs[i].code == "bad-signature", i
    # Everything after the first forgery waits for seq 6, which never came.
    assert {o.status for k, o in enumerate(outs[6:], 6) if k not in forged_at} == {"held"}
    assert [o.entry_id for k, o in enumerate(outs) if k not in forged_at] == [
        e for k, e in enumerate(w_ids(envs)) if k not in forged_at
    ]
    assert beta.store.heads()["alpha"].seq == 5


def w_ids(envs: list[Envelope]) -> list[str]:
    from protocol.entries import decode_entry

    return [decode_entry(e).entry_id for e in envs]


# --- hold, duplicates, equivocation ---------------------------------------------------------------


def test_seq_gap_is_held_then_released_in_order(network):
    alpha, beta, _ = network
    ids = [alpha.publish("note", {"text": str(i)}) for i in range(4)]
    envs = alpha.store.feed("alpha")
    seen: list[str] = []
    beta.store.add_listener(lambda es: seen.extend(e.entry_id for e in es))
    assert [o.status for o in beta.store.ingest([envs[3], envs[2]])] == ["held", "held"]
    assert beta.store.ingest([envs[3]])[0].status == "held"  # re-delivery of a held entry: idempotent
    assert beta.store.held_count() == 2 and "alpha" not in beta.store.heads()
    assert beta.store.ingest([envs[1]])[0].status == "held"
    assert beta.store.ingest([envs[0]])[0].status == "accepted"
    assert beta.store.heads()["alpha"] == Head(4, ids[3])
    assert beta.store.held_count() == 0
    assert seen == ids
    assert [e.entry_id for e in beta.store.entries(lab="alpha")] == ids


def test_hold_is_bounded(network):
    alpha, beta, _ = network
    for i in range(5):
        alpha.publish("note", {"text": str(i)})
    envs = alpha.store.feed("alpha")
    beta.store.hold_per_lab = 2
    outs = beta.store.ingest(envs[2:])
    assert [o.status for o in outs] == ["held", "held", "rejected"]
    assert outs[2].code == "hold-full"
    assert beta.store.held_count() == 2


def test_duplicates_are_idempotent(network):
    alpha, beta, _ = network
    alpha.publish("note", {"text": "a"})
    env = alpha.store.feed("alpha")[0]
    assert [o.status for o in beta.store.ingest([env, env])] == ["accepted", "duplicate"]
    before = counts(beta.store)
    assert beta.store.ingest([env])[0].status == "duplicate"
    assert counts(beta.store) == before


def test_equivocation_stores_proof_and_freezes_feed(network):
    alpha, beta, _ = network
    first = note(writer(alpha), "one")
    fork_writer = writer(alpha)
    fork = note(fork_writer, "other")
    after_fork = note(fork_writer, "next")
    assert beta.store.ingest([first])[0].status == "accepted"
    out = beta.store.ingest([fork])[0]
    assert (out.status, out.code) == ("rejected", "equivocation")
    [proof] = beta.store.equivocations()
    assert isinstance(proof, EquivocationProof) and proof.lab == "alpha" and proof.seq == 1
    proof.verify(beta.store.roster_chain())
    assert beta.store.frozen_labs() == {"alpha"}
    # Nothing past the fork is accepted; the entry already held stays a duplicate.
    assert beta.store.ingest([after_fork])[0].code == "feed-forked"
    assert beta.store.ingest([first])[0].status == "duplicate"
    assert beta.store.ingest([fork])[0].code == "equivocation"
    assert len(beta.store.equivocations()) == 1
    assert beta.store.heads()["alpha"].seq == 1


def test_equivocation_between_held_entries(network):
    alpha, beta, _ = network
    w1, w2 = writer(alpha), writer(alpha)
    note(w1, "a"), note(w2, "b")
    e2a, e2b = note(w1, "a2"), note(w2, "b2")
    assert beta.store.ingest([e2a])[0].status == "held"
    assert beta.store.ingest([e2b])[0].code == "equivocation"
    assert beta.store.frozen_labs() == {"alpha"} and beta.store.held_count() == 0
    assert len(beta.store.equivocations()) == 1


def test_entries_dated_before_their_predecessor_or_ahead_of_the_clock_are_refused(network):
    alpha, beta, _ = network
    beta.store.clock = lambda: parse_time(NOW)  # the node's clock, not the wall's
    w = writer(alpha)
    first = w.append("note", {"text": "one"}, "2025-06-01T00:00:00Z")[0]
    back = w.append("note", {"text": "two"}, "2025-05-31T23:59:59Z")[0]
    assert [(o.status, o.code) for o in beta.store.ingest([first, back])] == [
        ("accepted", None), ("rejected", "feed-time")]
    w = writer(alpha, head=Head(1, decode_entry(first).entry_id))
    late = w.append("note", {"text": "from the future"}, "2025-06-01T00:05:01Z")[0]
    before = counts(beta.store)
    out = beta.store.ingest([late])[0]
    assert (out.status, out.code) == ("rejected", "future-dated") and "ahead of this verifier's clock" in out.reason
    assert counts(beta.store) == before  # not held: sync offers it again
    beta.store.future_skew_s = 301
    assert beta.store.ingest([late])[0].status == "accepted"


def test_own_entries_never_go_back_in_time(network):
    alpha, _beta, _ = network
    alpha.store.clock = lambda: parse_time("2025-06-01T00:00:10Z")
    first = alpha.store.publish("alpha", alpha.key, "note", {"text": "a"})
    alpha.store.clock = lambda: parse_time("2025-06-01T00:00:03Z")  # the clock was set back
    second = alpha.store.publish("alpha", alpha.key, "note", {"text": "b"})
    assert first.statement.issued_at == second.statement.issued_at == "2025-06-01T00:00:10Z"


def test_future_skew_is_a_node_toml_setting(tmp_path, monkeypatch):
    NodeHome.init(tmp_path / "h", "alpha").close()
    with NodeHome.open(tmp_path / "h") as h:
        assert h.store.future_skew_s == 300
    monkeypatch.setenv("TRIPWIRE_SYNC__FUTURE_SKEW_S", "7")
    with NodeHome.open(tmp_path / "h") as h:
        assert h.store.future_skew_s == 7


def test_publish_refuses_on_frozen_own_feed(network):
    alpha, _beta, _ = network
    w1, w2 = writer(alpha), writer(alpha)
    alpha.store.ingest([note(w1, "a")])
    alpha.store.ingest([note(w2, "b")])
    with pytest.raises(Exception, match="frozen"):
        alpha.publish("note", {"text": "c"})


# --- rosters ------------------------------------------------------------------------------------


def _next_roster(home, signers, *, version=None, pause=2, expires_days=30):
    chain = home.store.roster_chain()
    cur = chain.current.roster
    r = draft_roster(
        network_name=cur.network_name,
        labs=[
            (lab.id, lab.name, [k.public() for k in lab.keys], lab.endpoint, lab.weight) for lab in cur.labs
        ],
        observers=[(o.id, o.name, [k.public() for k in o.keys]) for o in cur.observers],
        pause_weight=pause,
        resume_weight=2,
        roster_threshold=2,
        policy_digest=cur.policy_digest,
        # Each version must be issued after the one it replaces.
        issued_at=format_time(parse_time(cur.issued_at) + timedelta(seconds=1)),
        expires=format_time(utcnow() + timedelta(days=expires_days)),
        version=version or cur.version + 1,
        previous=chain.current.roster_id,
        network=chain.network_id,
    )
    return sign_by_all(r, [h.key for h in signers])


def test_roster_update_threshold_rollback_and_idempotence(network):
    alpha, beta, gamma = network
    store = beta.store
    before = counts(store)
    with pytest.raises(RosterThresholdError):
        store.apply_roster(_next_roster(alpha, [alpha]))
    with pytest.raises(RosterVersionError):
        store.apply_roster(_next_roster(alpha, [alpha, beta], version=3))
    assert counts(store) == before
    v2 = _next_roster(alpha, [alpha, beta])
    assert store.apply_roster(v2).version == 2
    assert store.apply_roster(v2).version == 2  # re-offer: idempotent
    other_v2 = _next_roster(alpha, [alpha, gamma], pause=3)
    with pytest.raises(RosterRollbackError):
        store.apply_roster(other_v2)
    assert counts(store)["rosters"] == 2
    assert [v.version for v in store.roster_chain().versions] == [1, 2]
    # A store opened afresh rebuilds the same chain from the database.
    again = Store.open(store.url)
    assert again.roster_chain().current.roster_id == store.roster_chain().current.roster_id
    again.close()


def test_second_genesis_is_refused(network, make_db_url):
    alpha, beta, _ = network
    genesis = beta.store.roster_chain().versions[0].envelope
    assert beta.store.install_genesis(genesis).version == 1
    other = draft_roster(
        network_name="other",
        labs=[("solo", "solo", [alpha.key.public_key], "http://127.0.0.1:1", 1)],
        pause_weight=1,
        resume_weight=1,
        roster_threshold=1,
        policy_digest="0" * 64,
        issued_at=NOW,
        expires="2099-01-01T00:00:00Z",
    )
    with pytest.raises(NetworkMismatchError):
        beta.store.install_genesis(roster_envelope(other, [alpha.key]))
    with pytest.raises(RosterThresholdError):
        Store.open(make_db_url()).install_genesis(roster_envelope(other, [beta.key]))


def test_roster_update_entry_applies_the_enclosed_roster(network):
    alpha, beta, gamma = network
    v2 = _next_roster(alpha, [alpha, gamma])
    eid = alpha.publish("roster_update", {"roster": v2.to_dict()})
    assert alpha.store.roster_chain().current.version == 2
    outs = beta.store.ingest(alpha.store.feed("alpha"))
    assert outs[0].status == "accepted" and outs[0].entry_id == eid
    assert beta.store.roster_chain().current.version == 2


def test_roster_update_entry_with_invalid_roster_is_refused(network):
    alpha, beta, _ = network
    bad = _next_roster(alpha, [alpha])
    before = counts(beta.store)
    env = note_kind(alpha, "roster_update", {"roster": bad.to_dict()})
    out = beta.store.ingest([env])[0]
    assert (out.status, out.code) == ("rejected", "roster-threshold")
    assert counts(beta.store) == before


def note_kind(home, kind, body):
    return writer(home).append(kind, body, NOW)[0]


def test_no_roster_yet(db_url):
    store = Store.open(db_url)
    with pytest.raises(NoRosterError):
        store.roster_chain()
    with pytest.raises(NoRosterError):
        store.ingest([_malformed(None), note(FeedWriter("0" * 64, "a", SigningKey.generate()))])
    store.close()


def test_roster_rollback_error_family():
    assert issubclass(RosterRollbackError, RosterError)


# --- node log -----------------------------------------------------------------------------------


def test_node_log_checkpoints_and_proofs(network):
    alpha, beta, gamma = network
    for i in range(3):
        alpha.publish("note", {"text": str(i)})
        gamma.publish("note", {"text": str(i)})
    beta.store.ingest(alpha.store.feed("alpha"))
    old_size, old_root = beta.store.log_size(), bytes.fromhex(beta.store.log_root())
    beta.store.ingest(gamma.store.feed("gamma"))
    ids = [e.entry_id for e in beta.store.entries()]
    assert beta.store.log_size() == len(ids) == 6
    cp = beta.store.signed_checkpoint(beta.key, "beta", now=datetime(2025, 1, 1, tzinfo=UTC))
    from protocol.envelope import CHECKPOINT_PAYLOAD_TYPE, verify_signatures

    assert cp.payloadType == CHECKPOINT_PAYLOAD_TYPE
    stmt = json.loads(cp.payload_bytes())
    assert set(stmt) == {"protocol", "network", "node", "size", "root", "issued_at"}
    assert verify_signatures(cp, cp.payload_bytes(), {beta.key.keyid: beta.key.public_key})
    root = bytes.fromhex(stmt["root"])
    for eid in ids:
        idx, size, path = beta.store.inclusion_proof(eid)
        verify_inclusion(leaf_hash(eid.encode()), idx, size, [bytes.fromhex(p) for p in path], root)
    proof = [bytes.fromhex(p) for p in beta.store.consistency_proof(old_size)]
    verify_consistency(old_size, 6, proof, old_root, root)
    # Proofs agree with a store that has never cached a leaf.
    fresh = Store.open(beta.store.url)
    assert fresh.log_root() == stmt["root"]
    assert fresh.inclusion_proof(ids[4], 5)[2] == beta.store.inclusion_proof(ids[4], 5)[2]
    fresh.close()
    with pytest.raises(EntryNotFoundError):
        beta.store.inclusion_proof("0" * 64)
    with pytest.raises(MerkleProofError):
        beta.store.inclusion_proof(ids[5], 3)
    with pytest.raises(MerkleProofError):
        beta.store.consistency_proof(7)


def test_reads(network):
    alpha, _beta, _ = network
    ids = [alpha.publish("note", {"text": str(i)}) for i in range(5)]
    assert [sign_statement_id(e) for e in alpha.store.feed("alpha", after=2, limit=2)] == ids[2:4]
    assert alpha.store.get(ids[0]).statement.body.text == "0"
    assert alpha.store.get("0" * 64) is None
    assert len(alpha.store.entries(kind="note", lab="alpha")) == 5
    assert alpha.store.entries(kind="vote") == []


def sign_statement_id(env: Envelope) -> str:
    from protocol.canonical import entry_id

    return entry_id(env.payload_bytes())


def test_batch_limit(network):
    from node.store import MAX_BATCH

    with pytest.raises(OversizeError):
        network[1].store.ingest([{}] * (MAX_BATCH + 1))


def test_migrations_match_models(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    store = Store.open(db_url)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), m.metadata)
    store.close()
    assert diff == []


def test_unreachable_database_is_a_clear_error(tmp_path):
    from node.errors import StoreError

    with pytest.raises(StoreError, match="does not exist"):
        Store.open(f"sqlite:///{tmp_path}/missing/dir/x.db")
    with pytest.raises(StoreError, match="unsupported database"):
        Store.open("mysql://x/y")


def test_signed_entry_id_is_the_digest_of_its_payload():
    # The store keys entries by this id (spec §2.5); the cases above build entries this way.
    st = build_statement(
        network="0" * 64, lab="a", seq=1, prev=None, issued_at=NOW, kind="note", body={"text": "x"}
    )
    env, eid = sign_statement(st, SigningKey.generate())
    assert sign_statement_id(env) == eid
