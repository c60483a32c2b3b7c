"""A synthetic, fully signed network history for the tests and the benchmarks (test support).

Built only from ``protocol`` (FeedWriter, draft_roster, roster_envelope), so reports can
be produced and verified without a node. The story: several labs train models whose
two-digit-addition accuracy rises with compute; the last lab's final checkpoint crosses
the demo policy's breach level, an alert and a pause proposal follow, labs vote and a
pause certificate is published. Deterministic for a given ``seed``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from node.home.resources import spec_path
from protocol.canonical import format_time
from protocol.entries import (
    AlertBody,
    DiscretionaryTrigger,
    DocRef,
    EvalResultBody,
    PauseCertificateBody,
    PauseProposalBody,
    Trigger,
    VerifiedEntry,
    VoteBody,
    pause_proposal_id,
)
from protocol.envelope import Envelope
from protocol.feed import EquivocationProof, FeedWriter
from protocol.keys import SigningKey
from protocol.merkle import Checkpoint, sign_checkpoint
from protocol.policy import Policy
from protocol.roster import RosterChain, draft_roster, roster_envelope, verify_entry
from protocol.scope import Scope
from reports.bundle import Audience, EvidenceBundle, LogProver, build_bundle, select_entries

DEMO_POLICY = spec_path("policies", "demo.yaml")
#: The voting deadline of the discretionary story's roster (seconds).
DISCRETIONARY_DEADLINE_S = 3600
#: The documents the discretionary story's proposer cites (name, contents).
DISCRETIONARY_EVIDENCE = (
    ("probe-anomaly-report.pdf", b"activation probe anomaly on checkpoint 7"),
    ("red-team-transcripts.jsonl", b'{"transcript": 1}\n'),
)
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)

#: Peer-supplied strings that must stay data: markup, attribute breakouts, bidi overrides, length.
HOSTILE_NAMES = (
    "<img src=x onerror=\"console.log('TRIPWIRE-XSS')\">Acme",
    '" onmouseover="console.log(\'TRIPWIRE-XSS\')" x="',
    "مختبر الذكاء \u202eevil\u202c Labs",
    "W" * 256,
    "</title><script>console.log('TRIPWIRE-XSS')</script>",
)
HOSTILE_RATIONALE = (
    "<script>console.log('TRIPWIRE-XSS')</script> We object: ]]> <!-- --> "
    "<svg onload=\"console.log('TRIPWIRE-XSS')\"></svg> " + "long rationale " * 60
)


def _seed_key(seed: int, name: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(f"tripwire-fixture:{seed}:{name}".encode()).digest())


@dataclass
class SyntheticNetwork:
    chain: RosterChain
    keys: dict[str, SigningKey]
    policy: Policy
    entries: list[VerifiedEntry] = field(default_factory=list)
    """Every entry, in the node's accept order (= log order)."""
    equivocations: list[EquivocationProof] = field(default_factory=list)
    writers: dict[str, FeedWriter] = field(default_factory=dict)
    clock: datetime = T0

    # log ---------------------------------------------------------------------------------
    def log(self) -> LogProver:
        return LogProver.of_entries([e.entry_id for e in self.entries])

    def checkpoint(self, node: str, log: LogProver | None = None) -> Envelope:
        log = log or self.log()
        cp = Checkpoint(
            protocol="tripwire/1",
            network=self.chain.network_id,
            node=node,
            size=log.size,
            root=log.root.hex(),
            issued_at=format_time(self.clock),
        )
        return sign_checkpoint(cp, self.keys[node])

    def prover(self, log: LogProver | None = None) -> Any:
        log = log or self.log()
        index = {e.entry_id: i for i, e in enumerate(self.entries)}

        def proof(eid: str) -> tuple[int, int, list[str]]:
            i = index[eid]
            return i, log.size, [h.hex() for h in log.proof(i)]

        return proof

    def bundle(
        self, *, node: str | None = None, audience: Audience = "regulator", since: datetime | None = None
    ) -> EvidenceBundle:
        node = node or next(iter(self.keys))
        log = self.log()
        return build_bundle(
            roster_chain=self.chain,
            entries=select_entries(self.entries, since, self.chain),
            equivocations=self.equivocations,
            checkpoint=self.checkpoint(node, log),
            proofs=self.prover(log),
            policy=self.policy,
            node=node,
            key=self.keys[node],
            audience=audience,
            since=since,
            generated_at=self.clock,
        )

    # publishing --------------------------------------------------------------------------
    def publish(self, lab: str, kind: str, body: Any, minutes: float = 7) -> VerifiedEntry:
        self.clock += timedelta(minutes=minutes)
        env, _ = self.writers[lab].append(kind, body, format_time(self.clock))
        e = verify_entry(env, self.chain)
        self.entries.append(e)
        return e


