"""Fixtures: signed synthetic histories built with protocol only (no node needed)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from synthetic import DEMO_POLICY, T0, SyntheticNetwork, _result_body, synthetic_network

from node.home.netsetup import create_network, policy_digest_of
from reports.bundle import EvidenceBundle, VerificationReport, verify_bundle

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="session")
def node_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("net")
    labs = ["lab-a", "lab-b", "lab-c"]
    homes = create_network(
        root,
        labs,
        ports=[18701, 18702, 18703],
        policy_digest=policy_digest_of(DEMO_POLICY),
        seed=3,
        issued_at=T0 - timedelta(days=1),
    )
    try:
        for k in range(4):
            for i, h in enumerate(homes):
                acc = 0.05 + 0.1 * k + 0.05 * i
                body = _result_body(
                    model=f"model-{h.lab}",
                    step=100 * (k + 1),
                    flop=10 ** (18 + k),
                    acc=acc,
                    n=400,
                    started=T0 + timedelta(hours=k),
                )
                h.publish("eval_result", body, now=T0 + timedelta(hours=k, minutes=5 + i))
        for h in homes[1:]:
            outcomes = homes[0].store.ingest(h.store.feed(h.lab), now=T0 + timedelta(hours=6))
            assert all(o.status == "accepted" for o in outcomes), outcomes
        genesis = homes[0].store.roster_chain().envelopes()[0]
        (root / "genesis.json").write_text(json.dumps(genesis.to_dict()), encoding="utf-8")
    finally:
        for h in homes:
            h.close()
    return root


@pytest.fixture(scope="session")
def net() -> SyntheticNetwork:
    return synthetic_network(3, 8, equivocation=True)


@pytest.fixture(scope="session")
def bundle(net: SyntheticNetwork) -> EvidenceBundle:
    return net.bundle(audience="regulator")


@pytest.fixture(scope="session")
def verified(bundle: EvidenceBundle) -> VerificationReport:
    report = verify_bundle(bundle)
    assert report.ok, report.failures()
    return report


@pytest.fixture(scope="session")
def hostile_net() -> SyntheticNetwork:
    return synthetic_network(5, 6, hostile=True, equivocation=True, seed=7)


@pytest.fixture(scope="session")
def hostile_verified(hostile_net: SyntheticNetwork) -> VerificationReport:
    report = verify_bundle(hostile_net.bundle(audience="regulator"))
    assert report.ok, report.failures()
    return report
