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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protocol.forecast import crossing_of, fit_for_forecast  # noqa: E402
from protocol.numeric import t_quantile  # noqa: E402
from protocol.trend import CALIBRATION, TrendPoint, fit_trend  # noqa: E402

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
ALERT_METHODS = ("tripwire", "two_point", "line")
#: Trade-off grid of ``--sweep``: alert horizon (compute multiple) x ``forecast.warn_chance``.
SWEEP_HORIZONS = (4.0, 8.0)
SWEEP_CHANCES = ("0.05", "0.1", "0.2", "0.3", "0.5")


def chance_of(task: str) -> str:
    """The task's chance accuracy: the forecast's floor (``--chance`` adds tasks)."""
    try:
        return CHANCE[task]
    except KeyError:
        raise SystemExit(f"no chance level for task {task!r}: give it with --chance {task}=0.25") from None


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
            if r.get("chance"):  # an optional column: the task's chance accuracy
                CHANCE.setdefault(r["task"], r["chance"])
            out[(r["model"], r["shots"], r["task"])].append(
                Point(int(r["step"]), r["flop"], float(r["value"]), float(r["stderr"]))
            )
    for v in out.values():
        v.sort(key=lambda p: (p.x, p.step))
    return dict(out)


def within_runs(series: Series, first_step: int | None = None) -> Series:
    """Each run's checkpoints from ``first_step`` (default FIRST_STEP: Pythia's warm-up)."""
    first = FIRST_STEP if first_step is None else first_step
    return {k: [p for p in v if p.step >= first] for k, v in series.items()}


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
    fit = fit_trend(_trend_points(pts), direction="higher_is_riskier", chance=chance_of(task), ceiling=CEILING)
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


_FITS: dict[tuple[tuple[str, str, str], int, str], Any] = {}


def _baselines(pts: Sequence[Point], x: float) -> dict[str, list[tuple[float, float, float]]]:
    """The line and two-point baselines of :func:`predict` at one log10 FLOP (no fit)."""
    n = len(pts)
    mx = sum(p.x for p in pts) / n
    my = sum(p.value for p in pts) / n
    slope = sum((p.x - mx) * (p.value - my) for p in pts) / sum((p.x - mx) ** 2 for p in pts)
    two = (pts[-1].value - pts[-2].value) / (pts[-1].x - pts[-2].x)
    nan = math.nan
    return {"line": [(my + slope * (x - mx), nan, nan)], "two_point": [(pts[-1].value + two * (x - pts[-1].x), nan, nan)]}


def _alerts_of(series: Series, level: str, horizon: float, warn_chance: str | None) -> dict[tuple[str, str, str], list[dict[str, set[float]]]]:
    """For each series and checkpoint i >= 1: the breach levels each method warns of after it.

    Tripwire fits once per checkpoint (:func:`protocol.forecast.fit_for_forecast`) and asks
    :func:`protocol.forecast.crossing_of` about each level: the two halves of
    ``forecast_crossing``, which every node runs."""
    hlog = math.log10(horizon)
    out: dict[tuple[str, str, str], list[dict[str, set[float]]]] = {}
    for key, pts in sorted(series.items()):
        task = key[2]
        rows: list[dict[str, set[float]]] = []
        for i in range(1, len(pts)):
            head = pts[: i + 1]
            hflop = str(Decimal(head[-1].flop) * Decimal(str(horizon)))
            ck = (key, i, level)
            if ck not in _FITS:  # the fit does not depend on the horizon or warn_chance
                _FITS[ck] = fit_for_forecast(
                    _trend_points(head), direction="higher_is_riskier", interval_level=level,
                    chance=chance_of(task), ceiling=CEILING,
                )  # fmt: skip
            fit = _FITS[ck]
            pred = _baselines(head, head[-1].x + hlog)
            warned: dict[str, set[float]] = {m: set() for m in ALERT_METHODS}
            for lv in levels_of(task):
                fc = crossing_of(
                    fit, n_points=len(head), level=str(lv), horizon_flop=hflop, interval_level=level,
                    warn_chance=warn_chance,
                )  # fmt: skip
                if fc.warns:
                    warned["tripwire"].add(lv)
                for m in ("two_point", "line"):
                    if pred[m][0][0] >= lv:
                        warned[m].add(lv)
            rows.append(warned)
        out[key] = rows
    return out


def levels_of(task: str) -> list[float]:
    chance = float(chance_of(task))
    return [round(chance + 0.05 * j, 2) for j in range(1, 20) if chance + 0.05 * j < 1.0]


