"""A node's report, written from its home: the evidence bundle, verified, then rendered.

The CLI's ``tripwire report`` and the demo both call :func:`write_home_report`; it checks
``out`` before any work, builds the bundle from the store (``reports.source``), verifies
it (``reports.bundle``), renders from the verified bundle only (``reports.render``) into a
fresh folder and swaps that in whole, so a failed run leaves an older report as it was.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from node.errors import InputFileError
from protocol.errors import ConfigurationError

T = TypeVar("T")


@dataclass(frozen=True)
class WrittenReport:
    """What :func:`write_home_report` wrote."""

    status: str
    """The network's status the report states (``clear``, ``paused``, ...)."""
    generated_at: str
    """RFC 3339 time the bundle was built."""
    html: Path
    pdf: Path | None
    evidence: Path
    evidence_sha256: str


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse a bad ``out`` before any work (one line, saying what to do)."""
    if out.exists() and not out.is_dir():
        raise InputFileError(f"--out {out} is a file, not a folder: pass a folder path for the report")
    if out.exists() and not overwrite:
        raise InputFileError(
            f"--out {out} already exists: pass --overwrite to replace it whole, or choose a new folder"
        )
    parent = out.resolve().parent
    if not parent.is_dir():
        raise InputFileError(f"--out {out}: folder {parent} does not exist; create it first")


def swap_in(out: Path, write: Callable[[Path], T]) -> T:
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


def write_home_report(
    home: Path,
    out: Path,
    *,
    audience: Literal["public", "regulator"] = "public",
    policy: Path | None = None,
    since: datetime | None = None,
    pdf: bool = True,
    overwrite: bool = False,
) -> WrittenReport:
    """Render the node's report (HTML, and PDF with ``pdf``) and its evidence bundle into ``out``."""
    from node.home import NodeHome
    from node.home.resources import spec_path
    from reports.bundle import verify_bundle
    from reports.pdf import chromium_path
    from reports.render import write_report
    from reports.source import bundle_from_store, find_policy

    if audience not in ("public", "regulator"):
        raise ConfigurationError(f"--audience must be public or regulator, not {audience!r}")
    check_out(out, overwrite)
    if pdf:
        chromium_path()  # fail before any work when the PDF cannot be printed
    with NodeHome.open(home) as h:
        chain = h.store.roster_chain()
        pol = find_policy(chain.current.roster.policy_digest, explicit=policy, search=[h.path, spec_path("policies")])
        bundle = bundle_from_store(h.store, key=h.key, lab=h.lab, policy=pol, audience=audience, since=since)
    result = verify_bundle(bundle)
    vb = result.require()
    files = swap_in(out, lambda d: write_report(vb, d, report=result, pdf=pdf))

    def moved(p: Any) -> Path:
        return out / Path(p).name

    return WrittenReport(
        status=str(vb.analysis.status),
        generated_at=str(bundle.generated_at),
        html=moved(files.html),
        pdf=moved(files.pdf) if files.pdf else None,
        evidence=moved(files.evidence),
        evidence_sha256=files.evidence_sha256,
    )