def _result_body(
    *, model: str, step: int, flop: int, acc: float, n: int, started: datetime
) -> dict[str, Any]:
    se = math.sqrt(max(acc * (1 - acc), 1e-4) / n)
    logp = -4.0 + 3.6 * acc
    digest = hashlib.sha256(f"{model}:{step}".encode()).hexdigest()
    return {
        "suite": {"id": "tripwire-core", "version": "1", "digest": hashlib.sha256(b"suite").hexdigest()},
        "model": {
            "name": model,
            "commitment": digest,
            "checkpoint_step": step,
            "training_flop": str(flop),
        },
        "tasks": [
            {
                "name": "arithmetic-add",
                "digest": hashlib.sha256(b"task").hexdigest(),
                "n": n,
                "metrics": {
                    "acc": {"value": f"{acc:.4f}", "stderr": f"{se:.4f}"},
                    "mean_logp_correct": {"value": f"{logp:.4f}", "stderr": f"{se * 2:.4f}"},
                },
                "items_root": hashlib.sha256(f"items:{digest}".encode()).hexdigest(),
            }
        ],
        "runtime": {"device": "cpu", "torch": "2.13.0"},
        "started_at": format_time(started),
        "finished_at": format_time(started + timedelta(minutes=3)),
    }


def _discretionary_pause(net: SyntheticNetwork, ids: Sequence[str], outcome: str) -> None:
    proposer = ids[1]
    opened = net.clock + timedelta(minutes=7)
    trigger = DiscretionaryTrigger(
        kind="discretionary",
        lab=proposer,
        evidence=[DocRef(name=n, sha256=hashlib.sha256(b).hexdigest()) for n, b in DISCRETIONARY_EVIDENCE],
        opened_at=format_time(opened),
    )
    scope = Scope(kind="compute_above", flop="1E+20")
    pid = pause_proposal_id(trigger, scope)
    proposal = net.publish(
        proposer,
        "pause_proposal",
        PauseProposalBody(
            proposal_id=pid,
            trigger=trigger,
            observed="0",
            level="0",
            rationale="Our activation probes flag deceptive planning no eval measures; we ask to pause larger runs.",
            scope=scope,
        ),
    )
    voters = list(ids) if outcome == "certified" else [ids[0]]
    votes = [
        net.publish(lab, "vote", VoteBody(proposal_id=pid, action="pause", decision="pause"), minutes=5)
        for lab in voters
    ]
    if outcome == "certified":
        net.publish(
            proposer,
            "pause_certificate",
            PauseCertificateBody(
                proposal_id=pid,
                action="pause",
                roster_version=1,
                proposal=proposal.envelope,
                votes=[v.envelope for v in votes],
            ),
        )
    else:
        late = DISCRETIONARY_DEADLINE_S / 60 + 10
        net.publish(ids[-1], "vote", VoteBody(proposal_id=pid, action="pause", decision="pause"), minutes=late)


