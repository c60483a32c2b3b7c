"""`tripwire import`: turn results a lab already produced (lm-eval output folders, Inspect
logs) into the same ``eval_result`` body as ``tripwire eval``, optionally signed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from node.cli._app import app

import_app = typer.Typer(
    name="import",
    help="Import eval results produced by lm-evaluation-harness or Inspect as eval_result bodies.",
    no_args_is_help=True,
)
app.add_typer(import_app, name="import")


_OUT = typer.Option("--out", help="Write the eval_result document here.")
_MODEL = typer.Option("--model", help="The model's local directory: commit to its weight files (else to the declared identity).")
_NAME = typer.Option("--name", help="Model name for the result (default: the name the tool recorded).")
_FLOP = typer.Option("--training-flop", help="Training compute of the evaluated checkpoint, FLOP (needed to sign).")
_STEP = typer.Option("--checkpoint-step", help="Training step of the evaluated checkpoint.")
_SAMPLES = typer.Option("--samples", help="Write the committed per-sample records (JSONL).")
_SIGN = typer.Option("--sign", help="Sign the result into the lab's feed (needs --home).")
_HOME = typer.Option("--home", help="The node home directory holding the lab key and feed.")


def _import(kind: str, source: Path, out: Path, model: Path | None, name: str | None, training_flop: str | None,
            checkpoint_step: int | None, samples: Path | None, sign: bool, home: Path | None) -> None:
    from node.cli.commands_eval import open_signing_home, write_and_publish
    from node.evals.imports import import_inspect, import_lmeval

    reader = import_lmeval if kind == "lm-eval" else import_inspect
    if sign and training_flop is None:
        from node.evals.errors import SigningUnavailableError

        raise SigningUnavailableError("--sign needs the training compute of the evaluated checkpoint: pass --training-flop")
    node_home = open_signing_home(sign, home, model, training_flop)
    try:
        run = reader(source, model_dir=model, model_name=name, training_flop=training_flop,
                     checkpoint_step=checkpoint_step)
        write_and_publish(run, out, samples, node_home)
    finally:
        if node_home is not None:
            node_home.close()


@import_app.command("lm-eval")
def import_lmeval_command(
    source: Annotated[Path, typer.Argument(help="An lm-eval output folder (results_*.json, samples_*.jsonl) or results file.")],
    out: Annotated[Path, _OUT],
    model: Annotated[Path | None, _MODEL] = None,
    name: Annotated[str | None, _NAME] = None,
    training_flop: Annotated[str | None, _FLOP] = None,
    checkpoint_step: Annotated[int | None, _STEP] = None,
    samples: Annotated[Path | None, _SAMPLES] = None,
    sign: Annotated[bool, _SIGN] = False,
    home: Annotated[Path | None, _HOME] = None,
) -> None:
    """lm-eval's results and logged samples as an eval_result (lm-eval's own numbers)."""
    _import("lm-eval", source, out, model, name, training_flop, checkpoint_step, samples, sign, home)


@import_app.command("inspect")
def import_inspect_command(
    source: Annotated[Path, typer.Argument(help="An Inspect log (.eval or .json).")],
    out: Annotated[Path, _OUT],
    model: Annotated[Path | None, _MODEL] = None,
    name: Annotated[str | None, _NAME] = None,
    training_flop: Annotated[str | None, _FLOP] = None,
    checkpoint_step: Annotated[int | None, _STEP] = None,
    samples: Annotated[Path | None, _SAMPLES] = None,
    sign: Annotated[bool, _SIGN] = False,
    home: Annotated[Path | None, _HOME] = None,
) -> None:
    """An Inspect log's scores and samples as an eval_result (Inspect's own numbers)."""
    _import("inspect", source, out, model, name, training_flop, checkpoint_step, samples, sign, home)
