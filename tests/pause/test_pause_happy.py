"""Three real nodes: a breaching result becomes a certified pause everywhere, automatically."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pausekit import Node, count, make_network, paused_locally, result_body, settled, wait_until

from node.contracts import CoordinationSection, ForecastsSection
from node.net.client import parse_status
from protocol.quorum import verify_certificate

LABS = ["alpha", "beta", "gamma"]


@pytest.fixture
def net(tmp_path: Path):
    # The origin is alive: a generous propose delay shows nobody else duplicates its entries.
    homes = make_network(tmp_path / "net", LABS, propose_delay_s=3.0)
    nodes = [Node(h).start() for h in homes]
    yield homes, nodes
    for n in nodes:
        n.stop()
    for h in homes:
        h.close()


def test_breach_becomes_certified_pause_on_every_node(net) -> None:
    homes, nodes = net
    t0 = time.monotonic()
    result = homes[0].publish("eval_result", result_body("0.65"))
    wait_until(lambda: all(paused_locally(h) for h in homes), 15, what="a pause certificate on every node")
    print(f"breach to pause on every node: {time.monotonic() - t0:.2f}s (bench/time_to_pause.py measures it)")

    for h in homes:
        chain = h.store.roster_chain()
        certs = h.store.entries(kind="pause_certificate")
        assert certs, h.lab
        for c in certs:
            q = verify_certificate(c.statement.body, chain)
            assert q.action == "pause" and q.weight >= q.threshold
        (prop,) = {p.statement.body.proposal_id for p in h.store.entries(kind="pause_proposal")}
        assert c.statement.body.proposal.payload_bytes()  # the proposal travels in the certificate
        trigger = h.store.entries(kind="pause_proposal")[0].statement.body.trigger
        assert trigger.result == result and trigger.lab == "alpha" and trigger.rule == "arithmetic-acc"
        assert prop == c.statement.body.proposal_id
    # Every node serves the pause at /v1/status, signed request by a roster member.
    for n in nodes:
        st = n.status()
        assert st["paused"] is True
        coord = st["coordination"]
        assert coord["pause"]["paused"] is True
        (p,) = [p for p in coord["proposals"] if p["action"] == "pause"]
        assert p["state"] == "paused" and p["trigger_check"]["status"] == "breach"
        # A pause proposal carries the pause members and not the other actions' (absent, not null).
        assert {"trigger", "trigger_check", "discretionary", "rationale", "scope", "covers"} <= set(p)
        assert not {"plan", "pause_proposal"} & set(p)
        assert coord["coordinator"]["running"] is True and "forecasts" not in coord
        assert not [f for f in coord["flags"] if f["kind"] != "double-vote"]
        # The served sections are the typed contract, read back as a client reads them.
        doc = parse_status(json.dumps(st).encode())
        assert isinstance(doc.coordination, CoordinationSection) and isinstance(doc.forecasts, ForecastsSection)
        assert doc.coordination.to_json() == coord and doc.to_json() == st
    # An alert accompanies the breach (the rule's breach actions), published once by its lab.
    # Once every coordinator has nothing left to do, nobody duplicated what the origin did.
    wait_until(lambda: settled(nodes), 30, what="every coordinator settled")
    for h in homes:
        assert [a.lab for a in h.store.entries(kind="alert")] == ["alpha"]
        for lab in LABS:
            assert count(h, "vote", lab) <= 1
        assert count(h, "pause_proposal") == 1


def test_warn_gives_alert_and_no_proposal(net) -> None:
    homes, nodes = net
    rid = homes[1].publish("eval_result", result_body("0.40", stderr="0.01"))  # bound 0.41: warn
    wait_until(lambda: all(count(h, "alert") == 1 for h in homes), 10, what="the alert everywhere")
    wait_until(lambda: settled(nodes), 30, what="every coordinator settled")
    for h in homes:
        (a,) = h.store.entries(kind="alert")
        assert a.lab == "beta" and a.statement.body.result == rid and a.statement.body.verdict == "warn"
        assert count(h, "pause_proposal") == 0
        assert not paused_locally(h)
