"""Request authentication between nodes: RFC 9421 HTTP Message Signatures with roster keys.

Reads of a node's API are for roster members and observers only (spec: HTTP), and only labs
may push envelopes. Every request is signed by the caller's roster key:

- algorithm ``ed25519`` (RFC 9421 §3.3.6), ``keyid`` = the roster keyid (hex SHA-256 of
  the raw public key), signature label ``tw`` and application ``tag`` ``tripwire/1``;
- covered components ``@method``, ``@authority``, ``@path``, ``@query`` and, for requests
  with a body, ``content-digest`` (RFC 9530, ``sha-256``), so that neither the target, the
  node it was sent to, nor the body can be swapped under a valid signature (``@target-uri``
  stands for ``@authority``, ``@path`` and ``@query`` together);
- ``created`` within ``clock_skew_s`` of the verifier's clock, and a random ``nonce`` that
  the verifier remembers for the whole acceptance window, so a captured request cannot be
  replayed.

``@authority`` binds a request to the node it was sent to: a verifier checks it against the
names the node answers as (:class:`NodeOrigins`: its public URL, its bind address, extra
names from node.toml), never against a name the request merely claims, so a request
captured on its way to one node is refused by every other node. The nonces are kept in the
node's database (:mod:`node.store.nonces`), so a restart does not reopen the window.

Other covered components are accepted when they verify (RFC 9421 §2: ``@scheme``,
``@request-target``, ``@query-param``, header fields with ``sf``, ``key`` or ``bs``); those
the node cannot check (``@status``, ``req``, trailers, unknown derived components, fields
the request does not carry) are refused by name.

The key is looked up by keyid in the *current* roster only: a rotated-out key keeps proving
history it signed (entry signatures), but can no longer open a session.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import urlsplit

import http_sf
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
    VerificationKey,
    algorithms,
)
from http_message_signatures import SigningKey as HTTPSigningKey
from http_message_signatures.exceptions import HTTPMessageSignaturesException

from node.errors import (
    BadRequestSignatureError,
    MisdirectedRequestError,
    ReplayedRequestError,
    StaleRequestError,
    UncheckableComponentError,
    UnknownRequestKeyError,
    UnsignedRequestError,
)
from protocol.keys import SigningKey
from protocol.roster import Roster

Role = Literal["lab", "observer"]

if TYPE_CHECKING:
    from node.home.config import NodeConfig

SIGNATURE_LABEL = "tw"
SIGNATURE_TAG = "tripwire/1"
BASE_COMPONENTS = ("@method", "@authority", "@path", "@query")
#: Derived components (RFC 9421 §2.2) a request signature may cover: the node can compute
#: each from the request it received.
CHECKABLE_DERIVED = frozenset(
    {"@method", "@authority", "@scheme", "@target-uri", "@request-target", "@path", "@query", "@query-param"}
)
#: Parameters a covered header field may carry (RFC 9421 §2.1); ``tr`` (trailers) and
#: ``req`` (response signatures) name things a request's verifier cannot see.
CHECKABLE_FIELD_PARAMS = frozenset({"sf", "key", "bs"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated member behind a request."""

    member: str
    """Lab or observer id from the roster."""
    keyid: str
    role: Role


# --- the names a node answers as -------------------------------------------------------------


def normalize_authority(scheme: str, authority: str) -> str:
    """``host[:port]`` as RFC 9421 §2.2.3 covers it: lower case, default port dropped."""
    value = authority.strip().lower()
    default = _DEFAULT_PORTS.get(scheme.lower())
    if default and value.endswith(f":{default}") and not value.endswith("]"):
        value = value[: -len(default) - 1]
    return value


