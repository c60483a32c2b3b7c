"""Request authentication between nodes: RFC 9421 HTTP Message Signatures with roster keys.

Reads of a node's API are for roster members and observers only (spec: HTTP), and only labs
may push envelopes. Every request is signed by the caller's roster key:

- algorithm ``ed25519`` (RFC 9421 §3.3.6), ``keyid`` = the roster keyid (hex SHA-256 of
  the raw public key), signature label ``tw`` and application ``tag`` ``tripwire/1``;
- covered components ``@method``, ``@path``, ``@query`` and, for requests with a body,
  ``content-digest`` (RFC 9530, ``sha-256``), so that neither the target nor the body can be
  swapped under a valid signature;
- ``created`` within ``clock_skew_s`` of the verifier's clock, and a random ``nonce`` that
  the verifier remembers for the whole acceptance window, so a captured request cannot be
  replayed.

``@authority`` is deliberately not covered: nodes sit behind proxies and are addressed by
several names; the path, query, body digest, nonce and short window carry the binding.

The key is looked up by keyid in the *current* roster only: a rotated-out key keeps proving
history it signed (entry signatures), but can no longer open a session.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import http_sf
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
    algorithms,
)
from http_message_signatures.exceptions import HTTPMessageSignaturesException

from protocol.errors import TripwireError
from protocol.keys import SigningKey
from protocol.roster import Roster

SIGNATURE_LABEL = "tw"
SIGNATURE_TAG = "tripwire/1"
BASE_COMPONENTS = ("@method", "@path", "@query")
#: Placeholder origin for the signature base: only @path and @query are covered, so the
#: authority the client used is irrelevant (and must not matter behind proxies).
_ORIGIN = "http://node.invalid"


# --- errors ---------------------------------------------------------------------------------


class AuthError(TripwireError):
    """A request could not be authenticated or is not allowed (HTTP 401/403)."""

    code = "unauthenticated"
    status = 401


class UnsignedRequestError(AuthError):
    """The request carries no RFC 9421 signature."""

    code = "unsigned-request"


class BadRequestSignatureError(AuthError):
    """The signature is malformed, covers too little, or does not verify."""

    code = "bad-request-signature"


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


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated member behind a request."""

    member: str
    """Lab or observer id from the roster."""
    keyid: str
    role: Literal["lab", "observer"]


# --- message adapter -------------------------------------------------------------------------


class _Message:
    """The minimal request view the signing library needs (method, absolute url, headers)."""

    def __init__(self, method: str, path: str, query: str, headers: dict[str, str]) -> None:
        self.method = method.upper()
        self.url = _ORIGIN + (path or "/") + (f"?{query}" if query else "")
        self.headers = headers


class _Keys(HTTPSignatureKeyResolver):
    def __init__(
        self,
        public: Mapping[str, object] | None = None,
        private: Mapping[str, object] | None = None,
    ) -> None:
        self._public = dict(public or {})
        self._private = dict(private or {})

    def resolve_public_key(self, key_id: str):  # type: ignore[no-untyped-def]
        return self._public.get(key_id)

    def resolve_private_key(self, key_id: str):  # type: ignore[no-untyped-def]
        return self._private[key_id]


def _split_target(target: str) -> tuple[str, str]:
    path, _, query = target.partition("?")
    return path or "/", query


