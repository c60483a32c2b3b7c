"""Forecast backtest: how far off is the scaling-trend forecast at 4x compute?

Trains a tiny GPT-2 on two-digit addition (:func:`node.evals.tinymodels.train_tiny_arithmetic`,
CPU), saving a checkpoint every ``--every`` steps; scores every checkpoint with the real
eval runner (``arithmetic_mc`` of the core suite); then, for each fit window, fits the
trend (:func:`protocol.forecast.fit_trend`, the same fit every node runs) on the
checkpoints up to step F and predicts the metric at 4x the training compute of step F
(compute is proportional to steps here: fixed tokens per step), and compares with the
value measured at step 4F. Reports the absolute error and whether the measurement fell
inside the forecast's ±z band (z = 1, the demo policy's forecast z).

    python bench/forecast_backtest.py                      # ~2-4 minutes on 2 CPU cores
    python bench/forecast_backtest.py --steps 600 --every 25 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TASK = ROOT / "specs" / "evals" / "arithmetic_mc.yaml"
METRICS = ("logprob_correct", "prob_correct", "acc")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--items", type=int, default=200, help="eval items per checkpoint")
    ap.add_argument("--windows", default="50,75,100", help="fit on checkpoints up to these steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--n-embd", type=int, default=64)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from node.evals.model import infer_training_flop, load_model
    from node.evals.runner import run_task
    from node.evals.spec import load_task
    from node.evals.tinymodels import train_tiny_arithmetic
    from protocol.trend import TrendPoint, fit_trend

    windows = [int(w) for w in args.windows.split(",")]
    if max(windows) * 4 > args.steps:
        raise SystemExit(f"--steps must reach 4x the largest window ({max(windows) * 4})")
    work = Path(tempfile.mkdtemp(prefix="tripwire-backtest-"))
    t0 = time.monotonic()
    def progress(step: int, _model: object) -> bool:
        if step % args.every == 0:
            print(f"trained step {step} ({time.monotonic() - t0:.0f}s)", flush=True)
        return True

    train_tiny_arithmetic(
        work, steps=args.steps, batch_size=args.batch_size, save_every=args.every, seed=0,
        n_layer=args.n_layer, n_embd=args.n_embd, n_head=4, on_step=progress,
    )
    t_train = time.monotonic() - t0
    spec = load_task(TASK)
    series: dict[int, dict[str, object]] = {}
    t0 = time.monotonic()
    for step in range(args.every, args.steps + 1, args.every):
        d = work / f"checkpoint-{step}"
        lm = load_model(d, device="cpu", dtype="float32")
        run = run_task(lm, spec, batch_size=32, limit=args.items)
        assert run is not None
        flop = infer_training_flop(d, lm.parameters)
        series[step] = {"flop": flop, **{m: run.metrics[m] for m in METRICS}}
        print(f"step {step:>4}  flop {flop:.3e}  " + "  ".join(f"{m} {run.metrics[m][0]:.4f}" for m in METRICS), flush=True)
    t_eval = time.monotonic() - t0

    def pt(step: int, metric: str) -> TrendPoint:
        v, se = series[step][metric]  # type: ignore[misc]
        return TrendPoint(flop=str(series[step]["flop"]), value=f"{v:.6f}", stderr=f"{max(se, 1e-6):.6f}", step=step)

    rows = []
    for f in windows:
        target = 4 * f
        for metric in METRICS:
            pts = [pt(s, metric) for s in sorted(series) if s <= f]
            fit = fit_trend(pts, direction="higher_is_riskier")
            if fit is None:
                continue
            x = math.log10(float(Decimal(str(series[f]["flop"])) * 4))
            pred, se = fit.predict(x)
            measured, m_se = series[target][metric]  # type: ignore[misc]
            rows.append(
                {
                    "fit_up_to_step": f,
                    "points": len(pts),
                    "model": fit.model,
                    "metric": metric,
                    "predicted_at_4x": round(pred, 4),
                    "band_1se": round(se, 4),
                    "measured_at_4x": round(measured, 4),
                    "measured_stderr": round(m_se, 4),
                    "abs_error": round(abs(pred - measured), 4),
                    "within_band": abs(pred - measured) <= se + m_se,
                }
            )
    print(f"\ntrain {t_train:.0f}s, eval {t_eval:.0f}s ({len(series)} checkpoints x {args.items} items)")
    print(f"{'fit<=':>6} {'pts':>3} {'model':<8} {'metric':<16} {'predicted':>10} {'±1se':>7} {'measured':>9} {'|err|':>7} band")
    for r in rows:
        print(
            f"{r['fit_up_to_step']:>6} {r['points']:>3} {r['model']:<8} {r['metric']:<16} {r['predicted_at_4x']:>10.4f} "
            f"{r['band_1se']:>7.4f} {r['measured_at_4x']:>9.4f} {r['abs_error']:>7.4f} {'in' if r['within_band'] else 'OUT'}"
        )
    out = {
        "steps": args.steps, "every": args.every, "batch_size": args.batch_size, "items": args.items,
        "train_s": round(t_train, 1), "eval_s": round(t_eval, 1), "rows": rows,
        "series": {str(k): {kk: (vv if kk == "flop" else [round(vv[0], 6), round(vv[1], 6)])  # type: ignore[index]
                            for kk, vv in v.items()} for k, v in series.items()},
    }
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
