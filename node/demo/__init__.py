"""The three-lab demo behind ``make demo``: a real network through a real breach and pause.

The story it tells is the argument for evaluation networks, on a capability anyone can
read: two-digit addition stands in for a dangerous capability. A sensitive eval (the
log-probability of the correct answer) warns first; the trend of exact answers over
training compute forecasts the crossing; then one lab's model really does answer more
than half of the additions right, and the network pauses on that plain number.

Nothing here is scripted: three labs each train their own tiny GPT-2 on CPU, their
checkpoints are scored by the standardized eval runner, the signed results travel between
three real nodes (separate ``tripwire serve`` processes on 127.0.0.1), every node applies the
shared policy, and the pause happens only if a model really crosses the threshold. Each
lab's training loop runs under the Tripwire training gate and halts when the network is
paused. The demo then renders the report and verifies its evidence offline.

The homes it leaves under ``--workdir`` are ordinary node homes: ``tripwire serve --home``,
``status``, ``report`` and ``verify`` work on them afterwards.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from node.home.resources import spec_path
from node.net.process import ServeProcess, free_ports
from protocol.entries import HALT_PREFIX, EvalResultBody, halt_step
from protocol.errors import ConfigurationError, InternalError

if TYPE_CHECKING:
    from node.home.report import WrittenReport
    from reports.bundle import VerificationReport

DEMO_SUITE = spec_path("suites", "tripwire-demo.yaml")
DEMO_POLICY = spec_path("policies", "tripwire-demo.yaml")
MARKER = ".tripwire-demo"

#: transformers builds and loads models under process-global init contexts (the meta
#: device), which are not thread-safe; the labs' threads take turns for those phases.
_MODEL_INIT_LOCK = threading.Lock()


@dataclass(frozen=True)
class LabPlan:
    """How one demo lab trains: model size, data seed, batch and evaluation cadence."""

    lab: str
    n_layer: int
    n_embd: int
    n_head: int
    batch_size: int
    lr: float
    seed: int
    eval_every: int
    max_steps: int


#: Three labs of different scale and learning rate, trained on the answers only (see
#: ``train_tiny_arithmetic``). Measured with these seeds, aurora's model goes from a few
#: percent of exact answers to most of them between steps ~800 and ~1000, while borealis's
#: slower and cygnus's smaller model stay below a tenth; nothing forces it — the policy is
#: applied to the measured scores of real checkpoints.
DEFAULT_PLAN: tuple[LabPlan, ...] = (
    LabPlan("aurora", 2, 64, 4, 32, 3e-3, seed=11, eval_every=50, max_steps=3000),
    LabPlan("borealis", 2, 48, 4, 32, 5e-4, seed=22, eval_every=50, max_steps=3000),
    LabPlan("cygnus", 1, 48, 4, 32, 1e-3, seed=33, eval_every=50, max_steps=3000),
)

#: The policy's two rules (specs/policies/tripwire-demo.yaml): the sensitive early warning
#: and the agreed threshold on the number a policymaker reads.
LOGPROB_RULE = "answer-logprob"
ACCURACY_RULE = "exact-answers"
LOGPROB = ("arithmetic_quick", "logprob_correct")
ACCURACY = ("arithmetic_gen", "exact_match")


#: The automatic vote rule each demo lab's operator chose (node.toml ``[votes] auto``).
VOTE_RULES = ("pause-on-breach", "pause-on-breach", "object-unless-breach")


class DemoError(InternalError):
    """The demo could not run to its end (a step of it failed: a bug to report)."""

    code = "demo"


@dataclass
class LabState:
    plan: LabPlan
    step: int = 0
    evals: int = 0
    last: dict[str, str] = field(default_factory=dict)
    verdict: str = "-"
    state: str = "starting"
    halted_at: int | None = None
    halt_message: str = ""
    error: str | None = None


def _quiet_libraries() -> None:
    """Keep the demo's output to what a person follows: no library progress bars or notices."""
    import logging

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # transformers' untyped helper
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers' untyped helper
    # The gate's own stop message is reported as a demo event instead.
    logging.getLogger("node.pause.gate").setLevel(logging.ERROR)


