"""`tripwire report` and `tripwire verify`: policymaker-ready reports and offline verification.

Thin: build the bundle (reports.source), verify it (reports.bundle), render from the
verified bundle only (reports.render), print a pass/fail table, and let
:func:`node.cli.main` turn errors into exit codes.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from node.cli._app import app, console, console_err
from node.errors import InputFileError
from protocol.canonical import parse_time
from protocol.errors import ConfigurationError, SchemaError
from reports.bundle import Check, VerificationReport, load_bundle, load_trusted_genesis, verify_bundle
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


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse a bad --out before any work (one line, saying what to do)."""
    if out.exists() and not out.is_dir():
        raise InputFileError(f"--out {out} is a file, not a folder: pass a folder path for the report")
    if out.exists() and not overwrite:
        raise InputFileError(
            f"--out {out} already exists: pass --overwrite to replace it whole, or choose a new folder"
        )
    parent = out.resolve().parent
    if not parent.is_dir():
        raise InputFileError(f"--out {out}: folder {parent} does not exist; create it first")


def _swap_in(out: Path, write: Callable[[Path], T]) -> T:
    """Write into a fresh folder beside ``out``, then put it in place of ``out`` whole.

    No file of an older report survives (a stale PDF would disagree with the new evidence),
    and a failed run leaves the old report as it was.
    """
    parent = out.resolve().parent
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=parent))
    except OSError as e:
        raise InputFileError(f"cannot write into {parent}: {e.strerror}; check its permissions") from e
    try:
        result = write(tmp)
        old: Path | None = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            out.rename(old / "report")
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        raise InputFileError(
            f"cannot write the report to {out}: {e.strerror or e}; check the folder's permissions and free space"
        ) from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return result


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
    from node.home import NodeHome
    from reports.render import chromium_path, write_report
    from reports.source import bundle_from_store, find_policy

    if audience not in ("public", "regulator"):
        raise ConfigurationError(f"--audience must be public or regulator, not {audience!r}")
    start = _since(since)
    _check_out(out, overwrite)
    if pdf:
        chromium_path()  # fail before any work when the PDF cannot be printed
    with NodeHome.open(home) as h:
        chain = h.store.roster_chain()
        pol = find_policy(chain.current.roster.policy_digest, explicit=policy, search=[h.path])
        bundle = bundle_from_store(
            h.store,
            key=h.key,
            lab=h.lab,
            policy=pol,
            audience="regulator" if audience == "regulator" else "public",
            since=start,
        )
    result = verify_bundle(bundle)
    vb = result.require()
    files = _swap_in(out, lambda d: write_report(vb, d, report=result, pdf=pdf))
    console.print(f"[bold]status:[/] {vb.analysis.status} (as of {bundle.generated_at})")
    console.print(f"wrote {out / files.html.name}")
    if files.pdf:
        console.print(f"wrote {out / files.pdf.name}")
    console.print(f"wrote {out / files.evidence.name} (sha256 {files.evidence_sha256})")


def _looks_like(path: Path) -> str:
    """``pdf``, ``html`` or ``json`` by content (extensions lie), else ``other``."""
    try:
        with path.open("rb") as f:
            head = f.read(512)
    except OSError as e:
        raise EvidenceError(f"cannot read {path}: {e.strerror}") from e
    if head.startswith(b"%PDF-"):
        return "pdf"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "html"
    if text.startswith(b"{"):
        return "json"
    return "other"


ACCEPTED_INPUTS = "pass evidence.json, report.html, report.pdf or the report folder `tripwire report` wrote"


def _targets(path: Path) -> tuple[Path, Path | None, Path | None, bool]:
    """(evidence.json, report.html or None, report.pdf or None, pdf given explicitly)."""
    if path.is_dir():
        evidence = path / "evidence.json"
        if not evidence.is_file():
            raise EvidenceError(f"{path} holds no evidence.json: {ACCEPTED_INPUTS}")
        html, pdf = path / "report.html", path / "report.pdf"
        return evidence, html if html.is_file() else None, pdf if pdf.is_file() else None, False
    if not path.exists():
        raise EvidenceError(f"cannot read evidence bundle {path}: no such file; {ACCEPTED_INPUTS}")
    kind = _looks_like(path)
    if kind == "json":
        return path, None, None, False
    if kind in ("html", "pdf"):
        evidence = path.parent / "evidence.json"
        if not evidence.is_file():
            raise EvidenceError(
                f"{path} is a report; its evidence.json must sit beside it to verify it (not found in {path.parent})"
            )
        return evidence, path if kind == "html" else None, path if kind == "pdf" else None, kind == "pdf"
    raise EvidenceError(f"{path} is not an evidence bundle or a report: {ACCEPTED_INPUTS}")


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
    from reports.binding import check_html, check_pdf
    from reports.errors import BrowserMissingError
    from reports.render import chromium_path

    if roster is None and require_pin:
        raise ConfigurationError(
            "--require-pin: no --roster given; pass the genesis roster you hold (`tripwire roster export`)"
        )
    evidence, html, pdf, pdf_explicit = _targets(target)
    if pdf_explicit:
        chromium_path()  # checking a PDF prints the expected one: fail early without a browser
    trusted = load_trusted_genesis(roster) if roster else None
    bundle = load_bundle(evidence)
    try:
        evidence_bytes = evidence.read_bytes()
    except OSError as e:
        raise EvidenceError(f"cannot read evidence bundle {evidence}: {e.strerror}") from e
    result = verify_bundle(bundle, trusted)
    checks = list(result.checks)
    if result.ok and html is not None:
        checks.append(check_html(html, result, evidence_bytes))
    if result.ok and pdf is not None:
        try:
            checks.append(check_pdf(pdf, result, evidence_bytes))
        except BrowserMissingError:
            if pdf_explicit:
                raise
            checks.append(Check("report pdf", "skip", "not checked: needs Chromium (the HTML was checked)"))
    full = VerificationReport(tuple(checks))
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
