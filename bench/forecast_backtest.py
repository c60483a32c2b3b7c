"""Forecast backtest on real scaling data: EleutherAI's Pythia evaluations.

Reads ``pythia_v1_evals.csv`` (lm-evaluation-harness results of 16 Pythia runs, see the
reference data's README) and asks how well :mod:`protocol.forecast` -- the very fit every
node runs -- predicts checkpoints it has not seen, next to three naive baselines:

- *last value*: the latest measurement carried forward;
- *line*: a least-squares line in log-compute over the fitted checkpoints;
- *two-point slope*: the slope of the last two checkpoints, extended.

Two backtests. **Within a run**: fit each run's checkpoints from step 3000 (earlier ones
are the learning-rate warm-up) on compute <= C and predict the run's later checkpoints
nearest to ~2x, 4x, 10x and 30x C (within a factor 1.5). **Across sizes**: fit the final
checkpoints of the sizes with compute <= C and predict the larger sizes. For each:
median and 90th-percentile absolute error, mean absolute error, and how often the
prediction interval at the stated level holds the measurement.

Alerts: for each run and task, breach levels on a grid (chance + 0.05, + 0.10, ... < 1).
After each checkpoint a method warns when it expects the level within ``--horizon`` x
compute (Tripwire: the interval's risky edge). *Missed*: the level was crossed with no
earlier warning. *False warning*: a warning for a level the run never reached, whose
horizon the run outlived. *Lead*: compute doublings from the first warning to the crossing.

    .venv/bin/python bench/forecast_backtest.py                # ~1-2 minutes on one core
    .venv/bin/python bench/forecast_backtest.py --json out.json --tasks piqa,sciq
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protocol.forecast import CALIBRATION, TrendPoint, fit_trend, forecast_crossing, t_quantile  # noqa: E402

DEFAULT_CSV = ROOT.parent / "shared" / "reference-data" / "pythia" / "pythia_v1_evals.csv"
#: Chance accuracy of each task (lambada is open-ended; wsc and winogrande are binary).
CHANCE = {
    "lambada_openai": "0",
    "piqa": "0.5",
    "sciq": "0.25",
    "arc_easy": "0.25",
    "arc_challenge": "0.25",
    "winogrande": "0.5",
    "logiqa": "0.25",
    "wsc": "0.5",
    "mmlu_avg57": "0.25",
}
CEILING = "1"
FIRST_STEP = 3000
MULTIPLES = (2, 4, 10, 30)
TOLERANCE = math.log10(1.5)
METHODS = ("tripwire", "last_value", "line", "two_point")


@dataclasses.dataclass(frozen=True)
class Point:
    step: int
    flop: str
    value: float
    stderr: float

    @property
    def x(self) -> float:
        return math.log10(float(self.flop))


Series = dict[tuple[str, str, str], list[Point]]
"""(run, shots, task) -> checkpoints sorted by compute."""


def load(path: Path, *, runs: Iterable[str] = (), tasks: Iterable[str] = ()) -> Series:
    runs, tasks = set(runs), set(tasks)
    out: Series = defaultdict(list)
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            if (runs and r["model"] not in runs) or (tasks and r["task"] not in tasks) or int(r["step"]) == 0:
                continue
            out[(r["model"], r["shots"], r["task"])].append(
                Point(int(r["step"]), r["flop"], float(r["value"]), float(r["stderr"]))
            )
    for v in out.values():
        v.sort(key=lambda p: (p.x, p.step))
    return dict(out)


def within_runs(series: Series) -> Series:
    return {k: [p for p in v if p.step >= FIRST_STEP] for k, v in series.items()}


def across_sizes(series: Series) -> Series:
    """Final checkpoint of each size, grouped by (standard|deduped, shots, task)."""
    out: Series = defaultdict(list)
    for (run, shots, task), pts in series.items():
        last = max(pts, key=lambda p: p.step)
        out[("deduped" if run.endswith("-deduped") else "standard", shots, task)].append(last)
    for v in out.values():
        v.sort(key=lambda p: p.x)
    return dict(out)


def _trend_points(pts: Sequence[Point]) -> list[TrendPoint]:
    return [TrendPoint(flop=p.flop, value=f"{p.value:.6f}", stderr=f"{p.stderr:.6f}", step=i) for i, p in enumerate(pts)]


def predict(task: str, pts: Sequence[Point], xs: Sequence[float], level: str) -> dict[str, list[tuple[float, float, float]]]:
    """(prediction, interval low, interval high) of every method at each log10 FLOP in ``xs``."""
    fit = fit_trend(_trend_points(pts), direction="higher_is_riskier", chance=CHANCE[task], ceiling=CEILING)
    assert fit is not None
    fit = dataclasses.replace(fit, multiplier=CALIBRATION * t_quantile(level, fit.dof))
    last = pts[-1]
    n = len(pts)
    mx = sum(p.x for p in pts) / n
    my = sum(p.value for p in pts) / n
    sxx = sum((p.x - mx) ** 2 for p in pts)
    slope = sum((p.x - mx) * (p.value - my) for p in pts) / sxx
    two = (pts[-1].value - pts[-2].value) / (pts[-1].x - pts[-2].x)
    out: dict[str, list[tuple[float, float, float]]] = {m: [] for m in METHODS}
    nan = math.nan
    for x in xs:
        mean, _ = fit.predict(x)
        lo, hi = fit.interval(x)
        out["tripwire"].append((mean, lo, hi))
        out["last_value"].append((last.value, nan, nan))
        out["line"].append((my + slope * (x - mx), nan, nan))
        out["two_point"].append((last.value + two * (x - last.x), nan, nan))
    return out


def error_table(series: Series, level: str) -> dict[int, dict[str, object]]:
    """Absolute errors and interval coverage at each compute multiple."""
    errs: dict[int, dict[str, list[float]]] = {k: {m: [] for m in METHODS} for k in MULTIPLES}
    cover: dict[int, list[bool]] = {k: [] for k in MULTIPLES}
    for (_, _, task), pts in sorted(series.items()):
        for i in range(1, len(pts)):
            targets: dict[int, int] = {}
            for k in MULTIPLES:
                best: tuple[float, int] | None = None
                for j in range(i + 1, len(pts)):
                    dist = abs(pts[j].x - pts[i].x - math.log10(k))
                    if dist <= TOLERANCE and (best is None or dist < best[0]):
                        best = (dist, j)
                if best is not None:
                    targets[k] = best[1]
            if not targets:
                continue
            ks = sorted(targets)
            preds = predict(task, pts[: i + 1], [pts[targets[k]].x for k in ks], level)
            for n, k in enumerate(ks):
                y = pts[targets[k]].value
                for m in METHODS:
                    errs[k][m].append(abs(preds[m][n][0] - y))
                _, lo, hi = preds["tripwire"][n]
                cover[k].append(lo <= y <= hi)
    table: dict[int, dict[str, object]] = {}
    for k in MULTIPLES:
        if not cover[k]:
            continue
        row: dict[str, object] = {"n": len(cover[k]), "coverage": sum(cover[k]) / len(cover[k])}
        for m in METHODS:
            e = sorted(errs[k][m])
            row[m] = {
                "median": statistics.median(e),
                "p90": e[min(len(e) - 1, math.ceil(0.9 * len(e)) - 1)],
                "mean": sum(e) / len(e),
            }
        table[k] = row
    return table


def alert_table(series: Series, level: str, horizon: float) -> dict[str, dict[str, float]]:
    hlog = math.log10(horizon)
    tally = {m: {"crossed": 0, "missed": 0, "never": 0, "false": 0, "leads": []} for m in ("tripwire", "two_point", "line")}
    for (_, _, task), pts in sorted(series.items()):
        chance = float(CHANCE[task])
        levels = [round(chance + 0.05 * j, 2) for j in range(1, 20) if chance + 0.05 * j < 1.0]
        warn_at: dict[str, list[set[float]]] = {m: [] for m in tally}
        for i in range(1, len(pts)):
            head = pts[: i + 1]
            pts_t = _trend_points(head)
            hflop = str(Decimal(head[-1].flop) * Decimal(horizon))
            xh = head[-1].x + hlog
            pred = predict(task, head, [xh], level)
            for m in tally:
                warned: set[float] = set()
                for lv in levels:
                    if m == "tripwire":
                        fc = forecast_crossing(
                            pts_t, level=str(lv), direction="higher_is_riskier", interval_level=level,
                            chance=CHANCE[task], ceiling=CEILING, horizon_flop=hflop,
                        )
                        hit = fc.warns
                    else:
                        hit = pred[m][0][0] >= lv
                    if hit:
                        warned.add(lv)
                warn_at[m].append(warned)
        for lv in levels:
            crossed = next((j for j, p in enumerate(pts) if p.value >= lv), None)
            if crossed is not None and crossed < 2:
                continue  # reached before two checkpoints could be fitted
            for m, t in tally.items():
                ws = warn_at[m]  # ws[i - 1]: warnings after checkpoint i
                if crossed is not None:
                    t["crossed"] += 1
                    first = next((i for i in range(1, crossed) if lv in ws[i - 1]), None)
                    if first is None:
                        t["missed"] += 1
                    else:
                        t["leads"].append(math.log2(float(pts[crossed].flop) / float(pts[first].flop)))
                else:
                    judged = [i for i in range(1, len(pts)) if pts[i].x + hlog <= pts[-1].x]
                    if not judged:
                        continue
                    t["never"] += 1
                    if any(lv in ws[i - 1] for i in judged):
                        t["false"] += 1
    out: dict[str, dict[str, float]] = {}
    for m, t in tally.items():
        leads = t["leads"]
        assert isinstance(leads, list)
        out[m] = {
            "crossings": t["crossed"],
            "missed": t["missed"] / max(1, t["crossed"]),  # type: ignore[operator]
            "never_reached": t["never"],
            "false_warnings": t["false"] / max(1, t["never"]),  # type: ignore[operator]
            "median_lead_doublings": statistics.median(leads) if leads else math.nan,
        }
    return out


def run(series: Series, level: str, horizon: float, alerts: bool = True) -> dict[str, object]:
    result: dict[str, object] = {
        "within_run": error_table(within_runs(series), level),
        "across_sizes": error_table(across_sizes(series), level),
    }
    if alerts:
        result["alerts_within_run"] = alert_table(within_runs(series), level, horizon)
    return result


def _print(result: dict[str, object], level: str) -> None:
    for name in ("within_run", "across_sizes"):
        print(f"\n{name.replace('_', ' ')}: absolute error in accuracy points (median / p90 / mean)")
        print(f"{'x C':>4} {'n':>5} " + " ".join(f"{m:>20}" for m in METHODS) + f"  cover@{level}")
        table = result[name]
        assert isinstance(table, dict)
        for k, row in table.items():
            cells = " ".join(
                f"{100 * row[m]['median']:>6.2f}/{100 * row[m]['p90']:>6.2f}/{100 * row[m]['mean']:>6.2f}" for m in METHODS
            )
            print(f"{k:>4} {row['n']:>5} {cells}  {100 * row['coverage']:>6.1f}%")
    if "alerts_within_run" in result:
        print("\nalerts within a run: missed / false warnings / median lead (doublings)")
        alerts = result["alerts_within_run"]
        assert isinstance(alerts, dict)
        for m, a in alerts.items():
            print(
                f"{m:>10}: missed {100 * a['missed']:5.1f}% of {a['crossings']}, false {100 * a['false_warnings']:5.1f}% "
                f"of {a['never_reached']}, lead {a['median_lead_doublings']:.2f}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--level", default="0.9", help="stated coverage of the prediction interval")
    ap.add_argument("--horizon", type=float, default=4.0, help="alert horizon, compute multiple")
    ap.add_argument("--runs", default="", help="comma-separated run names (default: all)")
    ap.add_argument("--tasks", default="", help="comma-separated tasks (default: all)")
    ap.add_argument("--no-alerts", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    series = load(args.csv, runs=filter(None, args.runs.split(",")), tasks=filter(None, args.tasks.split(",")))
    result = run(series, args.level, args.horizon, alerts=not args.no_alerts)
    _print(result, args.level)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
