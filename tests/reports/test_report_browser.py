"""Reports in real headless Chromium: no console errors, no peer script runs, PDF pages.

Needs Debian's ``chromium`` (scripts/ensure-chromium.sh installs it; `make test` calls it).
Artifacts (first-page screenshot, PDF) are kept under test-artifacts/ for people to look at.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from pypdf import PdfReader

from reports.bundle import VerificationReport
from reports.pdf import chromium_args
from reports.render import render_html, write_report

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = pytest.mark.browser


def _chromium() -> str:
    from reports.errors import BrowserMissingError
    from reports.pdf import chromium_path

    try:
        return chromium_path()
    except BrowserMissingError:
        if os.environ.get("TRIPWIRE_REQUIRE_BROWSER") or os.environ.get("CI"):
            raise
        pytest.skip("headless Chromium is not installed (run scripts/ensure-chromium.sh)")


def _run(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    exe = _chromium()
    with tempfile.TemporaryDirectory(prefix="tw-test-chromium-") as profile:
        return subprocess.run(
            [exe, *chromium_args(profile), "--enable-logging=stderr", "--v=0", *extra, url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def _tags(dom: str) -> list[tuple[str, list[str]]]:
    """Elements and attribute names of the DOM Chromium built (not of our source text)."""
    out: list[tuple[str, list[str]]] = []

    class P(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            out.append((tag, [a for a, _ in attrs]))

    P().feed(dom)
    return out


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line]


@pytest.fixture(scope="module")
def hostile_file(hostile_verified: VerificationReport, tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert hostile_verified.verified is not None
    html = render_html(hostile_verified.verified, report=hostile_verified)
    # Take the Content-Security-Policy out so that escaping alone is under test.
    stripped = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    assert stripped != html
    path = tmp_path_factory.mktemp("hostile") / "report.html"
    path.write_text(stripped, encoding="utf-8")
    return path


def test_console_capture_works(tmp_path: Path) -> None:
    # Positive control: a page that does log is seen, so silence below means something.
    page = tmp_path / "control.html"
    page.write_text("<!doctype html><script>console.log('TRIPWIRE-CONTROL')</script>", encoding="utf-8")
    proc = _run(page.as_uri(), "--dump-dom")
    assert any("TRIPWIRE-CONTROL" in line for line in _console(proc.stderr)), proc.stderr[-2000:]


def test_hostile_report_runs_no_script_and_logs_nothing(hostile_file: Path) -> None:
    proc = _run(hostile_file.as_uri(), "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert "Tripwire capability report" in dom
    assert "TRIPWIRE-XSS" not in "".join(_console(proc.stderr))
    assert _console(proc.stderr) == [], _console(proc.stderr)
    tags = _tags(dom)
    assert not {t for t, _ in tags} & {"script", "img", "iframe", "object", "embed"}
    handlers = [(t, a) for t, attrs in tags for a in attrs if a.lower().startswith("on")]
    assert handlers == [], handlers[:3]
    # The hostile strings are on the page as text.
    assert "&lt;img src=x onerror=" in dom


def test_screenshot_of_first_page(verified: VerificationReport, tmp_path: Path) -> None:
    assert verified.verified is not None
    page = tmp_path / "report.html"
    page.write_text(render_html(verified.verified, report=verified), encoding="utf-8")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-first-page.png"
    shot.unlink(missing_ok=True)
    proc = _run(page.as_uri(), f"--screenshot={shot}", "--window-size=1100,1500", "--hide-scrollbars")
    assert proc.returncode == 0 and shot.exists() and shot.stat().st_size > 20_000, proc.stderr[-2000:]
    assert _console(proc.stderr) == []


def test_pdf_has_the_expected_pages(verified: VerificationReport) -> None:
    _chromium()
    assert verified.verified is not None
    out = ARTIFACTS / "report"
    files = write_report(verified.verified, out, report=verified, pdf=True)
    assert files.pdf is not None
    reader = PdfReader(str(files.pdf))
    pages = [(p.extract_text() or "").replace("\ufb01", "fi") for p in reader.pages]
    assert 6 <= len(pages) <= 40, len(pages)
    first = pages[0]
    assert "Status: PAUSED" in first and "Summary" in first
    assert "What happens next" in " ".join(" ".join(pages[:2]).split())
    # Print CSS starts the appendices on fresh pages.
    # Each page opens with its running header and page number (test_report_a11y checks them).
    bodies = [re.sub(r"\ATripwire report[^\n]*\nPage \d+ of \d+\n", "", t) for t in pages]
    starts = [i for i, t in enumerate(bodies) if t.lstrip().startswith("Verification appendix")]
    assert starts, "the verification appendix starts a page"
    assert any("Appendix: signed documents cited" in t for t in pages[starts[0] :])
    assert all(p.mediabox.width < p.mediabox.height for p in reader.pages)  # A4 portrait
