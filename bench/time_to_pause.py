"""Time to pause: from a breaching result's publication to every node holding a verified
pause certificate, with automatic votes, N real nodes (``tripwire serve`` processes).

Each trial signs a new breaching ``eval_result`` of the first lab and POSTs it to that lab's
node (the moment of publication); one thread per node watches that node's database
(read-only, so the probe costs the servers nothing) for the certificate entry of the new
proposal; afterwards every certificate is verified under the roster and every node's
``GET /v1/status`` is checked to say paused. Baseline in the same run:
the time for a plain ``note`` entry to reach every node (sync alone), so the ratio shows
what proposing, voting and certifying add on top of delivery.

    python bench/time_to_pause.py                 # 5 nodes, 5 trials, default node settings
    python bench/time_to_pause.py --nodes 3 --trials 10 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from pausekit import NodeProcess, free_ports, result_body  # noqa: E402

from node.home import NodeHome  # noqa: E402
from node.net.client import PeerClient  # noqa: E402
from protocol.canonical import format_time, utcnow  # noqa: E402
from protocol.entries import NoteBody, Trigger, pause_proposal_id  # noqa: E402
from protocol.feed import FeedWriter, Head  # noqa: E402
from protocol.quorum import verify_certificate  # noqa: E402

LABS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"]


def _publish(client: PeerClient, home: NodeHome, kind: str, body: object) -> tuple[str, int, float]:
    """Sign the lab's next entry and POST it to its own node; returns (entry_id, seq, t_published)."""
    heads = client.heads()
    head = heads.get(home.lab)
    writer = FeedWriter(home.store.network_id(), home.lab, home.key, Head(head.seq, head.entry_id) if head else None)
    env, eid = writer.append(kind, body, format_time(utcnow()))
    t = time.monotonic()
    (r,) = client.post_envelopes([env])
    if r.status != "accepted":
        raise RuntimeError(f"publication refused: {r}")
    return eid, r.seq, t


def _wait_all(homes: list[NodeHome], pred, timeout: float) -> list[float]:
    """Watch every node's store in its own thread; return when each first satisfied ``pred``."""
    done: list[float | None] = [None] * len(homes)

    def poll(i: int) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(homes[i]):
                done[i] = time.monotonic()
                return
            time.sleep(0.005)

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(len(homes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if any(d is None for d in done):
        raise TimeoutError(f"not every node got there within {timeout}s: {done}")
    return [d for d in done if d is not None]


def _trace(homes: list[NodeHome], since: datetime) -> None:
    from sqlalchemy import select

    from node.store import models as m

    for h in homes:
        with h.store.engine.connect() as conn:
            rows = conn.execute(
                select(m.entries.c.lab, m.entries.c.kind, m.entries.c.accepted_at)
                .where(m.entries.c.accepted_at >= since.replace(tzinfo=None))
                .order_by(m.entries.c.log_index)
            ).all()
        cells = [f"{lab}:{kind[:5]}@{(at.replace(tzinfo=UTC) - since).total_seconds():.2f}" for lab, kind, at in rows]
        print(f"  {h.lab:<8} " + " ".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("--trace", action="store_true", help="print when each node accepted each entry of a trial")
    args = ap.parse_args()
    from node.home.netsetup import create_network

    labs = LABS[: args.nodes]
    work = Path(tempfile.mkdtemp(prefix="tripwire-ttp-"))
    homes = create_network(work / "net", labs, ports=free_ports(len(labs)))
    for h in homes:
        h.save_config(h.config.model_copy(update={"votes": {"auto": "pause-on-breach"}}))
    ports = [h.config.server.port for h in homes]
    digest = homes[0].store.roster_chain().current.roster.policy_digest
    for h in homes:
        h.close()
    procs = [NodeProcess(work / "net" / lab, port) for lab, port in zip(labs, ports, strict=True)]
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        for p in procs:
            p.start()
        watched = [NodeHome.open(work / "net" / lab) for lab in labs]
        origin = watched[0]
        clients = [PeerClient(p.url, origin.key, origin.lab, timeout=5.0) for p in procs]
        pauses, notes = [], []
        for trial in range(args.trials):
            # Baseline: a note's delivery to every node.
            _, seq, t0 = _publish(clients[0], origin, "note", NoteBody(text=f"baseline {trial}"))
            times = _wait_all(watched, lambda h, s=seq: h.store.heads().get(origin.lab, Head(0, "")).seq >= s, 30)
            notes.append(max(times) - t0)
            # Breach: a new result (new step) is a new trigger, hence a new proposal.
            wall0 = datetime.now(UTC)
            rid, _, t0 = _publish(clients[0], origin, "eval_result", result_body("0.66", step=1000 + trial))
            pid = pause_proposal_id(Trigger(result=rid, lab=origin.lab, rule="arithmetic-acc", policy_digest=digest))

            times = _wait_all(watched, lambda h, pid=pid: bool(h.store.entries(kind="pause_certificate", subject=pid)), 60)
            pauses.append(max(times) - t0)
            for h, c in zip(watched, clients, strict=True):
                chain = h.store.roster_chain()
                for cert in h.store.entries(kind="pause_certificate", subject=pid):
                    verify_certificate(cert.statement.body, chain)
                assert any(x.proposal_id == pid for x in c.status().pause.certificates)
            if args.trace:
                _trace(watched, wall0)
            print(f"trial {trial + 1}: note to all {notes[-1]:.3f}s, pause on all {pauses[-1]:.3f}s", flush=True)
        for c in clients:
            c.close()
        for h in watched:
            h.close()
    finally:
        for p in procs:
            p.stop()
    med_p, med_n = statistics.median(pauses), statistics.median(notes)
    out = {
        "nodes": args.nodes,
        "trials": args.trials,
        "time_to_pause_s": {"median": round(med_p, 3), "min": round(min(pauses), 3), "max": round(max(pauses), 3)},
        "note_to_all_s": {"median": round(med_n, 3), "min": round(min(notes), 3), "max": round(max(notes), 3)},
        "ratio_pause_over_delivery": round(med_p / med_n, 2) if med_n else None,
        "settings": "default node.toml ([sync] interval_s 2.0; [votes] auto pause-on-breach, other defaults)",
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
