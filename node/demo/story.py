"""The demo's story: each network entry told as a line a person follows, and the run's
milestones (warnings, breach, certificate, halts) read back from a node's store."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console

from protocol.entries import HALT_PREFIX, halt_step

#: The policy's two rules (specs/policies/tripwire-demo.yaml): the sensitive early warning
#: and the agreed threshold on the number a policymaker reads.
LOGPROB_RULE = "answer-logprob"


ACCURACY_RULE = "exact-answers"


LOGPROB = ("arithmetic_quick", "logprob_correct")


ACCURACY = ("arithmetic_gen", "exact_match")


class EventLog:
    """Thread-safe list of human-readable network events, printed as they happen."""

    def __init__(self, console: Console | None) -> None:
        self.console = console
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.t0 = time.monotonic()

    def add(self, who: str, text: str, meaning: str | None = None) -> None:
        """One event; ``meaning`` says in plain words what it shows (printed indented below)."""
        with self._lock:
            line = f"[{time.monotonic() - self.t0:6.1f}s] {who:<9} {text}"
            self.lines.append(line)
            if self.console is not None:
                self.console.print(line, highlight=False, markup=False, overflow="fold")
            if meaning:
                note = f"{'':19}-> {meaning}"
                self.lines.append(note)
                if self.console is not None:
                    self.console.print(note, style="italic", highlight=False, markup=False, overflow="fold")


def percent(value: str | Decimal) -> str:
    """A share as a person reads it: "0.6233" -> "62%"."""
    return f"{Decimal(value) * 100:.0f}%"


def metric_of(body: Any, task_metric: tuple[str, str]) -> str | None:
    """The value of one task's metric in an eval result body, as signed (decimal text)."""
    task, metric = task_metric
    for t in body.tasks:
        if t.name == task and metric in t.metrics:
            return str(t.metrics[metric].value)
    return None


def _steps_at(flop: str | None, body: Any) -> int | None:
    """The training step at which a lab reaches ``flop``, at this result's compute per step."""
    m = body.model
    if flop is None or not m.training_flop or not m.checkpoint_step:
        return None
    steps: int = math.ceil(float(flop) / float(m.training_flop) * m.checkpoint_step)
    return steps