def origin_of(url: str) -> tuple[str, str]:
    """``(scheme, authority)`` of an absolute http(s) URL, the authority normalized."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
        raise ValueError(f"{url!r} is not an absolute http(s) URL")
    netloc = parts.netloc.rpartition("@")[2]
    return parts.scheme, normalize_authority(parts.scheme, netloc)


@dataclass(frozen=True)
class NodeOrigins:
    """The origins a node answers as: ``public`` (its roster endpoint, the name checked when a
    request arrives under any other Host, e.g. rewritten by a reverse proxy) and ``others``
    (its bind address, extra names), each ``(scheme, authority)``."""

    public: tuple[str, str]
    others: tuple[tuple[str, str], ...] = ()

    @classmethod
    def for_config(cls, cfg: NodeConfig, host: str | None = None, port: int | None = None) -> NodeOrigins:
        """Origins of a node from its settings (and the address it actually binds)."""
        public = origin_of(cfg.endpoint())
        scheme = "https" if cfg.tls is not None else "http"
        others: list[tuple[str, str]] = []
        bind_host, bind_port = host or cfg.server.host, port or cfg.server.port
        if bind_host not in ("", "0.0.0.0", "::"):
            shown = f"[{bind_host}]" if ":" in bind_host else bind_host
            others.append((scheme, normalize_authority(scheme, f"{shown}:{bind_port}")))
        for name in cfg.server.authorities:
            others.append((public[0], normalize_authority(public[0], name)))
        return cls(public, tuple(o for o in dict.fromkeys(others) if o != public))

    def resolve(self, host_header: str | None) -> tuple[str, str, bool]:
        """``(scheme, authority, from_host)`` to check a request's ``@authority`` against:
        the request's own Host when it names this node, else the public origin."""
        if host_header:
            for scheme, authority in (self.public, *self.others):
                if normalize_authority(scheme, host_header) == authority:
                    return scheme, authority, True
        return self.public[0], self.public[1], False

    def names(self) -> list[str]:
        return [a for _, a in (self.public, *self.others)]


# --- message adapter -------------------------------------------------------------------------


class _Message:
    """The minimal request view the signing library needs (method, absolute url, headers)."""

    def __init__(self, method: str, url: str, headers: dict[str, str]) -> None:
        self.method = method.upper()
        self.url = url
        self.headers = headers


class _Keys(HTTPSignatureKeyResolver):
    def __init__(
        self,
        public: Mapping[str, VerificationKey] | None = None,
        private: Mapping[str, HTTPSigningKey] | None = None,
    ) -> None:
        self._public = dict(public or {})
        self._private = dict(private or {})

    def resolve_public_key(self, key_id: str) -> VerificationKey | None:
        return self._public.get(key_id)

    def resolve_private_key(self, key_id: str) -> HTTPSigningKey:
        return self._private[key_id]


