"""The shared Typer application and console helpers for every command module."""

from __future__ import annotations

import typer
from rich.console import Console

from protocol.errors import TripwireError

app = typer.Typer(
    name="tripwire",
    help="Tripwire: shared dangerous-capability tripwires with a verifiable coordinated pause.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
# Errors are never wrapped: a path or an id in one must stay whole to be copied.
console_err = Console(stderr=True, soft_wrap=True)


def exit_code_for(err: TripwireError) -> int:
    """Exit codes by whose fault (each family's ``exit_code``): 2 local configuration/usage,
    3 bad data, 4 transport, 1 other."""
    return err.exit_code
