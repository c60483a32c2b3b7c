"""Where the shipped specification data lives: policies, suites, eval tasks, schemas, openapi.json.

The repository keeps that data in the top-level ``specs/`` folder; a wheel ships the same
files as the data package ``tripwire_specs`` (a setuptools ``package-dir`` mapping, see
docs/adr/0009-specs-as-package-data.md). Every module that needs one of those files asks
:func:`specs_dir` instead of walking up from its own ``__file__``, so a wheel install finds
them as a source checkout does.

A source checkout's own ``specs/`` (next to the ``node`` package) wins over an installed
``tripwire_specs``: a developer editing a policy or a suite must read the edited copy, not
whatever an older install put on the path.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.resources
from pathlib import Path

from node.errors import InputFileError

__all__ = ["SPECS_PACKAGE", "packaged_suites", "spec_path", "specs_dir"]

SPECS_PACKAGE = "tripwire_specs"
# A folder is the specs folder only if it holds these (a stray ``specs/`` elsewhere does not count).
_MARKERS = ("protocol.md", "policies", "suites", "schemas")


def _is_specs(d: Path) -> bool:
    return all((d / m).exists() for m in _MARKERS)


@functools.cache
def specs_dir() -> Path:
    """The specs folder as a real directory (suites name their task files by relative path)."""
    checkout = Path(__file__).resolve().parents[2] / "specs"
    if _is_specs(checkout):
        return checkout
    try:
        # A data-only package is a namespace package: its files() is a MultiplexedPath, which
        # as_file cannot turn into a folder before Python 3.12, so locate a marker file in it.
        marker = importlib.resources.files(SPECS_PACKAGE).joinpath("protocol.md")
    except (ModuleNotFoundError, NotADirectoryError):
        # Not installed; or an editable install's namespace placeholder (Python 3.11), whose
        # checkout was already looked at above.
        marker = None
    if marker is not None and marker.is_file():
        # Installed wheels are unpacked, so this is the file itself, kept for the process.
        stack = contextlib.ExitStack()
        atexit.register(stack.close)
        path = Path(stack.enter_context(importlib.resources.as_file(marker))).parent
        if _is_specs(path):
            return path
    raise InputFileError(
        "the specification data (policies, suites, schemas) is missing: neither a source checkout's "
        f"specs/ nor the installed package {SPECS_PACKAGE!r} was found; reinstall tripwire"
    )


def spec_path(*parts: str) -> Path:
    """A file under the specs folder, e.g. ``spec_path("policies", "demo.yaml")``."""
    return specs_dir().joinpath(*parts)


def packaged_suites() -> list[Path]:
    """The suite files shipped with this install, sorted by name."""
    return sorted(specs_dir().joinpath("suites").glob("*.yaml"))
