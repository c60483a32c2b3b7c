"""A deterministic adversarial simulation of the pause protocol (spec §4, §6).

N labs run in one process on a seeded event scheduler and a simulated clock. Everything a
node decides comes from the project's real pure logic: entries are signed by
:class:`protocol.feed.FeedWriter`, verified by :func:`protocol.roster.verify_entry`, placed
in feeds by :func:`protocol.feed.plan_appends`, judged and acted on by
:func:`node.pause.analysis.analyze` / :func:`node.pause.planner.plan_actions`, and the pause
state is :func:`protocol.pause.pause_state` (inside ``analyze``). The simulator only
supplies what a node's I/O would: clocks, a network, timers and storage.

The nemesis drops, delays, duplicates and reorders messages, partitions the network (every
partition heals), skews each node's wall clock and crash-restarts nodes (a crashed node
loses its timers and its out-of-order hold, and keeps its stored entries). An adversary
coalition (one or two labs whose weight is below the pause quorum) follows one strategy
(:data:`STRATEGIES`). The simulator records everything anyone signed (the ground truth) so
that the invariants can be checked against it: see :class:`Outcome`.

Replay one run with ``python tests/support/simulator.py SEED [STRATEGY [PIVOTAL]]``.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from node.pause.analysis import KINDS, Analysis, EvaluationCache, analyze
from node.pause.planner import VotesConfig, plan_actions
from protocol.canonical import canonical_bytes, digest_of, format_time
from protocol.entries import (
    PauseCertificateBody,
    PauseProposalBody,
    Trigger,
    VerifiedEntry,
    VoteBody,
    pause_proposal_id,
)
from protocol.envelope import ENTRY_PAYLOAD_TYPE, Envelope, sign_payload
from protocol.errors import TripwireError
from protocol.feed import EquivocationProof, FeedState, FeedWriter, Head, plan_appends
from protocol.keys import SigningKey
from protocol.pause import CertCache
from protocol.policy import Policy
from protocol.roster import RosterChain, draft_roster, roster_envelope, verify_entry

ROOT = Path(__file__).resolve().parents[2]
#: Simulated time 0 on every node's wall clock (before its skew).
EPOCH = datetime(2025, 3, 1, tzinfo=UTC)
#: The coordinator timers every honest node runs with (the node's defaults).
VOTES = VotesConfig(auto="pause-on-breach")
#: Anti-entropy: every node pulls from every peer this often (simulated seconds).
SYNC_INTERVAL = 1.0
#: Largest one-way message delay once the network has healed.
MAX_DELAY = 0.2
#: Largest one-way delay before the heal (slow links reorder a lot).
MAX_DELAY_FAULTY = 1.5
#: Largest clock skew of a node, either way (below half the feed rules' future-dated limit).
MAX_SKEW = 100.0
#: Delay between a store change and the coordinator pass it wakes.
PASS_DELAY = 0.01
#: Most entries one pull reply carries.
PULL_LIMIT = 500
RULE = "arithmetic-acc"
SUITE_DIGEST = hashlib.sha256(b"tripwire-core test suite").hexdigest()
TASK_DIGEST = hashlib.sha256(b"arithmetic-add test task").hexdigest()

STRATEGIES = (
    "none",
    "withhold",
    "vanish",
    "equivocate",
    "backdate",
    "poison",
    "flood",
    "forge-few",
    "forge-objection",
    "forge-unpublished",
    "forge-later-vote",
    "stale-roster",
)


def liveness_bound(n_labs: int) -> float:
    """Simulated seconds, after the heal (or the breach, if later), within which every honest
    node holds a valid pause certificate for an honest breach when honest labs hold the
    pause quorum.

    After the heal every node pulls every peer each :data:`SYNC_INTERVAL` and a round trip
    takes at most ``2 * MAX_DELAY``, so one *dissemination step* is ``S + 2D``. The result
    reaches every node in one step; a proposal follows at once from the origin or after
    ``propose_delay_s`` from anyone; votes reach the certifiers in a second step; supporters
    certify in rank order ``certificate_stagger_s`` apart (at most one rank per lab); the
    certificate reaches everyone in a third step; one more second covers pass delays.
    """
    step = SYNC_INTERVAL + 2 * MAX_DELAY
    return VOTES.propose_delay_s + n_labs * VOTES.certificate_stagger_s + 3 * step + 1.0


class _AdoptedPolicy(Policy):
    """The demo policy with its digest computed once: the simulation never copies or edits
    it, and the digest (canonical JSON of the whole policy) is asked for on every pass."""

    @cached_property
    def digest(self) -> str:  # type: ignore[override]
        return digest_of(self.to_json())


@cache
def policy() -> Policy:
    text = (ROOT / "specs/policies/demo.yaml").read_text(encoding="utf-8")
    adopted = _AdoptedPolicy.from_yaml(text)
    assert adopted.digest == Policy.from_yaml(text).digest
    return adopted


@cache
def lab_key(i: int) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(f"tripwire-sim-lab-{i}".encode()).digest())


def wall(t: float) -> datetime:
    return EPOCH + timedelta(seconds=round(t, 6))


def result_body(acc: str, *, stderr: str = "0.02", step: int = 100, model: str = "run-1") -> dict[str, Any]:
    """An ``eval_result`` body for the demo policy's indicator (arithmetic-add acc)."""
    return {
        "suite": {"id": "tripwire-core", "version": "1.0.0", "digest": SUITE_DIGEST},
        "model": {
            "name": model,
            "commitment": hashlib.sha256(f"{model}:{step}".encode()).hexdigest(),
            "checkpoint_step": step,
            "training_flop": "1E15",
        },
        "tasks": [
            {
                "name": "arithmetic-add",
                "digest": TASK_DIGEST,
                "n": 500,
                "metrics": {"acc": {"value": acc, "stderr": stderr}},
                "items_root": hashlib.sha256(f"items:{model}:{step}".encode()).hexdigest(),
            }
        ],
        "runtime": {"device": "cpu"},
        "started_at": "2025-01-01T00:00:00Z",
        "finished_at": "2025-01-01T00:01:00Z",
    }


