"""`tripwire forecast | forecasts`: put a prediction on record before a run, and list the
forecasts held with how each fared (spec §6.13).

Thin: parse, call :mod:`node.pause.actions` (the checks and the publishing) or the analysis
every node applies (:func:`node.pause.view.local_analysis`), print.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from node.cli._app import app, console
from node.cli.commands_pause import HomeOpt, JsonOpt
from node.home import NodeHome
from node.pause import actions

if TYPE_CHECKING:
    from node.pause.view import SharedAnalysis


def _prediction_lines(preds: list[dict[str, Any]]) -> list[str]:
    lines = []
    for p in preds:
        level = f" ({p['level']} interval)" if p.get("level") else ""
        line = f"     {p['rule']:<16} predicted {p['value']} in [{p['low']}, {p['high']}]{level}"
        if p.get("status") == "scored":
            where = "inside" if p["inside"] else "OUTSIDE"
            line += f"; measured {p['observed']}, {where} (error {p['abs_error']})"
        elif p.get("status") in ("late", "unknown"):
            line += f"; {p['status']}: {p['reason']}"
        lines.append(line)
    return lines


def _score_lines(s: dict[str, Any]) -> list[str]:
    head = f"forecast {s['forecast'][:16]}…  {s['lab']} {s['model']} at {s['planned_flop']} FLOP  {s['status']}"
    if s.get("result"):
        head += f"  against result {s['result'][:16]}… ({s['result_flop']} FLOP)"
    lines = [head, f"     published {s['issued_at']} (seq {s['seq']})"]
    if not s.get("policy_current"):
        lines.append(f"     made under policy {s['policy_digest'][:16]}…, scored under the adopted one")
    return lines + _prediction_lines(s["rules"])


def _track_line(r: dict[str, Any]) -> str:
    cov = f"coverage {r['coverage']}" if r["coverage"] is not None else "coverage -"
    mae = f"mean abs error {r['mean_abs_error']}" if r["mean_abs_error"] is not None else "mean abs error -"
    return (f"track    {r['lab']:<16} {r['forecasts']} forecast(s), {r['count']} prediction(s): {r['scored']} scored "
            f"({r['inside']} inside), {r['pending']} pending, {r['late']} late, {r['unknown']} unknown; {cov}, {mae}")


@app.command("forecast")
def forecast_cmd(
    home: HomeOpt,
    model: Annotated[str, typer.Option("--model", help="The model the forecast is for (as its eval results will name it).")],
    compute: Annotated[str, typer.Option("--compute", help="Planned training compute, FLOP (e.g. 1E22).")],
    ladder: Annotated[
        str | None,
        typer.Option("--ladder", help="The smaller models (same recipe) to extrapolate from, comma-separated "
                     "(default: the ladder of this lab's training plan for the model)."),
    ] = None,
    note: Annotated[str, typer.Option("--note", help="A note published with the forecast.")] = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Compute and print the forecast; publish nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Put on record, before the run, what the model will measure at its planned compute: the
    adopted policy's own ladder prediction per rule, with its interval. Scored by every node
    when the model's result arrives."""
    names = [m.strip() for m in (ladder or "").split(",") if m.strip()]
    with NodeHome.open(home) as h:
        out = actions.publish_forecast(h, model=model, compute=compute, ladder=names, note=note, dry_run=dry_run).facts
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    body = out["body"]
    verb = "would publish (dry run)" if dry_run else f"published forecast {out['forecast']}"
    console.print(f"{verb}\n  {body['model']} at {body['planned_flop']} FLOP, from ladder {', '.join(body['ladder'])}",
                  highlight=False)
    for line in _prediction_lines(body["predictions"]):
        console.print(line, highlight=False)
    for s in out["skipped"]:
        console.print(f"     {s['rule']:<16} not forecast: {s['reason']}", highlight=False)


def forecasts_report(h: NodeHome) -> dict[str, Any]:
    """Every forecast held with its score, and each lab's track record (spec §6.13)."""
    from node.pause.view import local_analysis
    from protocol.track import track_records

    a, _ = local_analysis(h)
    scores = sorted(a.forecasts.values(), key=lambda s: (s.issued_at, s.lab, s.seq))
    return {
        "track": [r.to_json() for r in track_records(scores).values()],
        "forecasts": [s.to_json() for s in scores],
    }


@app.command("forecasts")
def forecasts_cmd(home: HomeOpt, as_json: JsonOpt = False) -> None:
    """List the forecasts on record with how each fared, and each lab's track record."""
    with NodeHome.open(home) as h:
        out = forecasts_report(h)
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    if not out["forecasts"]:
        console.print("no forecasts on record", highlight=False)
        return
    for s in out["forecasts"]:
        for line in _score_lines(s):
            console.print(line, highlight=False)
    for r in out["track"]:
        console.print(_track_line(r), highlight=False)


def _status_section(h: NodeHome, shared: SharedAnalysis) -> dict[str, Any]:
    from protocol.errors import TripwireError

    try:
        a, _ = shared.get()
    except TripwireError as e:
        return {"error": e.message}
    from node.pause.view import forecasts_json

    return forecasts_json(a).to_json()


def _register_status() -> None:
    from node.cli.commands_node import STATUS_SECTIONS

    STATUS_SECTIONS["forecasts"] = _status_section


_register_status()
