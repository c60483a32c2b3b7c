"""Where a node home keeps the threshold policy it applies, and the check that it is the adopted one.

A home holds exactly one policy document, ``DIR/policy.yaml`` (or ``DIR/policy.json``),
copied byte for byte from the file the labs agreed on. The roster pins the policy's
digest (spec §7: ``policy_digest``); every time the node loads the file it recomputes
the digest and refuses a mismatch, so a node can never judge results by rules the
network did not adopt. A roster update that adopts a new policy therefore needs the new
file installed (``tripwire policy install FILE --home DIR``) before verdicts resume.
"""

from __future__ import annotations

import os
from pathlib import Path

from protocol.errors import ConfigurationError, PolicyError
from protocol.policy import Policy

POLICY_FILES = ("policy.yaml", "policy.json")


class PolicyFileError(ConfigurationError):
    """The home's policy file is missing, unreadable or not a valid policy."""

    code = "policy-file"


class PolicyMismatchError(ConfigurationError):
    """The home's policy is not the one the roster adopts (its digest differs)."""

    code = "policy-mismatch"


def policy_path(home_dir: str | os.PathLike[str]) -> Path | None:
    """The home's policy file, or None when none is installed."""
    for name in POLICY_FILES:
        p = Path(home_dir) / name
        if p.is_file():
            return p
    return None


def parse_policy_file(path: str | os.PathLike[str]) -> Policy:
    """Read and validate a policy file (YAML, or JSON by its ``.json`` suffix)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise PolicyFileError(f"cannot read policy {p}: {e.strerror or e}") from e
    try:
        if p.suffix == ".json":
            return Policy.from_json(data)
        return Policy.from_yaml(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise PolicyFileError(f"policy {p} is not UTF-8 text") from e
    except PolicyError as e:
        raise PolicyFileError(f"policy {p} is invalid: {e.message}") from e


def load_policy(home_dir: str | os.PathLike[str], expected_digest: str | None) -> Policy:
    """The home's policy, checked against ``expected_digest`` (the roster's ``policy_digest``).

    Raises :class:`PolicyFileError` when no valid policy is installed and
    :class:`PolicyMismatchError` when its digest is not the adopted one.
    """
    p = policy_path(home_dir)
    if p is None:
        raise PolicyFileError(
            f"no threshold policy in {home_dir} (expected {' or '.join(POLICY_FILES)}): install the "
            "policy the roster adopts with `tripwire policy install FILE --home DIR`"
        )
    policy = parse_policy_file(p)
    if expected_digest is not None and policy.digest != expected_digest:
        raise PolicyMismatchError(
            f"the policy in {p} has digest {policy.digest} but the roster adopts {expected_digest}: "
            "install the adopted policy with `tripwire policy install FILE --home DIR`"
        )
    return policy


def install_policy(
    home_dir: str | os.PathLike[str], source: str | os.PathLike[str], *, expected_digest: str | None = None
) -> Policy:
    """Copy ``source`` into the home as its policy (byte for byte) after validating it.

    With ``expected_digest`` (the roster's), a different policy is refused and nothing is
    written. Any previously installed policy file is replaced atomically.
    """
    src = Path(source)
    policy = parse_policy_file(src)
    if expected_digest is not None and policy.digest != expected_digest:
        raise PolicyMismatchError(
            f"policy {src} has digest {policy.digest} but the roster adopts {expected_digest}; not installed"
        )
    name = "policy.json" if src.suffix == ".json" else "policy.yaml"
    home = Path(home_dir)
    target = home / name
    tmp = home / (name + ".tmp")
    try:
        tmp.write_bytes(src.read_bytes())
        os.replace(tmp, target)
        for other in POLICY_FILES:
            if other != name:
                (home / other).unlink(missing_ok=True)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise PolicyFileError(f"cannot install policy into {home}: {e.strerror or e}") from e
    return policy


__all__ = [
    "POLICY_FILES",
    "PolicyFileError",
    "PolicyMismatchError",
    "install_policy",
    "load_policy",
    "parse_policy_file",
    "policy_path",
]
