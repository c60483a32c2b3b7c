"""Errors of the reports layer, in the protocol's families (by whose fault).

A bundle that fails verification is bad data (:class:`EvidenceError`, a
:class:`~protocol.errors.PeerDataError`); a renderer asked to show a number the bundle
does not claim is a bug in the caller (:class:`RenderError`); a missing browser for the
PDF is local configuration (:class:`BrowserMissingError`).
"""

from __future__ import annotations

from protocol.errors import ConfigurationError, InternalError, PeerDataError


class EvidenceError(PeerDataError):
    """An evidence bundle is malformed or does not verify."""

    code = "bad-evidence"


class RenderError(InternalError):
    """A report could not be rendered from the verified bundle: the renderer asked for a
    number the bundle does not claim (a bug; the claim guard refuses to print it)."""

    code = "render"


class BrowserMissingError(ConfigurationError):
    """Headless Chromium, needed to print the PDF, is not installed."""

    code = "browser-missing"
    remediation = "install Chromium (Debian: apt-get install chromium, or scripts/ensure-chromium.sh) or pass --no-pdf"
