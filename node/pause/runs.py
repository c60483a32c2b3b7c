"""The lab's training runs as this node knows them, and which pauses cover each (spec §6.10).

A pause covers *runs*, not labs: ``tripwire status`` must say which of this lab's runs a
pause in force stops now and which it will stop before their planned compute. A node
learns its lab's runs two ways:

- a training gate opened on the home records the run it guards (model, domains, planned
  and current compute) in ``runs/`` under the home each time that changes;
- the lab's own signed eval results name its models and their latest training compute
  (domains unknown: only a gate declares them).

Gate records win over results for the same model (they are newer and say more). The files
are written atomically and read defensively: one that cannot be read is reported, not fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from protocol.canonical import format_time
from protocol.entries import EvalResultBody
from protocol.scope import Run, covers, describe, will_cover

if TYPE_CHECKING:
    from node.home import NodeHome
    from protocol.pause import PauseState

RUNS_DIR = "runs"


def _file_for(home_path: Path, model: str) -> Path:
    # Model names are free text: the file name is a digest of it, the name is inside.
    return home_path / RUNS_DIR / f"{hashlib.sha256(model.encode()).hexdigest()[:32]}.json"


def record_run(home_path: Path, run: Run, *, now: Any = None) -> None:
    """Record (atomically) the run a gate guards; a run without a model name is not recorded."""
    if not run.model:
        return
    path = _file_for(home_path, run.model)
    doc = {"run": run.model_dump(mode="json"), "recorded_at": format_time(now) if now is not None else None}
    data = json.dumps(doc, sort_keys=True).encode()
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".run-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class KnownRun:
    run: Run
    source: str
    """``gate`` (a gate on this home recorded it) or ``results`` (from the lab's signed results)."""


def known_runs(home: NodeHome) -> tuple[list[KnownRun], list[str]]:
    """This lab's runs (sorted by model name) and the problems met reading the records."""
    runs: dict[str, KnownRun] = {}
    problems: list[str] = []
    for e in home.store.entries(kind="eval_result"):
        if e.statement.lab != home.lab:
            continue
        body = e.statement.body
        if not isinstance(body, EvalResultBody):
            continue
        m = body.model
        held = runs.get(m.name)
        if held is None or Decimal(m.training_flop) > Decimal(held.run.current_flop or "0"):
            runs[m.name] = KnownRun(Run(model=m.name[:256], current_flop=m.training_flop), "results")
    folder = home.path / RUNS_DIR
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            # JSON mode: the strict model takes JSON arrays for its tuples.
            run = Run.model_validate_json(json.dumps(json.loads(path.read_bytes())["run"]))
        except (OSError, ValueError, KeyError, TypeError, ValidationError) as e:
            problems.append(f"{path.name}: unreadable run record ({type(e).__name__})")
            continue
        runs[run.model] = KnownRun(run, "gate")
    return [runs[k] for k in sorted(runs)], problems


def coverage(state: PauseState, runs: list[KnownRun]) -> list[dict[str, Any]]:
    """For each run: the pauses in force that stop it now, and those that will before its
    planned compute (a compute-scoped pause the run has not reached yet)."""
    out = []
    for k in runs:
        now_ = [pid for pid in sorted(state.active) if covers(state.scope_of(pid), k.run)]
        later = [
            pid for pid in sorted(state.active)
            if pid not in now_ and will_cover(state.scope_of(pid), k.run)
        ]
        out.append(
            {
                "model": k.run.model,
                "source": k.source,
                "domains": list(k.run.domains),
                "current_flop": k.run.current_flop,
                "planned_flop": k.run.planned_flop,
                "stopped_by": now_,
                "will_be_stopped_by": later,
            }
        )
    return out


def scopes_in_force(state: PauseState) -> list[dict[str, Any]]:
    """Each pause in force with the runs it covers, in words and as data."""
    out = []
    for pid in sorted(state.active):
        scope = state.scope_of(pid)
        out.append(
            {
                "proposal_id": pid,
                "scope": scope.model_dump(mode="json", exclude_none=True) if scope is not None else None,
                "covers": describe(scope),
            }
        )
    return out


__all__ = ["RUNS_DIR", "KnownRun", "coverage", "known_runs", "record_run", "scopes_in_force"]