# --- the scenario ----------------------------------------------------------------------------------


@dataclass
class Scenario:
    """Everything a seed decides before the run starts (printed with a failure)."""

    seed: int
    strategy: str
    labs: list[str]
    weights: dict[str, int]
    quorum: int
    adversaries: list[str]
    origin: str
    """The honest lab that publishes the result."""
    breach: bool
    """Whether that result breaches the policy."""
    result_at: float
    heal_at: float
    drop_p: float
    dup_p: float
    partitions: list[tuple[float, float, frozenset[str]]]
    """(start, end, one side): messages across the cut are lost while it lasts."""
    crashes: list[tuple[str, float, float]]
    """(lab, down at, up at) of honest nodes, all before the heal."""
    skew: dict[str, float]
    variant: int
    """A strategy's own choice among its variants."""
    pivotal: bool
    """Honest labs alone fall short of the quorum; the coalition's votes would complete it."""

    @property
    def honest(self) -> list[str]:
        return [x for x in self.labs if x not in self.adversaries]

    @property
    def honest_weight(self) -> int:
        return sum(self.weights[x] for x in self.honest)

    @property
    def adversary_weight(self) -> int:
        return sum(self.weights[x] for x in self.adversaries)

    @property
    def live(self) -> bool:
        """Whether liveness is owed: an honest breach and honest labs holding the quorum."""
        return self.breach and self.honest_weight >= self.quorum

    @property
    def deadline(self) -> float:
        return max(self.heal_at, self.result_at) + liveness_bound(len(self.labs))

    @property
    def end(self) -> float:
        return self.deadline + 6.0

    def describe(self) -> str:
        return (
            f"seed={self.seed} strategy={self.strategy}/{self.variant} labs={self.weights} quorum={self.quorum} "
            f"adversaries={self.adversaries} origin={self.origin} breach={self.breach} "
            f"result_at={self.result_at:.2f} heal_at={self.heal_at:.2f} drop={self.drop_p:.2f} "
            f"dup={self.dup_p:.2f} partitions={[(round(a, 2), round(b, 2), sorted(s)) for a, b, s in self.partitions]} "
            f"crashes={[(x, round(a, 2), round(b, 2)) for x, a, b in self.crashes]}"
        )


def make_scenario(seed: int, strategy: str | None = None, *, pivotal: bool | None = None) -> Scenario:
    """Draw a scenario from ``seed``; ``strategy`` forces the adversary's strategy and
    ``pivotal`` whether the adversary's votes decide the quorum (honest weight below it)."""
    rng = random.Random(seed)
    n = rng.randint(3, 7)
    labs = [f"lab{i}" for i in range(n)]
    weights = {x: rng.randint(1, 5) for x in labs}
    drawn = rng.choice(STRATEGIES)
    strategy = strategy or drawn
    k = 1 if n < 5 or rng.random() < 0.6 else 2
    picked = sorted(rng.sample(labs[1:], k))
    adversaries: list[str] = []
    if strategy == "vanish":
        adversaries = sorted({labs[0], *picked[: k - 1]})  # the first-ranked supporter
    elif strategy != "none":
        adversaries = picked
    a = sum(weights[x] for x in adversaries)
    if sum(weights.values()) - a <= a:  # honest labs must outweigh the coalition
        for x in labs:
            if x not in adversaries:
                weights[x] += a
    h = sum(weights.values()) - a
    drawn_pivotal = rng.random() < 0.3
    pivotal = bool(adversaries) and (drawn_pivotal if pivotal is None else pivotal)
    # Pivotal: honest labs alone fall short, the coalition's votes would complete the quorum.
    quorum = rng.randint(h + 1, h + a) if pivotal else rng.randint(a + 1, h)
    honest = [x for x in labs if x not in adversaries]
    heal_at = rng.uniform(2.0, 12.0)
    partitions = []
    for _ in range(rng.choice((0, 0, 1, 2))):
        start = rng.uniform(0.0, heal_at)
        end = rng.uniform(start, heal_at)
        side = frozenset(rng.sample(labs, rng.randint(1, n - 1)))
        partitions.append((start, end, side))
    crashes = []
    for _ in range(rng.choice((0, 0, 1, 2))):
        who = rng.choice(honest)
        down = rng.uniform(0.0, heal_at)
        crashes.append((who, down, rng.uniform(down, heal_at)))
    faulty = rng.random() < 0.8
    return Scenario(
        seed=seed,
        strategy=strategy,
        labs=labs,
        weights=weights,
        quorum=quorum,
        adversaries=adversaries,
        origin=rng.choice(honest),
        breach=rng.random() < 0.85,
        result_at=rng.uniform(0.0, 4.0),
        heal_at=heal_at,
        drop_p=rng.uniform(0.0, 0.3) if faulty else 0.0,
        dup_p=rng.uniform(0.0, 0.2) if faulty else 0.0,
        partitions=partitions,
        crashes=crashes,
        skew={x: rng.uniform(-MAX_SKEW, MAX_SKEW) for x in labs},
        variant=rng.randrange(4),
        pivotal=pivotal,
    )


