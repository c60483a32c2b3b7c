"""Two-step forecast backtest: accuracy through log-probability, against direct accuracy fits.

Trains a tiny GPT-2 on two-digit addition (:func:`node.evals.tinymodels.train_tiny_arithmetic`,
CPU, loss on the answers only, so that multiple-choice accuracy leaves chance within the
run), saving a checkpoint every ``--every`` steps, and scores every checkpoint with the real
eval runner on ``arithmetic_mc`` (``logprob_correct`` and ``acc`` of the same items). Then,
for every fit window (the checkpoints up to step F, at least ``--min-points`` of them), it
forecasts accuracy at 2x and 4x the compute of step F three ways and compares with the
accuracy measured at step 2F and 4F:

- ``direct``: :func:`protocol.forecast.fit_trend` on accuracy, floor at chance, ceiling 1;
- ``two-step``: :func:`protocol.twostep.fit_two_step` (log-probability against compute,
  then a sigmoid from log-probability to accuracy fitted on the same checkpoints);
- ``last``: the accuracy at step F held flat.

Both fits' intervals are stated at 90% (``CALIBRATION * t`` prediction standard errors, as
the forecast verdicts use); coverage counts the measurements inside them.

    python bench/forecast_twostep.py                          # about 4-5 minutes on 2 CPU cores
    python bench/forecast_twostep.py --json out.json          # keep the measured series
    python bench/forecast_twostep.py --series out.json        # refit a kept series, no training
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TASK = ROOT / "specs" / "evals" / "arithmetic_mc.yaml"
METRICS = ("logprob_correct", "acc")
CHANCE = "0.25"
LEVEL = "0.9"


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Train, checkpoint and score; the series of (flop, metric means and stderrs) by step."""
    import torch

    torch.set_num_threads(args.threads)
    from node.evals.model import infer_training_flop, load_model
    from node.evals.runner import run_task
    from node.evals.spec import load_task
    from node.evals.tinymodels import train_tiny_arithmetic

    work = Path(tempfile.mkdtemp(prefix="tripwire-twostep-"))
    t0 = time.monotonic()

    def progress(step: int, _model: object) -> bool:
        if step % (4 * args.every) == 0:
            print(f"trained step {step} ({time.monotonic() - t0:.0f}s)", flush=True)
        return True

    train_tiny_arithmetic(
        work, steps=args.steps, batch_size=args.batch_size, lr=args.lr, save_every=args.every, seed=args.seed,
        n_layer=args.n_layer, n_embd=args.n_embd, n_head=4, on_step=progress, answer_loss_only=True,
    )
    t_train = time.monotonic() - t0
    spec = load_task(TASK)
    series: dict[str, dict[str, Any]] = {}
    t0 = time.monotonic()
    for step in range(args.every, args.steps + 1, args.every):
        d = work / f"checkpoint-{step}"
        lm = load_model(d, device="cpu", dtype="float32")
        run = run_task(lm, spec, batch_size=32, limit=args.items)
        assert run is not None
        flop = infer_training_flop(d, lm.parameters)
        series[str(step)] = {"flop": flop, **{m: [round(v, 6) for v in run.metrics[m]] for m in METRICS}}
        print(f"step {step:>5}  flop {flop:.3e}  " + "  ".join(f"{m} {run.metrics[m][0]:.4f}" for m in METRICS),
              flush=True)
    t_eval = time.monotonic() - t0
    return {
        "steps": args.steps, "every": args.every, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "n_layer": args.n_layer, "n_embd": args.n_embd, "items": args.items,
        "train_s": round(t_train, 1), "eval_s": round(t_eval, 1), "series": series,
    }


