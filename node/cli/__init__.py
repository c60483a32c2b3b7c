"""`tripwire` command line: thin wrappers that parse, call, print and set the exit code.

Each command group lives in its own module and registers itself on ``app``; the
only place errors become exit codes is :func:`main`.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

# Command modules register themselves on import.
from node.cli import (
    commands_demo,  # noqa: F401  (registration)
    commands_eval,  # noqa: F401  (registration)
    commands_forecast,  # noqa: F401  (registration)
    commands_import,  # noqa: F401  (registration)
    commands_node,  # noqa: F401  (registration)
    commands_pause,  # noqa: F401  (registration)
    commands_plan,  # noqa: F401  (registration)
    commands_report,  # noqa: F401  (registration)
    commands_serve,  # noqa: F401  (registration)
    commands_tools,  # noqa: F401  (registration)
)
from node.cli._app import app, console_err, exit_code_for

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the process exit code (used by the console script)."""
    from node.cli.commands_tools import VERBOSE
    from protocol.errors import TripwireError

    VERBOSE["on"] = False
    try:
        # With standalone_mode=False, click returns the code of a `typer.Exit` instead of
        # raising it; commands themselves return None.
        rc = app(args=argv, standalone_mode=False)
    except TripwireError as e:
        # Escaped: messages name settings and codes in brackets ("[config]"), not markup.
        from node.cli.commands_tools import VERBOSE

        console_err.print(f"[bold red]error:[/] {escape(e.diagnostics(verbose=VERBOSE['on']))}", highlight=False)
        return exit_code_for(e)
    except typer.Exit as e:
        return int(e.exit_code or 0)
    except typer.Abort:
        console_err.print("aborted")
        return 130
    except typer.TyperException as e:
        # Usage errors (typer's own click lineage; its public base class): show prints the
        # usage line and the hint; the exit code is click's (2 for usage).
        show = getattr(e, "show", None)
        if callable(show):
            show()
        else:
            console_err.print(f"error: {escape(e.format_message())}", highlight=False)
        return e.exit_code
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
