"""`tripwire demo`: the three-lab network through a real breach and pause."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from node.cli._app import app, console


@app.command("demo")
def demo_command(
    workdir: Annotated[
        Path, typer.Option("--workdir", help="Where the three lab homes and the report go.")
    ] = Path("demo-network"),
    quiet: Annotated[bool, typer.Option("--quiet", help="Print only the final summary.")] = False,
    deadline: Annotated[
        float, typer.Option("--deadline", help="Stop training after this many seconds if no pause came.")
    ] = 1200.0,
) -> None:
    """Create three labs, train, evaluate, breach, pause, report and verify — all for real, on CPU."""
    from node.cli.commands_tools import require_extra

    require_extra("`tripwire demo`")
    from node.demo import print_summary, run_demo

    result = run_demo(workdir, quiet=quiet, deadline_s=deadline, console=console)
    print_summary(result, console)
    if not result.paused or result.verify_exit != 0 or any(s.error for s in result.states):
        raise typer.Exit(1)
