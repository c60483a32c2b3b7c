"""Build a whole network of node homes in one call (tests, benchmarks, the demo).

``create_network`` does what the operator guide's roster ceremony does by hand: init one
home per lab, draft the genesis roster from their identities, have every founding lab
sign it, install it in every home and record the peers.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from node.errors import InputFileError
from node.home import NodeHome, read_key_file, write_key_file
from node.home.config import PeerConfig
from node.home.resources import spec_path
from protocol.canonical import digest_of, format_time, parse_json_strict, utcnow
from protocol.entries import SuiteRef
from protocol.envelope import Envelope
from protocol.errors import TripwireError
from protocol.keys import PublicKey, SigningKey
from protocol.roster import Roster, RosterPin, draft_roster, pins_from_heads, roster_envelope

DEMO_POLICY = spec_path("policies", "demo.yaml")
CORE_SUITE = spec_path("suites", "tripwire-core.yaml")


# --- document digests (one place, so the real loaders plug in here) ----------------------


def _read_document(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputFileError(f"cannot read {path}: {e.strerror or e}") from e
    if path.suffix == ".json":
        return parse_json_strict(text.encode("utf-8"))
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InputFileError(f"{path} is not valid YAML: {e}") from e


def policy_digest_of(path: str | os.PathLike[str]) -> str:
    """Digest the roster pins for a threshold policy file (protocol.policy's content address)."""
    p = Path(path)
    from protocol.policy import Policy

    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise InputFileError(f"cannot read policy {p}: {e.strerror or e}") from e
    policy = Policy.from_json(text.encode("utf-8")) if p.suffix == ".json" else Policy.from_yaml(text)
    return policy.digest


def suite_ref_of(path: str | os.PathLike[str]) -> SuiteRef:
    """The roster's reference (id, version, digest) to an eval suite file."""
    p = Path(path)
    try:
        from node.evals.spec import load_suite
    except ImportError:  # pragma: no cover - the eval runner ships with the node
        doc = _read_document(p)
        if not isinstance(doc, dict):
            raise InputFileError(f"{p}: a suite must be a mapping") from None
        return SuiteRef(
            id=str(doc.get("suite", p.stem)), version=str(doc.get("version", "0")), digest=digest_of(doc)
        )
    try:
        spec = load_suite(p)
    except TripwireError:
        raise
    except OSError as e:
        raise InputFileError(f"cannot read suite {p}: {e.strerror or e}") from e
    return SuiteRef(id=spec.id, version=spec.version, digest=spec.digest)


def default_policy_digest() -> str:
    """The demo policy's digest when the specs are present, else a fixed placeholder digest."""
    if DEMO_POLICY.is_file():
        return policy_digest_of(DEMO_POLICY)
    return digest_of({"policy": "unset"})


# --- identities ----------------------------------------------------------------------------


def read_identity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check an identity file written by ``tripwire identity``."""
    p = Path(path)
    try:
        data = parse_json_strict(p.read_bytes())
    except OSError as e:
        raise InputFileError(f"cannot read identity {p}: {e.strerror or e}") from e
    except TripwireError as e:
        raise InputFileError(f"identity {p} is not valid JSON: {e.message}") from e
    if not isinstance(data, dict):
        raise InputFileError(f"identity {p} must be a JSON object")
    missing = [k for k in ("lab", "public_key") if k not in data]
    if missing:
        raise InputFileError(f"identity {p} lacks {', '.join(missing)}")
    try:
        key = PublicKey.from_b64(data["public_key"])
    except TripwireError as e:
        raise InputFileError(f"identity {p}: {e.message}") from e
    if "keyid" in data and data["keyid"] != key.keyid:
        raise InputFileError(f"identity {p}: keyid does not match the public key")
    return data


def _seeded_key(seed: int | str | None, name: str) -> SigningKey | None:
    if seed is None:
        return None
    return SigningKey.from_seed(hashlib.sha256(f"tripwire-netsetup:{seed}:{name}".encode()).digest())


def observer_key_path(workdir: str | os.PathLike[str], observer: str) -> Path:
    return Path(workdir) / "observers" / observer / "signing.pem"


def observer_key(workdir: str | os.PathLike[str], observer: str) -> SigningKey:
    """The signing key ``create_network`` made for an observer (regulator)."""
    return read_key_file(observer_key_path(workdir, observer))


def create_network(
    workdir: str | os.PathLike[str],
    labs: Sequence[str],
    *,
    ports: Sequence[int],
    observers: Sequence[str] = (),
    pause_weight: int | None = None,
    resume_weight: int | None = None,
    roster_threshold: int | None = None,
    policy_digest: str | None = None,
    policy: str | os.PathLike[str] | None = None,
    suites: Sequence[SuiteRef] = (),
    database_urls: Sequence[str] | None = None,
    seed: int | str | None = None,
    network_name: str = "tripwire-test",
    weights: Sequence[int] | None = None,
    issued_at: datetime | None = None,
    expires: datetime | None = None,
    passphrase: str | None = None,
    host: str = "127.0.0.1",
    discretionary_weight: int | None = None,
    vote_deadline_s: int | None = None,
) -> list[NodeHome]:
    """Init one home per lab under ``workdir/<lab>``, sign and install the genesis roster.

    Quorums default to a strict weight majority; ``seed`` makes keys deterministic. Homes are
    returned open (close them when done). The threshold policy file (``policy``, or the demo
    policy when neither it nor ``policy_digest`` is given) is pinned in the roster and
    installed in every home (see :mod:`node.home.policyfile`).
    """
    if len(ports) != len(labs):
        raise ValueError("one port per lab is required")
    if database_urls is not None and len(database_urls) != len(labs):
        raise ValueError("one database URL per lab is required")
    if len(set(labs)) != len(labs):
        raise ValueError("lab ids must be unique")
    policy_file = Path(policy) if policy is not None else (DEMO_POLICY if policy_digest is None else None)
    if policy is not None and not Path(policy).is_file():
        raise InputFileError(f"policy file {policy} does not exist")
    if policy_file is not None and policy_file.is_file():
        digest = policy_digest_of(policy_file)
        if policy_digest is not None and policy_digest != digest:
            raise ValueError(f"policy_digest {policy_digest} is not the digest of {policy_file} ({digest})")
        policy_digest = digest
    else:
        policy_file = None
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    homes: list[NodeHome] = []
    try:
        for i, lab in enumerate(labs):
            homes.append(
                NodeHome.init(
                    root / lab,
                    lab,
                    passphrase=passphrase,
                    database_url=database_urls[i] if database_urls else None,
                    endpoint=f"http://{host}:{ports[i]}",
                    key=_seeded_key(seed, lab),
                )
            )
        observer_keys: list[tuple[str, str, list[PublicKey]]] = []
        for oid in observers:
            okey = _seeded_key(seed, f"observer:{oid}") or SigningKey.generate()
            path = observer_key_path(root, oid)
            write_key_file(path, okey)
            (path.parent / "identity.json").write_text(
                json.dumps({"lab": oid, "keyid": okey.keyid, "public_key": okey.public_key.b64}, indent=2)
                + "\n"
            )
            observer_keys.append((oid, oid, [okey.public_key]))
        w = list(weights) if weights is not None else [1] * len(labs)
        majority = sum(w) // 2 + 1
        start = issued_at or utcnow()
        roster = draft_roster(
            network_name=network_name,
            labs=[(h.lab, h.lab, [h.key.public_key], h.endpoint(), w[i]) for i, h in enumerate(homes)],
            observers=observer_keys,
            pause_weight=pause_weight or majority,
            resume_weight=resume_weight or majority,
            roster_threshold=roster_threshold or (len(labs) // 2 + 1),
            policy_digest=policy_digest or default_policy_digest(),
            suites=suites,
            issued_at=format_time(start),
            expires=format_time(expires or (start + timedelta(days=365)).astimezone(UTC)),
            discretionary_weight=discretionary_weight,
            vote_deadline_s=vote_deadline_s,
        )
        genesis = sign_by_all(roster, [h.key for h in homes])
        for i, h in enumerate(homes):
            h.store.install_genesis(genesis)
            if policy_file is not None:
                from node.home.policyfile import install_policy

                install_policy(h.path, policy_file, expected_digest=roster.policy_digest)
            peers = [PeerConfig(lab=o.lab, url=o.endpoint()) for j, o in enumerate(homes) if j != i]
            h.save_config(h.config.model_copy(update={"peers": peers}))
    except BaseException:
        for h in homes:
            h.close()
        raise
    return homes


def store_pins(store: Any) -> list[RosterPin]:
    """Pins for the next roster version from a node's store (spec §7.7): every lab of the
    installed version at the head this node holds (seq 0 for an empty feed)."""
    heads = {lab: (h.seq, h.entry_id) for lab, h in store.heads().items()}
    return pins_from_heads(store.roster_chain(), heads)


def sign_by_all(roster: Roster, keys: Sequence[SigningKey]) -> Envelope:
    """The roster envelope signed by each key (each lab signing in turn, as in the ceremony)."""
    env = roster_envelope(roster, keys[:1])
    for k in keys[1:]:
        env = env.with_signature(k)
    return env


__all__ = [
    "CORE_SUITE",
    "DEMO_POLICY",
    "create_network",
    "default_policy_digest",
    "observer_key",
    "observer_key_path",
    "policy_digest_of",
    "read_identity",
    "sign_by_all",
    "store_pins",
    "suite_ref_of",
]
