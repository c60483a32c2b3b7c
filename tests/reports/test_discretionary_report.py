"""Reports on pauses a lab asked for on its own judgement (spec §6.11) and on scoped pauses
(§6.10): explained in the same plain terms as a breach, and verified offline."""

from __future__ import annotations

import hashlib
import re

import pytest
from synthetic import DISCRETIONARY_EVIDENCE, synthetic_network

from reports.bundle import VerificationReport, verify_bundle
from reports.render import render_html


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _verified(outcome: str) -> VerificationReport:
    rep = verify_bundle(synthetic_network(pause=False, discretionary=outcome).bundle())
    failed = [(c.name, c.details) for c in rep.checks if c.status == "fail"]
    assert rep.verified is not None and not failed, failed
    return rep


@pytest.fixture(scope="module")
def certified() -> VerificationReport:
    return _verified("certified")


@pytest.fixture(scope="module")
def expired() -> VerificationReport:
    return _verified("expired")


def test_certified_discretionary_pause_is_explained_with_its_evidence_and_scope(certified: VerificationReport) -> None:
    assert certified.verified is not None
    a = certified.verified.analysis
    assert a.status == "paused"
    (p,) = a.proposals
    assert p.discretionary and p.status == "paused" and p.certificate is not None
    text = _text(render_html(certified.verified, report=certified))
    summary = text[text.index("Summary") : text.index("About this policy")]
    assert "asked the other labs to pause on its own judgement" in summary
    assert "cites 2 document(s)" in summary
    assert "training runs once their compute reaches 1E+20 FLOP" in summary
    assert "3 in favour, 0 against" in summary and "certified" in summary
    # the evidence by digest, so a reader holding a copy can check it is the one cited
    for name, data in DISCRETIONARY_EVIDENCE:
        assert name in text and hashlib.sha256(data).hexdigest() in text
    # the roster appendix states the discretionary quorum and the deadline, as claims
    assert "discretionary) needs a vote weight of 3" in text
    assert "count for 3600 seconds" in text
    assert "Pause asked for on Frontier Lab B 's own judgement, citing 2 document(s)" in text  # the timeline


def test_expired_request_paused_nothing_and_late_votes_do_not_count(expired: VerificationReport) -> None:
    assert expired.verified is not None
    a = expired.verified.analysis
    (p,) = a.proposals
    assert p.status == "expired" and p.certificate is None
    assert len(p.votes) == 2 and len(p.late_votes) == 1
    assert p.tally.weight == 1  # the late vote is shown, not counted
    assert a.status != "paused" and not a.open_proposals
    text = _text(render_html(expired.verified, report=expired))
    assert "Expired" in text
    assert "without the required vote weight, so the request expired and paused nothing" in text
    assert "(not counted: after the voting deadline)" in text


def test_expiry_is_as_of_the_bundle_time_so_verifiers_agree() -> None:
    # Taken before the deadline, the same request is open; after it, expired. Either way the
    # bundle verifies: every party recomputes the state at the bundle's own generated_at.
    from datetime import timedelta

    from protocol.canonical import parse_time

    net = synthetic_network(pause=False, discretionary="expired")
    net.entries.pop()  # the late vote
    net.clock = parse_time(net.entries[-1].statement.issued_at) + timedelta(minutes=10)
    early = verify_bundle(net.bundle())
    assert early.verified is not None
    (p,) = early.verified.analysis.proposals
    assert p.status == "open" and early.verified.analysis.status == "alert"
    text = _text(render_html(early.verified, report=early))
    assert "voting closes on" in text
    net.clock += timedelta(hours=2)
    after = verify_bundle(net.bundle())
    assert after.verified is not None
    assert after.verified.analysis.proposals[0].status == "expired"
