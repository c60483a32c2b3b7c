"""Roster: membership, keys, weights and quorum rules, TUF-root style (spec §7).

The genesis roster is signed by every founding lab; its statement's SHA-256 is the
network id. Version N+1 must be exactly N+1, name version N's id as ``previous``, and be
signed by a threshold of version N's labs *and* a threshold of its own labs. Every
accepted version is kept. An expired roster still serves reads; no new votes count.

An update may *pin* each lab's feed at the position its signers held (spec §7.7). The
version that governs an entry is then chosen from its position, not only from its
self-asserted ``issued_at``: :meth:`RosterChain.governing_version`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Annotated, Any, Literal, NoReturn

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from protocol.canonical import entry_id, parse_canonical, parse_time
from protocol.entries import (
    OMIT_NONE,
    PROTOCOL,
    DecodedEntry,
    Hex64,
    LabId,
    Model,
    PauseCertificateBody,
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
    PinMismatchError,
    QuorumError,
    RevokedError,
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
    discretionary: QuorumRule | None = OMIT_NONE
    """Quorum for pauses a lab asks for on its own judgement (spec §6.11); absent: the
    ``pause`` quorum. Omitted from the signed bytes when absent (older rosters keep theirs)."""
    vote_deadline_s: Annotated[int, Field(ge=60, le=90 * 86400)] | None = OMIT_NONE
    """Seconds after a discretionary proposal opens during which votes count; an unmet
    proposal then closes as ``expired`` (spec §6.11). Absent: no deadline."""
    safety_case: QuorumRule | None = OMIT_NONE
    """Quorum that accepts a safety case for a training plan (spec §6.12); absent: the
    ``pause`` quorum. Omitted from the signed bytes when absent."""


class RosterPin(Model):
    """A lab's feed position known to the signers of a roster update (spec §7.7)."""

    lab: LabId
    """A lab of the previous roster version."""
    seq: Annotated[int, Field(ge=0, le=2**53 - 1)]
    """The last seq of the lab's feed the signers held; 0 for an empty feed."""
    entry_id: Hex64 | None
    """The entry id at ``seq``; null exactly when ``seq`` is 0."""

    @model_validator(mode="after")
    def _empty_feed(self) -> RosterPin:
        if (self.seq == 0) != (self.entry_id is None):
            raise ValueError("entry_id must be null exactly when seq is 0")
        return self


