"""Durable peer misbehaviour records on both database backends: what a hostile peer can put
into them, concurrent writers, retention, the migration, the read endpoint and the CLI.

(Records produced by real hostile peers through sync, and their survival across a restart,
are tested in test_sync.py.)
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from http_nodes import ThreadedNode

from node.cli import main
from node.errors import StoreError
from node.home.netsetup import observer_key
from node.store import MisbehaviourRecord, Store
from node.store.engine import alembic_config
from protocol.errors import ConfigurationError

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _record(store: Store, peer: str, n: int, **kw) -> MisbehaviourRecord:
    return store.record_misbehaviour(
        peer, kw.pop("code", "unknown-key"), kw.pop("reason", f"refused #{n}"),
        url=kw.pop("url", f"http://{peer}.example/v1/feeds/x?after={n}"), now=T0 + timedelta(seconds=n), **kw
    )


def test_hostile_text_is_cut_and_made_storable(db_url) -> None:
    with Store.open(db_url) as store:
        rec = store.record_misbehaviour(
            "gamma",
            "bad-feed-page",
            "item 0 is ('la\x00b', 1)\ud800" + "y" * 2000,
            url="http://gamma.example/v1/feeds/" + "z" * 1000,
            lab="l\x00" * 100,
            seq=2**70,  # beyond BIGINT: kept only in the reason
            entry_id="e" * 100,
            now=T0,
        )
        [stored] = store.misbehaviour("gamma")
    assert stored == rec
    assert len(rec.reason) == 500 and rec.reason.endswith("…") and rec.reason.startswith("item 0 is ('la\ufffdb', 1)?")
    assert "\x00" not in rec.lab and len(rec.lab) == 64
    assert len(rec.url) == 512 and len(rec.entry_id) == 64
    assert rec.seq is None and rec.at == T0 and rec.serial == 1


def test_retention_keeps_the_newest_per_peer_only(db_url) -> None:
    with Store.open(db_url) as store:
        store.misbehaviour_per_peer = 4
        for n in range(1, 11):
            _record(store, "gamma", n)
        _record(store, "beta", 11, code="equivocation", lab="beta", seq=7, entry_id="ab" * 32)
        assert [r.serial for r in store.misbehaviour("gamma")] == [10, 9, 8, 7]
        assert [r.reason for r in store.misbehaviour("gamma", limit=2)] == ["refused #10", "refused #9"]
        # Every peer's, newest first by time; another peer's records are never pruned by gamma's.
        assert [(r.peer, r.serial) for r in store.misbehaviour(limit=3)] == [("beta", 1), ("gamma", 10), ("gamma", 9)]
        counts = {p: (c.total, c.kept, c.last_at) for p, c in store.misbehaviour_counts().items()}
        assert counts == {"beta": (1, 1, T0 + timedelta(seconds=11)), "gamma": (10, 4, T0 + timedelta(seconds=10))}


def test_retention_below_one_is_refused_and_writes_nothing(db_url) -> None:
    with Store.open(db_url) as store:
        store.misbehaviour_per_peer = 0
        with pytest.raises(ConfigurationError, match="at least 1 record per peer"):
            _record(store, "gamma", 1)
        assert store.misbehaviour() == [] and store.misbehaviour_counts() == {}


def test_concurrent_writers_in_two_processes_get_contiguous_serials(db_url) -> None:
    # Two Store objects stand for two processes (server and CLI) on one database.
    stores = [Store.open(db_url), Store.open(db_url)]
    errors: list[BaseException] = []

    def write(store: Store, k: int) -> None:
        try:
            for n in range(10):
                _record(store, "gamma", 100 * k + n)
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(stores[k % 2], k)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert sorted(r.serial for r in stores[0].misbehaviour("gamma", limit=1000)) == list(range(1, 61))
        assert stores[1].misbehaviour_counts()["gamma"].total == 60
    finally:
        for s in stores:
            s.close()


def _alembic(store: Store, command_name: str, revision: str) -> None:
    from alembic import command

    cfg = alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, command_name)(cfg, revision)


def test_migration_0002_upgrades_a_database_with_data_and_can_be_undone(network) -> None:
    alpha = network[0]
    alpha.publish("note", {"text": "kept"})
    _record(alpha.store, "gamma", 1)
    heads, url = alpha.store.heads(), alpha.store.url
    _alembic(alpha.store, "downgrade", "0001")
    with pytest.raises(StoreError, match="at revision 0001, expected 0003: migrate it"):
        Store.open(url, migrate=False)
    with Store.open(url) as store:
        assert store.heads() == heads and store.misbehaviour() == []
        assert _record(store, "gamma", 2).serial == 1


def test_read_endpoint_for_members_and_observers(network, tmp_path) -> None:
    alpha = network[0]
    for n in range(1, 4):
        _record(alpha.store, "gamma", n)
    _record(alpha.store, "beta", 4, code="bad-feed-page", lab="beta", seq=9)
    regulator = observer_key(tmp_path / "net", "regulator")
    with ThreadedNode(alpha) as node, node.client(regulator, "regulator") as c:
        status, _, raw = c.request("GET", "/v1/misbehaviour")
        doc = json.loads(raw)
        assert status == 200
        assert [(r["peer"], r["serial"]) for r in doc["records"]] == [("beta", 1), ("gamma", 3), ("gamma", 2), ("gamma", 1)]
        assert doc["records"][0] == {
            "peer": "beta", "serial": 1, "at": "2025-03-01T12:00:04Z", "code": "bad-feed-page",
            "reason": "refused #4", "url": "http://beta.example/v1/feeds/x?after=4", "lab": "beta", "seq": 9,
            "entry_id": None,
        }
        assert doc["counts"] == {
            "beta": {"total": 1, "kept": 1, "last_at": "2025-03-01T12:00:04Z"},
            "gamma": {"total": 3, "kept": 3, "last_at": "2025-03-01T12:00:03Z"},
        }
        status, _, raw = c.request("GET", "/v1/misbehaviour", params={"peer": "gamma", "limit": 1})
        doc = json.loads(raw)
        assert [r["serial"] for r in doc["records"]] == [3] and list(doc["counts"]) == ["gamma"]
        # Without a sync loop /v1/status has no peer sync state, but still the recorded counts.
        assert c.status().misbehaviour["gamma"].total == 3
        for params, code in (({"limit": 0}, "invalid-request"), ({"peer": "Not A Lab"}, "invalid-request")):
            status, _, raw = c.request("GET", "/v1/misbehaviour", params=params)
            assert (status, json.loads(raw)["code"]) == (400, code), raw
        r = httpx.get(node.url + "/v1/misbehaviour")
        assert r.status_code == 401 and r.json()["code"] == "unsigned-request"


def test_cli_status_shows_counts_per_peer(network, capsys) -> None:
    alpha = network[0]
    assert main(["status", "--home", str(alpha.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["misbehaviour"] == {}
    alpha.store.misbehaviour_per_peer = 2
    for n in range(1, 4):
        _record(alpha.store, "gamma", n)
    assert main(["status", "--home", str(alpha.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["misbehaviour"] == {
        "gamma": {"total": 3, "kept": 2, "last_at": "2025-03-01T12:00:03Z"}
    }
    assert main(["status", "--home", str(alpha.path)]) == 0
    out = capsys.readouterr().out
    assert "peer gamma" in out and "3 refused (2 kept), last 2025-03-01T12:00:03Z" in out, out
