"""Fixtures: signed synthetic histories built with protocol only (no node needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reports.bundle import EvidenceBundle, VerificationReport, verify_bundle
from reports.fixtures import SyntheticNetwork, synthetic_network

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"


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
