"""What this node should publish next, given an :class:`~node.pause.analysis.Analysis`.

:func:`plan_actions` turns the analysis into :class:`Action` s (alerts, pause proposals,
automatic votes under ``[votes] auto``, certificates, resume certificates), each due at a
monotonic time: the result's own lab acts at once, other labs after ``propose_delay_s``,
certificate supporters in lab-id order one ``certificate_stagger_s`` apart. It is pure:
the delays count from moments the caller supplies (``first_seen``, ``quorum_seen``), so a
simulation can drive it with a fake clock. :class:`VotesConfig` is ``[votes]`` in
``node.toml``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from node.errors import config_section_error
from node.pause.analysis import Analysis, TriggerCheck
from protocol.entries import (
    AlertBody,
    EvalResultBody,
    ForecastSummary,
    PauseCertificateBody,
    PauseProposalBody,
    Trigger,
    VerifiedEntry,
    VoteBody,
    pause_proposal_id,
)
from protocol.errors import PolicyError, TripwireError
from protocol.pause import certificate_votes
from protocol.policy import Policy
from protocol.roster import RosterChain
from protocol.scope import breach_scope
from protocol.verdicts import RuleVerdict

log = logging.getLogger(__name__)

_B = TypeVar("_B")

VoteRule = Literal["manual", "pause-on-breach", "object-unless-breach"]


class VotesConfig(BaseModel):
    """``[votes]`` in node.toml: how this node votes and acts on verdicts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    auto: VoteRule = "manual"
    """``manual``: never vote automatically (a person runs ``tripwire vote``);
    ``pause-on-breach``: vote pause when this node's own recomputed verdict for the trigger
    is breach, and cast no vote otherwise; ``object-unless-breach``: the same, but object to
    proposals whose trigger is not a verified breach."""
    propose_delay_s: float = Field(default=2.0, ge=0, le=3600)
    """Seconds a node waits for the result's own lab to alert/propose before doing it itself."""
    certificate_stagger_s: float = Field(default=0.25, ge=0, le=600)
    """Delay per rank (supporters in lab-id order) before publishing a certificate."""
    poll_interval_s: float = Field(default=1.0, gt=0, le=600)
    """How often the worker looks for entries written by other processes into this home."""

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> VotesConfig:
        try:
            return cls.model_validate(dict(data or {}))
        except ValidationError as e:
            raise config_section_error("node.toml [votes]", e) from e


@dataclass(frozen=True)
class Action:
    kind: str
    body: Any
    key: str
    """Identifies the action for logging and de-duplication within a pass."""
    due: float
    """time.monotonic() at or after which it may run."""


def _alert_body(result: VerifiedEntry, rv: RuleVerdict, policy: Policy) -> AlertBody:
    verdict = rv.verdict
    if verdict == "ok":
        raise PolicyError(f"rule {rv.rule_id!r} is ok on {result.entry_id[:16]}…: there is nothing to alert on")
    forecast = None
    if rv.trend is not None and rv.trend.verdict == "warn":
        forecast = ForecastSummary(
            crossing_flop=rv.trend.crossing_flop,
            crossing_low=rv.trend.crossing_low_flop,
            crossing_high=rv.trend.crossing_high_flop,
            horizon_flop=rv.trend.horizon_flop,
        )
    return AlertBody(
        result=result.entry_id,
        result_lab=result.lab,
        rule=rv.rule_id,
        policy_digest=policy.digest,
        verdict=verdict,
        observed=rv.bound,
        level=rv.breach_level if rv.verdict == "breach" else rv.alert_level,
        forecast=forecast,
        message=rv.reason,
    )


def _build(make: Callable[[], _B], what: str) -> _B | None:
    """Build an entry body, or log and skip it when its numbers fall outside the signed
    domains (spec §2.2): one odd verdict must never stop the rest of the pass."""
    try:
        return make()
    except (ValidationError, TripwireError) as e:
        log.error("pause coordinator cannot build the %s: %s", what, e)
        return None


