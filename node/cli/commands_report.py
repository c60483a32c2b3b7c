"""`tripwire report` and `tripwire verify`: policymaker-ready reports and offline verification.

Thin: build the bundle (reports.source), verify it (reports.bundle), render from the
verified bundle only (reports.render), print a pass/fail table, and let
:func:`node.cli.main` turn errors into exit codes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from node.cli._app import app, console, console_err
from protocol.canonical import parse_time
from protocol.errors import ConfigurationError, SchemaError
from reports.bundle import VerificationReport, load_trusted_genesis
from reports.errors import EvidenceError

T = TypeVar("T")

STATUS_STYLE = {"pass": "[bold green]PASS[/]", "fail": "[bold red]FAIL[/]", "skip": "[yellow]SKIP[/]"}


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        if len(value) == 10:
            return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
        return parse_time(value)
    except (ValueError, SchemaError) as e:
        raise ConfigurationError(f"--since {value!r} is not a date (YYYY-MM-DD) or RFC 3339 UTC time") from e


def print_checks(report: VerificationReport, title: str) -> None:
    table = Table(title=title, show_lines=False, title_justify="left")
    table.add_column("Check", style="bold")
    table.add_column("Result")
    table.add_column("Detail", overflow="fold")
    for c in report.checks:
        detail = c.summary
        if c.status == "fail" and len(c.failures) > 1:
            detail = "\n".join(c.failures)
        table.add_row(c.name, STATUS_STYLE[c.status], detail)
    console.print(table)


@app.command("report")
def report_cmd(
    home: Annotated[Path, typer.Option("--home", help="Node home directory.", show_default=False)],
    out: Annotated[
        Path, typer.Option("--out", help="Folder to write report.html, report.pdf, evidence.json (must not exist).")
    ],
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Timeline and appendices from this date (YYYY-MM-DD or RFC 3339); the status is always as of now.",
        ),
    ] = None,
    audience: Annotated[str, typer.Option("--audience", help="public or regulator.")] = "public",
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Policy file (default: found by the roster's digest).")
    ] = None,
    pdf: Annotated[
        bool, typer.Option("--pdf/--no-pdf", help="Also print report.pdf (needs Chromium).")
    ] = True,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing --out folder whole.")
    ] = False,
) -> None:
    """Render the node's report (HTML + PDF) and its evidence bundle."""
    from node.home.report import write_home_report

    if audience not in ("public", "regulator"):
        raise ConfigurationError(f"--audience must be public or regulator, not {audience!r}")
    written = write_home_report(
        home, out, audience="regulator" if audience == "regulator" else "public", policy=policy, since=_since(since), pdf=pdf, overwrite=overwrite
    )
    console.print(f"[bold]status:[/] {written.status} (as of {written.generated_at})")
    console.print(f"wrote {written.html}")
    if written.pdf:
        console.print(f"wrote {written.pdf}")
    console.print(f"wrote {written.evidence} (sha256 {written.evidence_sha256})")


@app.command("verify")
def verify_cmd(
    target: Annotated[
        Path,
        typer.Argument(help="evidence.json, report.html, report.pdf, or the report folder (checks them all)."),
    ],
    roster: Annotated[
        Path | None,
        typer.Option(
            "--roster",
            help="Genesis roster you trust: `tripwire roster export` output (or `roster show --json`).",
        ),
    ] = None,
    require_pin: Annotated[
        bool, typer.Option("--require-pin", help="Fail (exit 2) unless --roster is given.")
    ] = False,
) -> None:
    """Check an evidence bundle, and the report rendered from it, offline; exit non-zero if any check fails."""
    from reports.binding import verify_target

    if roster is None and require_pin:
        raise ConfigurationError(
            "--require-pin: no --roster given; pass the genesis roster you hold (`tripwire roster export`)"
        )
    trusted = load_trusted_genesis(roster) if roster else None
    full = verify_target(target, trusted)
    print_checks(full, f"Verification of {target}")
    if trusted is None:
        console_err.print(
            "[bold yellow]warning:[/] no --roster given: this trusts the roster inside the bundle, so anyone "
            "could have minted this network; pass the genesis roster you hold (--roster genesis.json)"
        )
    if full.ok:
        console.print("[bold green]PASS[/]: every check passed" + ("" if trusted else " (roster not pinned)"))
        return
    failed = [c.name for c in full.checks if c.status == "fail"]
    console.print(f"[bold red]FAIL[/]: {len(failed)} check(s) failed")
    # Bad evidence is bad data: main() maps it to exit code 3.
    raise EvidenceError(f"{target} does not verify: failed {', '.join(failed)}")
