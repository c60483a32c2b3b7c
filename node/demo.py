"""The three-lab demo behind ``make demo``: a real network through a real breach and pause.

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

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from node.process import ServeProcess, free_ports
from protocol.errors import ConfigurationError, TripwireError

SPECS = Path(__file__).resolve().parent.parent / "specs"
DEMO_SUITE = SPECS / "suites" / "tripwire-demo.yaml"
DEMO_POLICY = SPECS / "policies" / "tripwire-demo.yaml"
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


#: Three labs of different scale and learning rate. The largest learns fastest and is the
#: one expected to cross the threshold; nothing forces it to — the policy is applied to the
#: measured scores of real checkpoints.
DEFAULT_PLAN: tuple[LabPlan, ...] = (
    LabPlan("aurora", 3, 128, 4, 64, 3e-3, seed=11, eval_every=20, max_steps=2000),
    LabPlan("borealis", 2, 64, 2, 32, 5e-4, seed=22, eval_every=20, max_steps=2000),
    LabPlan("cygnus", 1, 48, 2, 32, 3e-4, seed=33, eval_every=20, max_steps=2000),
)


#: The automatic vote rule each demo lab's operator chose (node.toml ``[votes] auto``).
VOTE_RULES = ("pause-on-breach", "pause-on-breach", "object-unless-breach")


class DemoError(TripwireError):
    """The demo could not run (ports, processes, a node that never came up)."""

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

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # The gate's own stop message is reported as a demo event instead.
    logging.getLogger("node.gate").setLevel(logging.ERROR)


def _prepare_workdir(workdir: Path) -> None:
    if workdir.exists():
        if not (workdir / MARKER).exists() and any(workdir.iterdir()):
            raise ConfigurationError(
                f"{workdir} exists and is not a previous demo network; choose another --workdir"
            )
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / MARKER).write_text("created by `tripwire demo`; safe to delete\n")


class EventLog:
    """Thread-safe list of human-readable network events, printed as they happen."""

    def __init__(self, console: Console | None) -> None:
        self.console = console
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.t0 = time.monotonic()

    def add(self, who: str, text: str) -> None:
        line = f"[{time.monotonic() - self.t0:6.1f}s] {who:<9} {text}"
        with self._lock:
            self.lines.append(line)
        if self.console is not None:
            self.console.print(line, highlight=False, markup=False)


def describe_entry(e: Any) -> str:
    """One line for a network event, in words."""
    b = e.statement.body
    kind = e.kind
    if kind == "eval_result":
        parts = []
        for t in b.tasks:
            for name in ("logprob_correct", "acc", "exact_match"):
                if name in t.metrics:
                    m = t.metrics[name]
                    parts.append(f"{t.name}.{name}={m.value}±{m.stderr}")
        return f"eval_result step {b.model.checkpoint_step} ({', '.join(parts)})"
    if kind == "alert":
        # A warning raised by the trend says so in the part after "trend:"; show that part.
        text = b.message.split("; trend: ", 1)[1] if b.verdict == "warn" and "; trend: " in b.message else b.message
        return f"ALERT ({b.verdict}) on rule {b.rule} for {b.result_lab}: {text[:220]}"
    if kind == "pause_proposal":
        return (
            f"PAUSE PROPOSAL {b.proposal_id[:12]}…: {b.trigger.lab}'s result reached "
            f"{b.observed} against level {b.level} (rule {b.trigger.rule})"
        )
    if kind == "vote":
        return f"vote {b.decision.upper()} on {b.action} proposal {b.proposal_id[:12]}…"
    if kind == "pause_certificate":
        return f"{b.action.upper()} CERTIFICATE for {b.proposal_id[:12]}… with {len(b.votes)} signed votes"
    if kind == "resume_proposal":
        return f"resume proposal {b.proposal_id[:12]}…"
    return kind


class Watcher(threading.Thread):
    """Follows the network through one node's store and reports new entries as events."""

    def __init__(self, home_dirs: Sequence[Path], events: EventLog, stop: threading.Event) -> None:
        super().__init__(name="watcher", daemon=True)
        self.home_dirs, self.events, self.stop = home_dirs, events, stop
        self.seen: dict[str, int] = {}
        self.paused_at: dict[str, float] = {}
        self.breach_published_at: float | None = None

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
        from node.coordinator import local_analysis
        from protocol.entries import decode_entry

        view = homes[0]
        for lab, head in sorted(view.store.heads().items()):
            after = self.seen.get(lab, 0)
            if head.seq <= after:
                continue
            for env in view.store.feed(lab, after=after, limit=500):
                d = decode_entry(env)
                e = view.store.get(d.entry_id)
                if e is None:
                    continue
                self.seen[lab] = e.seq
                if e.kind == "pause_proposal" and self.breach_published_at is None:
                    self.breach_published_at = time.monotonic()
                if e.kind != "eval_result":  # the lab's own trainer already reported it
                    self.events.add(lab, describe_entry(e))
        for h in homes:
            if h.lab in self.paused_at or not h.store.entries(kind="pause_certificate"):
                continue
            # The node's own analysis: a certificate counts only if its votes verify and
            # reach the quorum under the roster, and no resume ended it.
            analysis, _ = local_analysis(h)
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

        from node.evals.runner import run_suite
        from node.evals.tinymodels import build_tiny_gpt2, save_model, train_tiny_arithmetic
        from node.gate import TrainingGate
        from node.home import NodeHome

        plan = self.state.plan
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
            self.events.add(plan.lab, f"training HALTED at step {step} (checkpoint saved): {reason}")
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
                    out, self.suite, device="cpu", dtype="float32", batch_size=64,
                    model_name=f"{plan.lab}-gpt2-{plan.n_layer}x{plan.n_embd}",
                )
            assert run is not None
            entry_id = home.publish("eval_result", run.to_body())
            metrics = run.to_result_json()["tasks"]
            self.state.last = {
                f"{task}.{name}": mv["value"] for task, t in metrics.items() for name, mv in t["metrics"].items()
            }
            self.state.evals += 1
            self.events.add(
                plan.lab,
                f"signed eval_result for step {step} ({entry_id[:12]}…): "
                + ", ".join(f"{k}={v}" for k, v in self.state.last.items() if k.endswith((".logprob_correct", ".acc"))),
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
            )
        finally:
            gate.close()
            home.close()
        if self.state.state == "training":
            self.state.state = "finished"


