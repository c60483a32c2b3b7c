"""Errors of the node layer, in the protocol's families (by whose fault).

A home that already exists, a missing home, an unreadable ``node.toml`` or a database the
node cannot use are the operator's to fix (:class:`~protocol.errors.ConfigurationError`,
exit code 2). Data offered by someone else that breaks the rules keeps its protocol
error (:class:`~protocol.errors.PeerDataError`, exit code 3). Only the CLI and HTTP edge
turn these into exit and status codes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocol.errors import ConfigurationError, PeerDataError, RosterError

if TYPE_CHECKING:
    from pydantic import ValidationError


class HomeExistsError(ConfigurationError):
    """``init`` was pointed at a directory that already holds a node home."""

    code = "home-exists"


class HomeNotFoundError(ConfigurationError):
    """The directory is not a node home (no ``node.toml``)."""

    code = "home-not-found"


class ConfigFileError(ConfigurationError):
    """``node.toml`` cannot be read, is not TOML, or has invalid or unknown settings."""

    code = "config"


class TLSConfigError(ConfigFileError):
    """A ``[tls]`` file is missing, unreadable or unusable (key not matching the
    certificate, certificate expired or not yet valid)."""

    code = "tls-config"


class StoreError(ConfigurationError):
    """The node's database cannot be used (unreachable, locked too long, newer schema)."""

    code = "store"


class SchemaVersionError(StoreError):
    """The database was migrated by a newer Tripwire than this one."""

    code = "store-schema"


class NoRosterError(ConfigurationError):
    """The node has no roster installed yet (run ``tripwire roster install``)."""

    code = "no-roster"
    http_status = 503
    remediation = "install the network's genesis roster: tripwire roster install FILE --home DIR"


class NetworkMismatchError(ConfigurationError):
    """A second, different genesis roster was offered to a node already on a network."""

    code = "network-mismatch"


class RosterMismatchError(RosterError):
    """Roster envelopes to combine carry different payloads (different drafts)."""

    code = "roster-mismatch"


class InputFileError(ConfigurationError):
    """A file given on the command line is missing or not the expected JSON/YAML document."""

    code = "input-file"


__all__ = [
    "ConfigFileError",
    "HomeExistsError",
    "HomeNotFoundError",
    "InputFileError",
    "NetworkMismatchError",
    "NoRosterError",
    "RosterMismatchError",
    "SchemaVersionError",
    "StoreError",
    "TLSConfigError",
]


class MissingExtraError(ConfigurationError):
    """A command needs an optional part of the install (an extra such as ``evals``) that is missing."""

    code = "missing-extra"


class EntryNotFoundError(PeerDataError):
    """A request names an entry (or log position) this node does not hold."""

    code = "not-found"


__all__ += ["EntryNotFoundError", "MissingExtraError"]


# --- request authentication (node.net.auth) -----------------------------------------------


class AuthError(PeerDataError):
    """A request could not be authenticated or is not allowed (HTTP 401/403): the caller's
    request is at fault, in the bad-data family."""

    code = "unauthenticated"
    status = 401
    http_status = 401
    remediation = "sign the request (RFC 9421) with a current roster member's or observer's key, for this node's address"


class UnsignedRequestError(AuthError):
    """The request carries no RFC 9421 signature."""

    code = "unsigned-request"


class BadRequestSignatureError(AuthError):
    """The signature is malformed, covers too little, or does not verify."""

    code = "bad-request-signature"


class UncheckableComponentError(BadRequestSignatureError):
    """The signature covers a component this node cannot check (named in the message)."""

    code = "uncheckable-signature-component"


class MisdirectedRequestError(BadRequestSignatureError):
    """The signature binds the request to another node (its covered ``@authority`` is not
    a name this node answers as): a request captured elsewhere and replayed here."""

    code = "misdirected-request"


class UnknownRequestKeyError(AuthError):
    """The signature's keyid is not a key of any member of the current roster."""

    code = "unknown-request-key"


class StaleRequestError(AuthError):
    """``created`` lies outside the accepted clock-skew window (too old or in the future)."""

    code = "stale-request"


class ReplayedRequestError(AuthError):
    """The (keyid, nonce) pair was already used inside the acceptance window."""

    code = "replayed-request"


class ForbiddenError(AuthError):
    """Authenticated, but the caller's role does not allow this request."""

    code = "forbidden"
    status = 403
    http_status = 403
    remediation = "this request needs another role (a member's key, not an observer's): see the roster"


__all__ += [
    "AuthError",
    "BadRequestSignatureError",
    "ForbiddenError",
    "MisdirectedRequestError",
    "ReplayedRequestError",
    "StaleRequestError",
    "UncheckableComponentError",
    "UnknownRequestKeyError",
    "UnsignedRequestError",
]


def config_section_error(section: str, e: ValidationError) -> ConfigurationError:
    """A settings section that failed validation, as ``<section> <field>: <problem>`` (the first problem)."""
    err = e.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err["loc"])
    return ConfigurationError(f"{section} {loc}: {err['msg']}", code="config")


__all__ += ["config_section_error"]
