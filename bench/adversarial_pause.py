"""Time to pause when one lab is hostile: N real nodes (``tripwire serve`` processes), one
adversary strategy per trial, against the all-honest time measured in the same run.

The network is ``aaa`` (the adversary: first in lab-id order, so it is the first-ranked
supporter whenever it supports), ``alpha`` (the breaching lab) and honest labs. Each trial
signs a new breaching ``eval_result`` of ``alpha`` and POSTs it to alpha's node (the moment
of publication); one thread per honest node watches that node's database (read-only: the
probe costs the servers nothing) until it holds a pause certificate for the new proposal
that verifies under the roster. The time is the slowest honest node's; the adversary's own
node is not waited for. Afterwards every honest node's ``GET /v1/status`` must list a
certificate for the proposal (and, for ``forged-certificate``, flag the forgery).

Strategies (the adversary is never the breaching lab):

- ``honest``: the baseline; ``aaa`` runs a node voting ``pause-on-breach`` like the others;
- ``silent``: ``aaa``'s node is down for the trial (no votes, no relay);
- ``vote-and-vanish``: ``aaa``'s node votes pause by itself and is SIGKILLed as soon as an
  honest node holds that vote (so the others count it and rank ``aaa`` first to certify);
- ``objector``: ``aaa`` objects to the proposal as soon as the breaching lab's node holds it;
- ``flood``: ``aaa`` POSTs many maximal ``note`` entries to every node while the breach is
  published (200 notes of ~17 KB as envelopes by default: the 8,192-character text limit plus 64 refs);
- ``forged-certificate``: ``aaa`` votes object, then pause (a later vote, which does not
  count), then publishes a certificate holding that later vote twice; honest nodes must
  flag it (``invalid-certificate``) and keep waiting for a real quorum.

In the hostile strategies ``aaa``'s node runs with ``[votes] auto = "manual"`` and delays
that keep its own coordinator from publishing anything (the benchmark signs the adversary's
entries and POSTs them to every node). Every other setting is the node default (sync
``interval_s`` 2.0, ``certificate_stagger_s`` 0.25), as in ``bench/time_to_pause.py``.
Strategies are interleaved: trial k of every strategy runs before trial k+1 of any.

    python bench/adversarial_pause.py                       # 5 nodes, 3 trials per strategy
    python bench/adversarial_pause.py --trials 5 --strategies honest,flood --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.append(str(ROOT / "bench"))  # time_to_pause, after the packages (bench/protocol.py)

from pausekit import NodeProcess, free_ports, result_body  # noqa: E402
from time_to_pause import _publish, _wait_all  # noqa: E402

from node.home import NodeHome  # noqa: E402
from node.net.client import PeerClient  # noqa: E402
from protocol.canonical import format_time, utcnow  # noqa: E402
from protocol.entries import NoteBody, PauseCertificateBody, Trigger, VoteBody, pause_proposal_id  # noqa: E402
from protocol.envelope import Envelope  # noqa: E402
from protocol.errors import TripwireError  # noqa: E402
from protocol.feed import FeedWriter, Head  # noqa: E402
from protocol.quorum import verify_certificate  # noqa: E402

ADVERSARY, ORIGIN = "aaa", "alpha"
HONEST_LABS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
STRATEGIES = ["honest", "silent", "vote-and-vanish", "objector", "flood", "forged-certificate"]
#: How the adversary's node runs for each strategy: voting like the others, down, or hostile.
NODE_MODE = {
    "honest": "honest",
    "silent": "down",
    "vote-and-vanish": "honest",
    "objector": "hostile",
    "flood": "hostile",
    "forged-certificate": "hostile",
}
HONEST_VOTES = {"auto": "pause-on-breach"}
# The hostile node's own coordinator must publish nothing (the benchmark signs its entries):
# no automatic votes, and alerts, proposals and certificates delayed beyond the run.
HOSTILE_VOTES = {"auto": "manual", "propose_delay_s": 3600, "certificate_stagger_s": 600}


Make = Sequence[tuple[str, Callable[[list[Envelope]], Any]]]


def sign_chain(home: NodeHome, head: Head | None, make: Make) -> tuple[list[Envelope], list[str]]:
    """Sign entries of ``home``'s feed after ``head``: (envelopes, entry ids). Each body is
    made from the envelopes signed before it (so a certificate can carry a vote of the chain)."""
    writer = FeedWriter(home.store.network_id(), home.lab, home.key, head)
    at = format_time(utcnow())
    envs: list[Envelope] = []
    ids: list[str] = []
    for kind, body in make:
        env, eid = writer.append(kind, body(envs), at)
        envs.append(env)
        ids.append(eid)
    return envs, ids


class Adversary:
    """The hostile lab: signs entries of its own feed and POSTs them to its own node and to
    every honest node directly, all at once (one thread per node, so a slow node delays no
    other). Its node's coordinator publishes nothing meanwhile, so the feed never forks."""

    def __init__(self, home: NodeHome, own: PeerClient, honest: list[PeerClient]) -> None:
        self.home, self.own, self.honest = home, own, honest
        self.errors: list[str] = []

    def head(self) -> Head | None:
        head = self.own.heads().get(self.home.lab)
        return Head(head.seq, head.entry_id) if head else None

    def publish(self, make: Make) -> tuple[list[str], list[threading.Thread]]:
        envs, ids = sign_chain(self.home, self.head(), make)
        self.post([envs])
        return ids, self.threads

    def post(self, batches: list[list[Envelope]]) -> None:
        """POST the batches in order to every node, one thread per node (``self.threads``)."""
        self.errors = []

        def post(client: PeerClient) -> None:
            for b in batches:
                try:
                    bad = [r for r in client.post_envelopes(b) if r.status not in ("accepted", "duplicate")]
                except TripwireError as e:
                    self.errors.append(f"{client.base_url}: {e}")
                    return
                if bad:
                    self.errors.append(f"{client.base_url}: {bad[0]}")
                    return

        self.threads = [threading.Thread(target=post, args=(c,)) for c in [self.own, *self.honest]]
        for t in self.threads:
            t.start()


