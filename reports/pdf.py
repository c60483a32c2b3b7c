"""Printing a report to PDF with headless Chromium (a subprocess with its own profile)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from reports.errors import BrowserMissingError, RenderError


def chromium_path() -> str:
    """Headless Chromium: $TRIPWIRE_CHROMIUM, else ``chromium`` / ``chromium-browser`` on PATH."""
    explicit = os.environ.get("TRIPWIRE_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise BrowserMissingError(
        "headless Chromium is needed to print the PDF; install it (Debian: apt-get install chromium, "
        "or scripts/ensure-chromium.sh) or pass --no-pdf"
    )


def chromium_args(profile: str) -> list[str]:
    # No network, no extensions, no first-run work: the report is a local, self-contained file.
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-extensions",
        "--disable-background-networking",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
    ]


def print_pdf(html_path: Path, pdf_path: Path, *, timeout: float = 900.0) -> None:
    """Print ``html_path`` to ``pdf_path`` with headless Chromium (print CSS applies)."""
    exe = chromium_path()
    with tempfile.TemporaryDirectory(prefix="tripwire-chromium-") as profile:
        cmd = [
            exe,
            *chromium_args(profile),
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf_path}",
            html_path.resolve().as_uri(),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as e:
            raise RenderError(f"Chromium did not finish printing within {timeout:.0f} s") from e
    if proc.returncode != 0 or not pdf_path.exists() or pdf_path.stat().st_size == 0:
        tail = proc.stderr.decode("utf-8", "replace")[-500:]
        raise RenderError(f"Chromium failed to print the PDF (exit {proc.returncode}): {tail}")