def sign_request(
    key: SigningKey,
    method: str,
    target: str,
    body: bytes | None = None,
    *,
    created: datetime | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Return the headers that sign a request: ``Signature-Input``, ``Signature`` and,
    when ``body`` is given, ``Content-Digest``.

    ``target`` is the request target as sent on the wire (percent-encoded path and query,
    e.g. ``/v1/feeds/lab-a?after=3&limit=10``). ``created`` and ``nonce`` default to now
    and 128 random bits; tests override them to build stale or replayed requests.
    """
    path, query = _split_target(target)
    headers: dict[str, str] = {}
    msg = _Message(method, path, query, headers)
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=_Keys(private={key.keyid: key._key}),
    )
    signer.sign(
        msg,
        key_id=key.keyid,
        created=created or datetime.now(UTC),
        nonce=nonce if nonce is not None else base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("="),
        label=SIGNATURE_LABEL,
        tag=SIGNATURE_TAG,
        covered_component_ids=BASE_COMPONENTS,
        body=body if body else None,
    )
    return headers


# --- verifier --------------------------------------------------------------------------------


class ReplayCache:
    """Remembers (keyid, nonce) pairs until they leave the acceptance window.

    Memory is bounded by the window and the per-key rate limit (nonces are stored only after
    a signature verified, so strangers cannot fill it); ``max_entries`` is a last-resort cap:
    when reached, new requests are refused rather than old nonces forgotten, because
    forgetting would reopen a replay window.
    """

    def __init__(self, window_s: float, max_entries: int = 1_000_000) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def check_and_add(self, keyid: str, nonce: str, now: float) -> None:
        with self._lock:
            while self._seen:
                k, exp = next(iter(self._seen.items()))
                if exp > now:
                    break
                del self._seen[k]
            if (keyid, nonce) in self._seen:
                raise ReplayedRequestError("this request (keyid and nonce) was already used: replay refused")
            if len(self._seen) >= self.max_entries:
                raise ReplayedRequestError("replay cache is full; retry shortly")
            # Insertion order equals expiry order because the window is constant.
            self._seen[(keyid, nonce)] = now + self.window_s

    def __len__(self) -> int:
        return len(self._seen)


class RequestVerifier:
    """Server side of request authentication against the current roster.

    ``roster`` is a callable so that roster updates take effect on the next request.
    """

    def __init__(
        self,
        roster: Callable[[], Roster],
        *,
        clock_skew_s: float = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._roster = roster
        self.clock_skew_s = clock_skew_s
        self._clock = clock
        # A nonce must be remembered as long as its `created` can still pass the skew check:
        # from created-skew to created+skew, i.e. 2*skew after the earliest acceptance.
        self.replays = ReplayCache(2 * clock_skew_s + 1)
        self._key_cache: tuple[int, dict[str, tuple[str, str, object]]] | None = None

    def _keys(self) -> dict[str, tuple[str, str, object]]:
        roster = self._roster()
        marker = id(roster)
        if self._key_cache is None or self._key_cache[0] != marker:
            table: dict[str, tuple[str, str, object]] = {}
            for lab in roster.labs:
                for k in lab.keys:
                    table[k.keyid] = (lab.id, "lab", k.public()._key)
            for obs in roster.observers:
                for k in obs.keys:
                    table[k.keyid] = (obs.id, "observer", k.public()._key)
            self._key_cache = (marker, table)
        return self._key_cache[1]

    def verify(
        self,
        method: str,
        path: str,
        query: str,
        headers: Iterable[tuple[str, str]],
        body: bytes | None,
    ) -> Caller:
        """Authenticate a request; raise an :class:`AuthError` subclass naming the defect."""
        hdrs: dict[str, str] = {}
        for name, value in headers:
            lname = name.lower()
            hdrs[lname] = f"{hdrs[lname]}, {value}" if lname in hdrs else value
        if "signature-input" not in hdrs or "signature" not in hdrs:
            raise UnsignedRequestError(
                "this endpoint needs an RFC 9421 signed request (Signature-Input and Signature headers)"
            )
        try:
            parsed = http_sf.parse(hdrs["signature-input"].encode("latin-1"), tltype="dictionary")
        except Exception as e:
            raise BadRequestSignatureError(f"malformed Signature-Input: {e}") from e
        member = parsed.get(SIGNATURE_LABEL) if isinstance(parsed, dict) else None
        if member is None:
            raise BadRequestSignatureError(f"no signature labelled {SIGNATURE_LABEL!r}")
        params = member[1]
        keyid, created, nonce = params.get("keyid"), params.get("created"), params.get("nonce")
        if params.get("tag") != SIGNATURE_TAG:
            raise BadRequestSignatureError(f"signature tag must be {SIGNATURE_TAG!r}")
        if params.get("alg", "ed25519") != "ed25519":
            raise BadRequestSignatureError("only the ed25519 algorithm is accepted")
        if not isinstance(keyid, str) or not isinstance(created, int) or isinstance(created, bool):
            raise BadRequestSignatureError("signature must carry keyid and an integer created")
        if not isinstance(nonce, str) or not 8 <= len(nonce) <= 128:
            raise BadRequestSignatureError("signature must carry a nonce of 8 to 128 characters")
        entry = self._keys().get(keyid)
        if entry is None:
            raise UnknownRequestKeyError(f"keyid {keyid[:16]}… is not a key of any current roster member")
        now = self._clock()
        if abs(now - created) > self.clock_skew_s:
            raise StaleRequestError(
                f"signature created {int(now - created)} s from the server clock; "
                f"the accepted skew is ±{int(self.clock_skew_s)} s"
            )
        member_id, role, public = entry
        verifier = HTTPMessageVerifier(
            signature_algorithm=algorithms.ED25519, key_resolver=_Keys(public={keyid: public})
        )
        # Our own window check ran above; the library's is made wide so it never disagrees.
        verifier.max_clock_skew = timedelta(seconds=self.clock_skew_s + 1)
        required = list(BASE_COMPONENTS)
        if body:
            required.append("content-digest")
        path, _, _ = path.partition("?")
        try:
            verifier.verify(
                _Message(method, path, query, hdrs),
                max_age=None,
                expect_tag=SIGNATURE_TAG,
                expect_label=SIGNATURE_LABEL,
                require_components=required,
                body=body if body else None,
            )
        except (InvalidSignature, HTTPMessageSignaturesException) as e:
            raise BadRequestSignatureError(
                f"request signature does not verify: {e or 'signature mismatch'}"
            ) from e
        self.replays.check_and_add(keyid, nonce, now)
        return Caller(member=member_id, keyid=keyid, role=role)  # type: ignore[arg-type]


# --- rate limiting ---------------------------------------------------------------------------


class RateLimiter:
    """Token bucket per authenticated keyid: ``per_minute`` sustained, the same as burst."""

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, float(per_minute))
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token; return 0 when allowed, else the seconds until one is available."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate if self.rate > 0 else 60.0
