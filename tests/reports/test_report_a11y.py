"""The report for every reader, checked in real headless Chromium over the DevTools protocol.

axe-core (WCAG 2.0–2.2 A/AA and best practice) runs inside the rendered page at phone and
desktop width; the page must never scroll sideways at 390, 768 or 1366 px; the PDF carries
page numbers and a running header. Chromium is Debian's (scripts/ensure-chromium.sh); axe-core
is fetched once into a cache folder by scripts/ensure-axe-core.sh with the machine's npm.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from reports.bundle import VerificationReport
from reports.pdf import chromium_args
from reports.render import render_html, write_report

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"

pytestmark = pytest.mark.browser

WIDTHS = {"phone": 390, "tablet": 768, "desktop": 1366}
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa", "best-practice"]


def _required() -> bool:
    return bool(os.environ.get("TRIPWIRE_REQUIRE_BROWSER") or os.environ.get("CI"))


def _chromium() -> str:
    from reports.errors import BrowserMissingError
    from reports.pdf import chromium_path

    try:
        return chromium_path()
    except BrowserMissingError:
        if _required():
            raise
        pytest.skip("headless Chromium is not installed (run scripts/ensure-chromium.sh)")


class Browser:
    """Headless Chromium driven over ``--remote-debugging-pipe`` (no port, no extra package).

    Messages are JSON, each ended by a NUL byte: commands go in on the child's fd 3, answers
    and events come back on its fd 4. Every wait is for a named answer or event.
    """

    def __init__(self, exe: str, profile: str) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def fds() -> None:  # in the child, before exec: the pipe ends at the fds Chromium reads
            # Lifted above 4 first, so that neither end can be overwritten by the other's dup2.
            high_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [exe, *chromium_args(profile), "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=fds,
            pass_fds=(3, 4),  # kept open past preexec_fn; every other fd is closed
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buf:
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        msg: dict[str, Any] = json.loads(raw)
        return msg

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        while True:
            got = self._read()
            if got.get("id") == self._next:
                if "error" in got:
                    raise RuntimeError(f"{method}: {got['error']}")
                return got.get("result", {})
            self.events.append(got)

    def wait_event(self, method: str, session: str) -> dict[str, Any]:
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("method") == method and ev.get("sessionId") == session:
                    return self.events.pop(i)
            self.events.append(self._read())

    def open(self, url: str, width: int, height: int = 900) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.send("Page.enable")
        # The report forbids every script (CSP); the test's own code is let in, the page's is not.
        page.send("Page.setBypassCSP", {"enabled": True})
        page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 700},
        )
        self.events.clear()
        page.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired", session)
        return page

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except RuntimeError:
            pass
        self.proc.wait(timeout=30)
        os.close(self._to_child)
        os.close(self._from_child)


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def send(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return self.browser.send(method, params, self.session)

    def eval(self, expression: str) -> Any:
        got = self.send(
            "Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True}
        )
        if "exceptionDetails" in got:
            raise RuntimeError(got["exceptionDetails"])
        return got["result"].get("value")

    def screenshot(self, path: Path, *, full_height: int | None = None, clip: dict[str, float] | None = None) -> None:
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": True}
        if clip is not None:
            params["clip"] = {**clip, "scale": 1}
        elif full_height is not None:
            width = self.eval("document.documentElement.clientWidth")
            params["clip"] = {"x": 0, "y": 0, "width": width, "height": full_height, "scale": 1}
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", params)["data"]))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    exe = _chromium()
    with tempfile.TemporaryDirectory(prefix="tw-a11y-chromium-") as profile:
        b = Browser(exe, profile)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def axe_source() -> str:
    script = REPO / "scripts" / "ensure-axe-core.sh"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        if _required():
            pytest.fail(f"axe-core is not available: {proc.stderr[-1000:]}")
        pytest.skip(f"axe-core is not available (scripts/ensure-axe-core.sh): {proc.stderr[-300:]}")
    return Path(proc.stdout.strip().splitlines()[-1]).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def report_file(verified: VerificationReport, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("a11y") / "report.html"
    path.write_text(render_html(verified.require(), report=verified), encoding="utf-8")
    return path


def _axe(page: Page, source: str) -> list[dict[str, Any]]:
    page.eval(source + "\n;true")
    options = json.dumps({"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]})
    run = (
        f"axe.run(document, {options}).then(r => r.violations.map(v => ({{id: v.id, impact: v.impact,"
        " help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})))"
    )
    out: list[dict[str, Any]] = page.eval(run)
    return out


def test_axe_no_violations_phone(browser: Browser, axe_source: str, report_file: Path) -> None:
    page = browser.open(report_file.as_uri(), WIDTHS["phone"])
    assert page.eval("typeof axe") == "undefined"  # the page itself runs nothing
    violations = _axe(page, axe_source)
    assert violations == [], json.dumps(violations, indent=1)


def test_axe_no_violations_desktop(browser: Browser, axe_source: str, report_file: Path) -> None:
    page = browser.open(report_file.as_uri(), WIDTHS["desktop"])
    violations = _axe(page, axe_source)
    assert violations == [], json.dumps(violations, indent=1)


def test_axe_finds_a_planted_violation(browser: Browser, axe_source: str, tmp_path: Path) -> None:
    # Positive control: the harness does report violations, so an empty list above means something.
    bad = tmp_path / "bad.html"
    bad.write_text('<!doctype html><html lang="en"><title>x</title><main><img src="data:,"></main>', "utf-8")
    page = browser.open(bad.as_uri(), WIDTHS["phone"])
    assert "image-alt" in {v["id"] for v in _axe(page, axe_source)}


@pytest.fixture(scope="module")
def hostile_report_file(hostile_verified: VerificationReport, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Lab names thousands of characters long without a space, right-to-left overrides, markup.
    path = tmp_path_factory.mktemp("a11y-hostile") / "report.html"
    path.write_text(render_html(hostile_verified.require(), report=hostile_verified), encoding="utf-8")
    return path


@pytest.mark.parametrize("which", ["demo", "hostile"])
@pytest.mark.parametrize("width", list(WIDTHS.values()), ids=list(WIDTHS))
def test_no_horizontal_overflow(
    browser: Browser, report_file: Path, hostile_report_file: Path, width: int, which: str
) -> None:
    page = browser.open((report_file if which == "demo" else hostile_report_file).as_uri(), width)
    sizes = page.eval(
        "({scroll: document.documentElement.scrollWidth, inner: window.innerWidth,"
        " wide: [...document.querySelectorAll('main *, header *, footer *')]"
        ".filter(e => e.getBoundingClientRect().right > window.innerWidth + 1"
        " && !e.closest('.scroll')).slice(0, 5).map(e => e.tagName + '.' + e.className)})"
    )
    assert sizes["scroll"] <= sizes["inner"] == width, sizes


def test_pdf_has_page_numbers(verified: VerificationReport) -> None:
    _chromium()
    out = ARTIFACTS / "report-paged"
    files = write_report(verified.require(), out, report=verified, pdf=True)
    assert files.pdf is not None
    pages = [(p.extract_text() or "") for p in PdfReader(str(files.pdf)).pages]
    total = len(pages)
    assert total >= 4
    network = verified.require().analysis.chain.current.roster.network_name
    for i, text in enumerate(pages, start=1):
        assert f"Page {i} of {total}" in text, text[:200]
        assert "Tripwire report" in text and network in text  # the running header


def test_screenshots_at_phone_and_desktop_width(browser: Browser, report_file: Path) -> None:
    # For people to look at (docs/images holds copies): the first screen at phone and desktop
    # width, and the first chart.
    ARTIFACTS.mkdir(exist_ok=True)
    for name, width, height in (("phone", 390, 844), ("desktop", 1366, 900)):
        page = browser.open(report_file.as_uri(), width, height)
        shot = ARTIFACTS / f"report-{name}.png"
        page.screenshot(shot, full_height=height)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    page = browser.open(report_file.as_uri(), 1366)
    box = page.eval(
        "(() => { const r = document.querySelector('figure.chart').getBoundingClientRect();"
        " return {x: r.left, y: r.top + window.scrollY, width: r.width, height: r.height}; })()"
    )
    assert box["width"] > 300 and box["height"] > 200, box
    chart = ARTIFACTS / "report-chart.png"
    page.screenshot(chart, clip=box)
    assert chart.stat().st_size > 20_000
