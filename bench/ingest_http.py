"""Batched POST /v1/envelopes into a serving node, as a ratio to bare Ed25519 verification.

    .venv/bin/python bench/ingest_http.py [--entries 3000] [--batch 500] [--repeats 3] [--pg-url URL]

A lab client signs each request (RFC 9421) and posts pre-signed, chained entries of its own
feed in batches to another lab's `tripwire serve` process (no sync); every repeat starts
from a fresh database. The baseline is bare `cryptography` Ed25519 verification of the same
signatures in the same run; both are the minimum over repeats (the machine is shared).
Target: ratio >= 0.5.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _nodes import PG_DEFAULT, Serve, bare_verify_rate, pg_schemas, signed_notes

from node.home.netsetup import create_network
from node.net.client import PeerClient
from node.net.process import free_ports


def run_once(make_url: Callable[[], str] | None, n: int, batch: int) -> tuple[float, list, object]:
    with tempfile.TemporaryDirectory() as d:
        ports = free_ports(2)
        urls = [make_url(), make_url()] if make_url else None
        homes = create_network(Path(d), ["alpha", "beta"], ports=ports, database_urls=urls, seed="bench")
        envs = signed_notes(homes[1], n)
        key = homes[1].key
        for h in homes:
            h.close()
        srv = Serve(Path(d) / "alpha", ports[0], sync=False,
                    env={"TRIPWIRE_SERVER__RATE_LIMIT_PER_MINUTE": "1000000",
                         "TRIPWIRE_SERVER__MAX_BODY_BYTES": str(64 * 1024 * 1024)})
        try:
            srv.wait()
            with PeerClient(srv.url, key, "beta", timeout=300) as c:
                t = time.perf_counter()
                for i in range(0, n, batch):
                    res = c.post_envelopes(envs[i : i + batch])
                    bad = [r for r in res if r.status != "accepted"]
                    if bad:
                        raise RuntimeError(f"not accepted: {bad[0]}")
                elapsed = time.perf_counter() - t
        finally:
            srv.stop()
        return elapsed, envs, key


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pg-url", default=PG_DEFAULT)
    args = ap.parse_args()
    backends: list[tuple[str, Callable[[], str] | None]] = [("SQLite", None)]
    pg = pg_schemas(args.pg_url)
    if pg is not None:
        backends.append(("PostgreSQL", pg[0]))
    best = {name: float("inf") for name, _ in backends}
    verify = 0.0
    try:
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits all alike
            for name, make in backends:
                elapsed, envs, key = run_once(make, args.entries, args.batch)
                best[name] = min(best[name], elapsed)
                verify = max(verify, bare_verify_rate(envs, key, 1))
    finally:
        if pg is not None:
            pg[1]()
    print(f"bare Ed25519 verify: {verify:,.0f}/s (best of {args.repeats})")
    for name, _ in backends:
        rate = args.entries / best[name]
        print(f"HTTP ingest {name} (batch {args.batch}): {rate:,.0f}/s  ratio {rate / verify:.2f}")
    if pg is None:
        print(f"HTTP ingest PostgreSQL: skipped ({args.pg_url} unreachable)")


if __name__ == "__main__":
    main()