# --- ground truth and verification ----------------------------------------------------------------


class Ledger:
    """Everything anyone signed in the run, and verification memoized across nodes.

    Verification is deterministic for one roster chain, so every node asking about the same
    envelope gets the same answer; the memo only saves the signature checks.
    """

    def __init__(self, chain: RosterChain) -> None:
        self.chain = chain
        self.signed: dict[str, VerifiedEntry] = {}
        self._verified: dict[tuple[str, tuple[tuple[str, str], ...]], VerifiedEntry | TripwireError] = {}
        self._proofs: dict[str, bool] = {}
        self._supporters: dict[tuple[str, int], set[str]] = {}

    def verify(self, env: Envelope) -> VerifiedEntry | TripwireError:
        key = (env.payload, tuple((s.keyid or "", s.sig) for s in env.signatures))
        got = self._verified.get(key)
        if got is None:
            try:
                got = verify_entry(env, self.chain)
            except TripwireError as e:
                got = e
            self._verified[key] = got
        return got

    def record(self, env: Envelope) -> VerifiedEntry | None:
        got = self.verify(env)
        if isinstance(got, VerifiedEntry):
            self.signed[got.entry_id] = got
            return got
        return None

    def proof_ok(self, proof: EquivocationProof) -> bool:
        ok = self._proofs.get(proof.proof_id)
        if ok is None:
            try:
                proof.verify(self.chain)
                ok = True
            except TripwireError:
                ok = False
            self._proofs[proof.proof_id] = ok
        return ok

    def first_pause_supporters(self, pid: str) -> set[str]:
        key = (pid, len(self.signed))
        if key not in self._supporters:
            self._supporters[key] = self._first_pause_supporters(pid)
        return self._supporters[key]

    def _first_pause_supporters(self, pid: str) -> set[str]:
        """Labs whose first signed vote on ``pid`` (lowest seq over everything the lab signed;
        at an equivocated seq, either entry) decides pause."""
        lowest: dict[str, int] = {}
        decisions: dict[tuple[str, int], set[str]] = defaultdict(set)
        for v in self.signed.values():
            body = v.statement.body
            if not isinstance(body, VoteBody) or body.proposal_id != pid or body.action != "pause":
                continue
            lowest[v.lab] = min(lowest.get(v.lab, v.seq), v.seq)
            decisions[(v.lab, v.seq)].add(body.decision)
        return {lab for lab, seq in lowest.items() if "pause" in decisions[(lab, seq)]}

    def breaching_results(self) -> set[str]:
        """Result ids that breach the policy's pausing rule by their own values."""
        from node.pause.analysis import evaluate_results

        results = [e for e in self.signed.values() if e.kind == "eval_result"]
        out = set()
        for rid, ev in evaluate_results(results, policy()).items():
            v = ev.by_rule(RULE)
            if v is not None and v.verdict == "breach":
                out.add(rid)
        return out


# --- storage --------------------------------------------------------------------------------------