class Narrator:
    """Turns each new network entry into a line of the story, in causal order.

    Entries are read in one node's accept order. A certificate is printed only after the
    votes it carries (a vote may reach this node after the certificate that quotes it).
    Repeated warnings on later checkpoints of the same lab are counted, not printed.
    """

    def __init__(self, events: EventLog, vote_rules: dict[str, str]) -> None:
        self.events, self.vote_rules = events, vote_rules
        self.printed: set[str] = set()
        self.first: set[tuple[str, str]] = set()
        self.proposal_at: float | None = None

    def entry(self, e: Any, store: Any) -> None:
        if e.entry_id in self.printed or e.kind == "eval_result":  # trainers report their own results
            return
        self.printed.add(e.entry_id)
        b, lab = e.statement.body, e.statement.lab
        if e.kind == "alert":
            self._alert(lab, b, store)
        elif e.kind == "pause_proposal":
            if self.proposal_at is None:
                self.proposal_at = time.monotonic()
            self.events.add(
                lab,
                f"PAUSE PROPOSED on {b.trigger.lab}'s result (rule {b.trigger.rule}); "
                "every node checks the breach from the same signed result and names the same proposal",
            )
        elif e.kind == "vote":
            rule = self.vote_rules.get(lab)
            self.events.add(lab, f"votes {b.decision.upper()} on the {b.action}" + (f" (its operator's rule: {rule})" if rule else ""))
        elif e.kind == "pause_certificate":
            from protocol.entries import decode_entry

            for env in b.votes:
                self.entry(store.get(decode_entry(env).entry_id) or _Quoted(decode_entry(env)), store)
            self.events.add(
                lab,
                f"{b.action.upper()} CERTIFICATE: {len(b.votes)} signed votes reach the roster's quorum",
                "anyone can check the certificate offline against the roster the labs signed"
                if ("cert", "") not in self.first else None,
            )
            self.first.add(("cert", ""))
        elif e.kind == "note" and b.text.startswith(HALT_PREFIX):
            self.events.add(lab, f"signed halt record: {b.text.split(':', 1)[0]}")
        elif e.kind == "resume_proposal":
            self.events.add(lab, "resume proposed")

    def _alert(self, lab: str, b: Any, store: Any) -> None:
        result = store.get(b.result)
        body = result.statement.body if result is not None else None
        step = body.model.checkpoint_step if body is not None else None
        exact = metric_of(body, ACCURACY) if body is not None else None
        who = b.result_lab
        if b.verdict == "breach" and b.rule == ACCURACY_RULE:
            self.events.add(
                lab,
                f"BREACH: {who}'s model now answers {percent(exact or b.observed or '0')} of two-digit additions "
                f"correctly (step {step}; upper bound {percent(b.observed or '0')}); the agreed threshold is "
                f"{percent(b.level or '0')}",
                "the breach is a number a policymaker reads at a glance",
            )
            return
        if b.rule == LOGPROB_RULE:
            key = (who, "logprob-" + b.verdict)
            if key in self.first:
                return
            self.first.add(key)
            lp = metric_of(body, LOGPROB) if body is not None else None
            self.events.add(
                lab,
                f"EARLY WARNING ({b.rule}): {who}'s model gives the correct answer a log-probability of "
                f"{short(lp)} at step {step}, past the alert level {b.level}, though it answers only "
                f"{percent(exact or '0')} exactly right",
                "sensitive evals warn first: the continuous score rises long before answers come out right"
                if ("any", "logprob") not in self.first else None,
            )
            self.first.add(("any", "logprob"))
            return
        if b.rule == ACCURACY_RULE and b.forecast is not None:
            key = (who, "trend")
            if key in self.first:
                return
            self.first.add(key)
            low = _steps_at(b.forecast.crossing_low, body) if body is not None else None
            mid = _steps_at(b.forecast.crossing_flop, body) if body is not None else None
            horizon = _steps_at(b.forecast.horizon_flop, body) if body is not None else None
            when = f"as early as step {low}" if low else "soon"
            if mid:
                when += f", most likely around step {mid}"
            self.events.add(
                lab,
                f"TREND WARNING ({b.rule}): {who} answers {percent(exact or '0')} exactly right at step {step}; "
                f"the forecast of its results crosses the threshold within the horizon (step {horizon}): {when}",
                "the trend forecasts the crossing before any result reaches it",
            )
            return
        key = (who, f"{b.rule}-{b.verdict}")
        if key not in self.first:
            self.first.add(key)
            self.events.add(lab, f"ALERT ({b.verdict}) on rule {b.rule} for {who} at step {step}: {b.message}")


@dataclass(frozen=True)
class _Quoted:
    """A vote known only from the certificate that carries it."""

    entry_id: str
    kind: str
    statement: Any

    def __init__(self, d: Any) -> None:
        object.__setattr__(self, "entry_id", d.entry_id)
        object.__setattr__(self, "kind", d.statement.kind)
        object.__setattr__(self, "statement", d.statement)


def short(value: str | None) -> str:
    return "?" if value is None else f"{float(value):.2f}"


