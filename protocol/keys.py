"""Ed25519 keys and keyids (spec §1).

``keyid`` is the lowercase hex SHA-256 of the 32-byte raw public key. It is a hint for
finding a key, never a security decision: a signature counts only when it verifies
under a key the roster lists for the signer. Private keys serialize as PKCS#8 PEM,
optionally encrypted with a passphrase; writing them to disk is the node's job.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from functools import cached_property

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.errors import KeyFileError, SchemaError


def keyid_for(raw_public: bytes) -> str:
    """keyid: lowercase hex SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(raw_public).hexdigest()


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key with its keyid."""

    raw: bytes
    _key: Ed25519PublicKey = field(repr=False, compare=False, hash=False)

    @classmethod
    def from_raw(cls, raw: bytes) -> PublicKey:
        if len(raw) != 32:
            raise SchemaError(f"Ed25519 public key must be 32 bytes, got {len(raw)}")
        try:
            return cls(raw, Ed25519PublicKey.from_public_bytes(raw))
        except ValueError as e:
            raise SchemaError(f"invalid Ed25519 public key: {e}") from e

    @classmethod
    def from_b64(cls, text: str) -> PublicKey:
        """Parse the roster form: standard base64 of the 32 raw bytes."""
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as e:
            raise SchemaError(f"public key is not base64: {e}") from e
        return cls.from_raw(raw)

    @cached_property
    def keyid(self) -> str:
        # Cached: signature counting asks for it on every check (ingest hot path).
        return keyid_for(self.raw)

    @property
    def b64(self) -> str:
        return base64.b64encode(self.raw).decode("ascii")

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` is a valid Ed25519 signature of ``data``."""
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


class SigningKey:
    """An Ed25519 private key. Never serialized unencrypted unless asked to."""

    __slots__ = ("_key", "public_key")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_key = PublicKey.from_raw(raw)

    def __repr__(self) -> str:
        return f"SigningKey(keyid={self.keyid[:16]}…)"

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """Deterministic key from a 32-byte seed (test vectors, demos)."""
        if len(seed) != 32:
            raise SchemaError("Ed25519 seed must be 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_pem(cls, pem: bytes, passphrase: bytes | None = None) -> SigningKey:
        """Load a PKCS#8 PEM private key, decrypting it with ``passphrase`` when given."""
        try:
            key = serialization.load_pem_private_key(pem, password=passphrase or None)
        except TypeError as e:
            if passphrase:
                raise KeyFileError("the key file is not encrypted, but a passphrase was given") from e
            raise KeyFileError("the key file is encrypted: a passphrase is required") from e
        except ValueError as e:
            raise KeyFileError(f"cannot load the key (wrong passphrase or not a PEM key): {e}") from e
        except UnsupportedAlgorithm as e:
            raise KeyFileError(f"unsupported key algorithm in the key file: {e}") from e
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"expected an Ed25519 key, found {type(key).__name__}")
        return cls(key)

    def to_pem(self, passphrase: bytes | None = None) -> bytes:
        """PKCS#8 PEM, encrypted with the best available scheme when a passphrase is given."""
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
        )
        return self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)

    @property
    def keyid(self) -> str:
        return self.public_key.keyid

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)
