"""Build an evidence bundle from a node's store (duck-typed: ``reports`` does not import ``node``).

The store supplies verified entries in log order, the roster chain, equivocation proofs
and a signed checkpoint; this module selects what the report cites, proves each cited
entry into the checkpoint and finds the policy document the roster pins.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from protocol.errors import ConfigurationError, PeerDataError
from protocol.keys import SigningKey
from protocol.merkle import verify_checkpoint
from protocol.policy import Policy
from reports.bundle import Audience, EvidenceBundle, LogProver, build_bundle, select_entries


def _read_policy(path: Path) -> Policy:
    text = path.read_text(encoding="utf-8")
    return Policy.from_json(text.encode("utf-8")) if path.suffix == ".json" else Policy.from_yaml(text)


def find_policy(digest: str, *, explicit: Path | None = None, search: Iterable[Path] = ()) -> Policy:
    """The policy document whose digest the roster pins.

    ``explicit`` must match; otherwise the ``search`` directories are scanned, in order, for
    a YAML/JSON policy with that digest (a node passes its home, then the shipped policies).
    """
    if explicit is not None:
        try:
            policy = _read_policy(explicit)
        except OSError as e:
            raise ConfigurationError(f"cannot read policy {explicit}: {e.strerror}") from e
        if policy.digest != digest:
            raise ConfigurationError(
                f"policy {explicit} has digest {policy.digest[:16]}…, but the roster pins {digest[:16]}…"
            )
        return policy
    for d in search:
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if p.suffix not in (".yaml", ".yml", ".json"):
                continue
            try:
                policy = _read_policy(p)
            except (OSError, PeerDataError):
                continue
            if policy.digest == digest:
                return policy
    raise ConfigurationError(
        f"no policy document with the roster's digest {digest[:16]}… was found; pass --policy FILE"
    )


def bundle_from_store(
    store: Any,
    *,
    key: SigningKey,
    lab: str,
    policy: Policy,
    audience: Audience = "public",
    since: datetime | None = None,
    now: datetime | None = None,
) -> EvidenceBundle:
    """Checkpoint the node's log now and bundle the entries a report since ``since`` cites."""
    chain = store.roster_chain()
    checkpoint = store.signed_checkpoint(key, lab, now=now)
    cp = verify_checkpoint(checkpoint, chain)
    everything = store.entries()
    log_ids = [e.entry_id for e in everything[: cp.size]]
    prover = LogProver.of_entries(log_ids)
    index = {eid: i for i, eid in enumerate(log_ids)}
    if prover.root.hex() == cp.root:

        def proofs(eid: str) -> tuple[int, int, list[str]]:
            i = index[eid]
            return i, prover.size, [h.hex() for h in prover.proof(i)]

    else:  # the log order differs from entries(): ask the store for each proof
        proofs = lambda eid: store.inclusion_proof(eid, cp.size)  # noqa: E731
    cited = select_entries([e for e in everything if e.entry_id in index], since, chain)
    return build_bundle(
        roster_chain=chain,
        entries=cited,
        equivocations=store.equivocations(),
        checkpoint=checkpoint,
        proofs=proofs,
        policy=policy,
        node=lab,
        key=key,
        audience=audience,
        since=since,
        generated_at=now,
    )
