"""The training gate: stops a real training loop on a pause, fails closed, HF callback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pausekit import Mesh, Node, free_ports, make_network, result_body

from node.pause.gate import TrainingGate
from protocol.errors import ConfigurationError

LABS = ["alpha", "beta", "gamma"]


@pytest.fixture
def homes(tmp_path: Path):
    hs = make_network(tmp_path / "net", LABS)
    yield hs
    for h in hs:
        h.close()


def _train(out: Path, hook, steps: int = 3000):
    from node.evals.tinymodels import train_tiny_arithmetic

    return train_tiny_arithmetic(
        out, steps=steps, batch_size=4, n_layer=1, n_embd=32, n_head=2, problems_per_row=2, on_step=hook
    )


@pytest.mark.parametrize("local", [False, True], ids=["node-status-only", "local-store-and-node"])
def test_gate_stops_real_training_when_the_network_pauses(homes, tmp_path: Path, local: bool) -> None:
    """A lab trains; at step 5 its eval publishes a breaching result; the network votes and
    certifies; the gate sees the pause and the loop stops with a saved checkpoint."""
    from node.evals.tinymodels import build_tiny_gpt2

    build_tiny_gpt2(1, 32, 2)  # import transformers before three servers compete for the GIL
    nodes = [Node(h).start() for h in homes]
    alpha = homes[0]
    messages: list[str] = []
    try:
        # 0.2 s between polls stays well inside the node's per-caller rate limit.
        gate = TrainingGate(alpha, poll_interval_s=0.2, check_local=local, stop_on_local_breach=False)
        inner = gate.step_hook(echo=messages.append)

        def hook(step: int, model) -> bool:
            if step == 5:
                alpha.publish("eval_result", result_body("0.66", step=step))
            return inner(step, model)

        out = tmp_path / "run"
        _, _, last = _train(out, hook)
    finally:
        for n in nodes:
            n.stop()
    assert 5 < last < 3000, "training stopped after the breach, long before its planned end"
    print(f"stopped at step {last}")
    decision = gate.check(last + 1)
    assert decision.stop and decision.paused and decision.source == "cached"
    assert gate._stopped is not None
    if local:
        # The certificate reaches the node and the home's store together, so either may have
        # answered first; with the nodes now down, the local store alone must see the pause.
        assert gate._stopped.source in ("local", "node")
        fresh = TrainingGate(alpha, poll_interval_s=0.2, check_local=True, stop_on_local_breach=False)
        try:
            d = fresh.check(last + 2)
        finally:
            fresh.close()
        assert d.stop and d.source == "local" and d.paused == decision.paused
    else:
        assert gate._stopped.source == "node"
    assert "pause certificate" in messages[0] and "TRAINING STOPPED" in messages[0]
    # The final checkpoint is saved at the step where training stopped.
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == last
    assert (out / "model.safetensors").is_file()
    gate.close()


def test_gate_stops_on_own_breach_before_any_vote(homes, tmp_path: Path) -> None:
    mesh = Mesh(homes)
    alpha = homes[0]
    gate = TrainingGate(alpha, poll_interval_s=0, fail_closed=False)  # no server is running
    assert gate.check(1).proceed
    alpha.publish("eval_result", result_body("0.30"))  # ok: training goes on
    assert gate.check(2).proceed
    rid = alpha.publish("eval_result", result_body("0.66", step=200))
    d = gate.check(3)
    assert d.stop and d.source == "local" and d.details["result"] == rid
    assert "breaches rule 'arithmetic-acc'" in d.reason
    # Another lab's breach does not stop beta's gate by itself; the certificate does.
    beta_gate = TrainingGate(homes[1], poll_interval_s=0, fail_closed=False)
    mesh.sync()
    assert beta_gate.check(1).proceed
    mesh.settle()
    assert gate.check(4).stop  # stays stopped
    d = beta_gate.check(2)
    assert d.stop and d.source == "local" and "pause certificate" in d.reason


def test_gate_fails_closed_after_grace(homes) -> None:
    (port,) = free_ports(1)
    t = [0.0]
    url = f"http://127.0.0.1:{port}"
    chain = homes[0].store.roster_chain()
    gate = TrainingGate(url, key=homes[0].key, member="alpha", roster=chain, grace_s=10, poll_interval_s=0,
                        timeout_s=0.5, clock=lambda: t[0])
    d = gate.check(1)
    assert d.proceed and d.source == "unreachable"
    t[0] = 9.0
    assert gate.check(2).proceed
    t[0] = 10.5
    d = gate.check(3)
    assert d.stop and d.source == "unreachable" and "fail-closed" in d.reason
    lenient = TrainingGate(url, key=homes[0].key, member="alpha", roster=chain, grace_s=0, poll_interval_s=0,
                           fail_closed=False, timeout_s=0.5, clock=lambda: t[0])
    t[0] = 100.0
    assert lenient.check(1).proceed


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("http://127.0.0.1:1",), {}, "needs key= and member="),
        ((), {"grace_s": -1}, "grace_s"),
        ((), {"url": "not a url"}, "url"),
    ],
    ids=["url-without-key", "negative-grace", "bad-url"],
)
def test_gate_bad_configuration(homes, args, kwargs, match) -> None:
    with pytest.raises(ConfigurationError, match=match):
        TrainingGate(*(args or (homes[0],)), **kwargs)


def test_hf_trainer_callback_saves_and_stops(homes, tmp_path: Path) -> None:
    from transformers import Trainer, TrainingArguments

    from node.evals.tinymodels import arithmetic_stream, build_char_tokenizer, build_tiny_gpt2
    from node.pause.gate import TripwireGateCallback

    mesh = Mesh(homes)
    tok = build_char_tokenizer()
    model = build_tiny_gpt2(1, 32, 2, tok)
    import random

    rng = random.Random(0)
    rows = [tok.encode(arithmetic_stream(rng, 2)) for _ in range(64)]
    data = [{"input_ids": r, "labels": r} for r in rows]
    cb = TripwireGateCallback(homes[0], poll_interval_s=0, fail_closed=False)

    class Breach:
        """After step 3 the lab's eval breaches and the network certifies a pause."""

        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                homes[0].publish("eval_result", result_body("0.70", step=3))
                mesh.settle()
            return control

    from transformers import TrainerCallback

    breach = type("BreachCallback", (TrainerCallback,), {"on_step_end": Breach.on_step_end})()
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"), max_steps=200, per_device_train_batch_size=4, save_strategy="no",
        report_to=[], use_cpu=True, logging_strategy="no", disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[breach, cb])
    trainer.train()
    assert trainer.state.global_step == 3
    assert cb.decision is not None and cb.decision.stop
    assert (tmp_path / "hf" / "checkpoint-3").is_dir(), "the pause saved a checkpoint"
