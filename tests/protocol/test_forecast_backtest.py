"""Extrapolation on real scaling data: a small slice of the Pythia backtest.

Fits each run's checkpoints on a prefix of compute and checks the held-out later ones,
with the benchmark's own code (``bench/forecast_backtest.py``), so the numbers the
benchmark reports and the fit every node runs stay the same thing.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

from protocol.numeric import t_quantile
from protocol.trend import CALIBRATION, fit_trend

ROOT = Path(__file__).resolve().parents[2]
CSV = ROOT.parent / "shared" / "reference-data" / "pythia" / "pythia_v1_evals.csv"

pytestmark = pytest.mark.skipif(not CSV.exists(), reason="Pythia reference data not present")


def _bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("forecast_backtest", ROOT / "bench" / "forecast_backtest.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["forecast_backtest"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    return _bench()


@pytest.fixture(scope="module")
def series(bench):  # type: ignore[no-untyped-def]
    return bench.within_runs(
        bench.load(CSV, runs=["pythia-410m", "pythia-1.4b"], tasks=["piqa", "sciq", "arc_easy", "lambada_openai"])
    )


def test_held_out_checkpoints_match_the_bench_and_lie_in_range(bench, series) -> None:  # type: ignore[no-untyped-def]
    pts = series[("pythia-1.4b", "0", "sciq")]
    head, tail = pts[:4], pts[4:]
    preds = bench.predict("sciq", head, [p.x for p in tail], "0.9")["tripwire"]
    fit = fit_trend(bench._trend_points(head), direction="higher_is_riskier", chance="0.25", ceiling="1")
    assert fit is not None
    fit = dataclasses.replace(fit, multiplier=CALIBRATION * t_quantile("0.9", fit.dof))
    for p, (mean, lo, hi) in zip(tail, preds, strict=True):
        assert (mean, lo, hi) == (fit.predict(p.x)[0], *fit.interval(p.x))
        assert 0.25 <= lo <= mean <= hi <= 1.0
        assert lo >= head[-1].value - 0.2  # a forecast, not a collapse


def test_forecast_beats_last_value_on_held_out_checkpoints(bench, series) -> None:  # type: ignore[no-untyped-def]
    table = bench.error_table(series, "0.9")
    for k in (4, 10):
        row = table[k]
        assert row["tripwire"]["mean"] <= 0.8 * row["last_value"]["mean"], (k, row)
    covered = sum(table[k]["coverage"] * table[k]["n"] for k in table) / sum(table[k]["n"] for k in table)
    assert 0.8 <= covered <= 1.0


def test_alerts_on_held_out_crossings_meet_the_targets_with_warn_chance(bench, series) -> None:  # type: ignore[no-untyped-def]
    # Warnings are judged against what the held-out later checkpoints did: a crossing
    # with no earlier warning is missed, a warning for a level never reached is false.
    edge = bench.alert_table(series, "0.9", 4.0)["tripwire"]
    chance = bench.alert_table(series, "0.9", 8.0, "0.2")["tripwire"]
    assert chance["crossings"] == edge["crossings"] > 0
    assert chance["missed"] <= 0.15
    assert chance["false_warnings"] <= 0.20 < edge["false_warnings"]
    assert chance["median_lead_possible"] >= 2.0