class Watcher(threading.Thread):
    """Follows the network through one node's store and tells each new entry as a story line."""

    def __init__(
        self, home_dirs: Sequence[Path], events: EventLog, stop: threading.Event, vote_rules: dict[str, str]
    ) -> None:
        super().__init__(name="watcher", daemon=True)
        self.home_dirs, self.events, self.stop = home_dirs, events, stop
        self.narrator = Narrator(events, vote_rules)
        self.read = self.told = 0
        self.paused_at: dict[str, float] = {}
        self.caches: dict[str, Any] = {}

    @property
    def breach_published_at(self) -> float | None:
        return self.narrator.proposal_at

    def run(self) -> None:
        from node.home import NodeHome

        homes = [NodeHome.open(d) for d in self.home_dirs]
        try:
            while not self.stop.is_set():
                self._poll(homes)
                self.stop.wait(0.25)
            self._poll(homes)
        finally:
            for h in homes:
                h.close()

    def _poll(self, homes: Sequence[Any]) -> None:
        from node.pause.view import AnalysisCaches, local_analysis

        view = homes[0]
        heads = sum(h.seq for h in view.store.heads().values())
        if heads != self.read:  # reading the whole log is only worth it when it grew
            entries = view.store.entries()  # accept order, append-only
            for e in entries[self.told :]:
                self.narrator.entry(e, view.store)
            self.read, self.told = heads, len(entries)
        for h in homes:
            if h.lab in self.paused_at or not h.store.entries(kind="pause_certificate"):
                continue
            # The node's own analysis: a certificate counts only if its votes verify and
            # reach the quorum under the roster, and no resume ended it.
            analysis, _ = local_analysis(h, self.caches.setdefault(h.lab, AnalysisCaches()))
            if analysis.paused:
                self.paused_at[h.lab] = time.monotonic()
                self.events.add(h.lab, "node holds a verified pause certificate: status PAUSED")


@dataclass(frozen=True)
class Milestone:
    """One beat of the story, read back from a node's store after the run."""

    what: str
    """"early warning", "trend warning", "breach", "certificate", "halt" (a gate obeying the
    pause) or "plan halt" (a gate stopping a run at its training plan's stop point)."""
    lab: str
    rule: str | None = None
    step: int | None = None
    """The checkpoint step of the result it rests on (for a halt: where training stopped)."""
    flop: float | None = None
    log_index: int = 0
    """Position in the node's accept order."""


def read_story(store: Any) -> list[Milestone]:
    """The milestones of the run, in causal order.

    For each lab: its first early warning on the log-probability rule, its first trend
    warning on the accuracy rule (in the node's accept order); then the breach, the
    certificate and each halt record. A node may accept a certificate before the proposal
    it quotes, or a lab's own halt record before another lab's proposal, so those three
    follow what cites what (a certificate quotes its proposal, a halt record cites the
    certificate), not the accept order.
    """
    out: list[Milestone] = []
    certified: list[Milestone] = []
    seen: set[tuple[str, str]] = set()
    for i, e in enumerate(store.entries()):
        b = e.statement.body
        if e.kind == "alert":
            result = store.get(b.result)
            step = result.statement.body.model.checkpoint_step if result else None
            flop = float(result.statement.body.model.training_flop) if result else None
            if b.rule == ACCURACY_RULE and b.verdict == "breach":
                continue  # told by the proposal it comes with
            what = {
                (LOGPROB_RULE, False): "early warning",
                (ACCURACY_RULE, True): "trend warning",
            }.get((b.rule, b.forecast is not None))
            if what and (b.result_lab, what) not in seen:
                seen.add((b.result_lab, what))
                out.append(Milestone(what, b.result_lab, b.rule, step, flop, i))
        elif e.kind == "pause_proposal" and ("", "breach") not in seen:
            seen.add(("", "breach"))
            result = store.get(b.trigger.result)
            m = result.statement.body.model if result else None
            out.append(Milestone("breach", b.trigger.lab, b.trigger.rule, m.checkpoint_step if m else None,
                                 float(m.training_flop) if m else None, i))
        elif e.kind == "pause_certificate" and b.action == "pause" and ("", "certificate") not in seen:
            seen.add(("", "certificate"))
            certified.insert(0, Milestone("certificate", e.statement.lab, log_index=i))
        elif e.kind == "note" and b.text.startswith(HALT_PREFIX):
            step = halt_step(b.text)
            cited = [store.get(r) for r in b.refs]
            if any(c is not None and c.kind == "training_plan" for c in cited):
                # A gate stopping a run at its plan's stop point (the fourth act), not the pause.
                out.append(Milestone("plan halt", e.statement.lab, step=step, log_index=i))
                continue
            certified.append(Milestone("halt", e.statement.lab, step=step, log_index=i))
    breach = next((i for i, m in enumerate(out) if m.what == "breach"), len(out))
    return out[: breach + 1] + certified + out[breach + 1 :]