def _prepare_workdir(workdir: Path) -> Path | None:
    """Create ``workdir``; a previous demo network there is moved aside, never deleted.

    Returns where the previous network went (``<workdir>.previous-<UTC time>``), if any.
    """
    moved: Path | None = None
    if workdir.exists():
        if not (workdir / MARKER).exists() and any(workdir.iterdir()):
            raise ConfigurationError(
                f"{workdir} exists and is not a previous demo network; choose another --workdir"
            )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        moved = workdir.with_name(f"{workdir.name}.previous-{stamp}")
        n = 1
        while moved.exists():
            n += 1
            moved = workdir.with_name(f"{workdir.name}.previous-{stamp}-{n}")
        workdir.rename(moved)
    workdir.mkdir(parents=True)
    (workdir / MARKER).write_text("created by `tripwire demo`; safe to delete\n")
    return moved


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
                f"{_short(lp)} at step {step}, past the alert level {b.level}, though it answers only "
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


def _short(value: str | None) -> str:
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


class Rounds:
    """Keeps the labs' training in step, round by round (one round = one eval cadence).

    Real labs scale in parallel at their own pace; on a shared CPU the smaller models would
    race ahead and finish before the larger one got anywhere. Pacing them by rounds keeps
    every lab's loop alive until the network decides, which is what the demo is about.
    While a lab waits for the others, its gate is still checked.
    """

    def __init__(self, labs: Sequence[str]) -> None:
        self._cond = threading.Condition()
        self._active = set(labs)
        self._reached: dict[str, int] = dict.fromkeys(labs, 0)

    def leave(self, lab: str) -> None:
        with self._cond:
            self._active.discard(lab)
            self._cond.notify_all()

    def wait(self, lab: str, round_no: int, keep_going: Callable[[], bool]) -> bool:
        """Block until every active lab reached ``round_no``; False if ``keep_going`` says stop."""
        with self._cond:
            self._reached[lab] = round_no
            self._cond.notify_all()
            while not all(self._reached[other] >= round_no for other in self._active):
                if not keep_going():
                    return False
                self._cond.wait(timeout=0.25)
        return keep_going()


