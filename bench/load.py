"""Load: C concurrent signed clients against one `tripwire serve` for T seconds (loopback).

    .venv/bin/python bench/load.py [--clients 50] [--seconds 30]

The node holds 1,000 entries. Clients are roster members (5 labs, the rest observers), each
with its own key, in one asyncio process; each loops until the deadline over a mix of reads
(heads, a 50-entry feed page, status, roster) and, for labs, re-pushes of a 20-envelope
batch (duplicates). The per-caller rate limit is raised for the run: this measures serving
capacity, not the limiter. Reported: requests, errors (any non-2xx or failure: target 0),
throughput, p50/p99 latency, and the bare Ed25519 verify rate of the same machine for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from _nodes import Serve, bare_verify_rate, signed_notes

from node.home.netsetup import create_network, observer_key
from node.net.client import AsyncPeerClient
from node.net.process import free_ports


async def client(c: AsyncPeerClient, is_lab: bool, batch: list, deadline: float, lat: list, errors: list) -> None:
    rnd = random.Random(c.lab_id)
    ops = ["heads", "feed", "status", "roster"] + (["push"] if is_lab else [])
    while time.monotonic() < deadline:
        op = rnd.choice(ops)
        t = time.perf_counter()
        try:
            if op == "heads":
                await c.heads()
            elif op == "feed":
                await c.feed("lab-0", after=rnd.randrange(0, 950), limit=50)
            elif op == "status":
                await c.status()
            elif op == "roster":
                await c.roster()
            else:
                res = await c.post_envelopes(batch)
                if any(r.status != "duplicate" for r in res):
                    raise RuntimeError("unexpected push result")
            lat.append(time.perf_counter() - t)
        except Exception as e:
            errors.append(f"{op}: {type(e).__name__}: {e}"[:200])


async def run(url: str, keys: list, batch: list, seconds: float) -> tuple[list, list, float]:
    lat: list[float] = []
    errors: list[str] = []
    clients = [AsyncPeerClient(url, k, who, timeout=30) for who, k, _ in keys]
    deadline = time.monotonic() + seconds
    t = time.perf_counter()
    await asyncio.gather(*(client(c, is_lab, batch, deadline, lat, errors)
                           for c, (_, _, is_lab) in zip(clients, keys, strict=True)))
    elapsed = time.perf_counter() - t
    await asyncio.gather(*(c.aclose() for c in clients))
    return lat, errors, elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()
    labs = [f"lab-{i}" for i in range(5)]
    observers = [f"obs-{i}" for i in range(max(0, args.clients - len(labs) + 1))]
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        ports = free_ports(len(labs))
        homes = create_network(root, labs, ports=ports, observers=observers, seed="load")
        envs = signed_notes(homes[0], 1000)
        homes[0].store.ingest(envs)
        rate = bare_verify_rate(envs, homes[0].key, 3)
        keys = [(h.lab, h.key, True) for h in homes[1:]] + [(o, observer_key(root, o), False) for o in observers]
        keys = keys[: args.clients]
        for h in homes:
            h.close()
        srv = Serve(root / "lab-0", ports[0], sync=False, env={"TRIPWIRE_SERVER__RATE_LIMIT_PER_MINUTE": "1000000"})
        try:
            srv.wait()
            lat, errors, elapsed = asyncio.run(run(srv.url, keys, envs[:20], args.seconds))
        finally:
            srv.stop()
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
    print(f"bare Ed25519 verify (1 core): {rate:,.0f}/s")
    print(f"{len(keys)} clients x {args.seconds:.0f}s: {len(lat):,} ok requests, {len(errors)} errors, "
          f"{len(lat) / elapsed:,.0f} req/s")
    print(f"latency p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, max {lat[-1] * 1000:.1f} ms, "
          f"mean {statistics.fmean(lat) * 1000:.1f} ms")
    for e in errors[:5]:
        print("  error:", e)


if __name__ == "__main__":
    main()
