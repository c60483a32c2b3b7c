"""Check a rendered report against its evidence bundle (specs/evidence.md §7.1).

Rendering is deterministic: the same bundle always gives the same HTML bytes (the time
shown is the bundle's ``generated_at``, the verification appendix is that of an unpinned
check). So :func:`check_html` re-renders the verified bundle and compares byte for byte:
any edit, a number, a word or the footer's digest, is a difference.

For the PDF, :func:`check_pdf` prints the re-rendered print version with headless
Chromium and compares the text of both PDFs (pypdf), whitespace removed. Text, not bytes:
PDF bytes carry creation dates and object ids; text is what a reader reads. An embedded
digest of the HTML was rejected: it proves only what the PDF says about itself, not what
it shows, so an edited page with the digest kept would pass. When the PDF is byte for byte
the fresh print except for the two dates of its information dictionary (the same Chromium
printed it), its text is that of the fresh print without extracting either (pypdf takes
seconds on a long report).
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tempfile
from dataclasses import replace
from pathlib import Path

from reports.bundle import UNPINNED, Check, TrustedRoster, VerificationReport, VerifiedBundle
from reports.errors import RenderError

_SPACE = re.compile(r"\s+")
#: The creation and modification dates Chromium writes into a PDF's information dictionary.
_PDF_DATES = re.compile(rb"/(?:CreationDate|ModDate) \(D:[0-9Z+'-]{0,32}\)")


def as_generated(report: VerificationReport) -> tuple[VerifiedBundle, VerificationReport]:
    """The verified bundle and checks as ``tripwire report`` rendered them (unpinned)."""
    vb = replace(report.require(), pinned=False)
    checks = tuple(Check("roster pin", "skip", UNPINNED) if c.name == "roster pin" else c for c in report.checks)
    return vb, VerificationReport(checks, vb)


def _first_difference(a: str, b: str, what: str) -> str:
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    lo = max(i - 40, 0)
    return (
        f"{what} differs from the report re-rendered from the verified evidence at character {i}: "
        f"the file has {a[lo : i + 40]!r}, the evidence gives {b[lo : i + 40]!r}"
    )


def expected_html(report: VerificationReport, evidence_bytes: bytes, *, for_print: bool = False) -> str:
    from reports.render import render_html

    vb, rep = as_generated(report)
    digest = hashlib.sha256(evidence_bytes).hexdigest()
    return render_html(vb, report=rep, bundle_sha256=digest, for_print=for_print)


def check_html(html_path: Path, report: VerificationReport, evidence_bytes: bytes) -> Check:
    """Byte comparison of ``html_path`` with the report the verified bundle renders to."""
    try:
        given = html_path.read_bytes()
    except OSError as e:
        return Check("report html", "fail", f"cannot read {html_path}: {e.strerror}")
    want = expected_html(report, evidence_bytes).encode("utf-8")
    if given == want:
        return Check("report html", "pass", f"{html_path.name} is exactly the report this evidence renders to")
    msg = _first_difference(given.decode("utf-8", "replace"), want.decode("utf-8"), html_path.name)
    return Check("report html", "fail", msg, (msg,))


def pdf_text(data: bytes) -> str:
    """All text of a PDF, whitespace removed (line breaks depend on layout, not content)."""
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        text = "".join(page.extract_text() or "" for page in reader.pages)
    except (PdfReadError, ValueError, KeyError) as e:
        raise RenderError(f"not a readable PDF: {e}") from e
    return _SPACE.sub("", text)


def same_pdf_but_dates(given: bytes, printed: bytes) -> bool:
    """Whether ``given`` is byte for byte ``printed`` (a fresh Chromium print) except inside
    the spans where ``printed`` carries its creation and modification dates.

    Everything a reader sees (content streams, fonts, cross-references) lies outside those
    spans of the information dictionary, so equal bytes there mean equal text.
    """
    spans = [m.span() for m in _PDF_DATES.finditer(printed)]
    if len(given) != len(printed) or len(spans) != 2:
        return False
    if any(_PDF_DATES.fullmatch(given, a, b) is None for a, b in spans):
        return False
    edges = [0, *(x for span in spans for x in span), len(printed)]
    return all(given[a:b] == printed[a:b] for a, b in zip(edges[::2], edges[1::2], strict=True))


def check_pdf(pdf_path: Path, report: VerificationReport, evidence_bytes: bytes) -> Check:
    """Compare the PDF's text with that of a fresh print of the verified report (needs Chromium)."""
    from reports.pdf import print_pdf

    try:
        data = pdf_path.read_bytes()
    except OSError as e:
        return Check("report pdf", "fail", f"cannot read {pdf_path}: {e.strerror}")

    def unreadable() -> Check | None:
        try:
            pdf_text(data)
        except RenderError as e:
            return Check("report pdf", "fail", f"{pdf_path.name}: {e.message}")
        return None

    with tempfile.TemporaryDirectory(prefix="tripwire-verify-") as tmp:
        # Printed from the name write_report prints from, so the document's links match.
        src = Path(tmp) / ".report.print.html"
        src.write_text(expected_html(report, evidence_bytes, for_print=True), encoding="utf-8")
        out = Path(tmp) / "expected.pdf"
        try:
            print_pdf(src, out)
        except Exception:
            # An unreadable PDF fails before (and without) a browser, as it always did.
            failed = unreadable()
            if failed is not None:
                return failed
            raise
        printed = out.read_bytes()
    same = Check("report pdf", "pass", f"{pdf_path.name}'s text is exactly that of the report this evidence renders to")
    if same_pdf_but_dates(data, printed):
        return same
    try:
        given = pdf_text(data)
    except RenderError as e:
        return Check("report pdf", "fail", f"{pdf_path.name}: {e.message}")
    want = pdf_text(printed)
    if given == want:
        return same
    ratio = difflib.SequenceMatcher(None, given[:20000], want[:20000], autojunk=False).quick_ratio()
    msg = _first_difference(given, want, f"{pdf_path.name} (text, spaces removed)")
    if ratio > 0.5:
        msg += " (if your Chromium is another version than the producer's, check report.html instead)"
    return Check("report pdf", "fail", msg, (msg,))


# --- what a reader points `tripwire verify` at -------------------------------------------------

ACCEPTED_INPUTS = "pass evidence.json, report.html, report.pdf or the report folder `tripwire report` wrote"


def _looks_like(path: Path) -> str:
    """``pdf``, ``html`` or ``json`` by content (extensions lie), else ``other``."""
    from reports.errors import EvidenceError

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


def report_targets(path: Path) -> tuple[Path, Path | None, Path | None, bool]:
    """(evidence.json, report.html or None, report.pdf or None, pdf given explicitly)."""
    from reports.errors import EvidenceError

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


def verify_target(target: Path, trusted: TrustedRoster | None = None) -> VerificationReport:
    """Every check of ``tripwire verify TARGET``: the bundle (pinned to ``trusted`` when
    given), then the HTML and PDF beside it re-rendered and compared.

    A PDF found in a report folder is skipped, not failed, without Chromium (the HTML was
    checked); a PDF named explicitly needs Chromium (:class:`BrowserMissingError`)."""
    from reports.bundle import load_bundle, verify_bundle
    from reports.errors import BrowserMissingError, EvidenceError
    from reports.pdf import chromium_path

    evidence, html, pdf, pdf_explicit = report_targets(target)
    if pdf_explicit:
        chromium_path()  # checking a PDF prints the expected one: fail early without a browser
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
    return VerificationReport(tuple(checks))
