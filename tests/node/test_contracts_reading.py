"""Reading a peer's unsigned answers: forward compatible, never lax.

A newer peer may add members to the documents of ``node.contracts``; this node's clients
ignore them (spec §8), but still refuse an answer that lacks a member or types one wrongly,
naming it. Envelopes and signed bodies inside a document are never pruned.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from node import contracts
from node.net.client import (
    PeerResponseError,
    parse_feed,
    parse_heads,
    parse_results,
    parse_roster,
    parse_status,
)
from protocol.errors import PeerDataError
from protocol.feed import Head

EID = "ab" * 32
ENVELOPE = {"payloadType": "application/vnd.tripwire.entry+json", "payload": "AA==",
            "signatures": [{"keyid": "k1", "sig": "c2ln"}]}


def _b(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def _feed(**changes: Any) -> dict[str, Any]:
    return {"lab": "alpha", "after": 0, "envelopes": [ENVELOPE], "head": {"seq": 1, "entry_id": EID}} | changes


def _status(**changes: Any) -> dict[str, Any]:
    return {
        "node": "alpha", "network": "n1",
        "roster": {"version": 1, "expires": "2030-01-01T00:00:00Z", "expired": False},
        "paused": False,
        "pause": {"paused": False, "certificates": [], "resumed": [], "expired": [], "roster_version": 1},
        "open_proposals": [], "pause_flags": [],
        "alerts": [{"entry_id": EID, "lab": "beta", "issued_at": "2029-01-01T00:00:00Z",
                    "body": {"text": "signed", "future_member": 1}}],
        "equivocations": [], "heads": {"alpha": {"seq": 3, "entry_id": EID}}, "log_size": 3,
        "time": "2029-01-01T00:00:01Z",
        "peers": {"beta": {"url": "http://b", "ok": True, "last_ok_s_ago": 1.0, "failures": 0, "last_error": None,
                           "retry_in_s": 0.0, "fetched": 2, "pushed": 1, "misbehaviour_total": 0,
                           "misbehaviour": []}},
        "misbehaviour": {},
    } | changes


# --- unknown members are ignored, at every level of a document -------------------------------------


def test_a_newer_peers_extra_members_are_ignored() -> None:
    heads = parse_heads(_b({"alpha": {"seq": 2, "entry_id": EID, "issued_at": "2029-01-01T00:00:00Z"}}))
    assert heads["alpha"].seq == 2
    page = parse_feed(_b(_feed(next_cursor="x", head={"seq": 1, "entry_id": EID, "size": 9})))
    assert (page.lab, page.after, page.head, len(page.envelopes)) == ("alpha", 0, Head(1, EID), 1)
    [one] = parse_results(_b({"status": "accepted", "seq": 4, "latency_ms": 3}))
    assert (one.status, one.seq) == ("accepted", 4)
    batch = parse_results(_b({"results": [{"status": "held", "hint": "later"}], "took_ms": 5}))
    assert [r.status for r in batch] == ["held"]
    roster = parse_roster(_b({"network": "n1", "version": 2, "expires": "2030-01-01T00:00:00Z", "expired": False,
                              "envelopes": [ENVELOPE], "mirrors": ["http://m"]}))
    assert roster.version == 2
    status = parse_status(_b(_status(uptime_s=5, roster={"version": 1, "expires": "2030-01-01T00:00:00Z",
                                                         "expired": False, "next": 2})))
    assert status.heads["alpha"].seq == 3 and status.peers["beta"].fetched == 2


def test_exactly_the_contract_still_parses_and_the_parsed_document_is_closed() -> None:
    status = parse_status(_b(_status()))
    assert status.to_json() == _status()
    doc = contracts.read_answer(contracts.StatusDocument, _b(_status(extra_section={"a": 1})))
    assert "extra_section" not in doc.to_json()  # dropped, not carried along


def test_signed_members_are_never_pruned() -> None:
    # An alert's body is the signed body as it is: a member unknown to this node stays.
    status = parse_status(_b(_status(newer=True)))
    assert status.alerts[0].body == {"text": "signed", "future_member": 1}
    # An envelope keeps its own closed schema (spec §3): an unknown member is refused, not dropped.
    with pytest.raises(PeerDataError):
        parse_feed(_b(_feed(envelopes=[ENVELOPE | {"extra": 1}])))
    with pytest.raises(ValidationError, match=r"envelopes\.0\.extra"):
        contracts.read_answer(contracts.FeedPage, _feed(envelopes=[ENVELOPE | {"extra": 1}]))


def test_drop_unknown_touches_only_document_members() -> None:
    data = _status(extra=1, alerts=[{"entry_id": EID, "lab": "b", "issued_at": "t", "body": {"k": 1}, "x": 2}])
    pruned = contracts.drop_unknown(contracts.StatusDocument, data)
    assert "extra" not in pruned and pruned["alerts"] == [{"entry_id": EID, "lab": "b", "issued_at": "t",
                                                           "body": {"k": 1}}]
    assert data["extra"] == 1  # the input is not modified
    # Wrong shapes are left for validation to refuse, not repaired.
    assert contracts.drop_unknown(contracts.FeedPage, [1, 2]) == [1, 2]
    assert contracts.drop_unknown(contracts.FeedPage, _feed(head="nope"))["head"] == "nope"


# --- a missing or wrongly typed member is still refused, by name -------------------------------------


@pytest.mark.parametrize(("parse", "body", "where"), [
    (parse_feed, _feed(after="many", extra=1), "at after:"),
    (parse_feed, {k: v for k, v in _feed(extra=1).items() if k != "lab"}, "at lab: Field required"),
    (parse_feed, _feed(head={"seq": "x", "entry_id": EID, "new": 1}), "at head.seq:"),
    (parse_heads, {"alpha": {"entry_id": EID, "new": 1}}, "at alpha.seq: Field required"),
    (parse_heads, {"alpha": {"seq": 1, "entry_id": "not hex", "new": 1}}, "at alpha.entry_id:"),
    (parse_roster, {"network": "n1", "version": 2, "expired": False, "envelopes": [], "x": 1},
     "at expires: Field required"),
    (parse_status, _status(extra=1, log_size="big"), "at log_size:"),
    (parse_status, {k: v for k, v in _status(extra=1).items() if k != "peers"}, "at peers: Field required"),
])
def test_missing_or_wrongly_typed_members_are_refused_by_name(parse: Any, body: Any, where: str) -> None:
    with pytest.raises(PeerResponseError, match="does not match the API contract") as e:
        parse(_b(body))
    assert where in e.value.message, e.value.message
    assert "extra" not in e.value.message  # the unknown member is not what is reported


def test_results_refuse_an_unknown_status_and_a_shapeless_answer() -> None:
    with pytest.raises(PeerResponseError, match="does not match the API contract"):
        parse_results(_b({"status": "maybe", "new": 1}))
    with pytest.raises(PeerResponseError, match="does not match the API contract"):
        parse_results(_b({"outcome": "accepted"}))


def test_invalid_json_is_named_as_such() -> None:
    with pytest.raises(PeerResponseError, match="invalid JSON"):
        parse_feed(b'{"lab": "alpha", "new": 1')


# --- the coordinator's sections are typed too ----------------------------------------------------


def _coordination(**changes: Any) -> dict[str, Any]:
    proposal = {
        "proposal_id": "p1", "action": "resume", "proposed_by": ["beta"], "entry_id": EID, "state": "open",
        "certificates": [], "weight": 1, "threshold": 2, "supporting": ["beta"], "objecting": [],
        "abstaining": [], "missing": ["alpha"], "my_vote": None, "pause_proposal": "p0",
        "scope": None, "covers": None, "deadline": None,
    }
    return {
        "rule": "manual",
        "policy": {"adopted": "sha256:" + "0" * 64, "loaded": True, "id": "pol", "version": 1, "error": None},
        "roster_expired": False,
        "pause": {"paused": False, "certificates": [], "resumed": [], "expired": [], "roster_version": 1},
        "proposals": [proposal], "plans": [], "verdicts": [], "results_judged": 0, "flags": [],
    } | changes


def test_coordination_and_forecasts_sections_parse_as_their_contracts() -> None:
    doc = parse_status(_b(_status(coordination=_coordination(), forecasts={"track": [], "forecasts": []})))
    assert isinstance(doc.coordination, contracts.CoordinationSection)
    (p,) = doc.coordination.proposals
    assert p.pause_proposal == "p0" and p.trigger is None
    # Written back, the members the resume proposal did not carry stay absent.
    assert "trigger" not in doc.coordination.to_json()["proposals"][0]
    assert isinstance(doc.forecasts, contracts.ForecastsSection)


def test_a_section_that_could_not_be_built_parses_as_its_error() -> None:
    doc = parse_status(_b(_status(coordination={"error": "store unreadable"}, forecasts={"error": "store unreadable"})))
    assert isinstance(doc.coordination, contracts.SectionError) and doc.coordination.error == "store unreadable"
    assert isinstance(doc.forecasts, contracts.SectionError)


def test_members_a_newer_peer_adds_inside_the_coordination_section_are_ignored() -> None:
    c = _coordination(future_member=1)
    c["proposals"][0]["future_member"] = {"x": 1}
    doc = parse_status(_b(_status(coordination=c)))
    assert isinstance(doc.coordination, contracts.CoordinationSection)
    assert "future_member" not in doc.coordination.proposals[0].to_json()


@pytest.mark.parametrize(
    ("change", "field"),
    [({"rule": "sometimes"}, "rule"), ({"roster_expired": "maybe"}, "roster_expired"), ({"policy": {"adopted": "x"}}, "loaded")],
)
def test_a_coordination_section_with_a_wrong_member_is_refused_naming_it(change: dict[str, Any], field: str) -> None:
    with pytest.raises(PeerResponseError, match=field):
        parse_status(_b(_status(coordination=_coordination(**change))))
