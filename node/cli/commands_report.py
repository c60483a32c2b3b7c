"""`tripwire report` and `tripwire verify`: policymaker-ready reports and offline verification.

Thin: build the bundle (reports.source), verify it (reports.bundle), render from the
verified bundle only (reports.render), print a pass/fail table, and let
:func:`node.cli.main` turn errors into exit codes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from node.cli._app import app, console
from protocol.canonical import parse_time
from protocol.errors import ConfigurationError, SchemaError
from reports.bundle import VerificationReport, load_bundle, load_trusted_genesis, verify_bundle
from reports.errors import EvidenceError

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
        Path, typer.Option("--out", help="Directory to write report.html, report.pdf, evidence.json.")
    ],
    since: Annotated[
        str | None, typer.Option("--since", help="Only events from this date (YYYY-MM-DD or RFC 3339).")
    ] = None,
    audience: Annotated[str, typer.Option("--audience", help="public or regulator.")] = "public",
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Policy file (default: found by the roster's digest).")
    ] = None,
    pdf: Annotated[
        bool, typer.Option("--pdf/--no-pdf", help="Also print report.pdf (needs Chromium).")
    ] = True,
) -> None:
    """Render the node's report (HTML + PDF) and its evidence bundle."""
    from node.home import NodeHome
    from reports.render import chromium_path, write_report
    from reports.source import bundle_from_store, find_policy

    if audience not in ("public", "regulator"):
        raise ConfigurationError(f"--audience must be public or regulator, not {audience!r}")
    if pdf:
        chromium_path()  # fail before any work when the PDF cannot be printed
    start = _since(since)
    with NodeHome.open(home) as h:
        chain = h.store.roster_chain()
        pol = find_policy(chain.current.roster.policy_digest, explicit=policy, search=[h.path])
        bundle = bundle_from_store(
            h.store,
            key=h.key,
            lab=h.lab,
            policy=pol,
            audience=audience,
            since=start,  # type: ignore[arg-type]
        )
    result = verify_bundle(bundle)
    vb = result.require()
    files = write_report(vb, out, report=result, pdf=pdf)
    console.print(f"[bold]status:[/] {vb.analysis.status}")
    console.print(f"wrote {files.html}")
    if files.pdf:
        console.print(f"wrote {files.pdf}")
    console.print(f"wrote {files.evidence} (sha256 {files.evidence_sha256})")


@app.command("verify")
def verify_cmd(
    evidence: Annotated[Path, typer.Argument(help="evidence.json written by `tripwire report`.")],
    roster: Annotated[
        Path | None,
        typer.Option(
            "--roster", help="Genesis roster you trust (envelope JSON, or a list with genesis first)."
        ),
    ] = None,
) -> None:
    """Check an evidence bundle offline; exit non-zero if any check fails."""
    bundle = load_bundle(evidence)
    trusted = load_trusted_genesis(roster) if roster else None
    result = verify_bundle(bundle, trusted)
    print_checks(result, f"Verification of {evidence}")
    if result.ok:
        console.print(
            "[bold green]PASS[/]: every check passed"
            + ("" if trusted else " (roster not pinned: use --roster)")
        )
        return
    failed = [c.name for c in result.checks if c.status == "fail"]
    console.print(f"[bold red]FAIL[/]: {len(failed)} check(s) failed")
    # Bad evidence is bad data: main() maps it to exit code 3.
    raise EvidenceError(f"{evidence} does not verify: failed {', '.join(failed)}")
