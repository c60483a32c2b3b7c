"""Status under flood: latency of ``GET /v1/status`` and of the signed pause state that
training gates poll (``GET /v1/status/pause?nonce=…``), from C gate-like clients polling one
``tripwire serve``, while another lab floods that node with large entries; baseline: the same
polling with no flood, in the same run.

    .venv/bin/python bench/status_load.py [--clients 100] [--interval 1.0] [--seconds 20]

Clients are roster observers, each with its own key and signed requests (as a gate's
``PeerClient``); half poll ``/v1/status``, half ``/v1/status/pause`` with a fresh 32-byte
nonce, each every ``--interval`` seconds from a random phase (a gate polls every 2 s by
default), the next poll starting at once when an answer came later than that. All clients
come from 127.0.0.1, so ``server.max_connections_per_client`` is raised for the run (as
behind a reverse proxy); the per-caller rate limit stays at its default.

The flooding lab is a separate process with one connection, POSTing its own pre-signed feed
to the node's ``/v1/envelopes`` as fast as the node takes it (honouring 429 Retry-After):
bodies near the 4 MiB request limit, alternating maximal ``note`` entries (8,192-character
text plus 64 refs, ~17 KB as envelopes) and ``pause_certificate`` entries carrying
``--cert-votes`` signed votes each (a real pause proposal, votes all by the flooding lab, so
every certificate costs the node that many signature checks before it is found invalid).

Phases, in order, each ``--seconds`` long: baseline (no flood), flood; a 3 s warm-up before
them is not reported. Reported per phase and endpoint: requests, errors (non-2xx or
failure), p50/p99/max latency; the flood's rate; the ratio flood/baseline of p50 and p99.
Target: p99 < 100 ms under flood. A control client polls the unsigned ``/healthz`` every
0.1 s (no signature check, no nonce write, no status document). ``--profile FILE`` records
the server's threads with py-spy during the flood.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import random
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _nodes import Serve

from node.home.netsetup import create_network, observer_key
from node.net.client import AsyncPeerClient, PeerClient, PeerHTTPError
from node.net.process import free_ports
from protocol.canonical import format_time, utcnow
from protocol.entries import (
    NoteBody,
    PauseCertificateBody,
    PauseProposalBody,
    Trigger,
    VoteBody,
    pause_proposal_id,
)
from protocol.feed import FeedWriter, Head

NOTE_TEXT = "n" * 8184
NOTE_REFS = [f"{i:064x}" for i in range(64)]


# --- the flooding lab (its own process) ------------------------------------------------------------


def _flood_batches(home_dir: Path, notes_per_batch: int, certs_per_batch: int, cert_votes: int,
                   rounds: int) -> list[list[Any]]:
    """Pre-signed POST bodies of the flooding lab's feed: note batches and certificate batches."""
    from node.home import NodeHome

    with NodeHome.open(home_dir) as home:
        net, lab, key = home.store.network_id(), home.lab, home.key
        digest = home.store.roster_chain().current.roster.policy_digest
        version = home.store.roster_chain().current.version
    at = format_time(utcnow())
    # The embedded proposal and votes are signed entries of a side chain far beyond the feed's
    # head: they verify, so the node checks every signature before it finds no quorum.
    side = FeedWriter(net, lab, key, Head(10_000_000, "0" * 64))
    trigger = Trigger(result="1" * 64, lab=lab, rule="arithmetic-acc", policy_digest=digest)
    pid = pause_proposal_id(trigger)
    proposal, _ = side.append("pause_proposal", PauseProposalBody(
        proposal_id=pid, trigger=trigger, observed="0.9", level="0.5"), at)
    votes = [side.append("vote", VoteBody(proposal_id=pid, action="pause", decision="pause"), at)[0]
             for _ in range(cert_votes)]
    writer = FeedWriter(net, lab, key, None)
    batches: list[list[Any]] = []
    n = 0
    cert = PauseCertificateBody(proposal_id=pid, action="pause", roster_version=version, proposal=proposal,
                                votes=votes) if cert_votes else None
    for _ in range(rounds):
        batch = []
        for _ in range(notes_per_batch):
            batch.append(writer.append("note", NoteBody(text=f"{NOTE_TEXT}{n:08d}", refs=NOTE_REFS), at)[0])
            n += 1
        batches.append(batch)
        if cert is not None:
            batches.append([writer.append("pause_certificate", cert, at)[0] for _ in range(certs_per_batch)])
    return [b for b in batches if b]


