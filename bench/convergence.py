"""Convergence of N `tripwire serve` processes when each lab publishes M entries.

    .venv/bin/python bench/convergence.py [--nodes 5] [--entries 2000] [--interval 1.0]

All N nodes start empty (genesis roster only) and are all answering /healthz before the
clock starts, so process start-up is not timed. At t0 every lab posts its M pre-signed
entries (untimed setup) to its own node in batches of 500, all labs at once; the nodes
verify them and spread them by eager push and anti-entropy pull. Reported:

- time from t0 until every node holds all N*M entries, as a ratio to the verification-bound
  time: entries each node must verify (all N*M: its own lab's when posted, the others' when
  synced) / bare Ed25519 verify rate on one core, measured in the same run, best of 3.
  Target <= 3. That bound assumes a core per node; where N nodes share fewer cores, the
  bound for the whole network, N*N*M / (cores * rate), is printed too, and so is the CPU
  time each node used (Linux /proc) against the per-node bound: the least a node with a
  core of its own would need.
- sync body bytes (feed pages, heads, pushes: the `tripwire_sync_bytes` counters of every
  node) as a ratio to the minimum: the sum over nodes of the JSON sizes of the envelopes each
  was missing. Target <= 1.5.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from _nodes import Serve, bare_verify_rate, signed_notes

from node.home.netsetup import create_network, observer_key
from node.net.client import PeerClient
from node.net.process import free_ports
from protocol.envelope import Envelope


def _cpu_seconds(nodes: list[Serve]) -> float | None:
    """User + system CPU seconds the node processes have used so far (Linux /proc), or None."""
    total = 0.0
    try:
        for node in nodes:
            fields = Path(f"/proc/{node.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--entries", type=int, default=2000)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    labs = [f"lab-{i}" for i in range(args.nodes)]
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        ports = free_ports(len(labs))
        homes = create_network(root, labs, ports=ports, observers=["auditor"], seed="convergence")
        sizes: dict[str, int] = {}
        feeds: dict[str, list[Envelope]] = {}
        keys = {}
        for h in homes:
            feeds[h.lab] = signed_notes(h, args.entries)
            sizes[h.lab] = sum(len(json.dumps(e.to_dict(), separators=(",", ":"))) for e in feeds[h.lab])
            keys[h.lab] = h.key
            h.close()
        rate = bare_verify_rate(feeds[labs[0]], keys[labs[0]], 3)
        env = {"TRIPWIRE_SYNC__INTERVAL_S": str(args.interval), "TRIPWIRE_SERVER__RATE_LIMIT_PER_MINUTE": "100000"}
        nodes = [Serve(root / lab, port, env=env) for lab, port in zip(labs, ports, strict=True)]
        obs = observer_key(root, "auditor")
        want = {lab: args.entries for lab in labs}
        try:
            for node in nodes:
                node.wait()

            def publish(lab: str, url: str) -> None:
                with PeerClient(url, keys[lab], lab, timeout=120) as c:
                    for i in range(0, args.entries, 500):
                        bad = [r for r in c.post_envelopes(feeds[lab][i : i + 500]) if r.status != "accepted"]
                        if bad:
                            raise RuntimeError(f"{lab}: not accepted: {bad[0]}")

            clients = [PeerClient(n.url, obs, "auditor", timeout=30) for n in nodes]
            cpu0 = _cpu_seconds(nodes)
            t0 = time.perf_counter()
            with ThreadPoolExecutor(len(labs)) as pool:
                posts = [pool.submit(publish, lab, n.url) for lab, n in zip(labs, nodes, strict=True)]
                deadline = time.monotonic() + args.timeout
                while True:
                    for f in posts:
                        if f.done():
                            f.result()  # a refused post is a failed run
                    if all({lab: h.seq for lab, h in c.heads().items()} == want for c in clients):
                        t1 = time.perf_counter()
                        cpu1 = _cpu_seconds(nodes)
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError("no convergence")
                    time.sleep(0.05)
            total_bytes = 0
            for node in nodes:
                text = httpx.get(node.url + "/metrics").text
                total_bytes += sum(
                    float(v) for v in re.findall(r'^tripwire_sync_bytes_total\{[^}]*\} (\S+)$', text, re.M)
                )
        finally:
            for node in nodes:
                node.stop()
    n, m = args.nodes, args.entries
    per_node = n * m
    bound = per_node / rate
    cores = os.cpu_count() or 1
    network_bound = n * per_node / (min(cores, n) * rate)
    minimum = sum(sum(v for lab, v in sizes.items() if lab != me) for me in labs)
    elapsed = t1 - t0
    print(f"bare Ed25519 verify (1 core): {rate:,.0f}/s; each node verifies {per_node:,} entries")
    print(f"{n} nodes x {m:,} entries, sync interval {args.interval}s: every node holds all "
          f"{n * m:,} entries {elapsed:.2f}s after the labs start posting")
    print(f"  ratio to the per-node verification bound ({bound:.2f}s): {elapsed / bound:.2f}")
    print(f"  ratio to the whole-network bound on {min(cores, n)} cores ({network_bound:.2f}s): "
          f"{elapsed / network_bound:.2f}")
    if cpu0 is not None and cpu1 is not None:
        per_node_cpu = (cpu1 - cpu0) / n
        print(f"  CPU time per node {per_node_cpu:.2f}s = {per_node_cpu / bound:.2f}x its verification bound "
              "(what a node with a core of its own would need at least)")
    print(f"sync body bytes {total_bytes:,.0f} vs minimum {minimum:,} (missing envelopes): "
          f"ratio {total_bytes / minimum:.3f}")


if __name__ == "__main__":
    main()
