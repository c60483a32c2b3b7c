"""generate_until, loglikelihood and activation_probe tasks, and the metric helpers."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from pathlib import Path

import pytest
import torch

from node.evals.generation import cut_at_stop, generate_all
from node.evals.metrics import auroc, bootstrap_stderr, pass_at_k
from node.evals.runner import run_suite, run_task
from node.evals.spec import Generation, load_task

SPECS = Path(__file__).resolve().parents[2] / "specs"


def test_batched_greedy_generation_equals_one_at_a_time(loaded):
    ctxs = ["12+34=", "a=15;b=a+7;c=b-9;c=", "bh:15;xg:88;|xg:", "9"]
    gen = Generation(until=(";",), max_gen_toks=6)
    batched = generate_all(loaded, ctxs, gen, batch_size=4, auto=False)
    single = [generate_all(loaded, [c], gen, batch_size=1, auto=False)[0] for c in ctxs]
    assert batched == single
    # The reference: argmax decoding by hand, cut at the stop string.
    tok = loaded.tokenizer
    ids = tok.encode(ctxs[0])
    for _ in range(6):
        with torch.no_grad():
            ids.append(int(loaded.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    assert batched[0] == [cut_at_stop(tok.decode(ids[len(tok.encode(ctxs[0])):]), [";"])]


def test_stop_sequences_cut_at_the_earliest_match():
    assert cut_at_stop("046;12+", [";", "+"]) == "046"
    assert cut_at_stop("0+46;", [";", "+"]) == "0"
    assert cut_at_stop("046", [";"]) == "046"


def test_sampled_generation_is_seeded_and_pass_at_k_reported(loaded):
    spec = load_task(SPECS / "evals" / "composition_gen.yaml")
    a = run_task(loaded, spec, limit=6, batch_size=3)
    b = run_task(loaded, spec, limit=6, batch_size=3)
    assert a.items_root == b.items_root
    assert list(a.metrics) == ["exact_match", "pass_at_1", "pass_at_5"]
    assert a.metrics["pass_at_5"][0] >= a.metrics["pass_at_1"][0]
    assert all(len(r["outputs_sha256"]) == 5 for r in a.records)


def test_generation_exact_match_counts_a_model_that_knows_the_answer(loaded, tmp_path):
    """Targets set to what the model greedily produces score 1; anything else 0."""
    ctxs = ["12+34=", "55+05=", "a=1;b=a+2;b="]
    outs = generate_all(loaded, ctxs, Generation(until=(";",), max_gen_toks=3), batch_size=3, auto=False)
    rows = [{"context": c, "target": o[0] if i < 2 else o[0] + "x"} for i, (c, o) in enumerate(zip(ctxs, outs, strict=True))]
    data = tmp_path / "gen.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    (tmp_path / "t.yaml").write_text(
        f'task: gen_local\nkind: generate_until\ndata: {{path: gen.jsonl, sha256: "{digest}"}}\n'
        'generation: {until: [";"], max_gen_toks: 3}\n'
    )
    run = run_task(loaded, load_task(tmp_path / "t.yaml"), batch_size=2)
    assert [r["correct"] for r in run.records] == [[True], [True], [False]]
    assert run.metrics["exact_match"][0] == pytest.approx(2 / 3)


def test_loglikelihood_task_reports_logprob_and_greedy(loaded, tmp_path):
    rows = [{"context": "12+34=", "target": "046"}, {"context": "1", "target": "2"}]
    data = tmp_path / "ll.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    (tmp_path / "t.yaml").write_text(f'task: ll\nkind: loglikelihood\ndata: {{path: ll.jsonl, sha256: "{digest}"}}\n')
    run = run_task(loaded, load_task(tmp_path / "t.yaml"), batch_size=2)
    assert set(run.metrics) == {"acc", "logprob", "logprob_per_token"}
    lp = float(run.records[0]["logprob"])
    assert lp < 0 and run.metrics["logprob_per_token"][0] == pytest.approx((lp / 3 + float(run.records[1]["logprob"])) / 2, abs=1e-5)


def _probe_task(tmp_path: Path, loaded, layer=1) -> Path:
    from node.evals.generators import arithmetic
    from node.evals.probes import fit_probe

    docs = arithmetic(n=120, seed=11, mode="probe", shots=2)
    data = tmp_path / "probe.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    fit_probe(loaded, [d["text"] for d in docs], [d["label"] for d in docs], layer, tmp_path / "probe.safetensors")
    dd = hashlib.sha256(data.read_bytes()).hexdigest()
    pd = hashlib.sha256((tmp_path / "probe.safetensors").read_bytes()).hexdigest()
    t = tmp_path / "probe.yaml"
    t.write_text(
        f'task: probe_truth\nkind: activation_probe\ndata: {{path: probe.jsonl, sha256: "{dd}"}}\n'
        f'probe: {{path: probe.safetensors, sha256: "{pd}", layer: {layer}, pool: last}}\n'
        "metrics: [mean_score, auroc, acc]\nbootstrap: 200\n"
    )
    return t


def test_activation_probe_scores_auroc_with_bootstrap_stderr(loaded, tmp_path):
    run = run_suite(loaded.model_dir, _probe_task(tmp_path, loaded), model=loaded, batch_size=16)
    t = run.tasks[0]
    assert list(t.metrics) == ["mean_score", "auroc", "acc"]
    value, se = t.metrics["auroc"]
    assert value > 0.7 and 0 < se < 0.1  # fitted on these items: well above chance
    scores = [float(r["score"]) for r in t.records]
    labels = [r["label"] for r in t.records]
    assert value == pytest.approx(auroc(scores, labels), abs=1e-5)
    assert run.to_body()["tasks"][0]["metrics"]["auroc"]["value"].startswith("0.")


def test_probe_weights_digest_mismatch_is_refused(loaded, tmp_path):
    from node.evals.errors import DatasetDigestError

    task = _probe_task(tmp_path, loaded)
    (tmp_path / "probe.safetensors").write_bytes((tmp_path / "probe.safetensors").read_bytes() + b" ")
    with pytest.raises(DatasetDigestError, match=r"probe\.safetensors"):
        load_task(task)


def test_auroc_equals_pairwise_definition():
    rng = random.Random(0)
    scores = [rng.choice([0.1, 0.2, 0.5, 0.9]) for _ in range(40)]
    labels = [rng.randint(0, 1) for _ in range(40)]
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    pairs = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    assert auroc(scores, labels) == pytest.approx(pairs / (len(pos) * len(neg)))
    assert auroc([0.1, 0.2], [1, 1]) is None
    se1 = bootstrap_stderr(scores, labels, auroc, resamples=100, seed=3)
    assert se1 == bootstrap_stderr(scores, labels, auroc, resamples=100, seed=3) > 0


@pytest.mark.parametrize(("n", "c", "k"), [(5, 0, 1), (5, 1, 1), (5, 2, 3), (10, 3, 5), (5, 5, 5)])
def test_pass_at_k_matches_the_combinatorial_formula(n, c, k):
    expected = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(expected)
