"""The demo's labs: how each trains, its training loop under the gate, and the rounds that
keep the labs in step on a shared CPU."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.demo.story import ACCURACY, LOGPROB, EventLog, percent, short

#: transformers builds and loads models under process-global init contexts (the meta
#: device), which are not thread-safe; the labs' threads take turns for those phases.
MODEL_INIT_LOCK = threading.Lock()


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
        with MODEL_INIT_LOCK:
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
            with MODEL_INIT_LOCK:
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
                f"answer {short(lp)} (result signed and shared)",
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
