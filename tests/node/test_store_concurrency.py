"""Several processes on one SQLite home, and a node killed with SIGKILL mid-ingest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from node.home import NodeHome
from node.store import Store
from protocol.canonical import entry_id

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_py(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def make_feed(home, n: int) -> list:
    """n chained entries of the home's lab, signed in memory (faster than n publishes)."""
    from protocol.feed import FeedWriter

    w = FeedWriter(home.store.network_id(), home.lab, home.key)
    return [w.append("note", {"text": str(i)}, "2025-06-01T00:00:00Z")[0] for i in range(n)]


def check_chain(store: Store, lab: str, n: int) -> None:
    envs = store.feed(lab, limit=n + 10)
    assert len(envs) == n
    prev = None
    for seq, env in enumerate(envs, 1):
        st = json.loads(env.payload_bytes())
        assert (st["seq"], st["prev"]) == (seq, prev)
        prev = entry_id(env.payload_bytes())
    assert store.log_size() == store.heads()[lab].seq if len(store.heads()) == 1 else True


PUBLISH = """
import sys
from node.home import NodeHome
h = NodeHome.open(sys.argv[1])
for i in range(int(sys.argv[2])):
    h.publish("note", {"text": f"{sys.argv[3]}-{i}"})
h.close()
print("done")
"""


def test_two_processes_publish_into_one_home(sqlite_network):
    alpha = sqlite_network[0]
    path = str(alpha.path)
    alpha.close()
    procs = [run_py(PUBLISH, path, "25", name) for name in ("cli", "server")]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with NodeHome.open(path) as h:
        assert h.store.heads()["alpha"].seq == 50
        assert h.store.equivocations() == []
        check_chain(h.store, "alpha", 50)
        texts = sorted(e.statement.body.text for e in h.store.entries())
        assert len(set(texts)) == 50


INGEST = """
import json, sys
from node.home import NodeHome
from protocol.envelope import Envelope
h = NodeHome.open(sys.argv[1])
envs = [Envelope.parse(e) for e in json.load(open(sys.argv[2]))]
statuses = []
for i in range(0, len(envs), 20):
    statuses += [o.status for o in h.store.ingest(envs[i:i + 20])]
print(json.dumps(statuses))
"""


def test_two_processes_ingest_the_same_entries(sqlite_network, tmp_path):
    alpha, beta, _ = sqlite_network
    batch = tmp_path / "envs.json"
    batch.write_text(json.dumps([e.to_dict() for e in make_feed(alpha, 120)]))
    path = str(beta.path)
    beta.close()
    procs = [run_py(INGEST, path, str(batch)) for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    for statuses in results:
        assert set(statuses) <= {"accepted", "duplicate"}
    assert all(a != "accepted" or b != "accepted" for a, b in zip(*results, strict=True))
    with NodeHome.open(path) as h:
        check_chain(h.store, "alpha", 120)
        assert h.store.log_size() == 120


KILLABLE = """
import json, sys
from node.home import NodeHome
from protocol.envelope import Envelope
h = NodeHome.open(sys.argv[1])
envs = [Envelope.parse(e) for e in json.load(open(sys.argv[2]))]
for i in range(0, len(envs), 25):
    h.store.ingest(envs[i:i + 25])
    print(i + 25, flush=True)
"""


def test_sigkill_mid_ingest_loses_nothing_committed_and_stores_nothing_partial(sqlite_network, tmp_path):
    alpha, beta, _ = sqlite_network
    envs = make_feed(alpha, 600)
    batch = tmp_path / "envs.json"
    batch.write_text(json.dumps([e.to_dict() for e in envs]))
    path = str(beta.path)
    beta.close()
    p = run_py(KILLABLE, path, str(batch))
    committed = 0
    assert p.stdout is not None
    deadline = time.monotonic() + 60
    while committed < 100 and time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        committed = int(line)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert committed >= 100, p.stderr.read() if p.stderr else ""
    with NodeHome.open(path) as h:
        n = h.store.heads()["alpha"].seq
        # Everything reported committed is there, and whole batches only.
        assert n >= committed and n % 25 == 0
        check_chain(h.store, "alpha", n)
        assert h.store.log_size() == n and h.store.held_count() == 0
        assert len(h.store.entries()) == n
        # The log's leaves match the stored entries, so proofs still verify after the crash.
        eid = h.store.entries()[-1].entry_id
        assert h.store.inclusion_proof(eid)[0] == n - 1
        outs = h.store.ingest(envs)
        assert [o.status for o in outs] == ["duplicate"] * n + ["accepted"] * (600 - n)
