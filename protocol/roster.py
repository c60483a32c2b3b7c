"""Roster: membership, keys, weights and quorum rules, TUF-root style (spec §7).

The genesis roster is signed by every founding lab; its statement's SHA-256 is the
network id. Version N+1 must be exactly N+1, name version N's id as ``previous``, and be
signed by a threshold of version N's labs *and* a threshold of its own labs. Every
accepted version is kept. An expired roster still serves reads; no new votes count.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, ValidationError, model_validator

from protocol.canonical import entry_id, parse_canonical, parse_time
from protocol.entries import (
    PROTOCOL,
    DecodedEntry,
    Hex64,
    LabId,
    Model,
    ShortText,
    SuiteRef,
    Timestamp,
    VerifiedEntry,
    _schema_error,
    decode_entry,
)
from protocol.envelope import ROSTER_PAYLOAD_TYPE, Envelope, sign_payload, verify_signatures
from protocol.errors import (
    EnvelopeError,
    ObserverVoteError,
    RosterError,
    RosterExpiredError,
    RosterRollbackError,
    RosterThresholdError,
    RosterVersionError,
    SchemaError,
    SignatureError,
    UnknownKeyError,
    UnknownLabError,
    WrongNetworkError,
)
from protocol.keys import PublicKey, SigningKey, keyid_for

Url = Annotated[str, StringConstraints(pattern=r"^https?://[^\s]{1,2000}$", max_length=2048)]


class RosterKey(Model):
    keyid: Hex64
    """SHA-256 of the raw public key; must match ``public_key``."""
    public_key: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{43}=$")]
    """Standard base64 of the 32-byte raw Ed25519 public key."""

    @model_validator(mode="after")
    def _keyid_matches(self) -> RosterKey:
        if keyid_for(base64.b64decode(self.public_key)) != self.keyid:
            raise ValueError("keyid is not the SHA-256 of the public key")
        return self

    @classmethod
    def of(cls, key: PublicKey) -> RosterKey:
        return cls(keyid=key.keyid, public_key=key.b64)

    def public(self) -> PublicKey:
        return PublicKey.from_b64(self.public_key)


class RosterLab(Model):
    id: LabId
    name: ShortText
    """Display name (free text; rendered as data, never markup)."""
    keys: Annotated[list[RosterKey], Field(min_length=1, max_length=8)]
    endpoint: Url
    """Base URL of the lab's node (peers pull from and push to it)."""
    weight: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    """Vote weight in quorum tallies."""


class RosterObserver(Model):
    id: LabId
    name: ShortText
    keys: Annotated[list[RosterKey], Field(min_length=1, max_length=8)]


class QuorumRule(Model):
    weight: Annotated[int, Field(ge=1)]
    """Minimum total weight of supporting votes."""


class QuorumRules(Model):
    pause: QuorumRule
    resume: QuorumRule
    roster: Annotated[int, Field(ge=1)]
    """Number of distinct labs that must sign a roster change (old and new)."""