class Store:
    """A node's durable feeds (kept across a crash) and its out-of-order hold (lost in one)."""

    def __init__(self) -> None:
        self.feeds: dict[str, dict[int, VerifiedEntry]] = defaultdict(dict)
        self.states: dict[str, FeedState] = {}
        self.by_id: dict[str, VerifiedEntry] = {}
        self.by_kind: dict[str, list[VerifiedEntry]] = {k: [] for k in KINDS}
        self.held: dict[str, VerifiedEntry] = {}
        self.proofs: dict[str, EquivocationProof] = {}
        self.log: list[str] = []

    # FeedLookup
    def stored_at(self, lab: str, seq: int) -> VerifiedEntry | None:
        return self.feeds[lab].get(seq)

    def held_entry(self, lab: str, entry_id: str) -> VerifiedEntry:
        return self.held[entry_id]

    def held_total(self) -> int:
        return len(self.held)

    def heads(self) -> dict[str, int]:
        return {lab: st.head.seq for lab, st in self.states.items() if st.head is not None}

    def forks(self) -> dict[str, int]:
        """lab -> lowest seq at which this node holds an equivocation proof for its feed."""
        out: dict[str, int] = {}
        for p in self.proofs.values():
            out[p.lab] = min(p.seq, out.get(p.lab, p.seq))
        return out

    def lose_hold(self) -> None:
        self.held.clear()
        self.states = {
            lab: FeedState(st.head, st.head_issued_at, st.fork_seq, {}) for lab, st in self.states.items()
        }

    def after(self, heads: dict[str, int], limit: int) -> list[Envelope]:
        out: list[Envelope] = []
        for lab in sorted(self.feeds):
            feed = self.feeds[lab]
            seq = heads.get(lab, 0) + 1
            while seq in feed and len(out) < limit:
                out.append(feed[seq].envelope)
                seq += 1
        return out


def ingest(store: Store, entries: Sequence[VerifiedEntry], proofs: Sequence[EquivocationProof], now: datetime) -> list[VerifiedEntry]:
    """Spec §4.2 step 7–8, §4.3, §4.4 through the real feed planner; returns what was appended."""
    plan = plan_appends(store.states, entries, store, now=now, stored=store.by_id.keys(), proofs=proofs)
    for v in plan.appends:
        store.feeds[v.lab][v.seq] = v
        store.by_id[v.entry_id] = v
        store.log.append(v.entry_id)
        if v.kind in store.by_kind:
            store.by_kind[v.kind].append(v)
    for v in plan.hold:
        store.held[v.entry_id] = v
    for eid in plan.unhold:
        store.held.pop(eid, None)
    for p in plan.proofs:
        store.proofs.setdefault(p.proof_id, p)
    store.states.update(plan.states)
    return list(plan.appends)


# --- nodes ----------------------------------------------------------------------------------------


