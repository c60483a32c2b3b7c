"""Runs the demo from start to end: the network, the nodes, the labs' training, the report
and its offline verification, and the fourth act; see the package docstring for the story."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live

from node.demo.labs import DEFAULT_PLAN, LabPlan, LabState, Rounds, Trainer
from node.demo.plan_act import PlanAct, run_plan_act
from node.demo.story import EventLog, Milestone, Watcher, read_story
from node.demo.summary import DemoResult, checks_table, lab_table, shown
from node.home.resources import spec_path
from node.net.process import ServeProcess, free_ports
from protocol.entries import HALT_PREFIX, EvalResultBody
from protocol.errors import ConfigurationError, InternalError

if TYPE_CHECKING:
    from node.home.report import WrittenReport
    from reports.bundle import VerificationReport


DEMO_SUITE = spec_path("suites", "tripwire-demo.yaml")


DEMO_POLICY = spec_path("policies", "tripwire-demo.yaml")


MARKER = ".tripwire-demo"


#: The automatic vote rule each demo lab's operator chose (node.toml ``[votes] auto``).
VOTE_RULES = ("pause-on-breach", "pause-on-breach", "object-unless-breach")


class DemoError(InternalError):
    """The demo could not run to its end (a step of it failed: a bug to report)."""

    code = "demo"


def _quiet_libraries() -> None:
    """Keep the demo's output to what a person follows: no library progress bars or notices."""
    import logging

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # transformers' untyped helper
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers' untyped helper
    # The gate's own stop message is reported as a demo event instead.
    logging.getLogger("node.pause.gate").setLevel(logging.ERROR)


def prepare_workdir(workdir: Path) -> Path | None:
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
    previous = prepare_workdir(root)
    events = EventLog(out)
    if previous is not None:
        events.add("demo", f"the previous demo network was moved aside to {shown(previous)}")
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
        live = Live(lab_table(states, False), console=console, refresh_per_second=2, transient=True) if out else None
        if live:
            live.start()
        try:
            while any(t.is_alive() for t in trainers):
                if time.monotonic() > deadline:
                    events.add("demo", f"deadline of {deadline_s:.0f}s reached: stopping training")
                    stop_all.set()
                    break
                if live:
                    live.update(lab_table(states, bool(watcher.paused_at)))
                time.sleep(0.5)
            for t in trainers:
                t.join(timeout=120)
        finally:
            if live:
                live.update(lab_table(states, bool(watcher.paused_at)))
                live.stop()
                console.print(lab_table(states, bool(watcher.paused_at)))
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
                f"status {report_written.status}; wrote {shown(report_written.html)}"
                + (f", {shown(report_written.pdf)}" if report_written.pdf else "")
                + f" and {shown(report_written.evidence)} (sha256 {report_written.evidence_sha256[:16]}…)",
                highlight=False,
            )
            console.print(checks_table(verification))
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
                plan_act = run_plan_act(
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