def plan_actions(
    a: Analysis,
    *,
    lab: str,
    chain: RosterChain,
    policy: Policy | None,
    config: VotesConfig,
    first_seen: Callable[[str], float],
    now_mono: float,
    now: datetime,
    quorum_seen: Callable[[str], float] | None = None,
) -> list[Action]:
    """The entries this node should publish now or later, given what it holds.

    ``first_seen(result id)`` and ``quorum_seen(proposal id)`` give the monotonic time this
    node first saw a result, and first saw a proposal's quorum: delays count from those
    moments, never from "now", so every lab's turn to certify does come (spec §13.4).
    """
    roster = chain.current.roster
    if roster.lab(lab) is None:
        return []  # observers and removed labs have no feed to publish into
    expired = roster.expired(now)
    out: list[Action] = []
    held_proposals = {pid for pid, st in a.proposals.items() if st.action == "pause"}
    if policy is not None:
        for rid, ev in a.evaluations.items():
            result = a.results[rid]
            due = now_mono if result.lab == lab else first_seen(rid) + config.propose_delay_s
            for rv in ev.verdicts:
                if "alert" in rv.actions and (rid, rv.rule_id) not in a.alerts:
                    alert = _build(partial(_alert_body, result, rv, policy), f"alert on {rid[:16]}…")
                    if alert is not None:
                        out.append(Action("alert", alert, f"alert:{rid}:{rv.rule_id}", due))
                if rv.verdict == "breach" and "pause_proposal" in rv.actions and not expired:
                    trigger = Trigger(result=rid, lab=result.lab, rule=rv.rule_id, policy_digest=policy.digest)
                    scope = breach_scope(policy.rule(rv.rule_id), result.statement.body_as(EvalResultBody).model.training_flop)
                    pid = pause_proposal_id(trigger, scope)
                    if pid not in held_proposals:
                        body = _build(
                            partial(
                                PauseProposalBody,
                                proposal_id=pid,
                                trigger=trigger,
                                observed=rv.bound,
                                level=rv.breach_level,
                                rationale=rv.reason,
                                scope=scope,
                            ),
                            f"pause proposal {pid[:16]}…",
                        )
                        if body is not None:
                            out.append(Action("pause_proposal", body, f"propose:{pid}", due))
    if expired:
        return out  # spec §7.5: an expired roster accepts no new votes
    for pid, st in sorted(a.proposals.items()):
        if st.action == "pause" and pid not in a.paused and pid not in a.resumed and (pid, lab) not in a.votes_by_lab:
            decision = _auto_decision(config.auto, st.check)
            if decision is not None:
                assert st.check is not None
                rationale = f"automatic vote (rule {config.auto}): {st.check.reason}"
                vote = VoteBody(proposal_id=pid, action="pause", decision=decision, rationale=rationale[:8192])
                out.append(Action("vote", vote, f"vote:{pid}", now_mono))
        if st.certified or st.tally is None or not st.tally:
            continue
        if st.action == "pause" and pid in a.resumed:
            continue
        if st.action == "resume" and st.pause_proposal in a.resumed:
            continue
        if st.status == "expired":
            continue
        if st.action == "pause" and not st.discretionary and (st.check is None or st.check.status != "breach"):
            continue  # valid by its votes if others certify it, but an honest node does not help
        supporters = sorted(st.tally.signed)
        others = sorted({m.id for m in roster.labs} - set(supporters))
        order = supporters + others
        rank = order.index(lab) if lab in order else len(order)
        # Only the counted supporting votes (spec §6.5): an objection or a vote that cannot
        # count under this roster version would only give others a reason to refuse it.
        cert = PauseCertificateBody(
            proposal_id=pid,
            action=st.action,
            roster_version=chain.current.version,
            proposal=st.entries[0].envelope,
            votes=[v.envelope for v in certificate_votes(st.tally)],
        )
        seen = quorum_seen(pid) if quorum_seen is not None else now_mono
        out.append(Action("pause_certificate", cert, f"certify:{pid}", seen + rank * config.certificate_stagger_s))
    return out


def _auto_decision(rule: VoteRule, check: TriggerCheck | None) -> Literal["pause", "object"] | None:
    if rule == "manual" or check is None or check.status == "unknown":
        return None
    if check.status == "breach":
        return "pause"
    return "object" if rule == "object-unless-breach" else None