class Roster(Model):
    """The roster statement (signed in a roster envelope)."""

    protocol: Literal["tripwire/1"]
    type: Literal["roster"]
    network_name: ShortText
    version: Annotated[int, Field(ge=1, le=2**53 - 1)]
    previous: Hex64 | None
    """Roster id (SHA-256 of the canonical statement) of version-1; null in genesis."""
    network: Hex64 | None
    """Network id (genesis roster id); null in genesis itself."""
    issued_at: Timestamp
    expires: Timestamp
    labs: Annotated[list[RosterLab], Field(min_length=1, max_length=256)]
    observers: Annotated[list[RosterObserver], Field(max_length=256)] = []
    quorum: QuorumRules
    policy_digest: Hex64
    """Digest of the adopted threshold policy (protocol.policy)."""
    suites: Annotated[list[SuiteRef], Field(max_length=64)] = []
    """Adopted eval suites, by digest."""

    @model_validator(mode="after")
    def _rules(self) -> Roster:
        ids = [m.id for m in self.labs] + [o.id for o in self.observers]
        if len(set(ids)) != len(ids):
            raise ValueError("lab and observer ids must be unique")
        members: list[RosterLab | RosterObserver] = [*self.labs, *self.observers]
        keyids = [k.keyid for m in members for k in m.keys]
        if len(set(keyids)) != len(keyids):
            raise ValueError("a key may belong to only one member")
        total = sum(m.weight for m in self.labs)
        for name in ("pause", "resume"):
            rule: QuorumRule = getattr(self.quorum, name)
            if rule.weight > total:
                raise ValueError(f"{name} quorum weight {rule.weight} exceeds total lab weight {total}")
        if self.quorum.roster > len(self.labs):
            raise ValueError(f"roster threshold {self.quorum.roster} exceeds the number of labs")
        if (self.version == 1) != (self.previous is None) or (self.version == 1) != (self.network is None):
            raise ValueError("previous and network must be null exactly in version 1")
        if parse_time(self.expires) <= parse_time(self.issued_at):
            raise ValueError("expires must be after issued_at")
        return self

    # lookups ------------------------------------------------------------------------------
    @cached_property
    def _labs_by_id(self) -> dict[str, RosterLab]:
        # Frozen model: computed once (ingest asks for an entry's lab several times).
        return {m.id: m for m in self.labs}

    def lab(self, lab_id: str) -> RosterLab | None:
        return self._labs_by_id.get(lab_id)

    def observer(self, member_id: str) -> RosterObserver | None:
        return next((o for o in self.observers if o.id == member_id), None)

    def lab_keys(self, lab_id: str) -> dict[str, PublicKey]:
        m = self.lab(lab_id)
        return {} if m is None else {k.keyid: k.public() for k in m.keys}

    def member_keys(self, member_id: str) -> dict[str, PublicKey]:
        m: RosterLab | RosterObserver | None = self.lab(member_id) or self.observer(member_id)
        return {} if m is None else {k.keyid: k.public() for k in m.keys}

    def owner_of_key(self, keyid: str) -> str | None:
        members: list[RosterLab | RosterObserver] = [*self.labs, *self.observers]
        for m in members:
            if any(k.keyid == keyid for k in m.keys):
                return m.id
        return None

    @property
    def total_weight(self) -> int:
        return sum(m.weight for m in self.labs)

    def expired(self, now: datetime) -> bool:
        return now >= parse_time(self.expires)


def parse_roster(obj: Any) -> Roster:
    if not isinstance(obj, dict):
        raise SchemaError("a roster must be a JSON object")
    try:
        return Roster.model_validate(obj)
    except ValidationError as e:
        raise _schema_error(e, "roster") from e


@dataclass(frozen=True)
class VerifiedRoster:
    """A roster version whose signatures satisfied the roster rules."""

    roster: Roster
    envelope: Envelope
    roster_id: str
    """SHA-256 of the canonical roster statement."""
    network_id: str
    signed_by: frozenset[str]
    """Lab ids of this version that signed it."""
    _keys: dict[str, dict[str, PublicKey]] = field(default_factory=dict, repr=False, compare=False)

    def lab_keys(self, lab_id: str) -> dict[str, PublicKey]:
        """The lab's trusted keys, parsed once per roster version (hot path of ingest)."""
        keys = self._keys.get(lab_id)
        if keys is None:
            keys = self._keys[lab_id] = self.roster.lab_keys(lab_id)
        return keys

    @property
    def version(self) -> int:
        return self.roster.version


def roster_envelope(roster: Roster, keys: Iterable[SigningKey]) -> Envelope:
    """Sign a roster statement with each of ``keys`` (each founding lab adds its own)."""
    from protocol.canonical import canonical_bytes

    return sign_payload(canonical_bytes(roster.model_dump(mode="json")), ROSTER_PAYLOAD_TYPE, keys)


def decode_roster(envelope: Envelope) -> tuple[bytes, Roster]:
    if envelope.payloadType != ROSTER_PAYLOAD_TYPE:
        raise EnvelopeError(f"payloadType {envelope.payloadType!r} is not a roster ({ROSTER_PAYLOAD_TYPE})")
    payload = envelope.payload_bytes()
    return payload, parse_roster(parse_canonical(payload))


def _signing_labs(envelope: Envelope, payload: bytes, roster: Roster) -> frozenset[str]:
    trusted = {k.keyid: k.public() for m in roster.labs for k in m.keys}
    good = verify_signatures(envelope, payload, trusted)
    return frozenset(lab for lab in (roster.owner_of_key(k) for k in good) if lab is not None)


def verify_genesis(envelope: Envelope, *, expected_network: str | None = None) -> VerifiedRoster:
    """Verify a genesis roster: version 1, signed by every founding lab (spec §7.2)."""
    payload, roster = decode_roster(envelope)
    rid = entry_id(payload)
    if roster.version != 1:
        raise RosterVersionError(f"a genesis roster must be version 1, got {roster.version}")
    if expected_network is not None and rid != expected_network:
        raise WrongNetworkError(f"genesis roster {rid[:16]}… is not network {expected_network[:16]}…")
    signed = _signing_labs(envelope, payload, roster)
    missing = sorted({m.id for m in roster.labs} - signed)
    if missing:
        raise RosterThresholdError(f"genesis roster lacks signatures of founding labs: {', '.join(missing)}")
    return VerifiedRoster(roster, envelope, rid, rid, signed)


