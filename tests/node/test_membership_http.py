"""Roster pins over real nodes (spec §7.7): the roster ceremony's CLI pins every lab's feed at
the drafting node's heads, and a `tripwire serve` process refuses a removed lab's entry
back-dated to before its removal, with the code ``revoked``, over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from http_nodes import NodeProcess

from node.cli import main
from node.home import NodeHome
from node.home.netsetup import DEMO_POLICY, create_network
from node.net.client import PeerClient
from node.net.process import free_ports
from protocol.canonical import format_time
from protocol.entries import NoteBody
from protocol.feed import FeedWriter, Head

LABS = ["alpha", "beta", "gamma"]
#: Fixed past instants (entries are never dated ahead of the node's clock).
GENESIS = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)


def _cli(*args: str | Path) -> None:
    assert main([str(a) for a in args]) == 0


@pytest.fixture
def net(tmp_path: Path) -> Iterator[tuple[Path, list[int]]]:
    """Three labs; gamma has published one entry, which alpha holds; homes closed."""
    ports = free_ports(len(LABS))
    homes = create_network(tmp_path / "net", LABS, ports=ports, issued_at=GENESIS)
    alpha, beta, gamma = homes
    gamma.publish("note", {"text": "gamma's last word"}, now=GENESIS + timedelta(hours=1))
    alpha.store.ingest(gamma.store.feed("gamma"))
    beta.store.ingest(gamma.store.feed("gamma"))
    for h in homes:
        _cli("identity", "--home", h.path, "--out", tmp_path / f"{h.lab}.json")
        h.close()
    yield tmp_path / "net", ports


def _draft(tmp: Path, out: Path, *extra: str) -> dict[str, object]:
    _cli("roster", "draft", "--home", tmp / "net" / "alpha", "--out", out, "--network-name", "tripwire-test",
         "--lab", tmp / "alpha.json", "--lab", tmp / "beta.json", "--pause-weight", "2", "--resume-weight", "2",
         "--roster-threshold", "2", "--policy", DEMO_POLICY,
         "--expires", format_time(GENESIS + timedelta(days=300)), *extra)
    draft: dict[str, object] = json.loads(out.read_text())
    return draft


def test_roster_update_draft_pins_every_lab_at_the_nodes_heads(tmp_path: Path, net: tuple[Path, list[int]]) -> None:
    root, _ = net
    with NodeHome.open(root / "alpha") as alpha:
        gamma_head = alpha.store.heads()["gamma"]
    draft = _draft(tmp_path, tmp_path / "v2.json")
    assert draft["pins"] == [
        {"lab": "alpha", "seq": 0, "entry_id": None},
        {"lab": "beta", "seq": 0, "entry_id": None},
        {"lab": "gamma", "seq": 1, "entry_id": gamma_head.entry_id},
    ]
    assert "pins" not in _draft(tmp_path, tmp_path / "v2-unpinned.json", "--no-pins")


def test_removed_lab_backdated_entry_refused_over_http(tmp_path: Path, net: tuple[Path, list[int]]) -> None:
    root, ports = net
    # v2 removes gamma; alpha drafts it (pinning gamma at seq 1), alpha and beta sign it.
    draft = tmp_path / "v2.json"
    _draft(tmp_path, draft)
    _cli("roster", "sign", draft, "--home", root / "alpha", "--out", tmp_path / "s-alpha.json")
    _cli("roster", "sign", tmp_path / "s-alpha.json", "--home", root / "beta", "--out", tmp_path / "v2-signed.json")
    _cli("roster", "install", tmp_path / "v2-signed.json", "--home", root / "alpha")
    with NodeHome.open(root / "gamma") as gamma:
        network, gamma_key, head = gamma.store.network_id(), gamma.key, gamma.store.heads()["gamma"]
    with NodeHome.open(root / "beta") as beta:
        beta_key = beta.key
    with NodeHome.open(root / "alpha") as alpha:
        v2_issued = alpha.store.roster_chain().current.issued
    # gamma's stolen or still-held key writes seq 2 dated before its removal took effect.
    backdated = v2_issued - timedelta(hours=1)
    env, _ = FeedWriter(network, "gamma", gamma_key, Head(head.seq, head.entry_id)).append(
        "note", NoteBody(text="still here"), format_time(backdated)
    )
    node = NodeProcess(root / "alpha", ports[0], env={"TRIPWIRE_SYNC__INTERVAL_S": "3600"})
    try:
        node.start()
        with PeerClient(node.url, beta_key, "beta", timeout=10) as c:
            [result] = c.post_envelopes([env])
            assert (result.status, result.code) == ("rejected", "revoked")
            assert "lab 'gamma' is not in roster v2 or later" in (result.reason or "")
            # One envelope alone is answered with its problem document (RFC 9457).
            status, _, body = c.request("POST", "/v1/envelopes", content=json.dumps(env.to_dict()).encode())
            problem = json.loads(body)
            assert (status, problem["code"], problem["type"]) == (422, "revoked", "urn:tripwire:problem:revoked")
            # Nothing was stored; gamma's pinned history is still served.
            assert c.heads()["gamma"].seq == 1
            assert len(c.feed("gamma").envelopes) == 1
    finally:
        node.stop()
    assert "Traceback" not in node.output()
