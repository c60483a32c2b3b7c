"""Reports: evidence bundles that verify offline, and documents rendered only from them.

Flow: :func:`build_bundle` (or :func:`bundle_from_store` for a node) -> :func:`verify_bundle`
-> :func:`render_html` / :func:`write_report`. Format: specs/evidence.md.
"""

from reports.bundle import (
    EvidenceBundle,
    LogProver,
    VerificationReport,
    VerifiedBundle,
    build_bundle,
    evidence_json_schema,
    load_bundle,
    load_trusted_genesis,
    parse_bundle,
    select_entries,
    verify_bundle,
)
from reports.errors import BrowserMissingError, EvidenceError, RenderError
from reports.pdf import print_pdf
from reports.render import render_html, write_report
from reports.source import bundle_from_store, find_policy

__all__ = [
    "BrowserMissingError",
    "EvidenceBundle",
    "EvidenceError",
    "LogProver",
    "RenderError",
    "VerificationReport",
    "VerifiedBundle",
    "build_bundle",
    "bundle_from_store",
    "evidence_json_schema",
    "find_policy",
    "load_bundle",
    "load_trusted_genesis",
    "parse_bundle",
    "print_pdf",
    "render_html",
    "select_entries",
    "verify_bundle",
    "write_report",
]
