"""`tripwire eval`: run the standardized evals on a local checkpoint, optionally sign the result."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from node.cli._app import app, console

_MODEL = typer.Option("--model", help="Local Hugging Face causal LM directory (config.json, weights, tokenizer).")


@app.command("eval")
def eval_command(
    model: Annotated[Path, _MODEL],
    out: Annotated[Path, typer.Option("--out", help="Write the result JSON here (only when everything succeeded).")],
    task: Annotated[Path | None, typer.Option("--task", help="One task file (Tripwire or lm-evaluation-harness YAML).")] = None,
    suite: Annotated[Path | None, typer.Option("--suite", help="A suite file (specs/suites/*.yaml).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16.")] = "auto",
    batch_size: Annotated[str, typer.Option("--batch-size", help="Items per batch, or auto (backs off on OOM).")] = "auto",
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N items of each task.")] = None,
    samples: Annotated[Path | None, typer.Option("--samples", help="Write the committed per-item records (JSONL).")] = None,
    sign: Annotated[bool, typer.Option("--sign", help="Sign the result into the lab's feed (needs --home).")] = False,
    home: Annotated[Path | None, typer.Option("--home", help="The node home directory holding the lab key and feed.")] = None,
    training_flop: Annotated[str | None, typer.Option("--training-flop", help="Training compute so far, FLOP (e.g. 1.5E18).")] = None,
    checkpoint_step: Annotated[int | None, typer.Option("--checkpoint-step", help="Training step of this checkpoint.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Model name for the result (default: directory name).")] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Resume from / record finished items here.")] = None,
    plain: Annotated[bool, typer.Option("--plain", help="Score each choice separately (no shared-prefix cache).")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar on stderr.")] = True,
) -> None:
    """Evaluate a checkpoint on a suite or task; write --out; with --sign, publish a signed eval_result."""
    from node.cli.commands_tools import require_extra

    require_extra("`tripwire eval`")
    from node.evals.errors import EvalSpecError
    from node.evals.runner import run_suite
    from node.evals.signing import open_home, preflight_sign, publish_result

    if (task is None) == (suite is None):
        raise EvalSpecError("give exactly one of --task FILE or --suite FILE")
    from node.evals.distributed import is_main

    node_home = None
    if sign:
        preflight_sign(model, home, training_flop)
        if is_main():  # under torchrun only rank 0 publishes
            node_home = open_home(home)
    run = run_suite(
        model, suite or task, device=device, dtype=dtype,  # type: ignore[arg-type]
        batch_size=batch_size, limit=limit, training_flop=training_flop, checkpoint_step=checkpoint_step,
        model_name=name, shared_prefix=not plain, cache_dir=cache_dir, progress=progress,
    )
    if run is None:  # a non-zero torchrun rank: rank 0 reports
        return
    try:
        entry_id = publish_result(node_home, run) if node_home is not None else None
    finally:
        if node_home is not None and hasattr(node_home, "close"):
            node_home.close()
    from node.evals.runner import metric_table, write_atomic, write_result

    if samples is not None:
        write_atomic(samples, b"".join(line + b"\n" for line in run.sample_lines()))
    write_result(run, out, entry_id=entry_id)

    from rich.table import Table

    table = Table(title=f"{run.suite.id} {run.suite.version} on {run.model_name} (step {run.checkpoint_step})")
    for col in ("task", "metric", "value", "stderr", "n"):
        table.add_column(col, justify="right" if col in ("value", "stderr", "n") else "left")
    for row in metric_table(run):
        table.add_row(*map(str, row))
    console.print(table)
    say = {"highlight": False, "soft_wrap": True}
    console.print(f"model commitment {run.commitment}", **say)
    console.print(f"suite digest     {run.suite.digest}", **say)
    console.print(f"wrote {out}" + (f" and {samples}" if samples else ""), **say)
    if entry_id:
        console.print(f"signed eval_result {entry_id}", **say)


@app.command("eval-digest")
def eval_digest(
    path: Annotated[Path, typer.Argument(help="A suite or task file.")],
) -> None:
    """Print the content digest of a suite (what the roster pins) and of each of its tasks."""
    from node.evals.runner import load_suite_or_task

    s = load_suite_or_task(path)
    console.print(f"{s.digest}  suite {s.id} {s.version}", highlight=False, soft_wrap=True)
    for t in s.tasks:
        console.print(f"{t.digest}  task {t.name} ({t.kind}, {len(t.docs)} items)", highlight=False, soft_wrap=True)
