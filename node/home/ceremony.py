"""The roster ceremony (operator guide, "The roster"): draft a roster from the labs' identity
files, sign it as this lab, and combine the labs' signatures into one envelope.

The CLI's ``tripwire roster draft|sign|combine`` parse their arguments, call these and
print what they return; :func:`node.home.netsetup.create_network` runs the same ceremony in
one call for tests and the demo.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from node.errors import InputFileError, RosterMismatchError
from node.home import NodeHome
from node.home.netsetup import policy_digest_of, read_identity, store_pins, suite_ref_of
from protocol.canonical import format_time
from protocol.envelope import ROSTER_PAYLOAD_TYPE, Envelope
from protocol.errors import ConfigurationError, TripwireError
from protocol.keys import PublicKey
from protocol.roster import Roster, RosterPin, decode_roster, draft_roster, parse_roster, roster_envelope

__all__ = ["combine_signatures", "draft_from_identities", "sign_roster"]


def draft_from_identities(
    *,
    network_name: str,
    labs: Sequence[Path],
    observers: Sequence[Path],
    weights: Mapping[str, int],
    pause_weight: int,
    resume_weight: int,
    roster_threshold: int,
    policy: Path,
    suites: Sequence[Path],
    expires: datetime,
    now: datetime,
    home: NodeHome | None = None,
    pins: bool = True,
) -> Roster:
    """An unsigned roster from identity files (``tripwire identity``).

    Without ``home`` it is a genesis roster (version 1). With ``home`` it is the next version
    of the roster installed there, pinning every lab's feed at the head the home holds unless
    ``pins`` is false (spec §7.7: taken as late as possible, just before the labs sign).
    ``weights`` gives a lab's vote weight (default 1); naming a lab not among ``labs`` is an
    error, as is an expiry not after ``now``.
    """
    left = dict(weights)
    members = []
    for path in labs:
        ident = read_identity(path)
        if "endpoint" not in ident:
            raise InputFileError(f"identity {path} has no endpoint (labs need one; observers do not)")
        members.append(
            (
                ident["lab"],
                str(ident.get("name", ident["lab"])),
                [PublicKey.from_b64(ident["public_key"])],
                ident["endpoint"],
                left.pop(ident["lab"], 1),
            )
        )
    if left:
        raise ConfigurationError(f"--weight names labs not given with --lab: {', '.join(sorted(left))}")
    watchers = []
    for path in observers:
        ident = read_identity(path)
        watchers.append((ident["lab"], str(ident.get("name", ident["lab"])), [PublicKey.from_b64(ident["public_key"])]))
    version, previous, network = 1, None, None
    pinned: list[RosterPin] = []
    if home is not None:
        chain = home.store.roster_chain()
        pinned = store_pins(home.store) if pins else []
        version, previous, network = chain.current.version + 1, chain.current.roster_id, chain.network_id
    if expires <= now:
        raise ConfigurationError(f"--expires {format_time(expires)} is in the past")
    try:
        return draft_roster(
            network_name=network_name,
            labs=members,
            observers=watchers,
            pause_weight=pause_weight,
            resume_weight=resume_weight,
            roster_threshold=roster_threshold,
            policy_digest=policy_digest_of(policy),
            suites=[suite_ref_of(p) for p in suites],
            issued_at=format_time(now),
            expires=format_time(expires),
            version=version,
            previous=previous,
            network=network,
            pins=pinned,
        )
    except TripwireError as e:
        # A bad draft is the operator's input, not a peer's data.
        raise ConfigurationError(f"invalid roster draft: {e.message}") from e


def sign_roster(home: NodeHome, document: Mapping[str, Any], source: object) -> tuple[Roster, Envelope]:
    """``document`` (a roster draft, or a roster envelope other labs signed) signed by the
    home's key, with the roster it carries. The key must be a lab key of the roster, or of
    the installed roster when the draft rotates it out; ``source`` names the file in errors."""
    env: Envelope | None = None
    if "payloadType" in document:
        env = Envelope.parse(document)
        if env.payloadType != ROSTER_PAYLOAD_TYPE:
            raise InputFileError(f"{source} is not a roster envelope (payloadType {env.payloadType})")
        _, roster = decode_roster(env)
    else:
        roster = parse_roster(dict(document))
    listed = {k.keyid for m in roster.labs for k in m.keys}
    if home.store.has_roster():
        listed |= {k.keyid for m in home.store.roster_chain().current.roster.labs for k in m.keys}
    if home.key.keyid not in listed:
        raise ConfigurationError(
            f"this home's key ({home.key.keyid[:16]}…) is not a lab key of the draft or of the installed roster"
        )
    return roster, (roster_envelope(roster, [home.key]) if env is None else env.with_signature(home.key))


def combine_signatures(envelopes: Sequence[tuple[object, Envelope]]) -> Envelope:
    """One envelope holding every distinct signature of ``envelopes`` (each named by where it
    came from, for errors), which must all carry the first one's payload."""
    if not envelopes:
        raise ConfigurationError("no roster envelopes to combine")
    source, first = envelopes[0]
    payload = first.payload_bytes()
    sigs = list(first.signatures)
    seen = {s.keyid or s.sig for s in sigs}
    for where, env in envelopes[1:]:
        if env.payloadType != first.payloadType or env.payload_bytes() != payload:
            raise RosterMismatchError(f"{where} signs a different roster than {source}: refusing to combine")
        for s in env.signatures:
            if (s.keyid or s.sig) not in seen:
                seen.add(s.keyid or s.sig)
                sigs.append(s)
    return Envelope.parse(
        {"payloadType": first.payloadType, "payload": first.payload, "signatures": [s.model_dump() for s in sigs]}
    )