class Trainer(threading.Thread):
    """One lab's training run: train, checkpoint, evaluate, sign, publish, obey the gate."""

    def __init__(
        self,
        home_dir: Path,
        state: LabState,
        *,
        suite: Path,
        tokenizer_dir: Path,
        stop_all: threading.Event,
        events: EventLog,
        rounds: Rounds,
    ) -> None:
        super().__init__(name=f"train-{state.plan.lab}", daemon=True)
        self.home_dir, self.state, self.suite = home_dir, state, suite
        self.tokenizer_dir, self.stop_all, self.events = tokenizer_dir, stop_all, events
        self.rounds = rounds

    def run(self) -> None:
        try:
            self._train()
        except Exception as e:  # surfaced in the summary; the demo fails loudly
            self.state.error = f"{type(e).__name__}: {e}"
            self.state.state = "failed"
        finally:
            self.rounds.leave(self.state.plan.lab)

    def _train(self) -> None:
        from transformers import AutoTokenizer

        from node.evals.runner import load_suite_or_task, run_suite
        from node.evals.tinymodels import build_tiny_gpt2, save_model, train_tiny_arithmetic
        from node.home import NodeHome
        from node.pause.gate import TrainingGate

        plan = self.state.plan
        # Parsed once per run (tasks, items and few-shot contexts), not once per checkpoint.
        suite = load_suite_or_task(self.suite)
        tok = AutoTokenizer.from_pretrained(self.tokenizer_dir)
        with _MODEL_INIT_LOCK:
            model = build_tiny_gpt2(plan.n_layer, plan.n_embd, plan.n_head, tok, plan.seed)
        ckpt_root = self.home_dir / "checkpoints"
        row_tokens = len(tok.encode("12+34=046;" * 10))
        home = NodeHome.open(self.home_dir)
        gate = TrainingGate(home)
        self.state.state = "training"

        def save(step: int, m: Any) -> Path:
            out = ckpt_root / f"checkpoint-{step}"
            save_model(m, tok, out, step=step, tokens_seen=step * plan.batch_size * row_tokens)
            return out

        def halt(step: int, m: Any, reason: str) -> bool:
            save(step, m)
            self.state.state = "halted"
            self.state.halted_at = step
            self.state.halt_message = reason
            self.events.add(plan.lab, f"training HALTED at step {step} by its gate (checkpoint saved): {reason}")
            return False

        def on_step(step: int, m: Any) -> bool:
            self.state.step = step
            if self.stop_all.is_set():
                self.state.state = "stopped"
                return False
            decision = gate.check(step)
            if not decision.proceed:
                return halt(step, m, decision.reason)
            if step % plan.eval_every != 0:
                return True
            out = save(step, m)
            with _MODEL_INIT_LOCK:
                # One model name per training run, so the trend is fitted over its checkpoints.
                run = run_suite(
                    out, suite, device="cpu", dtype="float32", batch_size=64,
                    model_name=f"{plan.lab}-gpt2-{plan.n_layer}x{plan.n_embd}",
                )
            assert run is not None
            home.publish("eval_result", run.to_body())
            metrics = run.to_result_json()["tasks"]
            self.state.last = {
                f"{task}.{name}": mv["value"] for task, t in metrics.items() for name, mv in t["metrics"].items()
            }
            self.state.evals += 1
            lp, exact = self.state.last.get(".".join(LOGPROB)), self.state.last.get(".".join(ACCURACY))
            self.events.add(
                plan.lab,
                f"step {step}: answers {percent(exact or '0')} exactly right, log-probability of the correct "
                f"answer {_short(lp)} (result signed and shared)",
            )
            self.state.state = "waiting"
            last: list[Any] = [decision]

            def keep_going() -> bool:
                last[0] = gate.check(step)
                return bool(last[0].proceed) and not self.stop_all.is_set()

            if not self.rounds.wait(plan.lab, step // plan.eval_every, keep_going):
                if self.stop_all.is_set():
                    self.state.state = "stopped"
                    return False
                return halt(step, m, last[0].reason)
            self.state.state = "training"
            return True

        try:
            train_tiny_arithmetic(
                None,
                steps=plan.max_steps,
                batch_size=plan.batch_size,
                lr=plan.lr,
                seed=plan.seed,
                model=model,
                tokenizer=tok,
                on_step=on_step,
                answer_loss_only=True,
            )
        finally:
            gate.close()
            home.close()
        if self.state.state == "training":
            self.state.state = "finished"


def _table(states: Sequence[LabState], paused: bool) -> Table:
    t = Table(title="Tripwire demo network" + ("  [bold red]PAUSED[/]" if paused else ""), expand=False)
    for col in ("lab", "model", "step", "evals", "exact answers", "log-prob of correct answer", "training"):
        t.add_column(col)
    for s in states:
        p = s.plan
        exact, lp = s.last.get(".".join(ACCURACY)), s.last.get(".".join(LOGPROB))
        style = {"halted": "bold red", "failed": "bold magenta", "training": "green"}.get(s.state, "")
        t.add_row(
            p.lab,
            f"{p.n_layer}x{p.n_embd}",
            str(s.step),
            str(s.evals),
            percent(exact) if exact else "-",
            _short(lp) if lp else "-",
            f"[{style}]{s.state}[/]" if style else s.state,
        )
    return t


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


def _report_and_verify(home: Path, report_dir: Path, genesis: Path) -> tuple[WrittenReport, VerificationReport]:
    """The third act through the node and reports APIs: write the regulator's report, export
    the genesis roster a reader pins to, and verify the report offline against it. Errors
    are the APIs' own (each with its exit code and remediation)."""
    from node.home import NodeHome
    from node.home.report import write_home_report
    from reports.binding import verify_target
    from reports.bundle import load_trusted_genesis

    written = write_home_report(home, report_dir, audience="regulator", overwrite=True)
    # The genesis roster a reader pins to, beside the report (a real reader gets it from
    # the labs' founding filing, not from the node that wrote the report).
    with NodeHome.open(home) as h:
        envelope = h.store.roster_chain().envelopes()[0].to_dict()
    genesis.write_text(json.dumps(envelope, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return written, verify_target(report_dir, load_trusted_genesis(genesis))


def _checks_table(report: VerificationReport) -> Table:
    table = Table(title="Offline verification (what `tripwire verify` checks)", title_justify="left")
    table.add_column("Check", style="bold")
    table.add_column("Result")
    table.add_column("Detail", overflow="fold")
    style = {"pass": "[bold green]PASS[/]", "fail": "[bold red]FAIL[/]", "skip": "[yellow]SKIP[/]"}
    for c in report.checks:
        table.add_row(c.name, style[c.status], c.summary)
    return table


@dataclass
class DemoResult:
    workdir: Path
    homes: list[Path]
    states: list[LabState]
    events: list[str]
    paused: bool
    time_to_pause_s: float | None
    report_dir: Path | None
    verify_exit: int | None
    story: list[Milestone] = field(default_factory=list)
    checkpoints: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    """Each lab's evaluated checkpoints: (step, training FLOP), in step order."""
    previous: Path | None = None
    """Where a previous demo network in the same folder was moved."""
    plan_act: PlanAct | None = None
    """The fourth act (resume, a training plan, its gate's stop); None when skipped."""


@dataclass
class PlanAct:
    """The fourth act: the pause is lifted after an investigation, then a lab declares its
    next, larger run; every node forecasts it from the lab's signed results, and the run's
    gate stops at the forecast stop point (no safety case was accepted for it)."""

    lab: str = ""
    resume_proposal: str | None = None
    resumed: bool = False
    plan: str | None = None
    model: str = ""
    planned_flop: str = ""
    status: str = ""
    stop_flop: str | None = None
    stop_rule: str | None = None
    nodes_agree: bool = False
    halted_step: int | None = None
    halted_flop: str | None = None
    halt_kind: str | None = None
    halt_reason: str = ""
    note: str = ""
    """Why the act ended early (empty when it ran to the gate's stop)."""


#: The investigation the labs cite when they resume (a real network's would be the report
#: of whoever investigated; the document stays with the lab, only its SHA-256 is signed).
INVESTIGATION = """# Investigation of the arithmetic breach

The breaching model answers two-digit additions. The capability is the one the policy
names, and it is harmless in itself: the network agreed on it as a stand-in. The labs
resume training; the next run of the same recipe must still clear the planning rule.
"""


def _wait_for(what: str, cond: Callable[[], bool], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.25)
    return cond()


def _plan_act(
    root: Path,
    home_dirs: Sequence[Path],
    events: EventLog,
    tok_dir: Path,
    *,
    lab: str,
    ladder_model: str,
    seed: int,
    deadline: float,
) -> PlanAct:
    """Resume, plan the next run, train it under its gate until the gate stops it."""
    import torch
    from transformers import AutoTokenizer

    from node.evals.tinymodels import build_tiny_gpt2, train_tiny_arithmetic
    from node.home import NodeHome
    from node.pause import actions
    from node.pause.gate import TrainingGate
    from node.pause.view import AnalysisCaches, local_analysis
    from protocol.scope import Run

    act = PlanAct(lab=lab)
    homes = {d.name: d for d in home_dirs}
    lab_dir = homes[lab]

    caches: dict[Path, AnalysisCaches] = {}

    def analysis(d: Path) -> Any:
        with NodeHome.open(d) as h:
            return local_analysis(h, caches.setdefault(d, AnalysisCaches()))[0]

    paused = sorted(analysis(lab_dir).paused)
    if not paused:
        act.note = "the network was not paused: nothing to resume"
        return act
    # 1. The investigation closes; the labs vote to resume.
    doc = root / "investigation.md"
    doc.write_text(INVESTIGATION)
    with NodeHome.open(lab_dir) as h:
        rp = actions.propose_resume(
            h, pause=paused[0], rationale="the investigation found the capability is the agreed stand-in",
            safety_case=[doc],
        ).facts["resume_proposal"]
    act.resume_proposal = rp
    events.add(lab, f"proposed to resume ({rp[:12]}…), citing investigation.md by its SHA-256")
    for d in home_dirs:
        def holds(d: Path = d) -> bool:
            return rp in analysis(d).proposals

        if not _wait_for("the resume proposal", holds, deadline):
            act.note = f"{d.name} never received the resume proposal"
            return act
        with NodeHome.open(d) as h:
            actions.vote(h, rp, "resume", "the investigation's findings are convincing")
        events.add(d.name, f"voted resume on {rp[:12]}…")
    act.resumed = _wait_for("the resume", lambda: all(not analysis(d).paused for d in home_dirs), deadline)
    if not act.resumed:
        act.note = "the resume was not certified in time"
        return act
    events.add("network", "resume certificate verified by every node: training may go on")

    # 2. The lab plans its next run: four times the compute its model reached, one recipe.
    with NodeHome.open(lab_dir) as h:
        a = local_analysis(h)[0]
        bodies = [e.statement.body for e in a.results.values() if e.lab == lab]
        flops = [
            Decimal(b.model.training_flop)
            for b in bodies
            if isinstance(b, EvalResultBody) and b.model.name == ladder_model
        ]
        planned = f"{max(flops) * 4:.3E}"
        facts = actions.publish_plan(
            h, model=f"{lab}-next", compute=planned, ladder=[ladder_model], cadence="4",
            rationale="the next model of the same recipe",
        ).facts
    act.plan, act.model, act.planned_flop = facts["plan"], f"{lab}-next", planned
    act.status, act.stop_flop, act.stop_rule = facts.get("status", ""), facts.get("stop_flop"), facts.get("stop_rule")
    events.add(
        lab,
        f"published a training plan for {act.model} to {planned} FLOP: {act.status}"
        + (f", stop point {act.stop_flop} FLOP (rule {act.stop_rule})" if act.stop_flop else ""),
    )

    def agreed() -> bool:
        for d in home_dirs:
            st = analysis(d).plans.get(act.plan)
            if st is None or st.to_json().get("stop_flop") != act.stop_flop:
                return False
        return True

    act.nodes_agree = _wait_for("every node's plan state", agreed, deadline)
    if act.nodes_agree:
        events.add("network", f"every node computes the same plan state: {act.status}")
    if act.stop_flop is None:
        act.note = f"the plan is {act.status}: no stop point to show"
        return act

    # 3. The run itself: a wider model, trained under its gate until the gate says stop.
    tok = AutoTokenizer.from_pretrained(tok_dir)
    # Wide enough that the CPU runs near its best FLOP rate (the run needs about as much
    # compute as the breaching model's whole training to reach the stop point).
    model = build_tiny_gpt2(2, 256, 4, tok, seed)
    params = sum(p.numel() for p in model.parameters())
    row_tokens = len(tok.encode("12+34=046;" * 10))
    stop = Decimal(act.stop_flop)
    # Batch sized so the run reaches its stop point in about 40 steps.
    batch = max(8, min(1024, math.ceil(float(stop) / (6 * params * row_tokens * 40))))
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    home = NodeHome.open(lab_dir)
    gate = TrainingGate(home, run=Run(model=act.model, planned_flop=planned))

    def on_step(step: int, m: Any) -> bool:
        flop = f"{6 * params * step * batch * row_tokens:.6E}"
        gate.set_compute(flop)
        decision = gate.check(step)
        if not decision.proceed:
            act.halted_step, act.halted_flop, act.halt_reason = step, flop, decision.reason
            act.halt_kind = str(decision.details.get("plan_stop") or "pause")
            return False
        return time.monotonic() < deadline and step < 400

    try:
        train_tiny_arithmetic(None, steps=400, batch_size=batch, lr=3e-3, seed=seed, model=model,
                              tokenizer=tok, on_step=on_step, answer_loss_only=True)
    finally:
        gate.close()
        home.close()
    if act.halted_step is None:
        act.note = "the run ended before its gate stopped it"
    else:
        events.add(lab, f"{act.model}: training HALTED at step {act.halted_step} ({act.halted_flop} FLOP) "
                        f"by its gate: {act.halt_reason}")
    return act


def _breaches(home_dir: Path) -> list[Milestone]:
    from node.home import NodeHome

    with NodeHome.open(home_dir) as h:
        return [m for m in read_story(h.store) if m.what == "breach"]


def _halts_arrived(home_dir: Path, states: Sequence[LabState]) -> bool:
    """Whether every halted lab's signed halt record reached this node (the report shows them)."""
    from node.home import NodeHome

    with NodeHome.open(home_dir) as h:
        recorded = {
            e.statement.lab for e in h.store.entries(kind="note")
            if getattr(e.statement.body, "text", "").startswith(HALT_PREFIX)
        }
    return all(s.plan.lab in recorded for s in states if s.state == "halted")


def run_demo(
    workdir: str | os.PathLike[str] = "demo-network",
    *,
    plan: Sequence[LabPlan] = DEFAULT_PLAN,
    suite: str | os.PathLike[str] = DEMO_SUITE,
    policy: str | os.PathLike[str] = DEMO_POLICY,
    quiet: bool = False,
    deadline_s: float = 1200.0,
    console: Console | None = None,
    plan_act_enabled: bool = True,
) -> DemoResult:
    """Run the whole demo; return what happened (the CLI prints it, tests assert on it)."""
    import torch

    from node.evals.tinymodels import build_char_tokenizer
    from node.home.netsetup import create_network, suite_ref_of

    console = console or Console()
    out = None if quiet else console
    _quiet_libraries()
    root = Path(workdir).resolve()
    previous = _prepare_workdir(root)
    events = EventLog(out)
    if previous is not None:
        events.add("demo", f"the previous demo network was moved aside to {_shown(previous)}")
    labs = [p.lab for p in plan]
    ports = free_ports(len(labs))
    if out:
        console.rule("[bold]1. A three-lab network")
    homes = create_network(
        root,
        labs,
        ports=ports,
        observers=["regulator"],
        policy=policy,
        suites=[suite_ref_of(suite)],
        network_name="tripwire-demo",
    )
    network_id = homes[0].store.network_id()
    home_dirs = [h.path for h in homes]
    for h, rule in zip(homes, VOTE_RULES, strict=False):
        # Each operator configures how its node votes; these are the demo's choices.
        h.save_config(h.config.model_copy(update={"votes": {**h.config.votes, "auto": rule}}))
        events.add(h.lab, f"operator's vote rule: {rule}")
    for h in homes:
        h.close()
    events.add("network", f"genesis roster signed by {', '.join(labs)}; network id {network_id[:16]}…")
    tok_dir = root / "tokenizer"
    build_char_tokenizer(tok_dir)

    nodes = [
        ServeProcess(d, port, log_path=root / f"{d.name}.log") for d, port in zip(home_dirs, ports, strict=True)
    ]
    stop_all = threading.Event()
    stop_watch = threading.Event()
    states = [LabState(p) for p in plan]
    watcher = Watcher(home_dirs, events, stop_watch, dict(zip(labs, VOTE_RULES, strict=False)))
    rounds = Rounds(labs)
    trainers: list[Trainer] = []
    report_dir: Path | None = None
    verify_exit: int | None = None
    plan_act: PlanAct | None = None
    # Torch threads: the labs share the machine's cores; one intra-op thread each keeps
    # them from fighting over the same cores.
    torch.set_num_threads(1)
    try:
        for n in nodes:
            n.start(wait=False)
        for n in nodes:
            n.wait_healthy(60)
            events.add(n.home_dir.name, f"node serving on {n.url}")
        watcher.start()
        if out:
            console.rule("[bold]2. Each lab trains its own model; checkpoints are evaluated, signed, shared")
            console.print(
                "Two-digit addition stands in for a dangerous capability. Every 50 steps each lab scores its\n"
                "checkpoint two ways: the log-probability it gives the correct answer (sensitive, continuous)\n"
                "and the share of additions it answers exactly right (the number the threshold is on).",
                highlight=False,
            )
        for s, d in zip(states, home_dirs, strict=True):
            t = Trainer(
                d, s, suite=Path(suite), tokenizer_dir=tok_dir, stop_all=stop_all, events=events, rounds=rounds
            )
            trainers.append(t)
            t.start()
        deadline = time.monotonic() + deadline_s
        live = Live(_table(states, False), console=console, refresh_per_second=2, transient=True) if out else None
        if live:
            live.start()
        try:
            while any(t.is_alive() for t in trainers):
                if time.monotonic() > deadline:
                    events.add("demo", f"deadline of {deadline_s:.0f}s reached: stopping training")
                    stop_all.set()
                    break
                if live:
                    live.update(_table(states, bool(watcher.paused_at)))
                time.sleep(0.5)
            for t in trainers:
                t.join(timeout=120)
        finally:
            if live:
                live.update(_table(states, bool(watcher.paused_at)))
                live.stop()
                console.print(_table(states, bool(watcher.paused_at)))
        # Let the last entries (votes, certificates) reach every node before reporting.
        settle = time.monotonic() + 10
        while time.monotonic() < settle and watcher.breach_published_at and (
            len(watcher.paused_at) < len(nodes) or not _halts_arrived(home_dirs[0], states)
        ):
            time.sleep(0.25)
        stop_watch.set()
        watcher.join(timeout=10)
        if out:
            console.rule("[bold]3. Report and offline verification")
        report_dir = root / "report"
        report_written, verification = _report_and_verify(home_dirs[0], report_dir, root / "genesis.json")
        verify_exit = 0 if verification.ok else 3
        if out:
            console.print(
                f"status {report_written.status}; wrote {_shown(report_written.html)}"
                + (f", {_shown(report_written.pdf)}" if report_written.pdf else "")
                + f" and {_shown(report_written.evidence)} (sha256 {report_written.evidence_sha256[:16]}…)",
                highlight=False,
            )
            console.print(_checks_table(verification))
        if plan_act_enabled:
            if out:
                console.rule("[bold]4. After the investigation: the next run needs a safety case")
                console.print(
                    "The labs resume, citing the investigation by its digest. Then the breaching lab plans a\n"
                    "larger model of the same recipe. Every node forecasts it from the lab's signed results; where\n"
                    "a breach becomes plausible the plan has a stop point, and the run's gate stops there unless\n"
                    "the labs accept a safety case for it.",
                    highlight=False,
                )
            breached = next((m.lab for m in _breaches(home_dirs[0])), None)
            if breached is not None:
                st = next(s for s in states if s.plan.lab == breached)
                plan_act = _plan_act(
                    root, home_dirs, events, tok_dir, lab=breached,
                    ladder_model=f"{breached}-gpt2-{st.plan.n_layer}x{st.plan.n_embd}",
                    seed=st.plan.seed + 1, deadline=time.monotonic() + 240,
                )
                if plan_act.note:
                    events.add("demo", f"fourth act: {plan_act.note}")
    except KeyboardInterrupt:
        events.add("demo", "interrupted: stopping training and nodes")
        stop_all.set()
        raise
    finally:
        stop_all.set()
        stop_watch.set()
        for t in trainers:
            t.join(timeout=30)
        for n in nodes:
            n.stop()
    from node.home import NodeHome

    with NodeHome.open(home_dirs[0]) as h:
        story = read_story(h.store)
        checkpoints: dict[str, list[tuple[int, float]]] = {}
        for e in h.store.entries(kind="eval_result"):
            body = e.statement.body
            assert isinstance(body, EvalResultBody)
            m = body.model
            checkpoints.setdefault(e.statement.lab, []).append((m.checkpoint_step, float(m.training_flop)))
    for steps in checkpoints.values():
        steps.sort()
    ttp = None
    if watcher.breach_published_at and len(watcher.paused_at) == len(nodes):
        ttp = max(watcher.paused_at.values()) - watcher.breach_published_at
    return DemoResult(
        workdir=root,
        homes=home_dirs,
        states=states,
        events=events.lines,
        paused=len(watcher.paused_at) == len(nodes),
        time_to_pause_s=ttp,
        report_dir=report_dir,
        verify_exit=verify_exit,
        story=story,
        checkpoints=checkpoints,
        previous=previous,
        plan_act=plan_act,
    )


def _shown(path: Path) -> str:
    """A path as the reader would type it from here (relative when below the current folder)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def tripwire_command() -> str:
    """How to run ``tripwire`` from this shell: the venv's script unless it is on PATH."""
    script = Path(sys.executable).parent / "tripwire"
    on_path = shutil.which("tripwire")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "tripwire"
    return _shown(script) if script.exists() else "tripwire"


def warning_lead(r: DemoResult, what: str) -> tuple[Milestone, int, float] | None:
    """How far ahead of the breach the breaching lab's first ``what`` came: the milestone,
    the number of that lab's checkpoints from it to the breach, and doublings of compute."""
    breach = next((m for m in r.story if m.what == "breach"), None)
    warn = next((m for m in r.story if m.what == what and breach and m.lab == breach.lab), None)
    if breach is None or warn is None or warn.step is None or breach.step is None:
        return None
    n = sum(1 for step, _ in r.checkpoints.get(breach.lab, []) if warn.step < step <= breach.step)
    doublings = math.log2(breach.flop / warn.flop) if breach.flop and warn.flop else 0.0
    return warn, n, doublings


def print_summary(r: DemoResult, console: Console) -> None:
    """The short summary a person reads at the end of ``make demo``: the story, then where things are."""
    console.rule("[bold]Summary")
    if r.paused:
        ttp = f" (every node held the certificate {r.time_to_pause_s:.2f}s after the proposal)" if r.time_to_pause_s else ""
        console.print(f"[bold red]The network is PAUSED[/]: a quorum of labs signed the pause{ttp}.")
    else:
        console.print("[bold]No pause[/]: no model crossed the breach threshold within the deadline.")
    breach = next((m for m in r.story if m.what == "breach"), None)
    if breach is not None:
        console.print(
            f"\nWhat fired, and when ({breach.lab}'s checkpoints, training compute doubling as steps double):",
            highlight=False,
        )
        for what, rule_says in (
            ("early warning", "the sensitive eval (log-probability of the correct answer) warned"),
            ("trend warning", "the trend forecast the crossing of the threshold"),
        ):
            lead = warning_lead(r, what)
            if lead is None:
                console.print(f"  {what:<14} none on {breach.lab}'s results before the breach", highlight=False)
                continue
            m, n, doublings = lead
            console.print(
                f"  {what:<14} rule {m.rule} at step {m.step}: {rule_says} {n} checkpoints "
                f"({doublings:.1f} doublings of compute) before the breach",
                highlight=False,
            )
        console.print(
            f"  {'breach':<14} rule {breach.rule} at step {breach.step}: {breach.lab}'s result crossed the agreed threshold",
            highlight=False,
        )
    halts = {m.lab: m.step for m in r.story if m.what == "halt" and m.step is not None}
    console.print("\nWhere each lab's training stopped (from the signed halt records):", highlight=False)
    for s in r.states:
        if s.plan.lab in halts:
            where = f"halted at step {halts[s.plan.lab]}"
        else:
            where = f"{s.state} at step {s.step} (no halt record)"
        err = f"  [magenta]{s.error}[/]" if s.error else ""
        console.print(f"  {s.plan.lab:<9} {where}, {s.evals} signed results{err}", highlight=False)
    p = r.plan_act
    if p is not None and p.plan:
        console.print("\nThe next run (fourth act):", highlight=False)
        console.print(f"  resumed        {'yes' if p.resumed else 'no'}: the labs' resume certificate, citing the investigation",
                      highlight=False)
        console.print(f"  plan           {p.lab} plans {p.model} to {p.planned_flop} FLOP: {p.status}"
                      + (f", stop point {p.stop_flop} FLOP (rule {p.stop_rule})" if p.stop_flop else ""), highlight=False)
        if p.halted_step is not None:
            console.print(f"  gate           stopped the run at step {p.halted_step} ({p.halted_flop} FLOP): "
                          "no safety case was accepted for the plan", highlight=False)
    elif p is not None and p.note:
        console.print(f"\nThe fourth act did not finish: {p.note}", highlight=False)
    tw = tripwire_command()
    if r.report_dir is not None:
        console.print(f"\nReport:   {_shown(r.report_dir / 'report.html')}", highlight=False)
        console.print(f"PDF:      {_shown(r.report_dir / 'report.pdf')}", highlight=False)
        console.print(f"Evidence: {_shown(r.report_dir / 'evidence.json')}", highlight=False)
        console.print(f"Genesis:  {_shown(r.workdir / 'genesis.json')} (the roster to pin with --roster)", highlight=False)
        verdict = "[green]passed[/]" if r.verify_exit == 0 else "[red]FAILED[/]"
        console.print(f"Offline verification (tripwire verify): {verdict}")
    console.print("\nKeep exploring (each lab home works with the normal CLI):", highlight=False)
    for h in r.homes:
        console.print(f"  {tw} serve  --home {_shown(h)}", highlight=False, overflow="fold")
    console.print(f"  {tw} status --home {_shown(r.homes[0])}", highlight=False, overflow="fold")
    report = _shown(r.report_dir) if r.report_dir else "REPORT_FOLDER"
    console.print(
        f"  {tw} verify {report} --roster {_shown(r.workdir / 'genesis.json')} --require-pin",
        highlight=False,
        overflow="fold",
    )
