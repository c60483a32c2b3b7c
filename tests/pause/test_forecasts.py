"""Forecasts on record on real nodes (spec §6.13): `tripwire forecast` publishes the
policy's ladder prediction, every node lists it as pending in `GET /v1/status`, and once the
model's result is published it is scored, the same on every node. Bad requests are refused
with an error naming the problem and publish nothing."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pausekit import Node, count, make_network, result_body, wait_until

from node.cli import main

LABS = ["alpha", "beta"]
#: alpha's ladder (one recipe, three sizes): accuracy +0.1 per decade of compute.
LADDER = [("lad-s", "1E15", "0.10", "-3.0"), ("lad-m", "1E16", "0.20", "-2.8"), ("lad-l", "1E17", "0.30", "-2.6")]


@pytest.fixture
def homes(tmp_path: Path):
    hs = make_network(tmp_path / "net", LABS, auto="manual")
    yield hs
    for h in hs:
        h.close()


def cli(*args: str) -> tuple[int, Any, str]:
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main([*args])
    try:
        return rc, json.loads(out.getvalue()), err.getvalue()
    except ValueError:
        return rc, out.getvalue(), err.getvalue()


def publish_ladder(home: Any) -> None:
    for model, flop, acc, logp in LADDER:
        home.publish("eval_result", result_body(acc, model=model, flop=flop, logp=logp, stderr="0.01"))


def forecast_of(node: Node, fid: str) -> dict[str, Any] | None:
    fc = node.status().get("forecasts") or {}
    return next((f for f in fc.get("forecasts", []) if f["forecast"] == fid), None)


def test_a_published_forecast_is_pending_then_scored_on_every_node(homes) -> None:
    alpha, _beta = homes
    publish_ladder(alpha)
    nodes = [Node(h).start() for h in homes]
    try:
        rc, dry, _ = cli("forecast", "--model", "big", "--compute", "1E18", "--ladder", "lad-s,lad-m,lad-l",
                         "--home", str(alpha.path), "--dry-run", "--json")
        assert rc == 0 and dry["dry_run"] and dry["forecast"] is None
        assert count(alpha, "forecast") == 0  # a dry run publishes nothing
        rc, out, err = cli("forecast", "--model", "big", "--compute", "1E18", "--ladder", "lad-s,lad-m,lad-l",
                           "--note", "pre-registered", "--home", str(alpha.path), "--json")
        assert rc == 0, err
        fid = out["forecast"]
        assert out["body"]["predictions"] == dry["body"]["predictions"]  # the same signed results, the same prediction
        preds = {p["rule"]: p for p in out["body"]["predictions"]}
        assert set(preds) == {"arithmetic-acc", "arithmetic-logp"}
        acc = preds["arithmetic-acc"]
        assert Decimal(acc["low"]) <= Decimal(acc["value"]) <= Decimal(acc["high"])
        assert out["score"]["status"] == "pending"
        for n in nodes:
            wait_until(lambda n=n: forecast_of(n, fid), 20, what=f"{n.home.lab} lists the forecast")
            assert forecast_of(n, fid)["status"] == "pending"  # type: ignore[index]

        # The run's result arrives, at 1.05x the planned compute (inside the ±10% window).
        alpha.publish("eval_result", result_body("0.40", model="big", flop="1.05E18", logp="-2.4", stderr="0.01"))
        for n in nodes:
            wait_until(lambda n=n: (forecast_of(n, fid) or {}).get("status") == "scored", 20,
                       what=f"{n.home.lab} scores the forecast")
        views = [forecast_of(n, fid) for n in nodes]
        assert views[0] == views[1]  # every node, the same score
        rules = {r["rule"]: r for r in views[0]["rules"]}  # type: ignore[index]
        assert rules["arithmetic-acc"]["observed"] == "0.40"
        err_acc = abs(Decimal("0.40") - Decimal(acc["value"]))
        assert Decimal(rules["arithmetic-acc"]["abs_error"]) == err_acc.quantize(Decimal("0.000001"))
        track = {t["lab"]: t for t in nodes[1].status()["forecasts"]["track"]}
        assert track["alpha"]["scored"] == 2 and track["alpha"]["count"] == 2
        assert track["alpha"]["coverage"] in ("0.0000", "0.5000", "1.0000")
        assert "forecasts" not in nodes[0].status()["coordination"]  # its own section, additive

        rc, listed, _ = cli("forecasts", "--home", str(homes[1].path), "--json")
        assert rc == 0 and [f["forecast"] for f in listed["forecasts"]] == [fid]
        assert listed["track"] == nodes[1].status()["forecasts"]["track"]
        rc, text, _ = cli("forecasts", "--home", str(alpha.path))
        assert rc == 0 and "scored" in text and "track    alpha" in text
        rc, status, _ = cli("status", "--home", str(alpha.path), "--json")
        assert rc == 0 and status["forecasts"]["track"][0]["lab"] == "alpha"
    finally:
        for n in nodes:
            n.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "big", "--compute", "lots", "--ladder", "lad-s,lad-m"], "planned compute 'lots' is not a decimal number"),
        (["--model", "big", "--compute", "-1E18", "--ladder", "lad-s,lad-m"], "is not a decimal number greater than 0"),
        (["--model", "big", "--compute", "1E80", "--ladder", "lad-s,lad-m"], "training compute must lie in"),
        (["--model", "big", "--compute", "1E18", "--ladder", "lad-s,nope"], "no signed eval_result of alpha in this store: nope"),
        (["--model", "big", "--compute", "1E18"], "name the --ladder models"),
        (["--model", "lad-s", "--compute", "1E18", "--ladder", "lad-s,lad-m"], "names 'lad-s' itself"),
        (["--model", "lad-l", "--compute", "1.02E17", "--ladder", "lad-s,lad-m"], "would be scored late"),
        (["--model", "big", "--compute", "1E18", "--ladder", "lad-s"], "no rule of the adopted policy can be forecast"),
    ],
    ids=["compute-text", "compute-negative", "compute-out-of-domain", "unknown-ladder-model", "no-ladder",
         "own-ladder", "already-measured", "one-compute-value"],
)
def test_bad_forecast_requests_are_refused_and_change_nothing(homes, args: list[str], message: str) -> None:
    alpha = homes[0]
    publish_ladder(alpha)
    before = alpha.store.log_size()
    rc, _out, err = cli("forecast", *args, "--home", str(alpha.path))
    assert rc == 2, err
    assert message in " ".join(err.split()), err
    assert alpha.store.log_size() == before and count(alpha, "forecast") == 0


def test_a_lab_without_ladder_results_is_told_so(homes) -> None:
    alpha = homes[0]
    rc, _out, err = cli("forecast", "--model", "big", "--compute", "1E18", "--ladder", "lad-s,lad-m",
                        "--home", str(alpha.path))
    assert rc == 2 and "no signed eval_result of alpha in this store: lad-s, lad-m" in " ".join(err.split())
    assert count(alpha, "forecast") == 0


def test_the_ladder_defaults_to_the_labs_training_plan(homes) -> None:
    alpha = homes[0]
    publish_ladder(alpha)
    rc, _, err = cli("plan", "--model", "big", "--compute", "1E18", "--ladder", "lad-s", "--ladder", "lad-m",
                     "--ladder", "lad-l", "--home", str(alpha.path), "--json")
    assert rc == 0, err
    rc, out, err = cli("forecast", "--model", "big", "--compute", "1E18", "--home", str(alpha.path), "--dry-run", "--json")
    assert rc == 0, err
    assert out["body"]["ladder"] == ["lad-s", "lad-m", "lad-l"]