def alert_table(series: Series, level: str, horizon: float, warn_chance: str | None = None) -> dict[str, dict[str, float]]:
    """Miss rate, false-warning rate and lead of each method's alerts.

    ``median_lead_doublings`` is over all warned crossings; a crossing soon after the first
    fittable checkpoint cannot have a long lead, so ``median_lead_possible`` is over the
    crossings at least two doublings past the second checkpoint (where a lead of 2 is
    possible at all)."""
    hlog = math.log10(horizon)
    warn_at = _alerts_of(series, level, horizon, warn_chance)
    tally: dict[str, dict[str, Any]] = {
        m: {"crossed": 0, "missed": 0, "never": 0, "false": 0, "leads": [], "possible": []} for m in ALERT_METHODS
    }
    for key, pts in sorted(series.items()):
        for lv in levels_of(key[2]):
            crossed = next((j for j, p in enumerate(pts) if p.value >= lv), None)
            if crossed is not None and crossed < 2:
                continue  # reached before two checkpoints could be fitted
            for m, t in tally.items():
                ws = [row[m] for row in warn_at[key]]  # ws[i - 1]: warnings after checkpoint i
                if crossed is not None:
                    t["crossed"] += 1
                    first = next((i for i in range(1, crossed) if lv in ws[i - 1]), None)
                    roomy = math.log2(float(pts[crossed].flop) / float(pts[1].flop)) >= 2.0
                    if first is None:
                        t["missed"] += 1
                        if roomy:
                            t["possible"].append(0.0)
                    else:
                        lead = math.log2(float(pts[crossed].flop) / float(pts[first].flop))
                        t["leads"].append(lead)
                        if roomy:
                            t["possible"].append(lead)
                else:
                    judged = [i for i in range(1, len(pts)) if pts[i].x + hlog <= pts[-1].x]
                    if not judged:
                        continue
                    t["never"] += 1
                    if any(lv in ws[i - 1] for i in judged):
                        t["false"] += 1
    out: dict[str, dict[str, float]] = {}
    for m, t in tally.items():
        out[m] = {
            "crossings": t["crossed"],
            "missed": t["missed"] / max(1, t["crossed"]),
            "never_reached": t["never"],
            "false_warnings": t["false"] / max(1, t["never"]),
            "median_lead_doublings": statistics.median(t["leads"]) if t["leads"] else math.nan,
            "crossings_with_room": len(t["possible"]),
            "median_lead_possible": statistics.median(t["possible"]) if t["possible"] else math.nan,
        }
    return out


def run(
    series: Series,
    level: str,
    horizon: float,
    alerts: bool = True,
    warn_chance: str | None = None,
    sweep: bool = False,
    first_step: int | None = None,
) -> dict[str, object]:
    runs = within_runs(series, first_step)
    result: dict[str, object] = {
        "within_run": error_table(runs, level),
        "across_sizes": error_table(across_sizes(series), level),
    }
    if alerts:
        result["alerts_within_run"] = alert_table(runs, level, horizon, warn_chance)
        result["alerts_across_sizes"] = alert_table(across_sizes(series), level, horizon, warn_chance)
    if sweep:
        grid: list[dict[str, object]] = []
        for h in SWEEP_HORIZONS:
            for wc in SWEEP_CHANCES:
                for name, s in (("within_run", runs), ("across_sizes", across_sizes(series))):
                    a = alert_table(s, level, h, wc)["tripwire"]
                    grid.append({"backtest": name, "horizon": h, "warn_chance": wc, **a})
        result["alert_sweep"] = grid
    return result


def _alert_line(name: str, a: dict[str, float]) -> str:
    return (
        f"{name:>10}: missed {100 * a['missed']:5.1f}% of {a['crossings']}, false {100 * a['false_warnings']:5.1f}% "
        f"of {a['never_reached']}, lead {a['median_lead_doublings']:.2f} "
        f"(where 2 is possible: {a['median_lead_possible']:.2f} over {a['crossings_with_room']})"
    )


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
    for name in ("alerts_within_run", "alerts_across_sizes"):
        if name in result:
            print(f"\n{name.replace('_', ' ')}: missed / false warnings / median lead (doublings)")
            alerts = result[name]
            assert isinstance(alerts, dict)
            for m, a in alerts.items():
                print(_alert_line(m, a))
    if "alert_sweep" in result:
        print("\nalert trade-off (Tripwire): horizon x warn_chance")
        sweep = result["alert_sweep"]
        assert isinstance(sweep, list)
        for row in sweep:
            print(f"{row['backtest']:>12} h={row['horizon']:<4g} warn_chance={row['warn_chance']:<5}" + _alert_line("", row))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="model,shots,step,flop,task,metric,value,stderr rows")
    ap.add_argument("--level", default="0.9", help="stated coverage of the prediction interval")
    ap.add_argument("--horizon", type=float, default=4.0, help="alert horizon, compute multiple")
    ap.add_argument("--warn-chance", default=None, help="forecast.warn_chance of the alert rule (default: the interval's edge)")
    ap.add_argument("--chance", action="append", default=[], metavar="TASK=VALUE", help="chance accuracy of a task not listed")
    ap.add_argument("--runs", default="", help="comma-separated run names (default: all)")
    ap.add_argument("--tasks", default="", help="comma-separated tasks (default: all)")
    ap.add_argument("--first-step", type=int, default=None, help=f"drop earlier checkpoints (warm-up) within a run (default {FIRST_STEP})")
    ap.add_argument("--no-alerts", action="store_true")
    ap.add_argument("--sweep", action="store_true", help="also tabulate alerts over horizons and warn_chance values")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    for item in args.chance:
        task, _, value = item.partition("=")
        if not task or not value:
            raise SystemExit(f"--chance {item!r}: expected TASK=VALUE")
        CHANCE[task] = value
    series = load(args.csv, runs=filter(None, args.runs.split(",")), tasks=filter(None, args.tasks.split(",")))
    if not series:
        raise SystemExit(f"{args.csv}: no rows (check --runs / --tasks)")
    result = run(series, args.level, args.horizon, alerts=not args.no_alerts, warn_chance=args.warn_chance, sweep=args.sweep,
        first_step=args.first_step,
    )
    _print(result, args.level)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