def backtest(data: dict[str, Any], min_points: int, multiples: tuple[float, ...]) -> list[dict[str, Any]]:
    from protocol.numeric import t_quantile
    from protocol.trend import CALIBRATION, TrendPoint, fit_trend
    from protocol.twostep import fit_power_law, fit_two_step

    series = {int(k): v for k, v in data["series"].items()}
    steps = sorted(series)

    def pt(step: int, metric: str) -> TrendPoint:
        v, se = series[step][metric]
        return TrendPoint(flop=str(series[step]["flop"]), value=f"{v:.6f}", stderr=f"{max(se, 1e-6):.6f}", step=step)

    rows: list[dict[str, Any]] = []
    for f in steps:
        window = [s for s in steps if s <= f]
        if len(window) < min_points:
            continue
        acc = [pt(s, "acc") for s in window]
        proxy = [pt(s, "logprob_correct") for s in window]
        direct = fit_trend(acc, direction="higher_is_riskier", chance=CHANCE, ceiling="1")
        two = fit_two_step(proxy, acc, chance=CHANCE)
        step1 = {"power_law": fit_power_law(proxy),
                 "trend": fit_trend(proxy, direction="higher_is_riskier", ceiling="0")}
        for mult in multiples:
            target = round(f * mult)
            if target not in series or target == f:
                continue
            x = math.log10(float(series[target]["flop"]))
            measured = series[target]["acc"][0]
            row: dict[str, Any] = {"fit_up_to_step": f, "points": len(window), "multiple": mult,
                                   "measured": measured, "last": series[f]["acc"][0],
                                   "proxy_measured": series[target]["logprob_correct"][0],
                                   "proxy_last": series[f]["logprob_correct"][0]}
            for name, fit in step1.items():
                if fit is not None:
                    row[f"proxy_{name}"] = fit.predict(x)[0]
            if direct is not None:
                z = CALIBRATION * t_quantile(LEVEL, direct.dof)
                d = dataclasses.replace(direct, multiplier=z)
                row["direct"] = d.predict(x)[0]
                row["direct_interval"] = d.interval(x)
            if two is not None:
                z = CALIBRATION * t_quantile(LEVEL, two.dof)
                row["two_step"] = two.predict(x)[0]
                row["two_step_interval"] = two.interval(x, z)
            rows.append(row)
    return rows


def summarize(rows: list[dict[str, Any]], multiples: tuple[float, ...]) -> list[dict[str, Any]]:
    """Per compute multiple: errors and coverage over every window (direct, last) and over the
    windows where the two-step map was identified (all three, side by side)."""

    def mae(rs: list[dict[str, Any]], key: str) -> float | None:
        return sum(abs(r[key] - r["measured"]) for r in rs) / len(rs) if rs else None

    def cover(rs: list[dict[str, Any]], key: str) -> float | None:
        return sum(r[key][0] <= r["measured"] <= r[key][1] for r in rs) / len(rs) if rs else None

    def width(rs: list[dict[str, Any]], key: str) -> float | None:
        return sum(r[key][1] - r[key][0] for r in rs) / len(rs) if rs else None

    out = []
    for mult in multiples:
        step1 = [r for r in rows if r["multiple"] == mult and "proxy_power_law" in r and "proxy_trend" in r]
        every = [r for r in rows if r["multiple"] == mult and "direct" in r]
        both = [r for r in every if "two_step" in r]
        if not every:
            continue
        s: dict[str, Any] = {
            "multiple": mult, "windows": len(every), "two_step_windows": len(both),
            "all_mae_direct": mae(every, "direct"), "all_mae_last": mae(every, "last"),
            "all_coverage_direct": cover(every, "direct_interval"),
            "mae_direct": mae(both, "direct"), "mae_two_step": mae(both, "two_step"), "mae_last": mae(both, "last"),
            "coverage_direct": cover(both, "direct_interval"), "coverage_two_step": cover(both, "two_step_interval"),
            "width_direct": width(both, "direct_interval"), "width_two_step": width(both, "two_step_interval"),
            "step1_windows": len(step1),
            "step1_mae_power_law": _mae_of(step1, "proxy_power_law", "proxy_measured"),
            "step1_mae_trend": _mae_of(step1, "proxy_trend", "proxy_measured"),
            "step1_mae_last": _mae_of(step1, "proxy_last", "proxy_measured"),
        }
        if both:
            s["ratio_two_step_to_direct"] = s["mae_two_step"] / s["mae_direct"] if s["mae_direct"] else math.inf
            s["ratio_two_step_to_last"] = s["mae_two_step"] / s["mae_last"] if s["mae_last"] else math.inf
        out.append(s)
    return out