def verify_roster_update(
    current: VerifiedRoster, envelope: Envelope, *, now: datetime | None = None
) -> VerifiedRoster:
    """Verify version N+1 against version N (spec §7.3): exact step, both thresholds."""
    payload, new = decode_roster(envelope)
    rid = entry_id(payload)
    if new.version <= current.version:
        raise RosterRollbackError(
            f"roster version {new.version} is not newer than the current version {current.version}"
        )
    if new.version != current.version + 1:
        raise RosterVersionError(
            f"roster version {new.version} skips ahead: expected exactly {current.version + 1}"
        )
    if new.network != current.network_id:
        raise WrongNetworkError("roster update names another network")
    if new.previous != current.roster_id:
        raise RosterError("roster update's previous is not the current roster's id")
    if parse_time(new.issued_at) <= parse_time(current.roster.issued_at):
        # Key-rotation windows are cut at each version's issued_at (spec §7.4), so
        # versions must be issued in order.
        raise RosterError(
            f"roster v{new.version} is issued at {new.issued_at}, not after v{current.version} "
            f"({current.roster.issued_at})"
        )
    old_signers = _signing_labs(envelope, payload, current.roster)
    if len(old_signers) < current.roster.quorum.roster:
        raise RosterThresholdError(
            f"roster v{new.version} is signed by {len(old_signers)} lab(s) of v{current.version}; "
            f"{current.roster.quorum.roster} required"
        )
    new_signers = _signing_labs(envelope, payload, new)
    if len(new_signers) < new.quorum.roster:
        raise RosterThresholdError(
            f"roster v{new.version} is signed by {len(new_signers)} of its own lab(s); "
            f"{new.quorum.roster} required"
        )
    if now is not None and new.expired(now):
        raise RosterExpiredError(f"roster v{new.version} expired at {new.expires}")
    return VerifiedRoster(new, envelope, rid, current.network_id, new_signers)


@dataclass
class RosterChain:
    """Every accepted roster version, genesis first. Mutable only through :meth:`apply`."""

    versions: list[VerifiedRoster] = field(default_factory=list)

    @classmethod
    def from_envelopes(
        cls, envelopes: Sequence[Envelope], *, expected_network: str | None = None
    ) -> RosterChain:
        if not envelopes:
            raise RosterError("a roster chain needs at least the genesis roster")
        chain = cls([verify_genesis(envelopes[0], expected_network=expected_network)])
        for env in envelopes[1:]:
            chain.apply(env)
        return chain

    def apply(self, envelope: Envelope, *, now: datetime | None = None) -> VerifiedRoster:
        """Verify and append the next version; re-offering a held version is idempotent."""
        _, offered = decode_roster(envelope)
        if offered.version <= self.current.version:
            held = self.versions[offered.version - 1]
            if entry_id(envelope.payload_bytes()) == held.roster_id:
                return held
        vr = verify_roster_update(self.current, envelope, now=now)
        self.versions.append(vr)
        return vr

    @property
    def current(self) -> VerifiedRoster:
        return self.versions[-1]

    @property
    def network_id(self) -> str:
        return self.versions[0].roster_id

    def get(self, version: int) -> VerifiedRoster:
        if not 1 <= version <= len(self.versions):
            raise RosterVersionError(f"roster version {version} is not held (have 1..{len(self.versions)})")
        return self.versions[version - 1]

    def envelopes(self) -> list[Envelope]:
        return [v.envelope for v in self.versions]


def _trusted_for(chain: RosterChain, lab: str, issued_at: str, version: int | None) -> list[VerifiedRoster]:
    """Roster versions whose keys may have signed an entry issued at ``issued_at``.

    The current version always; an earlier version only if the entry was issued before
    its successor was, so a rotated-out key still proves the history it signed while it
    was valid but cannot sign anything new (spec §7.4).
    """
    if version is not None:
        return [chain.get(version)]
    out = [chain.current]
    if len(chain.versions) == 1:
        return out
    t = parse_time(issued_at)
    for older, newer in zip(reversed(chain.versions[:-1]), reversed(chain.versions[1:]), strict=True):
        if t < parse_time(newer.roster.issued_at):
            out.append(older)
    return out


