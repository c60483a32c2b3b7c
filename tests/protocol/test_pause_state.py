"""The pause state machine (spec §6.6) against its vectors, and its order independence."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from protocol.envelope import Envelope
from protocol.pause import pause_state
from protocol.roster import RosterChain, verify_entry

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "specs" / "vectors" / "pause.json").read_text())
CHAIN = RosterChain.from_envelopes([Envelope.model_validate(e) for e in VECTORS["roster_chain"]])
CASES = VECTORS["cases"]


def _state(case: dict[str, Any], order: list[int] | None = None) -> dict[str, Any]:
    envs = [Envelope.model_validate(e) for e in case["entries"]]
    if order is not None:
        envs = [envs[i] for i in order]
    held = [verify_entry(e, CHAIN) for e in envs]
    ids = {e.entry_id for e in held}
    st = pause_state(held, CHAIN, heads=case["heads"], held_ids=ids.__contains__)
    return {
        "paused": st.paused,
        "active": sorted(st.active),
        "resumed": sorted(st.resumed),
        "flags": [{"kind": f.kind, "lab": f.lab, "code": f.code} for f in st.flags],
    }


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_pause_state_vector(case: dict[str, Any]) -> None:
    assert _state(case) == case["expected"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_pause_state_does_not_depend_on_delivery_order(case: dict[str, Any]) -> None:
    rng = random.Random(case["name"])
    n = len(case["entries"])
    for _ in range(10):
        order = list(range(n)) * 2  # duplicates too
        rng.shuffle(order)
        assert _state(case, order) == case["expected"]


def test_offline_party_without_the_feed_counts_the_unpublished_vote() -> None:
    """Step 7 works on what a party holds: without gamma's feed, nothing shows the vote at
    gamma's seq 1 was never published, so the certificate passes (and flips once the feed
    arrives — which is why nodes ship feeds with certificates)."""
    case = next(c for c in CASES if c["name"] == "unpublished_vote_not_counted")
    envs = [Envelope.model_validate(e) for e in case["entries"]]
    held = [verify_entry(e, CHAIN) for e in envs]
    without_gamma = [e for e in held if e.lab != "gamma"]
    assert pause_state(without_gamma, CHAIN, heads={"alpha": 5}).paused
    assert not pause_state(held, CHAIN, heads=case["heads"]).paused
