"""Store-only batched ingest rate versus bare Ed25519 verification, measured in the same run.

    .venv/bin/python bench/ingest_store.py [--entries 3000] [--batch 500] [--repeats 3] [--pg-url URL]

Every entry must be verified once, so bare ``cryptography`` Ed25519 verification of the
same signatures is the ceiling; the target is a ratio >= 0.5. Timings are the minimum of
``--repeats`` runs (the machine is shared and noisy); each ingest run starts from an empty
database. PostgreSQL is measured when the server at ``--pg-url`` answers.
"""

from __future__ import annotations

import argparse
import base64
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# _nodes puts the repository root first, so bench/protocol.py cannot shadow the package.
from _nodes import PG_DEFAULT, pg_schemas

from node.home.netsetup import create_network
from node.store import Store
from protocol.envelope import Envelope, pae
from protocol.feed import FeedWriter


def best(fn: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def make_entries(work: Path, n: int) -> tuple[Envelope, list[Envelope]]:
    homes = create_network(work / "net", ["alpha", "beta", "gamma"], ports=[1, 2, 3], seed=7)
    genesis = homes[0].store.roster_chain().versions[0].envelope
    writers = [FeedWriter(h.store.network_id(), h.lab, h.key) for h in homes]
    envs = []
    for i in range(n):
        w = writers[i % 3]
        envs.append(w.append("note", {"text": f"benchmark entry {i}", "refs": []}, "2025-06-01T00:00:00Z")[0])
    for h in homes:
        h.close()
    return genesis, envs


def bare_verify(envs: list[Envelope], keys: dict[str, object]) -> None:
    for e in envs:
        s = e.signatures[0]
        keys[s.keyid]._key.verify(base64.b64decode(s.sig), pae(e.payloadType, e.payload_bytes()))  # type: ignore[attr-defined]


def ingest_rate(
    url_factory: Callable[[], str], genesis: Envelope, envs: list[Envelope], batch: int, repeats: int
) -> float:
    times = []
    for _ in range(repeats):
        store = Store.open(url_factory())
        store.install_genesis(genesis)
        t = time.perf_counter()
        for i in range(0, len(envs), batch):
            outs = store.ingest(envs[i : i + batch])
            assert all(o.status == "accepted" for o in outs), outs[0]
        times.append(time.perf_counter() - t)
        assert store.log_size() == len(envs)
        store.close()
    return len(envs) / min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pg-url", default=PG_DEFAULT)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tripwire-bench-"))
    try:
        genesis, envs = make_entries(work, args.entries)
        from protocol.roster import verify_genesis

        keys = {k.keyid: k.public() for lab in verify_genesis(genesis).roster.labs for k in lab.keys}
        verify_s = best(lambda: bare_verify(envs, keys), args.repeats)
        verify_rate = len(envs) / verify_s
        print(f"bare Ed25519 verify (cryptography): {verify_rate:,.0f}/s  ({len(envs)} signatures)")
        counter = iter(range(10**6))
        sqlite_rate = ingest_rate(
            lambda: f"sqlite:///{work / f'bench{next(counter)}.db'}", genesis, envs, args.batch, args.repeats
        )
        print(
            f"store ingest SQLite (batch {args.batch}): {sqlite_rate:,.0f}/s  ratio {sqlite_rate / verify_rate:.2f}"
        )
        pg = pg_schemas(args.pg_url)
        if pg is None:
            print(f"store ingest PostgreSQL: skipped ({args.pg_url} unreachable)")
        else:
            new, cleanup = pg
            try:
                pg_rate = ingest_rate(new, genesis, envs, args.batch, args.repeats)
            finally:
                cleanup()
            print(
                f"store ingest PostgreSQL (batch {args.batch}): {pg_rate:,.0f}/s  ratio {pg_rate / verify_rate:.2f}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
