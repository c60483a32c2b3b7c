"""`tripwire eval`: run the standardized evals on a local checkpoint, optionally sign the result."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from node.cli._app import app, console

_MODEL = typer.Option("--model", help="Local Hugging Face causal LM directory (config.json, weights, tokenizer).")


@app.command("eval")
def eval_command(
    model: Annotated[Path, _MODEL],
    out: Annotated[Path, typer.Option("--out", help="Write the result JSON here (only when everything succeeded).")],
    task: Annotated[str | None, typer.Option("--task", help="One task: a Tripwire or lm-eval task YAML, or an lm-eval task or group name.")] = None,
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
    engine: Annotated[str, typer.Option("--engine", help="auto (native where it reproduces lm-eval exactly, else lm-eval), native or lm-eval.")] = "auto",
    backend: Annotated[str, typer.Option("--backend", help="lm-eval engine backend: hf, or vllm on GPUs.")] = "hf",
    num_fewshot: Annotated[int | None, typer.Option("--num-fewshot", help="Override an lm-eval task's few-shot count (as lm-eval's --num_fewshot; both engines).")] = None,
) -> None:
    """Evaluate a checkpoint on a suite or task; write --out; with --sign, publish a signed eval_result."""
    from node.cli.commands_tools import require_extra

    require_extra("`tripwire eval`")
    from node.evals.errors import EvalSpecError, NativeUnsupportedError
    from node.evals.runner import load_suite_or_task, run_suite

    if (task is None) == (suite is None):
        raise EvalSpecError("give exactly one of --task FILE|NAME or --suite FILE")
    if engine not in ("auto", "native", "lm-eval"):
        raise EvalSpecError(f"--engine must be auto, native or lm-eval, got {engine!r}")
    if suite is not None and engine == "lm-eval":
        raise EvalSpecError("--engine lm-eval runs one --task (a name, YAML or group), not a --suite")
    from node.evals.distributed import is_main

    # Which engine runs it is decided before the model is loaded or any item scored.
    target: Path | str = suite if suite is not None else str(task)
    native_spec = None
    use_lmeval = engine == "lm-eval"
    reason = ""
    if not use_lmeval:
        if suite is None and not Path(str(task)).exists():
            if engine == "native":
                raise EvalSpecError(f"--task {task}: no such file (lm-eval task names need --engine lm-eval or auto)")
            use_lmeval, reason = True, f"{task} is an lm-eval task name"
        else:
            try:
                native_spec = load_suite_or_task(target)
            except NativeUnsupportedError as e:
                if engine == "native" or suite is not None:
                    raise
                use_lmeval, reason = True, e.message
            if native_spec is not None and num_fewshot is not None:
                # The native runner must score the few-shot count lm-eval would, never the file's.
                from node.evals.spec import override_num_fewshot, single_task_suite

                if suite is not None:
                    raise EvalSpecError("--num-fewshot overrides one --task's few-shot count, not a --suite's")
                # Specs are immutable: the override is a new task, in a new one-task suite.
                native_spec = single_task_suite(override_num_fewshot(native_spec.tasks[0], num_fewshot))
    node_home = open_signing_home(sign, home, model, training_flop) if is_main() else None
    try:
        if native_spec is None:  # lm-eval runs it: chosen, a task name, or a file native cannot run
            from node.evals.lmeval import run_lmeval

            if reason:
                console.print(f"engine lm-eval: {reason}", highlight=False, soft_wrap=True)
            run = run_lmeval(model, str(task), device=device, dtype=dtype, batch_size=batch_size, limit=limit,
                             training_flop=training_flop, checkpoint_step=checkpoint_step, model_name=name,
                             backend=backend, num_fewshot=num_fewshot)
        else:
            run = run_suite(
                model, native_spec, device=device, dtype=dtype,
                batch_size=batch_size, limit=limit, training_flop=training_flop, checkpoint_step=checkpoint_step,
                model_name=name, shared_prefix=not plain, cache_dir=cache_dir, progress=progress,
            )
        if run is None:  # a non-zero torchrun rank: rank 0 reports
            return
        write_and_publish(run, out, samples, node_home)
    finally:
        if node_home is not None:
            node_home.close()


def open_signing_home(sign: bool, home: Path | None, model: Path | None, training_flop: str | None) -> Any:
    """The node home to publish into, checked before any work (roster, membership, key,
    compute); ``None`` without ``--sign``."""
    from node.evals.signing import open_home, preflight_sign

    if not sign:
        return None
    preflight_sign(model, home, training_flop)
    node_home = open_home(home)
    try:
        node_home.check_can_publish()
    except BaseException:
        node_home.close()
        raise
    return node_home


def write_and_publish(run: Any, out: Path, samples: Path | None, node_home: Any) -> None:
    """Write ``--out`` (and ``--samples``) first, so a signing failure never loses the run;
    then sign into ``node_home`` if given, and print the table."""
    from rich.table import Table

    from node.evals.runner import metric_table, write_atomic, write_result
    from node.evals.signing import publish_result

    if samples is not None:
        write_atomic(samples, b"".join(line + b"\n" for line in run.sample_lines()))
    write_result(run, out)
    try:
        entry_id = publish_result(node_home, run) if node_home is not None else None
    except Exception:
        console.print(f"wrote {out} (not signed: see the error below)", highlight=False, soft_wrap=True)
        raise
    if entry_id is not None:
        write_result(run, out, entry_id=entry_id)
    table = Table(title=f"{run.suite.id} {run.suite.version} on {run.model_name} (step {run.checkpoint_step})")
    for col in ("task", "metric", "value", "stderr", "n"):
        table.add_column(col, justify="right" if col in ("value", "stderr", "n") else "left")
    for row in metric_table(run):
        table.add_row(*map(str, row))
    console.print(table)
    for label, value in (("model commitment", run.commitment), ("suite digest", run.suite.digest),
                         ("engine", run.runtime.get("engine", "native"))):
        console.print(f"{label:<16} {value}", highlight=False, soft_wrap=True)
    console.print(f"wrote {out}" + (f" and {samples}" if samples else ""), highlight=False, soft_wrap=True)
    if entry_id:
        console.print(f"signed eval_result {entry_id}", highlight=False, soft_wrap=True)


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