def _table(states: Sequence[LabState], paused: bool) -> Table:
    t = Table(title="Tripwire demo network" + ("  [bold red]PAUSED[/]" if paused else ""), expand=False)
    for col in ("lab", "model", "step", "evals", "latest scores", "training"):
        t.add_column(col)
    for s in states:
        p = s.plan
        shown = [(k.split(".")[-1], v) for k, v in s.last.items() if k.endswith((".logprob_correct", ".acc"))]
        scores = ", ".join(f"{k}={v}" for k, v in shown) or "-"
        style = {"halted": "bold red", "failed": "bold magenta", "training": "green"}.get(s.state, "")
        t.add_row(
            p.lab,
            f"{p.n_layer}x{p.n_embd}",
            str(s.step),
            str(s.evals),
            scores,
            f"[{style}]{s.state}[/]" if style else s.state,
        )
    return t


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


def run_demo(
    workdir: str | os.PathLike[str] = "demo-network",
    *,
    plan: Sequence[LabPlan] = DEFAULT_PLAN,
    suite: str | os.PathLike[str] = DEMO_SUITE,
    policy: str | os.PathLike[str] = DEMO_POLICY,
    quiet: bool = False,
    deadline_s: float = 420.0,
    console: Console | None = None,
) -> DemoResult:
    """Run the whole demo; return what happened (the CLI prints it, tests assert on it)."""
    import torch

    from node.cli import main as cli_main
    from node.cli._app import console as cli_console
    from node.evals.tinymodels import build_char_tokenizer
    from node.netsetup import create_network, suite_ref_of

    console = console or Console()
    out = None if quiet else console
    _quiet_libraries()
    root = Path(workdir).resolve()
    _prepare_workdir(root)
    events = EventLog(out)
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
    watcher = Watcher(home_dirs, events, stop_watch)
    rounds = Rounds(labs)
    trainers: list[Trainer] = []
    report_dir: Path | None = None
    verify_exit: int | None = None
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
        while time.monotonic() < settle and watcher.breach_published_at and len(watcher.paused_at) < len(nodes):
            time.sleep(0.25)
        stop_watch.set()
        watcher.join(timeout=10)
        if out:
            console.rule("[bold]3. Report and offline verification")
        report_dir = root / "report"
        # --quiet: the commands' own tables are captured; their errors still reach stderr.
        with cli_console.capture() if quiet else contextlib.nullcontext():
            rc = cli_main(
                [
                    "report",
                    "--home",
                    str(home_dirs[0]),
                    "--out",
                    str(report_dir),
                    "--audience",
                    "regulator",
                    "--overwrite",
                ]
            )
            if rc != 0:
                raise DemoError(f"`tripwire report` failed with exit code {rc}")
            # The genesis roster a reader pins to, beside the report (a real reader gets it
            # from the labs' founding filing, not from the node that wrote the report).
            genesis = root / "genesis.json"
            rc = cli_main(["roster", "export", "--home", str(home_dirs[0]), "--out", str(genesis)])
            if rc != 0:
                raise DemoError(f"`tripwire roster export` failed with exit code {rc}")
            verify_exit = cli_main(["verify", str(report_dir), "--roster", str(genesis), "--require-pin"])
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
    )


def print_summary(r: DemoResult, console: Console) -> None:
    """The short summary a person reads at the end of ``make demo``."""
    console.rule("[bold]Summary")
    if r.paused:
        ttp = f" (every node held the certificate {r.time_to_pause_s:.2f}s after the proposal)" if r.time_to_pause_s else ""
        console.print(f"[bold red]The network is PAUSED[/]: a quorum of labs signed the pause{ttp}.")
    else:
        console.print("[bold]No pause[/]: no model crossed the breach threshold within the deadline.")
    for s in r.states:
        halted = f"halted at step {s.halted_at}" if s.halted_at is not None else s.state
        err = f"  [magenta]{s.error}[/]" if s.error else ""
        console.print(f"  {s.plan.lab:<9} trained to step {s.step:>5}, {s.evals} signed results, {halted}{err}")
    if r.report_dir is not None:
        console.print(f"\nReport:   {r.report_dir / 'report.html'}")
        console.print(f"PDF:      {r.report_dir / 'report.pdf'}")
        console.print(f"Evidence: {r.report_dir / 'evidence.json'}")
        console.print(f"Genesis:  {r.workdir / 'genesis.json'} (the roster to pin with --roster)")
        verdict = "[green]passed[/]" if r.verify_exit == 0 else "[red]FAILED[/]"
        console.print(f"Offline verification (tripwire verify): {verdict}")
    console.print("\nKeep exploring (each lab home works with the normal CLI):")
    for h in r.homes:
        console.print(f"  tripwire serve  --home {h}")
    console.print(f"  tripwire status --home {r.homes[0]}")
    console.print(
        f"  tripwire verify {r.report_dir or 'REPORT_FOLDER'} --roster {r.workdir / 'genesis.json'} --require-pin"
    )