def sign_request(
    key: SigningKey,
    method: str,
    url: str,
    body: bytes | None = None,
    *,
    created: datetime | None = None,
    nonce: str | None = None,
    components: Sequence[str] = BASE_COMPONENTS,
    headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Return the headers that sign a request: ``Signature-Input``, ``Signature`` and,
    when ``body`` is given, ``Content-Digest``.

    ``url`` is the absolute URL the request is sent to, as on the wire (percent-encoded
    path and query, e.g. ``https://node.lab-a.example/v1/feeds/lab-a?after=3&limit=10``):
    its authority binds the request to that node. ``created`` and ``nonce`` default to now
    and 128 random bits, ``components`` to :data:`BASE_COMPONENTS`; tests override them to
    build stale, replayed or under-covered requests. ``headers`` are header fields the request
    carries, needed only when ``components`` cover some (only the new headers are returned).
    """
    try:
        origin_of(url)
    except ValueError as e:
        raise ValueError(
            f"sign_request needs the absolute URL of the request ({e}): the signature binds the request "
            "to the node it is sent to"
        ) from e
    given = {k.lower(): v for k, v in (headers or {}).items()}
    fields = dict(given)
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=_Keys(private={key.keyid: key._key}),
    )
    signer.sign(
        _Message(method, url, fields),
        key_id=key.keyid,
        created=created or datetime.now(UTC),
        nonce=nonce if nonce is not None else base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("="),
        label=SIGNATURE_LABEL,
        tag=SIGNATURE_TAG,
        covered_component_ids=tuple(components),
        body=body if body else None,
    )
    return {k: v for k, v in fields.items() if k.lower() not in given}


# --- replay protection -----------------------------------------------------------------------


class NonceLedger(Protocol):
    """Where a verifier remembers the (keyid, nonce) pairs it accepted."""

    def remember(self, keyid: str, nonce: str, now: float, expires: float) -> bool:
        """Record the pair until ``expires`` (Unix seconds); False when it is already recorded
        and unexpired. Raise :class:`ReplayedRequestError` when nothing more can be recorded."""
        ...


class ReplayCache:
    """Remembers (keyid, nonce) pairs in memory until they leave the acceptance window (a
    node keeps them in its database instead: :class:`node.store.nonces.NonceTable`).

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

    def remember(self, keyid: str, nonce: str, now: float, expires: float) -> bool:
        with self._lock:
            while self._seen:
                k, exp = next(iter(self._seen.items()))
                if exp > now:
                    break
                del self._seen[k]
            if (keyid, nonce) in self._seen:
                return False
            if len(self._seen) >= self.max_entries:
                raise ReplayedRequestError("replay cache is full; retry shortly")
            # Insertion order equals expiry order because the window is constant.
            self._seen[(keyid, nonce)] = expires
            return True

    def check_and_add(self, keyid: str, nonce: str, now: float) -> None:
        if not self.remember(keyid, nonce, now, now + self.window_s):
            raise ReplayedRequestError("this request (keyid and nonce) was already used: replay refused")

    def __len__(self) -> int:
        return len(self._seen)


# --- verifier --------------------------------------------------------------------------------


def _component_problem(name: str, params: Mapping[str, object], hdrs: Mapping[str, str]) -> str | None:
    """Why the node cannot check a covered component, or None when it can."""
    shown = name + "".join(f";{k}" if v is True else f";{k}={v!r}" for k, v in params.items())
    if "req" in params:
        return f"{shown}: 'req' names a component of a request a response answers; requests cannot carry it"
    if name.startswith("@"):
        if name == "@status":
            return f"{shown}: @status is a response component"
        if name not in CHECKABLE_DERIVED:
            return f"{shown}: unknown derived component"
        if name == "@query-param" and set(params) != {"name"}:
            return f"{shown}: @query-param needs exactly a 'name' parameter"
        if name != "@query-param" and params:
            return f"{shown}: derived component parameters are not defined"
        return None
    if name != name.lower():
        return f"{shown}: covered field names must be lower case (RFC 9421 §2.1)"
    if "tr" in params:
        return f"{shown}: trailer fields are not checked by this node"
    unknown = set(params) - CHECKABLE_FIELD_PARAMS
    if unknown:
        return f"{shown}: unknown field parameter(s) {', '.join(sorted(unknown))}"
    if name not in hdrs:
        return f"{shown}: the request carries no {name} header field"
    return None


class RequestVerifier:
    """Server side of request authentication against the current roster.

    ``roster`` is a callable so that roster updates take effect on the next request.
    ``origins`` are the names this node answers as (the covered ``@authority`` must be one);
    ``nonces`` remembers accepted nonces (default: in memory; a node uses its database).
    """

    def __init__(
        self,
        roster: Callable[[], Roster],
        *,
        origins: NodeOrigins,
        nonces: NonceLedger | None = None,
        clock_skew_s: float = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._roster = roster
        self.origins = origins
        self.clock_skew_s = clock_skew_s
        self._clock = clock
        # A nonce must be remembered as long as its `created` can still pass the skew check:
        # from created-skew to created+skew, i.e. 2*skew after the earliest acceptance.
        self.window_s = 2 * clock_skew_s + 1
        self.nonces: NonceLedger = nonces if nonces is not None else ReplayCache(self.window_s)
        self._key_cache: tuple[int, dict[str, tuple[str, Role, Ed25519PublicKey]]] | None = None

    def _keys(self) -> dict[str, tuple[str, Role, Ed25519PublicKey]]:
        roster = self._roster()
        marker = id(roster)
        if self._key_cache is None or self._key_cache[0] != marker:
            table: dict[str, tuple[str, Role, Ed25519PublicKey]] = {}
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
        """Authenticate a request; raise an :class:`AuthError` subclass naming the defect.

        ``headers`` are the request's header fields as received (``Host`` included): the
        node's own origin for ``@authority``, ``@scheme`` and ``@target-uri`` is chosen from
        :attr:`origins` by the Host field, never taken from it unchecked.
        """
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
        if not isinstance(member, tuple) or not isinstance(member[0], list):
            raise BadRequestSignatureError(f"signature {SIGNATURE_LABEL!r} must be an inner list of components")
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
        covered = self._check_components(member[0], hdrs, body)
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
        scheme, authority, from_host = self.origins.resolve(hdrs.get("host"))
        path = path.partition("?")[0] or "/"
        url = f"{scheme}://{authority}{path}" + (f"?{query}" if query else "")
        try:
            self._verify_at(verifier, method, url, hdrs, body)
        except (InvalidSignature, HTTPMessageSignaturesException) as e:
            reason = str(e) or "the signature does not match the request"
            if str(e) or not covered & {"@authority", "@target-uri"}:
                raise BadRequestSignatureError(f"request signature does not verify: {reason}") from e
            claimed = hdrs.get("host", "")
            if not from_host and claimed and self._verifies_for(verifier, method, claimed, path, query, hdrs, body):
                raise MisdirectedRequestError(
                    f"the request was signed for {claimed!r}, not for this node ({', '.join(self.origins.names())}): "
                    "a request sent to one node is refused by every other"
                ) from e
            how = "the request's Host" if from_host else f"this node's public URL; Host {claimed!r} is not one of its names"
            raise BadRequestSignatureError(
                f"request signature does not verify: {reason}. It covers @authority, checked as {authority!r} "
                f"({how}); this node answers as {', '.join(self.origins.names())}"
            ) from e
        if not self.nonces.remember(keyid, nonce, now, created + self.clock_skew_s + 1):
            raise ReplayedRequestError("this request (keyid and nonce) was already used: replay refused")
        return Caller(member=member_id, keyid=keyid, role=role)

    @staticmethod
    def _verify_at(
        verifier: HTTPMessageVerifier, method: str, url: str, hdrs: dict[str, str], body: bytes | None
    ) -> None:
        verifier.verify(
            _Message(method, url, hdrs),
            max_age=None,
            expect_tag=SIGNATURE_TAG,
            expect_label=SIGNATURE_LABEL,
            body=body if body else None,
        )

    def _verifies_for(
        self,
        verifier: HTTPMessageVerifier,
        method: str,
        host: str,
        path: str,
        query: str,
        hdrs: dict[str, str],
        body: bytes | None,
    ) -> bool:
        """Whether the signature verifies for the authority the request claims (only to name
        the refusal: such a request is never accepted)."""
        for scheme in ("https", "http"):
            try:
                self._verify_at(verifier, method, f"{scheme}://{host}{path}" + (f"?{query}" if query else ""), hdrs, body)
                return True
            except (InvalidSignature, HTTPMessageSignaturesException, ValueError):
                continue
        return False

    def _check_components(self, items: Sequence[object], hdrs: Mapping[str, str], body: bytes | None) -> set[str]:
        """Refuse, by name, what the node cannot check and what must be covered but is not."""
        covered: set[str] = set()
        for item in items:
            if not isinstance(item, tuple) or not isinstance(item[0], str):
                raise BadRequestSignatureError("covered components must be strings (RFC 9421 §2)")
            name, params = item[0], dict(item[1])
            problem = _component_problem(name, params, hdrs)
            if problem is not None:
                raise UncheckableComponentError(f"the signature covers a component this node cannot check: {problem}")
            covered.add(name)
        whole = "@target-uri" in covered
        missing = [c for c in ("@method",) if c not in covered]
        if not whole and "@authority" not in covered:
            missing.append("@authority")
        if not whole and "@request-target" not in covered:
            missing += [c for c in ("@path", "@query") if c not in covered]
        if body and "content-digest" not in covered:
            missing.append("content-digest")
        if missing:
            raise BadRequestSignatureError(
                f"the signature must cover {', '.join(missing)} (covered: {', '.join(sorted(covered)) or 'nothing'}); "
                f"sign {', '.join(BASE_COMPONENTS)} and, with a body, content-digest"
            )
        return covered


# --- rate limiting ---------------------------------------------------------------------------


class RateLimiter:
    """Token bucket per authenticated keyid: ``per_minute`` sustained; the burst is the same
    unless ``capacity`` is given. ``take(key, cost)`` spends ``cost`` tokens (a request, or
    the bytes of a body)."""

    def __init__(
        self, per_minute: float, *, capacity: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, float(per_minute if capacity is None else capacity))
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; return 0 when allowed, else the seconds until they are there."""
        now = self._clock()
        need = min(float(cost), self.capacity)
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= need:
                self._buckets[key] = (tokens - need, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (need - tokens) / self.rate if self.rate > 0 else 60.0