def wait_for(pred: Callable[[], Any], timeout: float, interval: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    return None


class CertProbe:
    """Does a home hold a pause certificate for a proposal that verifies under the roster?
    (Each certificate entry is verified once; a forged one never counts.)"""

    def __init__(self, home: NodeHome) -> None:
        self.chain = home.store.roster_chain()
        self.valid: dict[str, bool] = {}

    def __call__(self, home: NodeHome, pid: str, only: str | None = None) -> bool:
        for cert in home.store.entries(kind="pause_certificate", subject=pid):
            if only is not None and cert.entry_id != only:
                continue
            if cert.entry_id not in self.valid:
                try:
                    verify_certificate(cert.statement.body, self.chain)
                    self.valid[cert.entry_id] = True
                except TripwireError:
                    self.valid[cert.entry_id] = False
            if self.valid[cert.entry_id]:
                return True
        return False


def settle(homes: list[NodeHome], timeout: float = 120) -> None:
    """Until every given node holds the same feeds (a trial starts from a synced network)."""
    def same() -> bool:
        heads = [{lab: h.seq for lab, h in home.store.heads().items()} for home in homes]
        return all(x == heads[0] for x in heads)

    if not wait_for(same, timeout, 0.1):
        raise TimeoutError(f"nodes did not converge within {timeout}s")


def summary(xs: list[float | None]) -> dict[str, Any]:
    done = [x for x in xs if x is not None]
    return {
        "median": round(statistics.median(done), 3) if len(done) == len(xs) else None,
        "min": round(min(done), 3) if done else None,
        "max": round(max(done), 3) if len(done) == len(xs) else None,
        "stalled": len(xs) - len(done),
        "trials": [round(x, 3) if x is not None else None for x in xs],
    }


class Run:
    """The network, the probes and the adversary of one benchmark run."""

    def __init__(self, work: Path, labs: list[str], args: argparse.Namespace) -> None:
        from node.home.netsetup import create_network

        self.args, self.work, self.labs, self.honest_labs = args, work, labs, labs[1:]
        homes = create_network(work / "net", labs, ports=free_ports(len(labs)))
        for h in homes:
            h.save_config(h.config.model_copy(update={"votes": HONEST_VOTES}))
        ports = {h.lab: h.config.server.port for h in homes}
        self.digest = homes[0].store.roster_chain().current.roster.policy_digest
        for h in homes:
            h.close()
        self.procs = {lab: NodeProcess(work / "net" / lab, ports[lab]) for lab in labs}
        self.mode = "honest"
        self.opened: list[Any] = []
        self.flood_text = "x" * 8184
        self.flood_refs = [f"{i:064x}" for i in range(64)]

    def start(self) -> None:
        for p in self.procs.values():
            p.start(wait=False)
        for p in self.procs.values():
            p.wait_healthy()
        net = self.work / "net"
        self.watched = {lab: NodeHome.open(net / lab) for lab in self.labs}
        self.origin_view = NodeHome.open(net / ORIGIN)  # the adversary's eye on the breaching lab's node
        self.adv_view = NodeHome.open(net / ADVERSARY)  # the adversary's own home (key, store)
        self.opened += [*self.watched.values(), self.origin_view, self.adv_view]
        origin = self.watched[ORIGIN]
        self.origin_client = PeerClient(self.procs[ORIGIN].url, origin.key, ORIGIN, timeout=10.0)
        self.status_clients = {lab: PeerClient(self.procs[lab].url, origin.key, ORIGIN, timeout=10.0)
                               for lab in self.honest_labs}
        self.adversary = Adversary(
            self.adv_view,
            PeerClient(self.procs[ADVERSARY].url, self.adv_view.key, ADVERSARY, timeout=30.0),
            [PeerClient(self.procs[lab].url, self.adv_view.key, ADVERSARY, timeout=30.0) for lab in self.honest_labs],
        )
        self.opened += [self.origin_client, *self.status_clients.values(), self.adversary.own, *self.adversary.honest]

    def close(self) -> None:
        for c in self.opened:
            c.close()
        for p in self.procs.values():
            p.stop()

    def set_mode(self, want: str) -> None:
        """Run the adversary's node as ``want`` (honest, hostile or down), restarting it if needed."""
        node = self.procs[ADVERSARY]
        alive = node.proc is not None and node.proc.poll() is None
        if want == self.mode and (alive or want == "down"):
            return
        node.stop()
        if want != "down":
            with NodeHome.open(self.work / "net" / ADVERSARY) as h:
                votes = HOSTILE_VOTES if want == "hostile" else HONEST_VOTES
                h.save_config(h.config.model_copy(update={"votes": votes}))
            node.start()
        self.mode = want

    # --- the adversary's moves (each on a thread started right after the breach) -------------

    def _proposal(self, pid: str) -> Any:
        found = self.origin_view.store.entries(kind="pause_proposal", subject=pid)
        return found[0] if found else None

    def vanish(self, pid: str, t0: float, box: dict[str, Any]) -> None:
        # Killed once its vote is out: as soon as one honest node holds it, so the others may
        # count it and rank its node first to certify.
        def out() -> bool:
            return any(self.watched[lab].store.entries(kind="vote", lab=ADVERSARY, subject=pid)
                       for lab in self.honest_labs)

        if wait_for(out, self.args.timeout):
            self.procs[ADVERSARY].kill()
            box["killed_after_s"] = round(time.monotonic() - t0, 3)

    def object_(self, pid: str, t0: float, box: dict[str, Any]) -> None:
        if wait_for(lambda: self._proposal(pid), self.args.timeout):
            vote = VoteBody(proposal_id=pid, action="pause", decision="object")
            _, threads = self.adversary.publish([("vote", lambda _: vote)])
            box["objected_after_s"] = round(time.monotonic() - t0, 3)
            for t in threads:
                t.join()

    def forge(self, pid: str, t0: float, box: dict[str, Any]) -> None:
        proposal = wait_for(lambda: self._proposal(pid), self.args.timeout)
        if proposal is None:
            return
        version = self.adv_view.store.roster_chain().current.version
        make: Make = [
            ("vote", lambda _: VoteBody(proposal_id=pid, action="pause", decision="object")),
            ("vote", lambda _: VoteBody(proposal_id=pid, action="pause", decision="pause")),
            # Its own later (uncounted) pause vote, twice: one lab's weight, however listed.
            ("pause_certificate", lambda signed: PauseCertificateBody(
                proposal_id=pid, action="pause", roster_version=version,
                proposal=proposal.envelope, votes=[signed[1], signed[1]])),
        ]
        ids, threads = self.adversary.publish(make)
        box["forged"] = ids[2]
        box["forged_after_s"] = round(time.monotonic() - t0, 3)
        for t in threads:
            t.join()

    # --- one trial -------------------------------------------------------------------------------

    def trial(self, strategy: str, step: int) -> tuple[float | None, float | None, dict[str, Any]]:
        """(time until every honest node holds a valid certificate, the same for all nodes
        when the adversary is honest, notes)."""
        self.set_mode(NODE_MODE[strategy])
        running = [self.watched[lab] for lab in self.labs if lab != ADVERSARY or self.mode != "down"]
        settle(running)
        extra: dict[str, Any] = {}
        flood: list[list[Envelope]] = []
        if strategy == "flood":
            n = self.args.flood_notes
            make: Make = [("note", lambda _, i=i: NoteBody(text=f"{self.flood_text}{i:08d}", refs=self.flood_refs))
                          for i in range(n)]
            envs, _ = sign_chain(self.adv_view, self.adversary.head(), make)
            extra["flood_mb_per_node"] = round(sum(len(json.dumps(e.to_dict())) for e in envs) / 1e6, 2)
            flood = [envs[i : i + self.args.flood_batch] for i in range(0, n, self.args.flood_batch)]

        # Breach: a new result (new step) is a new trigger, hence a new proposal.
        body = result_body("0.66", step=step)
        t_flood = time.monotonic()
        if flood:
            self.adversary.post(flood)  # from threads, while the breach goes out
        rid, _, t0 = _publish(self.origin_client, self.watched[ORIGIN], "eval_result", body)
        pid = pause_proposal_id(Trigger(result=rid, lab=ORIGIN, rule="arithmetic-acc", policy_digest=self.digest))
        box: dict[str, Any] = {}
        move = {"vote-and-vanish": self.vanish, "objector": self.object_, "forged-certificate": self.forge}.get(strategy)
        actor = threading.Thread(target=move, args=(pid, t0, box)) if move is not None else None
        if actor is not None:
            actor.start()

        wait_labs = self.labs if strategy == "honest" else self.honest_labs
        probes = {lab: CertProbe(self.watched[lab]) for lab in wait_labs}
        elapsed: float | None = None
        everyone: float | None = None
        try:
            done = _wait_all([self.watched[lab] for lab in wait_labs], lambda h: probes[h.lab](h, pid), self.args.timeout)
            by_lab = dict(zip(wait_labs, done, strict=True))
            elapsed = max(by_lab[lab] for lab in self.honest_labs) - t0
            everyone = max(done) - t0
        except TimeoutError as e:
            extra["stalled"] = str(e)[:300]
        if flood:
            for t in self.adversary.threads:
                t.join()
            extra["flood_posted_s"] = round(time.monotonic() - t_flood, 2)
        if actor is not None:
            actor.join()
        if self.adversary.errors:
            extra["adversary_errors"] = self.adversary.errors[:3]
            self.adversary.errors = []
        extra.update(box)
        self.check(pid, elapsed is not None, box.get("forged"), extra)
        if strategy == "vote-and-vanish":
            extra["vote_escaped_to"] = self._holding("vote", ADVERSARY, pid)
        if strategy == "objector":
            extra["objection_held_by"] = self._holding("vote", ADVERSARY, pid)
        return elapsed, everyone, extra

    def _holding(self, kind: str, lab: str, pid: str) -> int:
        return sum(1 for h in self.honest_labs if self.watched[h].store.entries(kind=kind, lab=lab, subject=pid))

    def check(self, pid: str, paused: bool, forged: str | None, extra: dict[str, Any]) -> None:
        """Every honest node's status lists a certificate for ``pid`` (never the forged one,
        which it flags); records which labs' certificates the nodes hold."""
        flagged = 0
        for lab in self.honest_labs:
            st = self.status_clients[lab].status()
            certs = [c for c in st["pause"]["certificates"] if c["proposal_id"] == pid]
            if paused and not certs:
                raise AssertionError(f"{lab}'s status lists no certificate for {pid[:16]}…")
            if forged is not None:
                if any(c["certificate"] == forged for c in certs):
                    raise AssertionError(f"{lab} counts the forged certificate {forged[:16]}…")
                flagged += any(f.get("kind") == "invalid-certificate" and f.get("entry_id") == forged
                               for f in st.get("pause_flags", []))
        if forged is not None:
            extra["forgery_flagged_by"] = flagged
        last = self.watched[self.honest_labs[-1]]
        probe = CertProbe(last)
        extra["certified_by"] = [c.lab for c in last.store.entries(kind="pause_certificate", subject=pid)
                                 if probe(last, pid, only=c.entry_id)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=5, help="labs in all, the adversary included (>= 4)")
    ap.add_argument("--trials", type=int, default=3, help="trials per strategy")
    ap.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated subset (honest is always run)")
    ap.add_argument("--flood-notes", type=int, default=200)
    ap.add_argument("--flood-batch", type=int, default=25, help="notes per POST")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a trial counts as stalled")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    strategies = ["honest"] + [s for s in args.strategies.split(",") if s and s != "honest"]
    unknown = set(strategies) - set(STRATEGIES)
    if unknown or args.nodes < 4:
        ap.error(f"unknown strategies {sorted(unknown)}" if unknown else "--nodes must be at least 4")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    work = Path(tempfile.mkdtemp(prefix="tripwire-adv-"))
    run = Run(work, [ADVERSARY, *HONEST_LABS[: args.nodes - 1]], args)
    times: dict[str, list[float | None]] = {s: [] for s in strategies}
    honest_all: list[float | None] = []
    notes: dict[str, list[dict[str, Any]]] = {s: [] for s in strategies}
    try:
        run.start()
        step = 1000
        for trial in range(args.trials):
            for strategy in strategies:
                step += 1
                elapsed, everyone, extra = run.trial(strategy, step)
                times[strategy].append(elapsed)
                notes[strategy].append(extra)
                if strategy == "honest":
                    honest_all.append(everyone)
                shown = f"{elapsed:.3f}s" if elapsed is not None else f"STALLED (> {args.timeout:.0f}s)"
                print(f"trial {trial + 1} {strategy:<19} pause on every honest node {shown}  {extra}", flush=True)
    finally:
        run.close()
        shutil.rmtree(work, ignore_errors=True)
    out: dict[str, Any] = {
        "nodes": args.nodes,
        "trials": args.trials,
        "adversary": ADVERSARY,
        "breaching_lab": ORIGIN,
        "settings": "default node.toml ([sync] interval_s 2.0; [votes] auto pause-on-breach, "
                    "certificate_stagger_s 0.25); hostile adversary node: auto manual",
        "honest_all_nodes_s": summary(honest_all),
        "strategies": {},
    }
    base = summary(times["honest"])["median"]
    for s in strategies:
        row = summary(times[s])
        row["ratio_median_vs_honest"] = round(row["median"] / base, 2) if row["median"] is not None and base else None
        row["notes"] = notes[s]
        out["strategies"][s] = row
    print(json.dumps(out, indent=2))
    print(f"\n{'strategy':<20} {'median':>8} {'max':>8} {'ratio':>6}   (pause on every honest node; "
          f"honest median {base}s)")
    for s in strategies:
        r = out["strategies"][s]
        med = f"{r['median']:.3f}s" if r["median"] is not None else "stalled"
        mx = f"{r['max']:.3f}s" if r["max"] is not None else "stalled"
        ratio = f"{r['ratio_median_vs_honest']:.2f}x" if r["ratio_median_vs_honest"] is not None else "-"
        print(f"{s:<20} {med:>8} {mx:>8} {ratio:>6}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