@dataclass
class Node:
    lab: str
    index: int
    honest: bool
    sim: Simulation
    store: Store = field(default_factory=Store)
    up: bool = True
    epoch: int = 0
    gone: bool = False
    """Crashed for good (vote-and-vanish)."""
    silent: bool = False
    """Sends nothing (withholding)."""
    first_seen: dict[str, float] = field(default_factory=dict)
    quorum_seen: dict[str, float] = field(default_factory=dict)
    eval_cache: EvaluationCache = field(default_factory=EvaluationCache)
    cert_cache: CertCache = field(default_factory=dict)
    pass_at: float | None = None
    writer: FeedWriter | None = None
    analysis: Analysis | None = None

    def clock(self) -> datetime:
        return wall(self.sim.now + self.sim.scenario.skew[self.lab])

    def issued_at(self) -> str:
        return format_time(self.clock())

    # timers ----------------------------------------------------------------------------------------

    def after(self, delay: float, fn: Callable[[], None]) -> None:
        epoch = self.epoch

        def run() -> None:
            if self.up and self.epoch == epoch:
                fn()

        self.sim.at(self.sim.now + delay, run)

    def wake(self, delay: float = PASS_DELAY) -> None:
        when = self.sim.now + delay
        if self.pass_at is not None and self.pass_at <= when:
            return
        self.pass_at = when
        self.after(delay, self._pass_due)

    def _pass_due(self) -> None:
        if self.pass_at is not None and self.pass_at <= self.sim.now + 1e-9:
            self.pass_at = None
            self.coordinate()

    def start(self) -> None:
        self.after(self.sim.rng.uniform(0, SYNC_INTERVAL), self.sync_tick)
        self.wake()

    def crash(self) -> None:
        self.up, self.epoch, self.pass_at = False, self.epoch + 1, None
        self.first_seen, self.quorum_seen = {}, {}
        self.eval_cache, self.cert_cache = EvaluationCache(), {}
        self.store.lose_hold()

    def restart(self) -> None:
        if self.gone:
            return
        self.up, self.epoch = True, self.epoch + 1
        self.start()

    # network ---------------------------------------------------------------------------------------

    def sync_tick(self) -> None:
        if not self.silent:
            for peer in self.sim.peers(self):
                self.sim.send(self, peer, ("pull", self.store.heads(), frozenset(self.store.proofs)))
        self.after(SYNC_INTERVAL, self.sync_tick)

    def receive(self, src: Node, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "pull":
            if self.silent:
                return
            _, heads, have = msg
            envs = self.store.after(heads, PULL_LIMIT)
            proofs = [p for pid, p in sorted(self.store.proofs.items()) if pid not in have]
            if envs or proofs:
                self.sim.send(self, src, ("entries", envs, proofs))
        elif kind in ("entries", "push"):
            envs = msg[1]
            proofs = msg[2] if len(msg) > 2 else []
            self.take(envs, proofs)

    def take(self, envs: Iterable[Envelope], proofs: Sequence[EquivocationProof] = ()) -> list[VerifiedEntry]:
        verified = []
        for env in envs:
            got = self.sim.ledger.verify(env)
            if isinstance(got, VerifiedEntry):
                verified.append(got)
            else:
                self.sim.refused[got.code] += 1
        good = [p for p in proofs if p.proof_id not in self.store.proofs and self.sim.ledger.proof_ok(p)]
        if not verified and not good:
            return []
        appended = ingest(self.store, verified, good, self.clock())
        if appended or good:
            self.wake()
            if not self.honest:
                self.sim.adversary.on_accept(self, appended)
        return appended

    def publish_envelope(self, env: Envelope, *, to: Sequence[Node] | None = None, store: bool = True) -> VerifiedEntry | None:
        v = self.sim.ledger.record(env)
        if v is None:
            return None
        if store:
            self.take([env])
        for peer in self.sim.peers(self) if to is None else to:
            self.sim.send(self, peer, ("push", [env]))
        return v

    def publish(self, kind: str, body: Any, *, issued_at: str | None = None, to: Sequence[Node] | None = None) -> VerifiedEntry | None:
        assert self.writer is not None
        env, _ = self.writer.append(kind, body, issued_at or self.issued_at())
        return self.publish_envelope(env, to=to)

    # coordination ----------------------------------------------------------------------------------

    def coordinate(self) -> None:
        for _ in range(8):
            if not self._pass():
                break

    def state(self) -> Analysis:
        """This node's analysis of what it holds now (no actions)."""
        return analyze(
            self.store.by_kind,
            self.sim.chain,
            policy(),
            cache=self.eval_cache,
            cert_cache=self.cert_cache,
            heads=self.store.heads(),
            held_ids=self.store.by_id.__contains__,
            forks=self.store.forks(),
        )

    def _pass(self) -> bool:
        if not self.honest:
            return False  # the coalition acts through its strategy only
        sim = self.sim
        now_mono = sim.now
        entries = self.store.by_kind
        for e in entries["eval_result"]:
            self.first_seen.setdefault(e.entry_id, now_mono)
        a = self.state()
        if a.pause.conflicts:
            # A certificate exposed a fork (a vote never published where this node holds
            # another entry): record the proof, as the node's coordinator does, and judge again.
            proofs = []
            for v in a.pause.conflicts:
                held = self.store.stored_at(v.lab, v.seq)
                if held is not None and held.entry_id != v.entry_id:
                    proofs.append(EquivocationProof.of(held, v))
            if proofs and self.take([], proofs) is not None and any(p.proof_id in self.store.proofs for p in proofs):
                return True
        self.analysis = a
        sim.observe(self, a)
        for pid, st in a.proposals.items():
            if st.tally is not None and st.tally and not st.certified:
                self.quorum_seen.setdefault(pid, now_mono)
        actions = plan_actions(
            a,
            lab=self.lab,
            chain=sim.chain,
            policy=policy(),
            config=VOTES,
            first_seen=lambda rid: self.first_seen.get(rid, now_mono),
            now_mono=now_mono,
            now=self.clock(),
            quorum_seen=lambda pid: self.quorum_seen.get(pid, now_mono),
        )
        later = [x.due for x in actions if x.due > now_mono]
        if later:
            self.wake(min(later) - now_mono)
        for act in actions:
            if act.due > now_mono:
                continue
            self.publish(act.kind, act.body)
            if act.kind in ("vote", "pause_certificate", "pause_proposal"):
                return True
        return False


# --- adversaries ----------------------------------------------------------------------------------


class Adversary:
    """The coalition's strategy: reacts to what its nodes accept, and acts on a schedule."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.s = sim.scenario
        self.done: set[tuple[str, str]] = set()

    @property
    def nodes(self) -> list[Node]:
        return [self.sim.nodes[x] for x in self.s.adversaries]

    def start(self) -> None:
        st, rng = self.s.strategy, self.sim.rng
        for node in self.nodes:
            if st == "withhold":
                node.silent = True
            elif st == "poison":
                self.sim.at(rng.uniform(0, 3), lambda n=node: self.poison(n))
            elif st == "flood":
                self.sim.at(rng.uniform(0, 3), lambda n=node: self.flood(n))
            elif st == "backdate":
                self.sim.at(rng.uniform(0, 3), lambda n=node: self.fake_proposal(n, back=True))

    def peers(self, node: Node) -> list[Node]:
        return self.sim.peers(node)

    def on_accept(self, node: Node, entries: Sequence[VerifiedEntry]) -> None:
        for e in entries:
            if e.kind != "pause_proposal":
                continue
            body = e.statement.body
            assert isinstance(body, PauseProposalBody)
            key = (node.lab, body.proposal_id)
            if key in self.done:
                continue
            self.done.add(key)
            self.react(node, body)

    def vote(self, pid: str, decision: str, rationale: str = "") -> dict[str, Any]:
        return VoteBody(proposal_id=pid, action="pause", decision=decision, rationale=rationale).model_dump(mode="json")  # type: ignore[arg-type]

    def react(self, node: Node, proposal: PauseProposalBody) -> None:
        st, pid, rng = self.s.strategy, proposal.proposal_id, self.sim.rng
        if st == "vanish":
            node.publish("vote", self.vote(pid, "pause"))
            self.sim.at(self.sim.now + rng.uniform(0.0, 0.05), lambda: self.sim.kill(node))
        elif st == "equivocate":
            assert node.writer is not None
            head = node.writer.head
            fork = FeedWriter(node.writer.network, node.lab, node.writer.key, head)
            peers = self.peers(node)
            rng.shuffle(peers)
            half = len(peers) // 2 if self.s.variant % 2 else rng.randint(1, max(1, len(peers) - 1))
            node.publish("vote", self.vote(pid, "pause"), to=peers[:half])
            env, _ = fork.append("vote", self.vote(pid, "object"), node.issued_at())
            node.publish_envelope(env, to=peers[half:], store=False)
        elif st == "backdate":
            back = format_time(EPOCH - timedelta(days=30) + timedelta(seconds=self.sim.now))
            node.publish("vote", self.vote(pid, "pause"), issued_at=back if self.s.variant % 2 else None)
        elif st.startswith("forge") or st == "stale-roster":
            self.sim.at(self.sim.now + rng.uniform(0.5, 3.0), lambda: self.forge(node, proposal))
        elif st in ("poison", "flood") and self.s.variant % 2:
            node.publish("vote", self.vote(pid, "pause"))

    # strategies ------------------------------------------------------------------------------------

    def raw(self, node: Node, kind: str, body: dict[str, Any], *, seq: int | None = None, prev: str | None = None, issued_at: str | None = None, to: Sequence[Node] | None = None) -> VerifiedEntry | None:
        """Sign a statement without the producer's validation (what an attacker can do)."""
        assert node.writer is not None
        head = node.writer.head
        seq = seq if seq is not None else (head.seq if head else 0) + 1
        if prev is None and seq > 1 and head is not None and seq == head.seq + 1:
            prev = head.entry_id
        st = {
            "protocol": "tripwire/1",
            "network": self.sim.chain.network_id,
            "lab": node.lab,
            "seq": seq,
            "prev": prev,
            "issued_at": issued_at or node.issued_at(),
            "kind": kind,
            "body": body,
        }
        try:
            payload = canonical_bytes(st)
        except TripwireError:
            payload = repr(st).encode()
        env = sign_payload(payload, ENTRY_PAYLOAD_TYPE, [node.writer.key])
        v = self.sim.ledger.record(env)
        if v is not None and head is not None and v.seq == head.seq + 1 and to is None:
            node.writer.head = Head(v.seq, v.entry_id)
            node.take([env])
        for peer in self.peers(node) if to is None else to:
            self.sim.send(node, peer, ("push", [env]))
        return v

    def poison(self, node: Node) -> None:
        for value in ("1E70", "9" * 60, "1E-999", "-1E16", "0." + "3" * 40, "1E15"):
            self.raw(node, "eval_result", result_body(value, step=len(value)))
        body = result_body("0.99", stderr="1E70", step=7)
        self.raw(node, "eval_result", body)
        self.fake_proposal(node, back=False)

    def flood(self, node: Node) -> None:
        for i in range(12):
            node.publish("note", {"text": f"flood {i} " + "x" * 8000, "refs": []})
        for i in range(6):
            node.publish("eval_result", result_body("0.1", step=1000 + i, model=f"flood-{i}"))

    def fake_proposal(self, node: Node, *, back: bool) -> None:
        """Propose a pause on a result that does not breach (or that no one published) and vote for it."""
        issued = format_time(EPOCH - timedelta(days=30) + timedelta(seconds=self.sim.now)) if back else None
        res = node.publish("eval_result", result_body("0.1", step=77, model="quiet"), issued_at=issued)
        targets = [res.entry_id if res else "0" * 64, hashlib.sha256(b"nothing").hexdigest()]
        for rid in targets:
            trig = Trigger(result=rid, lab=node.lab, rule=RULE, policy_digest=policy().digest)
            pid = pause_proposal_id(trig)
            body = PauseProposalBody(proposal_id=pid, trigger=trig, observed="0.9", level="0.6")
            node.publish("pause_proposal", body, issued_at=issued)
            node.publish("vote", self.vote(pid, "pause"), issued_at=issued)
            self.done.add((node.lab, pid))

    def forge(self, node: Node, proposal: PauseProposalBody) -> None:
        """Publish a certificate for ``proposal`` that no real quorum backs."""
        if not node.up:
            return
        pid, st = proposal.proposal_id, self.s.strategy
        held = node.store.by_kind
        props = [e for e in held["pause_proposal"] if e.statement.body.proposal_id == pid]  # type: ignore[union-attr]
        honest_pause = [
            v for v in held["vote"]
            if v.lab not in self.s.adversaries and v.statement.body.proposal_id == pid  # type: ignore[union-attr]
            and v.statement.body.decision == "pause"  # type: ignore[union-attr]
        ]
        if not props:
            return
        mine: list[Envelope] = []
        version = 1
        if st == "forge-few":
            v = node.publish("vote", self.vote(pid, "pause"))
            mine = [v.envelope] if v else []
            honest_pause = honest_pause[:1] if self.s.variant % 2 else []
        elif st == "forge-objection":
            v = node.publish("vote", self.vote(pid, "object"))
            mine = [v.envelope] if v else []
        elif st == "forge-unpublished":
            # A pause vote signed only for the certificate, at a seq the feed already holds.
            node.publish("note", {"text": "placeholder", "refs": []})
            node.publish("vote", self.vote(pid, "object"))
            assert node.writer is not None and node.writer.head is not None
            seq = max(1, node.writer.head.seq - (1 + self.s.variant % 2))
            prev = node.store.feeds[node.lab][seq - 1].entry_id if seq > 1 else None
            body = self.vote(pid, "pause", "for the certificate only")
            v = self.raw(node, "vote", body, seq=seq, prev=prev, to=[])
            mine = [v.envelope] if v else []
        elif st == "forge-later-vote":
            node.publish("vote", self.vote(pid, "object"))
            v = node.publish("vote", self.vote(pid, "pause"))
            mine = [v.envelope] if v else []
        elif st == "stale-roster":
            v = node.publish("vote", self.vote(pid, "pause"))
            mine = [v.envelope] if v else []
            version = 2 + self.s.variant
        votes = mine + [v.envelope for v in honest_pause]
        if not votes:
            return
        cert = PauseCertificateBody(
            proposal_id=pid, action="pause", roster_version=version, proposal=props[0].envelope, votes=votes
        )
        node.publish("pause_certificate", cert)


# --- the simulation -------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a run found. The invariants (each a list of violations, empty when it holds):

    - ``safety``: whenever an honest node computed its pause state, every active pause was
      for a proposal whose first-vote pause supporters (over everything signed in the run)
      hold the roster's pause quorum, and whose trigger result really breaches the policy;
    - ``liveness``: when ``scenario.live``, every honest node held a valid pause
      certificate for the honest breach by ``scenario.deadline``;
    - ``agreement``: at the end (healed and quiet), all honest nodes had the same set of
      active pause proposal ids.
    """

    scenario: Scenario
    safety: list[str]
    liveness: list[str]
    agreement: list[str]
    active: dict[str, list[str]]
    breach_pid: str | None
    messages: int
    refused: dict[str, int]
    proofs: dict[str, int]
    sim: Simulation

    @property
    def ok(self) -> bool:
        return not (self.safety or self.liveness or self.agreement)

    def report(self) -> str:
        lines = [self.scenario.describe()]
        for name in ("safety", "liveness", "agreement"):
            for v in getattr(self, name)[:5]:
                lines.append(f"  {name}: {v}")
        lines.append(f"  active={self.active} refused={dict(self.refused)}")
        sc = self.scenario
        lines.append(f"  replay: python tests/support/simulator.py {sc.seed} {sc.strategy} {int(sc.pivotal)}")
        return "\n".join(lines)


class Simulation:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = s = scenario
        self.rng = random.Random(f"run:{s.seed}")
        self.now = 0.0
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._n = 0
        self.messages = 0
        self.refused: dict[str, int] = defaultdict(int)
        self.chain = self._roster()
        self.ledger = Ledger(self.chain)
        self.nodes: dict[str, Node] = {}
        for i, lab in enumerate(s.labs):
            node = Node(lab, i, lab not in s.adversaries, self)
            node.writer = FeedWriter(self.chain.network_id, lab, lab_key(i))
            self.nodes[lab] = node
        self.adversary = Adversary(self)
        self.safety: list[str] = []
        self._breaching: set[str] | None = None
        self.breach_pid: str | None = None

    def _roster(self) -> RosterChain:
        s = self.scenario
        keys = [lab_key(i) for i in range(len(s.labs))]
        roster = draft_roster(
            network_name=f"sim-{s.seed}",
            labs=[(x, x, [keys[i].public_key], f"https://{x}.example", s.weights[x]) for i, x in enumerate(s.labs)],
            pause_weight=s.quorum,
            resume_weight=s.quorum,
            roster_threshold=len(s.labs),
            policy_digest=policy().digest,
            issued_at=format_time(EPOCH - timedelta(days=60)),
            expires=format_time(EPOCH + timedelta(days=365)),
        )
        return RosterChain.from_envelopes([roster_envelope(roster, keys)])

    # scheduler -------------------------------------------------------------------------------------

    def at(self, when: float, fn: Callable[[], None]) -> None:
        self._n += 1
        heapq.heappush(self._queue, (max(when, self.now), self._n, fn))

    def peers(self, node: Node) -> list[Node]:
        return [n for n in self.nodes.values() if n is not node]

    def cut(self, a: str, b: str) -> bool:
        for start, end, side in self.scenario.partitions:
            if start <= self.now < end and ((a in side) != (b in side)):
                return True
        return False

    def send(self, src: Node, dst: Node, msg: tuple[Any, ...]) -> None:
        s, rng = self.scenario, self.rng
        self.messages += 1
        healed = self.now >= s.heal_at
        if not healed and (self.cut(src.lab, dst.lab) or rng.random() < s.drop_p):
            return
        copies = 2 if rng.random() < s.dup_p else 1
        for _ in range(copies):
            delay = rng.uniform(0.001, MAX_DELAY if healed else MAX_DELAY_FAULTY)
            self.at(self.now + delay, lambda: dst.up and dst.receive(src, msg))  # type: ignore[func-returns-value]

    def kill(self, node: Node) -> None:
        node.gone = True
        node.crash()

    # invariants ------------------------------------------------------------------------------------

    def observe(self, node: Node, a: Analysis) -> None:
        if len(self.safety) >= 5:
            return
        q = self.chain.current.roster
        for pid in a.pause.active:
            supporters = self.ledger.first_pause_supporters(pid)
            weight = sum(q.lab(x).weight for x in supporters)  # type: ignore[union-attr]
            if weight < q.quorum.pause.weight:
                self.safety.append(
                    f"t={self.now:.3f} {node.lab} paused on {pid[:12]} with first-vote support "
                    f"{sorted(supporters)} weight {weight} < quorum {q.quorum.pause.weight}"
                )
            prop = a.pause.proposals.get(pid)
            if prop is not None:
                body = prop.entry.statement.body
                assert isinstance(body, PauseProposalBody)
                if self._breaching is None or body.trigger.result not in self._breaching:
                    self._breaching = self.ledger.breaching_results()
                if body.trigger.result not in self._breaching or body.trigger.rule != RULE:
                    self.safety.append(
                        f"t={self.now:.3f} {node.lab} paused on {pid[:12]} whose trigger result "
                        f"{body.trigger.result[:12]} does not breach"
                    )

    def run(self) -> Outcome:
        s = self.scenario
        for node in self.nodes.values():
            node.start()
        origin = self.nodes[s.origin]

        def publish_result() -> None:
            if not origin.up:  # crashed right now: it publishes once it is back
                self.at(self.now + 0.5, publish_result)
                return
            v = origin.publish("eval_result", result_body("0.9" if s.breach else "0.1"))
            assert v is not None
            trig = Trigger(result=v.entry_id, lab=s.origin, rule=RULE, policy_digest=policy().digest)
            self.breach_pid = pause_proposal_id(trig)

        self.at(s.result_at, publish_result)
        for lab, down, up in s.crashes:
            node = self.nodes[lab]
            self.at(down, node.crash)
            self.at(up, node.restart)
        self.adversary.start()
        liveness: list[str] = []
        deadline = s.deadline

        def check_liveness() -> None:
            for node in self.nodes.values():
                if not node.honest:
                    continue
                a = node.state()
                if self.breach_pid is None or a is None or self.breach_pid not in a.pause.active:
                    liveness.append(
                        f"{node.lab} holds no valid pause certificate for {str(self.breach_pid)[:12]} at "
                        f"t={self.now:.2f} (deadline {deadline:.2f})"
                    )

        if s.live:
            self.at(deadline, check_liveness)
        end = s.end
        while self._queue and self._queue[0][0] <= end:
            when, _, fn = heapq.heappop(self._queue)
            self.now = when
            fn()
        active: dict[str, list[str]] = {}
        for node in self.nodes.values():
            if node.honest:
                a = node.state()
                self.observe(node, a)
                active[node.lab] = sorted(a.pause.active)
        agreement = []
        if len({tuple(v) for v in active.values()}) > 1:
            agreement.append(f"honest nodes differ: { {k: [p[:12] for p in v] for k, v in active.items()} }")
        return Outcome(
            scenario=s,
            safety=self.safety,
            liveness=liveness,
            agreement=agreement,
            active=active,
            breach_pid=self.breach_pid,
            messages=self.messages,
            refused=dict(self.refused),
            proofs={lab: len(n.store.proofs) for lab, n in self.nodes.items()},
            sim=self,
        )


def simulate(seed: int, strategy: str | None = None, *, pivotal: bool | None = None) -> Outcome:
    return Simulation(make_scenario(seed, strategy, pivotal=pivotal)).run()


def main(argv: Sequence[str]) -> int:
    seed = int(argv[0])
    strategy = argv[1] if len(argv) > 1 else None
    pivotal = bool(int(argv[2])) if len(argv) > 2 else None
    out = simulate(seed, strategy, pivotal=pivotal)
    print(out.report())
    return 0 if out.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
