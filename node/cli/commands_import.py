"""`tripwire import`: turn results a lab already produced (lm-eval output folders, Inspect
logs) into the same ``eval_result`` body as ``tripwire eval``, optionally signed."""

from __future__ import annotations

import typer

from node.cli._app import app

import_app = typer.Typer(
    name="import",
    help="Import eval results produced by lm-evaluation-harness or Inspect as eval_result bodies.",
    no_args_is_help=True,
)
app.add_typer(import_app, name="import")

# Commands: `lm-eval DIR` (node/cli/commands_import_lmeval.py) and `inspect LOG`
# (node/cli/commands_import_inspect.py) register themselves on ``import_app``.