def verify_decoded(
    decoded: DecodedEntry,
    chain: RosterChain,
    *,
    now: datetime | None = None,
    roster_version: int | None = None,
) -> VerifiedEntry:
    """Check a decoded entry's network, lab and signature against the roster chain."""
    st = decoded.statement
    if st.network != chain.network_id:
        raise WrongNetworkError(
            f"entry is for network {st.network[:16]}…, this node is on {chain.network_id[:16]}…"
        )
    candidates = _trusted_for(chain, st.lab, st.issued_at, roster_version)
    roster = candidates[0].roster
    # A lab removed by a later roster keeps a verifiable history: any version whose
    # window covers the entry may vouch for it (spec §7.4).
    members = [vr for vr in candidates if vr.roster.lab(st.lab) is not None]
    if not members:
        if roster.observer(st.lab) is not None:
            if st.kind == "vote":
                raise ObserverVoteError(f"{st.lab!r} is an observer; observers can never vote")
            raise UnknownLabError(f"{st.lab!r} is an observer; observers have no feed")
        raise UnknownLabError(f"lab {st.lab!r} is not in roster v{roster.version}")
    roster = members[0].roster
    for vr in members:
        keys = vr.lab_keys(st.lab)
        good = verify_signatures(decoded.envelope, decoded.payload, keys)
        if good:
            if st.kind == "vote" and now is not None and chain.current.roster.expired(now):
                raise RosterExpiredError(
                    f"roster v{chain.current.version} expired at {chain.current.roster.expires}: "
                    "no new votes are accepted until a new roster is installed"
                )
            return VerifiedEntry(
                decoded.envelope, decoded.payload, st, decoded.entry_id, good, vr.version
            )
    hinted = {s.keyid for s in decoded.envelope.signatures}
    others = sorted({o for o in (roster.owner_of_key(k) for k in hinted) if o and o != st.lab})
    if others:
        raise UnknownKeyError(f"entry of lab {st.lab!r} is signed with a key of {', '.join(others)}")
    if not any(k in roster.lab_keys(st.lab) for k in hinted if k):
        if all(hinted):
            raise UnknownKeyError(f"no signature is by a key the roster lists for lab {st.lab!r}")
    raise SignatureError(f"signature does not verify under lab {st.lab!r}'s roster key")


def verify_entry(
    envelope: Envelope,
    chain: RosterChain,
    *,
    now: datetime | None = None,
    roster_version: int | None = None,
) -> VerifiedEntry:
    """Decode and verify an entry envelope (spec §4.2 steps 1–6; step 7 is feed.check_append)."""
    return verify_decoded(decode_entry(envelope), chain, now=now, roster_version=roster_version)


def roster_digest(roster: Roster | Mapping[str, Any]) -> str:
    from protocol.canonical import canonical_bytes

    obj = roster.model_dump(mode="json") if isinstance(roster, Roster) else roster
    return hashlib.sha256(canonical_bytes(obj)).hexdigest()


def draft_roster(
    *,
    network_name: str,
    labs: Sequence[tuple[str, str, Sequence[PublicKey], str, int]],
    observers: Sequence[tuple[str, str, Sequence[PublicKey]]] = (),
    pause_weight: int,
    resume_weight: int,
    roster_threshold: int,
    policy_digest: str,
    suites: Sequence[SuiteRef] = (),
    issued_at: str,
    expires: str,
    version: int = 1,
    previous: str | None = None,
    network: str | None = None,
) -> Roster:
    """Build a roster statement from plain values (``labs``: id, name, keys, endpoint, weight)."""
    return parse_roster(
        {
            "protocol": PROTOCOL,
            "type": "roster",
            "network_name": network_name,
            "version": version,
            "previous": previous,
            "network": network,
            "issued_at": issued_at,
            "expires": expires,
            "labs": [
                {
                    "id": lab_id,
                    "name": name,
                    "keys": [RosterKey.of(k).model_dump() for k in keys],
                    "endpoint": endpoint,
                    "weight": weight,
                }
                for lab_id, name, keys, endpoint, weight in labs
            ],
            "observers": [
                {"id": oid, "name": name, "keys": [RosterKey.of(k).model_dump() for k in keys]}
                for oid, name, keys in observers
            ],
            "quorum": {
                "pause": {"weight": pause_weight},
                "resume": {"weight": resume_weight},
                "roster": roster_threshold,
            },
            "policy_digest": policy_digest,
            "suites": [s.model_dump(mode="json") for s in suites],
        }
    )
