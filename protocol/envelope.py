"""DSSE v1 envelopes (spec §3): pre-authentication encoding, signing, signature checks.

A raw :class:`Envelope` proves nothing. Only :func:`verify_signatures` against keys the
roster lists turns it into evidence; the result types in :mod:`protocol.entries` and
:mod:`protocol.roster` are distinct from the raw envelope so that unverified data
cannot be mistaken for verified data.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from protocol.canonical import MAX_STATEMENT_BYTES, parse_json_strict
from protocol.errors import EnvelopeError, OversizeError
from protocol.keys import PublicKey, SigningKey

ENTRY_PAYLOAD_TYPE = "application/vnd.tripwire.entry.v1+json"
ROSTER_PAYLOAD_TYPE = "application/vnd.tripwire.roster.v1+json"
CHECKPOINT_PAYLOAD_TYPE = "application/vnd.tripwire.checkpoint.v1+json"
PAYLOAD_TYPES = frozenset({ENTRY_PAYLOAD_TYPE, ROSTER_PAYLOAD_TYPE, CHECKPOINT_PAYLOAD_TYPE})

#: Largest encoded envelope payload (base64 of MAX_STATEMENT_BYTES).
MAX_PAYLOAD_B64 = (MAX_STATEMENT_BYTES + 2) // 3 * 4
MAX_SIGNATURES = 16


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSEv1 pre-authentication encoding: ``DSSEv1 SP LEN(type) SP type SP LEN(body) SP body``."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def b64decode_any(text: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not (spec §3: verifiers accept both)."""
    if not isinstance(text, str):
        raise EnvelopeError("base64 field must be a string")
    s = text.strip()
    if "-" in s or "_" in s:
        s = s.replace("-", "+").replace("_", "/")
    s += "=" * (-len(s) % 4)
    try:
        # strict_mode: refuse characters outside the alphabet and misplaced padding.
        return binascii.a2b_base64(s, strict_mode=True)
    except (binascii.Error, ValueError) as e:
        raise EnvelopeError(f"invalid base64: {e}") from e


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, use_attribute_docstrings=True)


class EnvelopeSignature(_Frozen):
    """One DSSE signature: a keyid hint and the base64 Ed25519 signature."""

    keyid: Annotated[str, StringConstraints(max_length=64)] = ""
    """Lowercase hex SHA-256 of the signer's raw public key (a lookup hint only)."""
    sig: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    """Base64 Ed25519 signature over PAE(payloadType, payload)."""


class Envelope(_Frozen):
    """A DSSE v1 envelope as it travels on the wire (unverified)."""

    payloadType: Annotated[str, StringConstraints(max_length=128)]
    """Media type of the payload; tells which statement schema applies."""
    payload: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PAYLOAD_B64)]
    """Base64 of the canonical statement bytes."""
    signatures: Annotated[list[EnvelopeSignature], Field(min_length=1, max_length=MAX_SIGNATURES)]
    """One or more signatures; at most one counts per unique trusted key."""

    @classmethod
    def parse(cls, data: Any) -> Envelope:
        """Validate a parsed JSON value as an envelope, raising :class:`EnvelopeError`."""
        if not isinstance(data, Mapping):
            raise EnvelopeError("an envelope must be a JSON object")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "envelope"
            if first["type"] in ("string_too_long", "too_long"):
                raise OversizeError(f"envelope field {loc}: {first['msg']}") from e
            raise EnvelopeError(f"malformed envelope at {loc}: {first['msg']}") from e

    @classmethod
    def from_json(cls, data: bytes) -> Envelope:
        return cls.parse(parse_json_strict(data, max_bytes=MAX_PAYLOAD_B64 + 64 * 1024))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def payload_bytes(self) -> bytes:
        return b64decode_any(self.payload)

    def with_signature(self, key: SigningKey) -> Envelope:
        """Add a signature by ``key`` (multi-party signing, e.g. the genesis roster)."""
        body = self.payload_bytes()
        sig = EnvelopeSignature(
            keyid=key.keyid, sig=base64.b64encode(key.sign(pae(self.payloadType, body))).decode("ascii")
        )
        if any(s.keyid == key.keyid for s in self.signatures):
            return self
        return Envelope(payloadType=self.payloadType, payload=self.payload, signatures=[*self.signatures, sig])


def sign_payload(payload: bytes, payload_type: str, keys: Iterable[SigningKey]) -> Envelope:
    """Sign ``payload`` with each key; producers emit standard base64 (spec §3)."""
    signed = pae(payload_type, payload)
    sigs = [
        EnvelopeSignature(keyid=k.keyid, sig=base64.b64encode(k.sign(signed)).decode("ascii")) for k in keys
    ]
    if not sigs:
        raise EnvelopeError("at least one signing key is required")
    return Envelope(
        payloadType=payload_type, payload=base64.b64encode(payload).decode("ascii"), signatures=sigs
    )


def verify_signatures(
    envelope: Envelope, payload: bytes, trusted: Mapping[str, PublicKey]
) -> frozenset[str]:
    """Return the keyids of trusted keys that validly signed ``envelope``.

    ``trusted`` maps keyid to key. The keyid in a signature is only a hint: when it is
    absent, every trusted key is tried, so a signature is never lost to a
    missing hint; a keyid that names no trusted key is skipped (it cannot count, and
    trying every key for it would let a forger multiply our work); and a keyid never
    counts unless its own key verifies (spec §3). Each
    trusted key counts at most once, however many signatures repeat it.
    """
    signed = pae(envelope.payloadType, payload)
    good: set[str] = set()
    for s in envelope.signatures:
        try:
            sig = b64decode_any(s.sig)
        except EnvelopeError:
            continue
        if len(sig) != 64:
            continue
        hinted = trusted.get(s.keyid)
        if hinted is None and s.keyid:
            continue
        candidates = [hinted] if hinted is not None else list(trusted.values())
        for key in candidates:
            if key.keyid in good:
                continue
            if key.verify(sig, signed):
                good.add(key.keyid)
                break
    return frozenset(good)