MAX_PINS = 256
"""At most one pin per lab of the previous version (which lists at most 256 labs)."""


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


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
    # The schema shows only the present form: null is refused (below) and absence is the default.
    pins: Annotated[list[RosterPin], Field(min_length=1, max_length=MAX_PINS)] | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_no_default
    )
    """Feed positions the update's signers held, one per pinned lab, sorted by lab (spec §7.7).

    OPTIONAL and additive: absent (never null or empty) when the update pins nothing, so a
    roster without pins has the same canonical bytes as before pins existed."""

    @model_validator(mode="before")
    @classmethod
    def _pins_absent_not_null(cls, data: Any) -> Any:
        # One statement, one byte form: "no pins" is spelled only by omitting the member.
        if isinstance(data, dict) and "pins" in data and data["pins"] is None:
            raise ValueError("pins must be omitted, not null, when the update pins nothing")
        return data

    @model_serializer(mode="wrap")
    def _omit_absent_pins(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if out.get("pins") is None:
            out.pop("pins", None)
        return out

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
        for name in ("pause", "resume", "discretionary", "safety_case"):
            rule: QuorumRule | None = getattr(self.quorum, name)
            if rule is None:
                continue
            if rule.weight > total:
                raise ValueError(f"{name} quorum weight {rule.weight} exceeds total lab weight {total}")
        if self.quorum.roster > len(self.labs):
            raise ValueError(f"roster threshold {self.quorum.roster} exceeds the number of labs")
        if (self.version == 1) != (self.previous is None) or (self.version == 1) != (self.network is None):
            raise ValueError("previous and network must be null exactly in version 1")
        if parse_time(self.expires) <= parse_time(self.issued_at):
            raise ValueError("expires must be after issued_at")
        if self.pins is not None:
            if self.version == 1:
                raise ValueError("pins are allowed only in roster updates (version 2 or later)")
            pinned = [p.lab for p in self.pins]
            if pinned != sorted(set(pinned)):
                raise ValueError("pins must name each lab at most once, sorted by lab id")
        return self

    # lookups ------------------------------------------------------------------------------
    @cached_property
    def _labs_by_id(self) -> dict[str, RosterLab]:
        # Frozen model: computed once (ingest asks for an entry's lab several times).
        return {m.id: m for m in self.labs}

    def lab(self, lab_id: str) -> RosterLab | None:
        return self._labs_by_id.get(lab_id)

    @cached_property
    def _pins_by_lab(self) -> dict[str, RosterPin]:
        return {p.lab: p for p in self.pins or ()}

    def pin(self, lab_id: str) -> RosterPin | None:
        """The position this version pins ``lab_id``'s feed at, if it pins it (spec §7.7)."""
        return self._pins_by_lab.get(lab_id)

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

    @cached_property
    def issued(self) -> datetime:
        """``issued_at`` parsed once (every entry's governing version compares against it)."""
        return parse_time(self.roster.issued_at)


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
    """Verify version N+1 against version N (spec §7.3): exact step, both thresholds, and
    pins of version N's labs only (the rule that pins never move back needs the whole
    chain: :meth:`RosterChain.apply`)."""
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
    # spec §7.3 step 8, §7.7: a pin speaks for a lab whose feed the previous version governed.
    strangers = [p.lab for p in new.pins or () if current.roster.lab(p.lab) is None]
    if strangers:
        raise RosterError(
            f"roster v{new.version} pins {', '.join(strangers)}, not a lab of v{current.version}"
        )
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
        self._check_pins_advance(vr.roster)
        self.versions.append(vr)
        return vr

    def _check_pins_advance(self, new: Roster) -> None:
        """Spec §7.3 step 8, §7.7: a lab's pins never move back along the chain.

        A later pin below an earlier one would re-govern positions the earlier version's
        signers already knew, and could strand a lab's honest history behind a key it has
        since rotated out.
        """
        for pin in new.pins or ():
            earlier = self.latest_pin(pin.lab)
            if earlier is None:
                continue
            version, held = earlier
            if pin.seq < held.seq or (pin.seq == held.seq and pin.entry_id != held.entry_id):
                raise RosterError(
                    f"roster v{new.version} pins {pin.lab!r} at seq {pin.seq} "
                    f"({(pin.entry_id or 'empty')[:16]}…), behind or beside v{version}'s pin at "
                    f"seq {held.seq} ({(held.entry_id or 'empty')[:16]}…)"
                )

    def latest_pin(self, lab: str) -> tuple[int, RosterPin] | None:
        """The newest held version that pins ``lab``, with its pin."""
        for vr in reversed(self.versions):
            pin = vr.roster.pin(lab)
            if pin is not None:
                return vr.version, pin
        return None

    def window_version(self, issued_at: str | datetime) -> int:
        """The version whose §7.4 window covers ``issued_at``: the newest one issued at or
        before it (version 1 for anything earlier)."""
        t = parse_time(issued_at) if isinstance(issued_at, str) else issued_at
        for vr in reversed(self.versions[1:]):
            if vr.issued <= t:
                return vr.version
        return 1

    def pin_bounds(self, lab: str, seq: int) -> tuple[int, int]:
        """Versions that may govern ``lab``'s position ``seq``, from pins alone (spec §7.7).

        Low: the newest version pinning the lab at a seq below ``seq`` (the position was
        written after that pin, so that version or a later one governs it), else 1. High:
        one before the oldest version pinning the lab at ``seq`` or beyond (the position
        existed when that version was made), else the current version.
        """
        low, high = 1, None
        for vr in self.versions[1:]:
            pin = vr.roster.pin(lab)
            if pin is None:
                continue
            if pin.seq < seq:
                low = vr.version
            elif high is None:
                high = vr.version - 1
        return low, self.current.version if high is None else high

    def governing_version(self, lab: str, seq: int, issued_at: str | datetime) -> int:
        """The roster version that governs ``lab``'s entry at ``seq`` claiming ``issued_at``.

        Spec §7.7: the window version of ``issued_at`` (§7.4), raised to the newest version
        that pins the lab below ``seq`` and capped below the oldest version that pins it at
        ``seq`` or beyond. The date only chooses between the versions the position allows,
        so back-dating cannot move an entry before a pin. Pins never move back along the
        chain, so the bounds never cross; if they did, the newer bound would win.
        """
        low, high = self.pin_bounds(lab, seq)
        return max(low, min(self.window_version(issued_at), high))

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
    """Check a decoded entry's network, lab and signature against the roster chain.

    The entry is verified with the keys of its governing version (spec §7.7) or a later
    one, and :attr:`VerifiedEntry.roster_version` is the oldest of those versions that
    lists the lab with a key that signed. With ``roster_version`` (a certificate's named
    version, spec §6.5), only that version's keys count, and a position that pins place
    under a newer version is refused (``quorum``); the date window of such votes is the
    certificate check's own step.
    """
    st = decoded.statement
    if st.network != chain.network_id:
        raise WrongNetworkError(
            f"entry is for network {st.network[:16]}…, this node is on {chain.network_id[:16]}…"
        )
    if roster_version is not None:
        low, _ = chain.pin_bounds(st.lab, st.seq)
        if low > roster_version:
            pin = chain.get(low).roster.pin(st.lab)
            raise QuorumError(
                f"entry {decoded.entry_id[:16]}… of {st.lab!r} at seq {st.seq} follows roster v{low}'s pin "
                f"(seq {pin.seq if pin else 0}): it is governed by v{low}, not v{roster_version}"
            )
        candidates = [chain.get(roster_version)]
        governing = roster_version
    else:
        governing = chain.governing_version(st.lab, st.seq, st.issued_at)
        candidates = chain.versions[governing - 1 :]
    verified = _verify_with(decoded, candidates)
    if verified is None:
        if roster_version is None:
            _explain_revoked(decoded, chain, governing)
        _refuse(decoded, candidates)
    _check_pinned_id(decoded, chain)
    if st.kind == "vote" and now is not None and chain.current.roster.expired(now):
        raise RosterExpiredError(
            f"roster v{chain.current.version} expired at {chain.current.roster.expires}: "
            "no new votes are accepted until a new roster is installed"
        )
    _check_certificate_size(decoded, chain)
    version, good = verified
    return VerifiedEntry(decoded.envelope, decoded.payload, st, decoded.entry_id, good, version)


def _check_certificate_size(decoded: DecodedEntry, chain: RosterChain) -> None:
    """Spec §4.2 step 6: a certificate carrying more votes than the roster version it names
    has labs can never be valid (one counted vote per lab, §6.5); refusing it here keeps a
    lab from filling every node's feed copy with padded certificates to verify later."""
    body = decoded.statement.body
    if decoded.statement.kind != "pause_certificate" or not isinstance(body, PauseCertificateBody):
        return
    if not 1 <= body.roster_version <= len(chain.versions):
        return  # judged (and flagged) by the certificate check, which names the missing version
    labs = len(chain.get(body.roster_version).roster.labs)
    if len(body.votes) > labs:
        raise QuorumError(
            f"certificate {decoded.entry_id[:16]}… of {decoded.statement.lab!r} carries {len(body.votes)} votes; "
            f"roster v{body.roster_version} has {labs} labs and a certificate carries at most one counted vote per lab"
        )


def _verify_with(
    decoded: DecodedEntry, versions: Sequence[VerifiedRoster]
) -> tuple[int, frozenset[str]] | None:
    """The oldest of ``versions`` whose keys for the entry's lab signed it, with those keys."""
    lab = decoded.statement.lab
    for vr in versions:
        keys = vr.lab_keys(lab)
        if keys:
            good = verify_signatures(decoded.envelope, decoded.payload, keys)
            if good:
                return vr.version, good
    return None


def _explain_revoked(decoded: DecodedEntry, chain: RosterChain, governing: int) -> None:
    """Raise ``revoked`` when only a pin made the entry fail (spec §7.7).

    The entry's date alone would have let an older version vouch for it: the lab, or the
    key that signed, was listed then, and a pin has since moved the position under a
    version that dropped it.
    """
    st = decoded.statement
    window = chain.window_version(st.issued_at)
    if window >= governing:
        return
    older = _verify_with(decoded, chain.versions[window - 1 : governing - 1])
    if older is None:
        return
    pin = chain.get(governing).roster.pin(st.lab)
    pinned = f"seq {pin.seq}" if pin is not None else "an earlier seq"
    if all(vr.roster.lab(st.lab) is None for vr in chain.versions[governing - 1 :]):
        why = f"lab {st.lab!r} is not in roster v{governing} or later"
    else:
        why = f"the key that signed it (listed in v{older[0]}) is no key of lab {st.lab!r} from v{governing} on"
    raise RevokedError(
        f"entry of {st.lab!r} at seq {st.seq} (dated {st.issued_at}) follows roster v{governing}'s pin at "
        f"{pinned}, so v{governing} governs it whatever its date, and {why}"
    )


def _refuse(decoded: DecodedEntry, candidates: Sequence[VerifiedRoster]) -> NoReturn:
    """Raise the error for an entry no candidate version's keys verified (spec §4.2 steps 5–6)."""
    st = decoded.statement
    current = candidates[-1].roster
    members = [vr for vr in candidates if vr.roster.lab(st.lab) is not None]
    if not members:
        if current.observer(st.lab) is not None:
            if st.kind == "vote":
                raise ObserverVoteError(f"{st.lab!r} is an observer; observers can never vote")
            raise UnknownLabError(f"{st.lab!r} is an observer; observers have no feed")
        raise UnknownLabError(f"lab {st.lab!r} is not in roster v{current.version}")
    roster = members[-1].roster
    hinted = {s.keyid for s in decoded.envelope.signatures}
    others = sorted({o for o in (roster.owner_of_key(k) for k in hinted) if o and o != st.lab})
    if others:
        raise UnknownKeyError(f"entry of lab {st.lab!r} is signed with a key of {', '.join(others)}")
    if not any(k in roster.lab_keys(st.lab) for k in hinted if k):
        if all(hinted):
            raise UnknownKeyError(f"no signature is by a key the roster lists for lab {st.lab!r}")
    raise SignatureError(f"signature does not verify under lab {st.lab!r}'s roster key")


def _check_pinned_id(decoded: DecodedEntry, chain: RosterChain) -> None:
    """Spec §7.7: the entry at a pinned seq is the pinned entry (pins never disagree)."""
    st = decoded.statement
    found = chain.latest_pin(st.lab)
    if found is None or found[1].seq < st.seq:
        return
    for vr in chain.versions[1:]:
        pin = vr.roster.pin(st.lab)
        if pin is not None and pin.seq == st.seq and pin.entry_id != decoded.entry_id:
            raise PinMismatchError(
                f"entry {decoded.entry_id[:16]}… of {st.lab!r} at seq {st.seq} is not the entry "
                f"roster v{vr.version} pins there ({(pin.entry_id or '')[:16]}…)"
            )


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
    pins: Sequence[RosterPin] = (),
    discretionary_weight: int | None = None,
    vote_deadline_s: int | None = None,
    safety_case_weight: int | None = None,
) -> Roster:
    """Build a roster statement from plain values (``labs``: id, name, keys, endpoint, weight).

    ``discretionary_weight`` and ``vote_deadline_s`` (spec §6.11) and ``safety_case_weight``
    (§6.12) are written only when given.

    ``pins`` (updates only, spec §7.7) are written sorted by lab; none means no ``pins``
    member at all.
    """
    extra: dict[str, Any] = {}
    if pins:
        extra["pins"] = [p.model_dump(mode="json") for p in sorted(pins, key=lambda p: p.lab)]
    quorum: dict[str, Any] = {
        "pause": {"weight": pause_weight},
        "resume": {"weight": resume_weight},
        "roster": roster_threshold,
    }
    if discretionary_weight is not None:
        quorum["discretionary"] = {"weight": discretionary_weight}
    if vote_deadline_s is not None:
        quorum["vote_deadline_s"] = vote_deadline_s
    if safety_case_weight is not None:
        quorum["safety_case"] = {"weight": safety_case_weight}
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
            "quorum": quorum,
            "policy_digest": policy_digest,
            "suites": [s.model_dump(mode="json") for s in suites],
            **extra,
        }
    )


def pins_from_heads(chain: RosterChain, heads: Mapping[str, tuple[int, str]]) -> list[RosterPin]:
    """Pins for the next roster version: every lab of the current version (spec §7.7).

    ``heads`` maps a lab to the (seq, entry_id) of the last entry the drafting node holds
    (absent: an empty feed). A pin never falls behind the chain's earlier pins for the lab,
    even when the drafting node holds less than an earlier version's signers did.
    """
    out = []
    for lab in sorted(m.id for m in chain.current.roster.labs):
        seq, eid = heads.get(lab, (0, None))
        earlier = chain.latest_pin(lab)
        if earlier is not None and earlier[1].seq > seq:
            seq, eid = earlier[1].seq, earlier[1].entry_id
        out.append(RosterPin(lab=lab, seq=seq, entry_id=eid if seq else None))
    return out
