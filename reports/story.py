"""The story of a report: what happened, in causal order and plain words (events, labs, the timeline)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from markupsafe import Markup

from protocol.canonical import parse_time
from protocol.entries import (
    AlertBody,
    DiscretionaryTrigger,
    NoteBody,
    PauseCertificateBody,
    PauseProposalBody,
    ResumeProposalBody,
    RosterUpdateBody,
    Trigger,
    VerifiedEntry,
    VoteBody,
)
from protocol.policy import Rule
from protocol.scope import describe
from protocol.verdicts import RuleVerdict
from reports.analysis import (
    FLOP_PTR,
    Analysis,
    ProposalState,
    Result,
    pointer,
)
from reports.formatting import _TIME, VERDICT_TEXT, bound_name, peer, riskier_words
from reports.numbers import Numbers


@dataclass
class Event:
    when: str
    lab: str
    kind: str
    entry: VerifiedEntry
    text: Markup


@dataclass
class LabRow:
    id: str
    name: str
    marker_path: str
    marker_colour: str
    marker_open: bool
    results: int
    latest: list[Result] = field(default_factory=list)


@dataclass
class Story:
    """The headline facts the summary and the banner are written from."""

    status: str
    proposal: ProposalState | None
    result: Result | None
    rule: Rule | None
    verdict: RuleVerdict | None


def _lab_names(a: Analysis) -> dict[str, str]:
    names: dict[str, str] = {}
    for vr in a.chain.versions:
        for lab in vr.roster.labs:
            names[lab.id] = lab.name
    return names


def _story(a: Analysis) -> Story:
    status = a.status
    # The proposal that matters most: an uncertified-but-open one only if nothing is certified.
    pause = [p for p in a.proposals if p.action == "pause"]
    certified = [p for p in pause if p.certificate is not None]
    live = [p for p in pause if p.status != "expired"]
    chosen = (certified or live)[-1] if certified or live else None
    if chosen is not None:
        body = chosen.entry.statement.body
        assert isinstance(body, PauseProposalBody)
        if isinstance(body.trigger, DiscretionaryTrigger):  # no result, no rule: the lab's evidence
            return Story(status, chosen, None, None, None)
        res = a.results_by_id.get(body.trigger.result)
        rule = next((r for r in a.policy.rules if r.id == body.trigger.rule), None)
        v = a.point.get((body.trigger.result, body.trigger.rule)) if res else None
        return Story(status, chosen, res, rule, v)
    rank = {"ok": 0, "warn": 1, "breach": 2}
    worst: tuple[int, str, Result, Rule, RuleVerdict] | None = None
    for res in a.latest.values():
        for rule in a.policy.rules:
            v = a.trend.get((res.id, rule.id))
            if v is None:
                continue
            key = (rank[v.verdict], res.entry.statement.issued_at)
            if worst is None or key > worst[:2]:
                worst = (*key, res, rule, v)
    if worst is None:
        return Story(status, None, None, None, None)
    return Story(status, None, worst[2], worst[3], worst[4])


def _level_name(rule: Rule | None, level: str) -> str:
    if rule is not None:
        names = rule.level_names
        if Decimal(level) == Decimal(rule.breach_level):
            return f"breach level ({names.breach})" if names else "breach level"
        if Decimal(level) == Decimal(rule.alert_level):
            return f"alert level ({names.alert})" if names else "alert level"
    return "level"


def _reached(rule: Rule | None, observed: str, level: str) -> bool:
    higher = rule is None or rule.indicator.direction == "higher_is_riskier"
    return Decimal(observed) >= Decimal(level) if higher else Decimal(observed) <= Decimal(level)


def _compared(nums: Numbers, a: Analysis, e: VerifiedEntry, result_id: str, rule: Rule | None) -> Markup:
    """The value the rule compared for the cited result, named: ``its upper 84% bound −6.52``.

    Recomputed from the result (a verdict claim) where the bundle holds it; otherwise the
    value the entry itself states, named as such rather than guessed."""
    if rule is not None and (result_id, rule.id, False) in nums.claims.verdicts:
        return Markup("its {} {}").format(bound_name(rule), nums.bound(result_id, rule.id, False))
    return Markup("the value it states, {},").format(nums.field(e.entry_id, pointer("body", "observed"), "value"))


def _measured(nums: Numbers, a: Analysis, result_id: str, rule: Rule | None) -> Markup:
    """`` (measured −6.64 ± 0.12; higher is riskier)`` from the result entry, if the bundle holds it."""
    res = a.results_by_id.get(result_id)
    if res is None or rule is None or res.summary.metric(rule.indicator) is None:
        return Markup("")
    ind = rule.indicator
    return Markup(" (measured {} ± {}; {})").format(
        nums.field(res.id, res.metric_pointer(ind.task, ind.metric, "value"), "value"),
        nums.field(res.id, res.metric_pointer(ind.task, ind.metric, "stderr"), "stderr"),
        riskier_words(rule),
    )


def _event_text(
    e: VerifiedEntry, a: Analysis, names: dict[str, str], nums: Numbers, rules: dict[str, Rule]
) -> Markup | None:
    body = e.statement.body
    if isinstance(body, AlertBody):
        rule = rules.get(body.rule)
        lab = peer(names.get(body.result_lab, body.result_lab))
        if body.observed is None or body.level is None:
            return Markup("{} for {} on rule <code>{}</code>{}.").format(
                VERDICT_TEXT[body.verdict], lab, body.rule, _measured(nums, a, body.result, rule)
            )
        observed = _compared(nums, a, e, body.result, rule)
        level = nums.field(e.entry_id, pointer("body", "level"), "value")
        fc = body.forecast
        if fc is not None and not _reached(rule, body.observed, body.level):
            low = fc.crossing_low or fc.crossing_flop
            crossing = (
                Markup("may reach the breach level from {} FLOP").format(
                    nums.field(
                        e.entry_id,
                        pointer("body", "forecast", "crossing_low" if fc.crossing_low else "crossing_flop"),
                        "flop",
                    )
                )
                if low is not None
                else Markup("may reach the breach level")
            )
            return Markup(
                "{} <strong>by trend</strong> for {} on rule <code>{}</code>: the forecast of its results {}, "
                "within the look-ahead to {} FLOP. Now {} is short of the {} of {}{}."
            ).format(
                VERDICT_TEXT[body.verdict],
                lab,
                body.rule,
                crossing,
                nums.field(e.entry_id, pointer("body", "forecast", "horizon_flop"), "flop"),
                observed,
                _level_name(rule, body.level),
                level,
                _measured(nums, a, body.result, rule),
            )
        return Markup("{} for {} on rule <code>{}</code>: {} reached the {} of {}{}.").format(
            VERDICT_TEXT[body.verdict],
            lab,
            body.rule,
            observed,
            _level_name(rule, body.level),
            level,
            _measured(nums, a, body.result, rule),
        )
    if isinstance(body, PauseProposalBody):
        covers = Markup(" It would cover {}.").format(describe(body.scope)) if body.scope is not None else Markup("")
        if isinstance(body.trigger, DiscretionaryTrigger):
            return Markup(
                "Pause asked for on {}'s own judgement, citing {} document(s) by digest that no policy rule "
                "measures; it needs the roster's quorum of votes like any pause.{}"
            ).format(peer(names.get(body.trigger.lab, body.trigger.lab)), len(body.trigger.evidence), covers)
        rule = rules.get(body.trigger.rule)
        return Markup(
            "Pause proposed after {}'s result on rule <code>{}</code>: {} reached the {} of {}{}.{}"
        ).format(
            peer(names.get(body.trigger.lab, body.trigger.lab)),
            body.trigger.rule,
            _compared(nums, a, e, body.trigger.result, rule),
            _level_name(rule, body.level),
            nums.field(e.entry_id, pointer("body", "level"), "value"),
            _measured(nums, a, body.trigger.result, rule),
            covers,
        )
    if isinstance(body, VoteBody):
        return Markup("Voted <strong>{}</strong> on the {} proposal.").format(body.decision, body.action)
    if isinstance(body, PauseCertificateBody):
        return Markup("Published the {} certificate ({} signed vote(s), roster version {}).").format(
            body.action, len(body.votes), nums.field(e.entry_id, pointer("body", "roster_version"))
        )
    if isinstance(body, ResumeProposalBody):
        if body.scope is not None:
            return Markup(
                "Resume proposed, citing a safety case of {} document(s): the pause would stay in force for {} only."
            ).format(len(body.safety_case), describe(body.scope))
        return Markup("Resume proposed, citing a safety case of {} document(s).").format(
            len(body.safety_case)
        )
    if isinstance(body, RosterUpdateBody):
        return Markup("Published a roster update.")
    if isinstance(body, NoteBody):
        return Markup("Note: {}").format(peer(body.text[:300] + ("…" if len(body.text) > 300 else "")))
    return None


def _time_key(ts: str) -> str:
    """A sort key for RFC 3339 UTC times that orders fractions of a second correctly."""
    if _TIME.fullmatch(ts) is not None:
        return ts[:19] + ts[19:-1].ljust(10, "0")
    return parse_time(ts).strftime("%Y-%m-%dT%H:%M:%S.%f000")


def causal_order(a: Analysis) -> list[VerifiedEntry]:
    """Entries by time, then by dependency: nothing is listed before what it cites.

    A vote follows its proposal, a proposal and an alert the result they cite, and a
    certificate the proposal and every vote it carries, even where a signer's clock ran
    behind (its own time is still the one shown). Ties go to the cited entry, then lab, seq.
    """
    deps: dict[str, list[str]] = {}
    by_proposal = {p.proposal_id: p for p in a.proposals}
    for e in a.entries:
        body = e.statement.body
        d: list[str] = []
        if isinstance(body, AlertBody):
            d.append(body.result)
        elif isinstance(body, PauseProposalBody) and isinstance(body.trigger, Trigger):
            d.append(body.trigger.result)
        elif isinstance(body, VoteBody):
            p = by_proposal.get(body.proposal_id)
            if p is not None:
                d.append(p.entry.entry_id)
        elif isinstance(body, PauseCertificateBody):
            p = by_proposal.get(body.proposal_id)
            if p is not None:
                d.append(p.entry.entry_id)
                counted = p.certificate_result.votes if p.certificate_result is not None else p.votes
                d += [v.entry_id for v in counted]
        if d:
            deps[e.entry_id] = [x for x in d if x in a.by_id]
    key: dict[str, tuple[str, int]] = {}

    def k(eid: str) -> tuple[str, int]:
        got = key.get(eid)
        if got is not None:
            return got
        own = (_time_key(a.by_id[eid].statement.issued_at), 0)
        key[eid] = own  # a cycle (impossible with content ids) would stop here
        for dep in deps.get(eid, ()):
            t, depth = k(dep)
            own = (max(own[0], t), max(own[1], depth + 1))
        key[eid] = own
        return own

    return sorted(a.entries, key=lambda e: (*k(e.entry_id), e.lab, e.seq))


def _timeline(
    a: Analysis, names: dict[str, str], nums: Numbers, since: str | None
) -> tuple[list[Event], int]:
    events: list[Event] = []
    hidden = 0
    t_since = parse_time(since) if since else None
    last_verdict: dict[tuple[str, str, str], str] = {}
    rules = {r.id: r for r in a.policy.rules}
    for e in causal_order(a):
        if t_since is not None and parse_time(e.statement.issued_at) < t_since:
            continue
        if e.kind == "eval_result":
            res = a.results_by_id[e.entry_id]
            shown = False
            for rule in a.policy.rules:
                v = a.point.get((e.entry_id, rule.id))
                if v is None:
                    continue
                key = (res.lab, res.model, rule.id)
                before = last_verdict.get(key, "ok")
                last_verdict[key] = v.verdict
                # Only changes of verdict make the timeline; every result is in the appendix.
                if v.verdict != before:
                    shown = True
                    ind = rule.indicator
                    bound = (
                        Markup("; {} {}").format(bound_name(rule), nums.bound(e.entry_id, rule.id, False))
                        if rule.uncertainty.method == "upper_bound"
                        else Markup("")
                    )
                    events.append(
                        Event(
                            e.statement.issued_at,
                            e.lab,
                            "eval_result",
                            e,
                            Markup(
                                "{} at {} FLOP: <code>{}</code> measured {} ± {}{} → {} on rule <code>{}</code>."
                            ).format(
                                peer(res.model),
                                nums.field(e.entry_id, FLOP_PTR, "flop"),
                                ind.metric,
                                nums.field(
                                    e.entry_id, res.metric_pointer(ind.task, ind.metric, "value"), "value"
                                ),
                                nums.field(
                                    e.entry_id, res.metric_pointer(ind.task, ind.metric, "stderr"), "stderr"
                                ),
                                bound,
                                nums.verdict(e.entry_id, rule.id, False),
                                rule.id,
                            ),
                        )
                    )
            if not shown:
                hidden += 1
            continue
        text = _event_text(e, a, names, nums, rules)
        if text is not None:
            events.append(Event(e.statement.issued_at, e.lab, e.kind, e, text))
    return events, hidden