def _mae_of(rs: list[dict[str, Any]], key: str, truth: str) -> float | None:
    return sum(abs(r[key] - r[truth]) for r in rs) / len(rs) if rs else None


def _f(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--items", type=int, default=200, help="eval items per checkpoint")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--n-embd", type=int, default=64)
    ap.add_argument("--min-points", type=int, default=4, help="fewest checkpoints in a fit window")
    ap.add_argument("--multiples", default="2,4", help="forecast at these multiples of a window's compute")
    ap.add_argument("--json", type=Path, help="write the series, the rows and the summary here")
    ap.add_argument("--series", type=Path, help="refit the series kept in this file instead of training")
    args = ap.parse_args()

    data = json.loads(args.series.read_text()) if args.series else measure(args)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    if "train_s" in data:
        print(f"\ntrain {data['train_s']:.0f}s, eval {data['eval_s']:.0f}s "
              f"({len(data['series'])} checkpoints x {data['items']} items)")
    multiples = tuple(float(m) for m in args.multiples.split(","))
    rows = backtest(data, args.min_points, multiples)
    print(f"\n{'fit<=':>6} {'x':>4} {'measured':>8} {'last':>6} {'direct':>6} {'90% interval':>13} "
          f"{'2-step':>6} {'90% interval':>13}")
    for r in rows:
        d, t = r.get("direct"), r.get("two_step")
        di, ti = r.get("direct_interval"), r.get("two_step_interval")
        print(
            f"{r['fit_up_to_step']:>6} {r['multiple']:>4g} {r['measured']:>8.3f} {r['last']:>6.3f} "
            + (f"{d:>6.3f} [{di[0]:.3f},{di[1]:.3f}] " if d is not None else f"{'-':>6} {'':>13} ")
            + (f"{t:>6.3f} [{ti[0]:.3f},{ti[1]:.3f}]" if t is not None else f"{'-':>6}")
        )
    summary = summarize(rows, multiples)
    print("\nall windows (the two-step forecast where its map is identified):")
    print(f"{'x':>4} {'windows':>7} {'MAE direct':>10} {'last':>6} {'cover direct':>12} | {'2-step fits':>11} "
          f"{'MAE direct':>10} {'2-step':>6} {'last':>6} {'2s/direct':>9} {'2s/last':>7} {'cover direct':>12} "
          f"{'2-step':>6} {'width direct':>12} {'2-step':>6}")
    for s in summary:
        print(
            f"{s['multiple']:>4g} {s['windows']:>7} {_f(s['all_mae_direct'], '.4f'):>10} {_f(s['all_mae_last'], '.4f'):>6} "
            f"{_f(s['all_coverage_direct'], '.2f'):>12} | {s['two_step_windows']:>11} "
            f"{_f(s['mae_direct'], '.4f'):>10} {_f(s['mae_two_step'], '.4f'):>6} {_f(s['mae_last'], '.4f'):>6} "
            f"{_f(s.get('ratio_two_step_to_direct'), '.2f'):>9} {_f(s.get('ratio_two_step_to_last'), '.2f'):>7} "
            f"{_f(s['coverage_direct'], '.2f'):>12} {_f(s['coverage_two_step'], '.2f'):>6} "
            f"{_f(s['width_direct'], '.3f'):>12} {_f(s['width_two_step'], '.3f'):>6}"
        )
    print("\nstep 1 alone, logprob_correct (nats):")
    print(f"{'x':>4} {'windows':>7} {'MAE power law':>13} {'fit_trend':>9} {'last':>6} {'power/trend':>11}")
    for s in summary:
        pl, tr = s["step1_mae_power_law"], s["step1_mae_trend"]
        print(f"{s['multiple']:>4g} {s['step1_windows']:>7} {_f(pl, '.3f'):>13} {_f(tr, '.3f'):>9} "
              f"{_f(s['step1_mae_last'], '.3f'):>6} {_f(pl / tr if pl is not None and tr else None, '.2f'):>11}")
    if args.json:
        args.json.write_text(json.dumps({**data, "rows": rows, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
