"""Training plans on real nodes (spec §6.12): a plan whose forecast crosses inside its
compute stops its gate at the stop point; the same plan, once its safety case is accepted
by the labs' votes, passes it; a run whose compute outgrows its evaluation cadence stops
("overdue evaluation"). The gate reads the node's signed pause state and the local store."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pausekit import Node, make_network, result_body, wait_until

from node.cli import main
from node.pause.gate import TrainingGate
from protocol.scope import Run

LABS = ["alpha", "beta", "gamma"]
#: alpha's ladder (one recipe, three sizes): accuracy +0.1 per decade of compute, so the
#: demo policy's breach level 0.60 lies near 1E20 on the trend.
LADDER = [("lad-s", "1E15", "0.10", "-3.0"), ("lad-m", "1E16", "0.20", "-2.8"), ("lad-l", "1E17", "0.30", "-2.6")]


@pytest.fixture
def homes(tmp_path: Path):
    hs = make_network(tmp_path / "net", LABS, auto="manual")
    yield hs
    for h in hs:
        h.close()


def cli(*args: str) -> tuple[int, Any]:
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main([*args])
    out = buf.getvalue()
    try:
        return rc, json.loads(out)
    except ValueError:
        return rc, out


def plan_state(node: Node, plan: str) -> dict[str, Any] | None:
    plans = node.status().get("coordination", {}).get("plans", [])
    return next((p for p in plans if p["plan"] == plan), None)


def gate(home: Any, compute: str, *, local: bool) -> TrainingGate:
    g = TrainingGate(home, poll_interval_s=0, check_local=local, stop_on_local_breach=False,
                     run=Run(model="big", planned_flop="1E21"))
    g.set_compute(compute)
    return g


def test_plan_stops_its_gate_at_the_stop_point_until_its_safety_case_is_accepted(homes, tmp_path: Path) -> None:
    nodes = [Node(h).start() for h in homes]
    alpha, beta, _gamma = homes
    home = [str(h.path) for h in homes]
    try:
        for model, flop, acc, logp in LADDER:
            alpha.publish("eval_result", result_body(acc, model=model, flop=flop, logp=logp, stderr="0.01"))
        wait_until(lambda: nodes[0].status().get("coordination", {}).get("results_judged") == 3, 20,
                   what="the ladder judged")

        # A plan to 1E21 FLOP: the forecast crosses the breach level before it.
        rc, out = cli("plan", "--model", "big", "--compute", "1E21", "--cadence", "4",
                      "--ladder", "lad-s", "--ladder", "lad-m", "--ladder", "lad-l", "--home", home[0], "--json")
        assert rc == 0, out
        plan, stop = out["plan"], out["stop_flop"]
        assert out["status"] == "needs-safety-case" and stop is not None
        assert Decimal("1E17") < Decimal(stop) < Decimal("1E21")
        # Every node reaches the same state from the same signed entries.
        for n in nodes:
            wait_until(lambda n=n: plan_state(n, plan), 20, what=f"{n.home.lab} holds the plan")
            assert plan_state(n, plan)["stop_flop"] == stop  # type: ignore[index]

        # A result of the run itself just below the stop point keeps it from being overdue.
        below = f"{Decimal(stop) / 2:.6E}"
        alpha.publish("eval_result", result_body("0.45", model="big", flop=below, stderr="0.01"))
        wait_until(lambda: (plan_state(nodes[0], plan) or {}).get("last_eval_flop"), 20, what="the run's result")

        for local in (False, True):
            g = gate(alpha, below, local=local)
            try:
                assert g.check(1).proceed, g.check(1).reason
                g.set_compute(stop)
                d = g.check(2)
            finally:
                g.close()
            assert d.stop and d.source == ("local" if local else "node"), d.reason
            assert stop in d.reason and plan[:16] in d.reason and "stop point" in d.reason
            assert d.details["plan_stop"] == "stop-point"

        # The gate's halt record cites the plan; status shows it.
        rc, st = cli("status", "--home", home[0], "--json")
        assert rc == 0
        assert st["plans"]["needs_safety_case"] == [plan]
        assert any(s["plan"] == plan for s in st["plans"]["stops"])

        # alpha makes its case; the labs accept it by the roster's quorum (2 of 3 here).
        doc = tmp_path / "case.md"
        doc.write_text("why the big run is safe past its stop point")
        rc, case = cli("safety-case", "--plan", plan[:12], "--doc", str(doc), "--rationale", "see the case",
                       "--home", home[0], "--json")
        assert rc == 0, case
        pid = case["safety_case"]
        for h in (alpha, beta):
            wait_until(lambda h=h: any(p["proposal_id"] == pid for p in cli("proposals", "--home", str(h.path), "--json")[1]["proposals"]),
                       20, what=f"{h.lab} holds the safety case")
            rc, v = cli("vote", pid[:12], "--accept", "--rationale", "the case holds", "--home", str(h.path), "--json")
            assert rc == 0 and v["action"] == "accept", v
        for n in nodes:
            wait_until(lambda n=n: (plan_state(n, plan) or {}).get("status") == "accepted", 30, what=f"{n.home.lab}: accepted")
        assert not nodes[0].status()["paused"]  # accepting a case pauses nobody

        for local in (False, True):
            g = gate(alpha, stop, local=local)
            try:
                d = g.check(3)
                assert d.proceed, d.reason
                # Past its cadence (last signed eval x 4) without a fresh result: overdue.
                overdue = f"{Decimal(below) * 4 * Decimal('1.01'):.6E}"
                g.set_compute(overdue)
                d = g.check(4)
            finally:
                g.close()
            assert d.stop and d.details["plan_stop"] == "overdue-evaluation", d.reason
            assert d.reason.startswith("overdue evaluation") and "FLOP" in d.reason
        # gamma never voted; a vote after acceptance is still a vote, and changes nothing.
        rc, _ = cli("vote", pid[:12], "--object", "--rationale", "late", "--home", home[2], "--json")
        assert rc == 0
        # A safety case cannot be voted on as a pause; the human listing names its plan.
        rc, _ = cli("vote", pid[:12], "--pause", "--rationale", "x", "--home", home[2])
        assert rc != 0
        rc, listing = cli("proposals", "--home", home[0])
        assert rc == 0 and f"safety case for training plan {plan}" in " ".join(listing.split())
    finally:
        for n in nodes:
            n.stop()


def test_plan_cli_refuses_bad_plans_and_changes_nothing(homes, tmp_path: Path) -> None:
    alpha = homes[0]
    alpha.publish("eval_result", result_body("0.1", model="lad-s", flop="1E15"))
    home = str(alpha.path)
    before = alpha.store.log_size()
    cases = [
        (["--compute", "0"], "planned compute '0' is not a decimal number greater than 0"),
        (["--compute", "-1E22"], "greater than 0"),
        (["--compute", "lots"], "not a decimal number"),
        (["--cadence", "1"], "cadence '1' is not a decimal number greater than 1"),
        (["--ladder", "nobody"], "no signed eval_result of alpha in this store: nobody"),
        (["--result", "ab" * 32], "is not a signed eval_result of alpha held here"),
    ]
    import io
    from contextlib import redirect_stderr

    for extra, text in cases:
        args = ["plan", "--model", "big", "--home", home]
        if "--compute" not in extra:
            args += ["--compute", "1E21"]
        if "--ladder" not in extra:
            args += ["--ladder", "lad-s"]
        err = io.StringIO()
        with redirect_stderr(err):
            rc = main(args + extra)
        assert rc != 0, extra
        assert text in " ".join(err.getvalue().split()) or text in err.getvalue(), (extra, err.getvalue())
    assert alpha.store.log_size() == before
    # A plan without compute is a usage error.
    assert main(["plan", "--model", "big", "--ladder", "lad-s", "--home", home]) == 2
    # A safety case needs a held plan and readable documents.
    err = io.StringIO()
    with redirect_stderr(err):
        assert main(["safety-case", "--plan", "ab" * 8, "--doc", str(tmp_path / "missing.md"),
                     "--rationale", "x", "--home", home]) != 0
    assert "cannot read safety-case document" in err.getvalue()
    doc = tmp_path / "case.md"
    doc.write_text("x")
    err = io.StringIO()
    with redirect_stderr(err):
        assert main(["safety-case", "--plan", "ab" * 8, "--doc", str(doc), "--rationale", "x", "--home", home]) != 0
    assert "no training plan" in err.getvalue()
    assert alpha.store.log_size() == before


def test_gate_checks_its_plan_against_the_compute_at_every_step_between_polls(homes) -> None:
    """No node is served: the gate reads the plan from its home's store once, then the
    compute passed at each step decides (the node being unreachable is within grace)."""
    alpha = homes[0]
    for model, flop, acc, logp in LADDER:
        alpha.publish("eval_result", result_body(acc, model=model, flop=flop, logp=logp, stderr="0.01"))
    rc, out = cli("plan", "--model", "big", "--compute", "1E21", "--ladder", "lad-s", "--ladder", "lad-m",
                  "--ladder", "lad-l", "--home", str(alpha.path), "--json")
    assert rc == 0 and out["status"] == "needs-safety-case", out
    now = [0.0]
    g = TrainingGate(alpha, poll_interval_s=3600, grace_s=3600, stop_on_local_breach=False,
                     clock=lambda: now[0], run=Run(model="big"))
    try:
        g.set_compute("1E16")
        assert g.check(1).proceed
        now[0] = 1.0  # well inside the poll interval: no new look at the store or the node
        g.set_compute(out["overdue_after"])
        assert g.check(2).proceed  # at the threshold, not past it
        g.set_compute(f"{Decimal(out['overdue_after']) * 2:.6E}")
        d = g.check(3)
    finally:
        g.close()
    assert d.stop and d.source == "cached" and d.details["plan_stop"] == "overdue-evaluation", d.reason
    assert out["overdue_after"] in d.reason and "no signed evaluation of the model yet" in d.reason