def synthetic_network(
    labs: int = 3,
    results_per_lab: int = 8,
    *,
    hostile: bool = False,
    pause: bool = True,
    equivocation: bool = False,
    seed: int = 0,
    lab_names: Sequence[str] | None = None,
    reach: float = 1.0,
    discretionary: Literal["certified", "expired"] | None = None,
) -> SyntheticNetwork:
    """Build a signed history; see the module docstring for the story.

    ``reach`` scales how far along the compute range (10^18 to 10^21 FLOP) training gets.
    ``discretionary`` adds, after the results, a pause the second lab asks for on its own
    judgement (spec §6.11), scoped to runs past 10^20 FLOP, under a roster whose
    discretionary quorum is every lab and whose voting deadline is an hour: ``certified``,
    every lab votes for it in time and it is certified; ``expired``, one lab votes in time,
    another after the deadline, and the report is taken after the deadline.
    """
    if labs < 2:
        raise ValueError("the story needs at least two labs")
    policy = Policy.from_yaml(DEMO_POLICY.read_text(encoding="utf-8"))
    ids = [f"lab-{chr(ord('a') + i)}" if i < 26 else f"lab-{i}" for i in range(labs)]
    names = list(lab_names or [])
    for i in range(len(names), labs):
        names.append(
            HOSTILE_NAMES[i % len(HOSTILE_NAMES)] if hostile else f"Frontier Lab {chr(ord('A') + i % 26)}"
        )
    keys = {lab: _seed_key(seed, lab) for lab in ids}
    regulator = _seed_key(seed, "regulator")
    roster = draft_roster(
        network_name="Tripwire demonstration network",
        labs=[
            (lab, names[i], [keys[lab].public_key], f"http://127.0.0.1:{8700 + i}", 1)
            for i, lab in enumerate(ids)
        ],
        observers=[("ai-safety-institute", "AI Safety Institute", [regulator.public_key])],
        pause_weight=(labs // 2) + 1,
        resume_weight=(labs // 2) + 1,
        roster_threshold=(labs // 2) + 1,
        policy_digest=policy.digest,
        issued_at=format_time(T0 - timedelta(days=1)),
        expires=format_time(T0 + timedelta(days=365)),
        discretionary_weight=labs if discretionary else None,
        vote_deadline_s=DISCRETIONARY_DEADLINE_S if discretionary else None,
    )
    chain = RosterChain.from_envelopes([roster_envelope(roster, keys.values())])
    net = SyntheticNetwork(chain=chain, keys=keys, policy=policy)
    net.writers = {lab: FeedWriter(chain.network_id, lab, keys[lab]) for lab in ids}

    # Accuracy follows a logistic in log10 compute; later labs sit further along the curve
    # so that only the last lab's final checkpoint crosses the breach level.
    results: dict[str, VerifiedEntry] = {}
    for k in range(results_per_lab):
        for i, lab in enumerate(ids):
            frac = (k + 1) / results_per_lab
            log_flop = 18.0 + 3.0 * frac * reach
            shift = 0.6 * (labs - 1 - i) / max(labs - 1, 1)
            acc = 0.02 + 0.8 / (1 + math.exp(-4.0 * (log_flop - 20.6 - shift)))
            model = f"{names[i][:120]} model-{i}" if hostile else f"frontier-{lab}-7b"
            body = _result_body(
                model=model,
                step=250 * (k + 1),
                flop=int(round(10**log_flop, -15)),
                acc=acc,
                n=500,
                started=net.clock,
            )
            results[lab] = net.publish(lab, "eval_result", body, minutes=1 if results_per_lab > 100 else 20)

    if pause:
        watcher, breacher = ids[0], ids[-1]
        res = results[breacher]
        rule = policy.rule("arithmetic-acc")
        res_body = res.statement.body
        assert isinstance(res_body, EvalResultBody)
        acc_metric = res_body.tasks[0].metrics["acc"]
        net.publish(
            watcher,
            "alert",
            AlertBody(
                result=res.entry_id,
                result_lab=breacher,
                rule=rule.id,
                policy_digest=policy.digest,
                verdict="breach",
                observed=acc_metric.value,
                level=rule.breach_level,
                message=f"{breacher} reached the breach level of {rule.id}",
            ),
        )
        trigger = Trigger(result=res.entry_id, lab=breacher, rule=rule.id, policy_digest=policy.digest)
        pid = pause_proposal_id(trigger)
        proposal = net.publish(
            watcher,
            "pause_proposal",
            PauseProposalBody(
                proposal_id=pid,
                trigger=trigger,
                observed=acc_metric.value,
                level=rule.breach_level,
                rationale="Upper confidence bound of exact-match accuracy reached the breach level.",
            ),
        )
        votes = []
        for i, lab in enumerate(ids):
            decision: Literal["object", "pause"] = "object" if i == 1 else "pause"
            rationale = (
                HOSTILE_RATIONALE
                if (hostile and i == 1)
                else (
                    "We object: the eval set may be contaminated."
                    if i == 1
                    else "The policy is clear; we pause."
                )
            )
            votes.append(
                net.publish(
                    lab,
                    "vote",
                    VoteBody(proposal_id=pid, action="pause", decision=decision, rationale=rationale),
                )
            )
        cert = net.publish(
            watcher,
            "pause_certificate",
            PauseCertificateBody(
                proposal_id=pid,
                action="pause",
                roster_version=1,
                proposal=proposal.envelope,
                votes=[v.envelope for v in votes if v.statement.body_as(VoteBody).decision == "pause"],
            ),
        )
        # Every lab's training gate stops at its next check and signs a halt record.
        for k, lab in enumerate(ids):
            step = (results_per_lab * 100) + 20 * (k + 1)
            net.publish(
                lab,
                "note",
                {
                    "text": f"training halted at step {step}: the local store holds a pause certificate "
                    f"for proposal {pid[:16]}…; training may restart after a resume certificate",
                    "refs": [cert.entry_id],
                },
                minutes=1,
            )
    if discretionary:
        _discretionary_pause(net, ids, discretionary)
    if equivocation:
        lab = ids[1]
        w = net.writers[lab]
        fork = FeedWriter(chain.network_id, lab, keys[lab], w.head)
        net.clock += timedelta(minutes=5)
        real = net.publish(lab, "note", {"text": "routine note"}, minutes=0)
        env, _ = fork.append("note", {"text": "a different history"}, format_time(net.clock))
        net.equivocations.append(EquivocationProof.of(real, verify_entry(env, chain)))
    net.clock += timedelta(minutes=10)
    return net