def flooder(home_dir: str, url: str, opts: dict[str, Any], ready: Any, go: Any, stop: Any, out: Any) -> None:
    from node.home import NodeHome

    batches = _flood_batches(Path(home_dir), opts["notes_per_batch"], opts["certs_per_batch"],
                             opts["cert_votes"], opts["rounds"])
    body_bytes = [sum(len(json.dumps(e.to_dict())) for e in b) for b in batches]
    with NodeHome.open(Path(home_dir)) as home:
        client = PeerClient(url, home.key, home.lab, timeout=120.0)
    ready.set()
    go.wait()
    sent = entries = limited = 0
    errors: list[str] = []
    t = time.monotonic()
    i = 0
    while i < len(batches) and not stop.is_set():
        try:
            res = client.post_envelopes(batches[i])
        except PeerHTTPError as e:
            if e.status == 429:
                limited += 1
                time.sleep(min(e.retry_after or 1.0, 5.0))
                continue
            errors.append(str(e)[:200])
            break
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}"[:200])
            break
        if any(r.status != "accepted" for r in res):
            errors.append(f"not accepted: {[r for r in res if r.status != 'accepted'][:1]}")
            break
        sent += body_bytes[i]
        entries += len(batches[i])
        i += 1
    elapsed = time.monotonic() - t
    client.close()
    out.put({"entries": entries, "bytes": sent, "seconds": elapsed, "batches": i, "of_batches": len(batches),
             "rate_limited": limited, "errors": errors, "exhausted": i == len(batches)})


# --- the gate-like clients -----------------------------------------------------------------------


async def poller(c: AsyncPeerClient, pause: bool, interval: float, deadline: float, lat: list[float],
                 errors: list[str]) -> None:
    await asyncio.sleep(random.uniform(0, interval))
    nxt = time.monotonic()
    while time.monotonic() < deadline:
        t = time.perf_counter()
        try:
            if pause:
                await c._get("/v1/status/pause", {"nonce": secrets.token_hex(32)})
            else:
                await c.status()
            lat.append(time.perf_counter() - t)
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}"[:200])
        nxt += interval
        await asyncio.sleep(max(0.0, nxt - time.monotonic()))


