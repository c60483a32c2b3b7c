"""Keys (spec §1) and DSSE envelopes (spec §3)."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from protocol.envelope import Envelope, EnvelopeSignature, b64decode_any, pae, sign_payload, verify_signatures
from protocol.errors import EnvelopeError, KeyFileError, OversizeError, SchemaError
from protocol.keys import PublicKey, SigningKey, keyid_for


def test_pae_official_vector() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_keyid_is_sha256_of_raw_public_key() -> None:
    k = SigningKey.from_seed(bytes(32))
    assert k.keyid == keyid_for(k.public_key.raw) and len(k.keyid) == 64
    assert PublicKey.from_b64(k.public_key.b64) == k.public_key


def test_pem_round_trip_with_and_without_passphrase() -> None:
    k = SigningKey.from_seed(bytes(range(32)))
    assert SigningKey.from_pem(k.to_pem()).keyid == k.keyid
    enc = k.to_pem(b"correct horse")
    assert b"ENCRYPTED" in enc
    assert SigningKey.from_pem(enc, b"correct horse").keyid == k.keyid


@pytest.mark.parametrize(
    ("pem", "passphrase", "message"),
    [
        (SigningKey.from_seed(bytes(32)).to_pem(b"pw"), None, "a passphrase is required"),
        (SigningKey.from_seed(bytes(32)).to_pem(b"pw"), b"wrong", "wrong passphrase"),
        (SigningKey.from_seed(bytes(32)).to_pem(), b"pw", "not encrypted, but a passphrase was given"),
        (b"not a pem", None, "not a PEM key"),
        (
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            None,
            "expected an Ed25519 key",
        ),
    ],
    ids=["missing_passphrase", "wrong_passphrase", "unexpected_passphrase", "garbage", "ecdsa_key"],
)
def test_key_file_errors(pem: bytes, passphrase: bytes | None, message: str) -> None:
    with pytest.raises(KeyFileError, match=message):
        SigningKey.from_pem(pem, passphrase)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: SigningKey.from_seed(b"short"), "seed must be 32 bytes"),
        (lambda: PublicKey.from_raw(b"x" * 31), "must be 32 bytes"),
        (lambda: PublicKey.from_b64("***"), "not base64"),
    ],
    ids=["short_seed", "short_public", "bad_b64"],
)
def test_key_value_errors(call: object, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        call()  # type: ignore[operator]


def test_verifiers_accept_url_safe_and_unpadded_base64() -> None:
    raw = bytes(range(250, 256)) + b"\xfb\xff"
    std = base64.b64encode(raw).decode()
    url = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert b64decode_any(std) == b64decode_any(url) == raw
    with pytest.raises(EnvelopeError, match="invalid base64"):
        b64decode_any("a+b_c")


def test_signatures_count_once_per_trusted_key_and_keyid_is_only_a_hint() -> None:
    a, b, stranger = (SigningKey.from_seed(bytes([i]) * 32) for i in (1, 2, 3))
    trusted = {a.keyid: a.public_key, b.keyid: b.public_key}
    env = sign_payload(b"payload", "t", [a, a, b, stranger])
    assert verify_signatures(env, b"payload", trusted) == {a.keyid, b.keyid}
    # A missing hint still finds the key; a hint naming an untrusted key never counts.
    sig_a = env.signatures[0].sig
    no_hint = Envelope(payloadType="t", payload=env.payload, signatures=[EnvelopeSignature(sig=sig_a)])
    assert verify_signatures(no_hint, b"payload", trusted) == {a.keyid}
    lying = Envelope(payloadType="t", payload=env.payload,
                     signatures=[EnvelopeSignature(keyid=stranger.keyid, sig=sig_a)])
    assert verify_signatures(lying, b"payload", trusted) == frozenset()
    # A signature over another payload type does not verify (PAE binds the type).
    other = Envelope(payloadType="u", payload=env.payload, signatures=env.signatures)
    assert verify_signatures(other, b"payload", trusted) == frozenset()
    assert env.with_signature(a) is env


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        ([], EnvelopeError, "must be a JSON object"),
        ({"payloadType": "t", "payload": "AA==", "signatures": []}, EnvelopeError, "signatures"),
        ({"payloadType": "t", "payload": "AA==", "signatures": [{"sig": "AA=="}], "x": 1}, EnvelopeError, "x"),
        ({"payloadType": "t" * 129, "payload": "AA==", "signatures": [{"sig": "AA=="}]}, OversizeError,
         "payloadType"),
        ({"payloadType": "t", "payload": "AA==", "signatures": [{"sig": "AA=="}] * 17}, OversizeError,
         "signatures"),
    ],
    ids=["not_object", "no_signatures", "extra_field", "long_type", "too_many_signatures"],
)
def test_envelope_parse_errors(data: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        Envelope.parse(data)


def test_envelope_from_json_refuses_floats() -> None:
    with pytest.raises(EnvelopeError.__mro__[1], match="float"):
        Envelope.from_json(b'{"payloadType":"t","payload":"AA==","signatures":[{"sig":"AA==","x":1.5}]}')


def test_cached_keyid_does_not_change_equality_or_hashing() -> None:
    a, b = SigningKey.from_seed(bytes(32)).public_key, SigningKey.from_seed(bytes(32)).public_key
    assert a.keyid == keyid_for(a.raw)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