async def control(url: str, interval: float, deadline: float, lat: list[float], errors: list[str]) -> None:
    """Unsigned ``/healthz`` (no signature check, no nonce write, one read): separates time
    spent in the server at large from time spent on signed requests and the status itself."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        while time.monotonic() < deadline:
            t = time.perf_counter()
            try:
                (await c.get("/healthz")).raise_for_status()
                lat.append(time.perf_counter() - t)
            except Exception as e:
                errors.append(f"{type(e).__name__}: {e}"[:200])
            await asyncio.sleep(interval)


async def poll_phase(clients: list[AsyncPeerClient], interval: float, seconds: float) -> dict[str, Any]:
    lat: dict[str, list[float]] = {"status": [], "pause": [], "healthz": []}
    errors: dict[str, list[str]] = {"status": [], "pause": [], "healthz": []}
    deadline = time.monotonic() + seconds
    await asyncio.gather(
        control(clients[0].base_url, 0.1, deadline, lat["healthz"], errors["healthz"]),
        *(poller(c, i % 2 == 1, interval, deadline, lat["pause" if i % 2 else "status"],
                 errors["pause" if i % 2 else "status"]) for i, c in enumerate(clients)),
    )
    return {k: stats(lat[k], errors[k]) for k in lat}


def stats(lat: list[float], errors: list[str]) -> dict[str, Any]:
    lat = sorted(lat)
    p = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1)) if lat else (lambda q: None)
    return {"requests": len(lat), "errors": len(errors), "p50_ms": p(0.5), "p99_ms": p(0.99),
            "max_ms": round(lat[-1] * 1000, 1) if lat else None, "first_errors": errors[:3]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between one client's polls")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    ap.add_argument("--notes-per-batch", type=int, default=200, help="0: no notes")
    ap.add_argument("--certs-per-batch", type=int, default=4, help="0: no certificates")
    ap.add_argument("--cert-votes", type=int, default=500, help="votes per flooded certificate")
    ap.add_argument("--rounds", type=int, default=30, help="note batch + certificate batch pairs pre-signed")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("--profile", type=Path, help="record the server's threads with py-spy (on PATH) during "
                    "the flood, idle included, as collapsed stacks")
    args = ap.parse_args()
    labs = ["lab-0", "lab-1"]
    observers = [f"gate-{i}" for i in range(args.clients)]
    ctx = mp.get_context("fork")
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        ports = free_ports(len(labs))
        homes = create_network(root, labs, ports=ports, observers=observers, seed="status-load")
        homes[0].save_config(homes[0].config.model_copy(update={"votes": {"auto": "pause-on-breach"}}))
        for h in homes:
            h.close()
        keys = [(o, observer_key(root, o)) for o in observers]
        ready, go, stop, out = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Queue()
        srv = Serve(root / "lab-0", ports[0], sync=False,
                    env={"TRIPWIRE_SERVER__MAX_CONNECTIONS_PER_CLIENT": str(max(1000, args.clients * 2))})
        opts = {k: getattr(args, k) for k in ("notes_per_batch", "certs_per_batch", "cert_votes", "rounds")}
        flood = ctx.Process(target=flooder, args=(str(root / "lab-1"), srv.url, opts, ready, go, stop, out))
        flood.start()
        try:
            srv.wait()
            if not ready.wait(600):
                raise TimeoutError("the flooding lab did not finish signing")

            async def run() -> dict[str, Any]:
                clients = [AsyncPeerClient(srv.url, k, who, timeout=30) for who, k in keys]
                try:
                    await poll_phase(clients, args.interval, min(3.0, args.seconds))  # warm-up, not reported
                    res = {"baseline": await poll_phase(clients, args.interval, args.seconds)}
                    print("baseline", json.dumps(res["baseline"]), flush=True)
                    spy = None
                    if args.profile:
                        spy = subprocess.Popen(["py-spy", "record", "--pid", str(srv.proc.pid), "--rate", "200",
                                                "--duration", str(int(args.seconds)), "--format", "raw", "--idle",
                                                "--output", str(args.profile), "--threads"],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    go.set()
                    res["flood"] = await poll_phase(clients, args.interval, args.seconds)
                    if spy is not None:
                        spy.wait(60)
                    stop.set()
                    print("flood", json.dumps(res["flood"]), flush=True)
                    return res
                finally:
                    await asyncio.gather(*(c.aclose() for c in clients))

            res = asyncio.run(run())
            flood.join(120)
            fl = out.get(timeout=10)
        finally:
            stop.set()
            go.set()
            if flood.is_alive():
                flood.terminate()
                flood.join(10)
            srv.stop()
    fl["entries_per_s"] = round(fl["entries"] / fl["seconds"], 1) if fl["seconds"] else None
    fl["mb_per_s"] = round(fl["bytes"] / fl["seconds"] / 1e6, 2) if fl["seconds"] else None
    report: dict[str, Any] = {
        "clients": args.clients, "interval_s": args.interval, "seconds_per_phase": args.seconds,
        "phases": res, "flood": fl, "ratio_flood_vs_baseline": {},
    }
    for k in ("status", "pause", "healthz"):
        b, f = res["baseline"][k], res["flood"][k]
        report["ratio_flood_vs_baseline"][k] = {
            m: round(f[m] / b[m], 2) if f[m] and b[m] else None for m in ("p50_ms", "p99_ms")
        }
    print(json.dumps(report, indent=2))
    print(f"\n{'phase':<9} {'endpoint':<17} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for phase in ("baseline", "flood"):
        for k, name in (("status", "/v1/status"), ("pause", "/v1/status/pause"), ("healthz", "/healthz")):
            r = res[phase][k]
            print(f"{phase:<9} {name:<17} {r['requests']:>8} {r['errors']:>6} {r['p50_ms']!s:>8} "
                  f"{r['p99_ms']!s:>8} {r['max_ms']!s:>8}")
    print(f"flood: {fl['entries']} entries, {fl['bytes'] / 1e6:.1f} MB in {fl['seconds']:.1f} s "
          f"({fl['mb_per_s']} MB/s), {fl['rate_limited']} rate-limited, errors {fl['errors'][:1]}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
