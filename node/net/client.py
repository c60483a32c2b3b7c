"""HTTP clients for a peer's node API, signing every request with the caller's roster key.

:class:`PeerClient` (blocking, for the CLI, gates and tests) and :class:`AsyncPeerClient`
(asyncio, for sync) expose the same methods. Towards an ``https://`` peer they use the
``ssl.SSLContext`` given as ``tls`` (the node's certificate and its trusted CAs, see
:mod:`node.net.tls`), and the request signatures stay required: TLS is a layer under them. Responses are size-capped and parsed
defensively: a peer is untrusted, so a malformed answer raises :class:`PeerResponseError`
(a :class:`~protocol.errors.PeerDataError`; members a newer peer added are ignored, see
:func:`node.contracts.read_answer`) and a failed exchange raises
:class:`PeerUnavailableError` or :class:`PeerHTTPError` (both
:class:`~protocol.errors.TransportError`), or :class:`PeerTLSError` when the TLS handshake
is what failed.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from pydantic import TypeAdapter, ValidationError

from node import contracts
from node.net.auth import sign_request
from protocol.envelope import Envelope
from protocol.errors import PeerDataError, TransportError
from protocol.feed import EquivocationProof, Head
from protocol.keys import SigningKey

log = logging.getLogger(__name__)

#: Largest response body read from a peer (a feed page of big eval results fits easily).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class PeerHTTPError(TransportError):
    """The peer answered with an error status; ``status`` and the problem ``problem_code``."""

    code = "peer-http-error"

    def __init__(self, status: int, problem_code: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"peer answered {status} {problem_code}: {detail}")
        self.status, self.problem_code, self.detail, self.retry_after = status, problem_code, detail, retry_after


class PeerUnavailableError(TransportError):
    """The peer could not be reached, timed out, or broke the connection."""

    code = "peer-unavailable"


class PeerTLSError(PeerUnavailableError):
    """The TLS handshake with the peer failed: its certificate is not trusted, or it refused ours."""

    code = "peer-tls"


#: A server refusing a client certificate may just close the connection (asyncio servers
#: send no TLS alert): during the handshake under TLS 1.2, after it under TLS 1.3.
_REFUSED_HINT = (
    "the peer closed the TLS connection without answering: if it requires client certificates, "
    "it did not accept this node's (the peer's tls.ca must trust this node's tls.cert)"
)


def _tls_reason(err: ssl.SSLError) -> str:
    if isinstance(err, ssl.SSLCertVerificationError):
        return (
            f"the peer's certificate is not trusted ({err.verify_message or err.reason}): it must chain to "
            "a certificate in this node's tls.ca and name the host of the peer's URL"
        )
    reason = str(err.reason or err)
    if reason in ("TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_HANDSHAKE_FAILURE"):
        return f"the peer requires a client certificate and got none it accepts ({reason})"
    if reason in ("TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN"):
        return f"the peer refused this node's certificate: it is not signed by a CA the peer trusts ({reason})"
    if reason == "UNEXPECTED_EOF_WHILE_READING":
        return f"{_REFUSED_HINT} ({reason})"
    if reason == "WRONG_VERSION_NUMBER":
        return f"the peer does not speak TLS at this address (an http:// node?) ({reason})"
    return f"TLS failed: {err}"


def _transport_error(what: str, e: httpx.HTTPError, *, https: bool) -> PeerUnavailableError:
    """A failed exchange as PeerTLSError when TLS is the cause (httpx chains the ssl error)."""
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return PeerTLSError(f"{what}: {_tls_reason(cause)}")
        cause = cause.__cause__ or cause.__context__
    if https and isinstance(e, httpx.RemoteProtocolError | httpx.ReadError):
        return PeerUnavailableError(f"{what}: {type(e).__name__}: {str(e).rstrip('.')}; {_REFUSED_HINT}")
    return PeerUnavailableError(f"{what}: {type(e).__name__}: {e}")


class PeerResponseError(PeerDataError):
    """The peer's answer is not what the API promises (bad JSON, wrong shape, too large)."""

    code = "bad-peer-response"


class SignatureAuth(httpx.Auth):
    """httpx auth flow adding RFC 9421 signature headers (see :mod:`node.net.auth`)."""

    requires_request_body = True

    def __init__(self, key: SigningKey) -> None:
        self.key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        # The absolute URL: its authority (covered as @authority) binds the request to this peer.
        url = request.url.copy_with(fragment=None)
        request.headers.update(sign_request(self.key, request.method, str(url), request.content or None))
        yield request


@dataclass(frozen=True)
class FeedPage:
    """A :class:`node.contracts.FeedPage` as received: heads as :class:`~protocol.feed.Head`,
    with the size of the body."""

    lab: str
    after: int
    envelopes: list[Envelope]
    head: Head | None
    size: int
    """Bytes of the response body (for transfer accounting)."""


# --- response parsing (shared by both clients) ---------------------------------------------------


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except (ValueError, RecursionError) as e:
        raise PeerResponseError(f"peer sent invalid JSON: {str(e)[:200]}") from e


def _json_object(body: bytes) -> dict[str, Any]:
    """A JSON object from a peer (a proof, an entry, a certificate); anything else is refused."""
    doc = _json(body)
    if not isinstance(doc, dict):
        raise PeerResponseError(f"peer sent JSON {type(doc).__name__}, expected an object")
    return doc


def _contract_error(what: str, e: ValidationError) -> PeerResponseError:
    first = e.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or what
    return PeerResponseError(f"{what} does not match the API contract at {loc}: {first['msg']}"[:400])


def _head(doc: contracts.HeadDocument) -> Head:
    return Head(doc.seq, doc.entry_id)


def parse_heads(body: bytes) -> dict[str, Head]:
    try:
        heads = contracts.read_answer(dict[str, contracts.HeadDocument], body)
    except ValidationError as e:
        _json(body)  # invalid JSON is named as such
        raise _contract_error("heads", e) from e
    return {lab: _head(h) for lab, h in heads.items()}


def parse_feed(body: bytes) -> FeedPage:
    try:
        page = contracts.read_answer(contracts.FeedPage, body)
    except ValidationError as e:
        data = _json(body)
        if isinstance(data, dict) and isinstance(data.get("envelopes"), list):
            # A bad envelope is named as Envelope.parse names it (its error code counts).
            for item in data["envelopes"]:
                Envelope.parse(item)
        raise _contract_error("feed page", e) from e
    return FeedPage(
        lab=page.lab,
        after=page.after,
        envelopes=page.envelopes,
        head=None if page.head is None else _head(page.head),
        size=len(body),
    )


def parse_results(body: bytes) -> list[contracts.IngestResult]:
    """The results of an envelope POST: a batch's, or a single envelope's one result."""
    try:
        answer = contracts.read_answer(_INGEST_ANSWER, body)
    except ValidationError as e:
        _json(body)
        raise _contract_error("envelope POST answer", e) from e
    return list(answer.results) if isinstance(answer, contracts.BatchResult) else [answer]


def _parse_proof_results(body: bytes) -> list[dict[str, Any]]:
    data = _json(body)
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        return list(data["results"])
    if isinstance(data, dict) and "status" in data:
        return [data]
    raise PeerResponseError("equivocation POST answer must carry results")


def parse_status(body: bytes) -> contracts.StatusDocument:
    try:
        return contracts.read_answer(contracts.StatusDocument, body)
    except ValidationError as e:
        _json(body)
        raise _contract_error("status document", e) from e


def parse_roster(body: bytes) -> contracts.RosterDocument:
    try:
        return contracts.read_answer(contracts.RosterDocument, body)
    except ValidationError as e:
        _json(body)
        raise _contract_error("roster document", e) from e


def parse_equivocations(body: bytes) -> list[Any]:
    """The proofs of a ``GET /v1/equivocations`` answer, as sent (each parsed and verified
    by the receiver before it counts)."""
    data = _json(body)
    if not isinstance(data, dict) or not isinstance(data.get("equivocations"), list):
        raise PeerResponseError("equivocations answer must be an object with an equivocations array")
    out = []
    for item in data["equivocations"]:
        if not isinstance(item, dict) or "proof" not in item:
            raise PeerResponseError("each equivocations item must be an object with a proof")
        out.append(item["proof"])
    return out


def _proofs_body(proofs: Sequence[EquivocationProof]) -> bytes:
    return orjson.dumps([p.model_dump(mode="json") for p in proofs])


def _raise_for(status: int, headers: httpx.Headers, body: bytes) -> None:
    if status < 400:
        return
    code, detail = f"http-{status}", body[:200].decode("utf-8", "replace")
    try:
        doc = json.loads(body)
        if isinstance(doc, dict):
            code, detail = str(doc.get("code", code)), str(doc.get("detail", detail))
    except (ValueError, RecursionError):
        pass
    retry = headers.get("retry-after")
    try:
        retry_after = float(retry) if retry is not None else None
    except ValueError:
        retry_after = None
    raise PeerHTTPError(status, code, detail, retry_after)


def _feed_params(after: int, limit: int) -> dict[str, int]:
    return {"after": after, "limit": limit}


#: Serializes a batch in one pass of pydantic-core (a sixth of the cost of dicts + json.dumps).
_ENVELOPES = TypeAdapter(list[Envelope])
#: A batch's answer, or a single envelope's one result.
_INGEST_ANSWER = contracts.BatchResult | contracts.IngestResult


def _envelopes_body(envelopes: Sequence[Envelope] | Sequence[str]) -> bytes:
    """A JSON array of envelopes; ``str`` items are envelope JSON the node stored after
    verifying it (a push of its own feed), sent without a parse and re-serialization."""
    if envelopes and all(isinstance(e, str) for e in envelopes):
        return b"[" + ",".join(e for e in envelopes if isinstance(e, str)).encode("utf-8") + b"]"
    return _ENVELOPES.dump_json([e for e in envelopes if isinstance(e, Envelope)])


def _headers(content: bytes | None) -> dict[str, str] | None:
    return {"content-type": "application/json"} if content is not None else None


class _Base:
    def __init__(
        self,
        base_url: str,
        key: SigningKey,
        lab_id: str,
        *,
        timeout: float,
        max_response_bytes: int,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.tls = tls
        self.tls_url = self.base_url.startswith("https://")
        if tls is not None and not self.tls_url:
            log.warning("TLS is configured but %s is not an https:// URL: talking to it without TLS", self.base_url)
        self.key, self.lab_id = key, lab_id
        self.timeout, self.max_response_bytes = timeout, max_response_bytes
        self.bytes_in = 0
        """Response body bytes received (transfer accounting)."""
        self.bytes_out = 0
        """Request body bytes sent."""

    def _take(self, buf: bytearray, chunk: bytes) -> None:
        buf += chunk
        if len(buf) > self.max_response_bytes:
            raise PeerResponseError(f"response exceeds {self.max_response_bytes} bytes")

    def _done(self, r: httpx.Response, buf: bytearray, content: bytes | None) -> tuple[int, httpx.Headers, bytes]:
        self.bytes_in += len(buf)
        self.bytes_out += len(content or b"")
        return r.status_code, r.headers, bytes(buf)

    def _client_kwargs(self) -> dict[str, Any]:
        # Without a context, an https:// peer is verified against the system's CAs (a node
        # behind a TLS-terminating proxy with a public certificate).
        verify: ssl.SSLContext | bool = self.tls if self.tls is not None else True
        return {
            "verify": verify,
            "base_url": self.base_url,
            "auth": SignatureAuth(self.key),
            "timeout": httpx.Timeout(self.timeout),
            "headers": {"user-agent": f"tripwire-node/{self.lab_id}"},
            # Peers are addressed by their roster endpoint; never follow a redirect elsewhere.
            "follow_redirects": False,
            "trust_env": False,
        }


class PeerClient(_Base):
    """Blocking client for one peer's API."""

    def __init__(
        self,
        base_url: str,
        key: SigningKey,
        lab_id: str,
        *,
        timeout: float = 10.0,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(base_url, key, lab_id, timeout=timeout, max_response_bytes=max_response_bytes, tls=tls)
        self._http = httpx.Client(**self._client_kwargs())

    def __enter__(self) -> PeerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, content: bytes | None = None
    ) -> tuple[int, httpx.Headers, bytes]:
        """Send a signed request; return (status, headers, body) without raising on 4xx/5xx."""
        try:
            with self._http.stream(method, path, params=params, content=content, headers=_headers(content)) as r:
                buf = bytearray()
                for chunk in r.iter_bytes():
                    self._take(buf, chunk)
                return self._done(r, buf, content)
        except httpx.HTTPError as e:
            raise _transport_error(f"{method} {self.base_url}{path}", e, https=self.tls_url) from e

    def _get(self, path: str, params: dict[str, Any] | None = None) -> bytes:
        status, headers, body = self.request("GET", path, params=params)
        _raise_for(status, headers, body)
        return body

    def heads(self) -> dict[str, Head]:
        return parse_heads(self._get("/v1/heads"))

    def feed(self, lab: str, after: int = 0, limit: int = 500) -> FeedPage:
        return parse_feed(self._get(f"/v1/feeds/{quote(lab, safe='')}", _feed_params(after, limit)))

    def post_envelopes(self, envelopes: Sequence[Envelope] | Sequence[str]) -> list[contracts.IngestResult]:
        status, headers, body = self.request("POST", "/v1/envelopes", content=_envelopes_body(envelopes))
        _raise_for(status, headers, body)
        return parse_results(body)

    def roster(self) -> contracts.RosterDocument:
        return parse_roster(self._get("/v1/roster"))

    def status(self) -> contracts.StatusDocument:
        return parse_status(self._get("/v1/status"))

    def entry(self, entry_id: str) -> dict[str, Any]:
        return _json_object(self._get(f"/v1/entries/{entry_id}"))

    def certificate(self, cert_id: str) -> dict[str, Any]:
        return _json_object(self._get(f"/v1/certificates/{cert_id}"))

    def equivocations(self) -> list[dict[str, Any]]:
        return list(_json(self._get("/v1/equivocations"))["equivocations"])

    def post_equivocations(self, proofs: Sequence[EquivocationProof]) -> list[dict[str, Any]]:
        """Offer equivocation proofs; one result per proof (accepted, duplicate or rejected)."""
        status, headers, body = self.request("POST", "/v1/equivocations", content=_proofs_body(proofs))
        _raise_for(status, headers, body)
        return _parse_proof_results(body)

    def misbehaviour(self, peer: str | None = None, limit: int = 100) -> dict[str, Any]:
        """The node's misbehaviour records (newest first) and per-peer counts."""
        params: dict[str, Any] = {"limit": limit} | ({"peer": peer} if peer else {})
        return _json_object(self._get("/v1/misbehaviour", params))

    def checkpoint(self) -> Envelope:
        return Envelope.parse(_json(self._get("/v1/checkpoint")))

    def inclusion_proof(self, entry_id: str, size: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"entry_id": entry_id}
        if size is not None:
            params["size"] = size
        return _json_object(self._get("/v1/proofs/inclusion", params))

    def consistency_proof(self, old: int, new: int) -> dict[str, Any]:
        return _json_object(self._get("/v1/proofs/consistency", {"old": old, "new": new}))


class AsyncPeerClient(_Base):
    """asyncio client for one peer's API (used by :mod:`node.net.sync`)."""

    def __init__(
        self,
        base_url: str,
        key: SigningKey,
        lab_id: str,
        *,
        timeout: float = 10.0,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(base_url, key, lab_id, timeout=timeout, max_response_bytes=max_response_bytes, tls=tls)
        self._http = httpx.AsyncClient(**self._client_kwargs())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, content: bytes | None = None
    ) -> tuple[int, httpx.Headers, bytes]:
        try:
            async with self._http.stream(method, path, params=params, content=content, headers=_headers(content)) as r:
                buf = bytearray()
                async for chunk in r.aiter_bytes():
                    self._take(buf, chunk)
                return self._done(r, buf, content)
        except httpx.HTTPError as e:
            raise _transport_error(f"{method} {self.base_url}{path}", e, https=self.tls_url) from e

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> bytes:
        status, headers, body = await self.request("GET", path, params=params)
        _raise_for(status, headers, body)
        return body

    async def heads(self) -> dict[str, Head]:
        return parse_heads(await self._get("/v1/heads"))

    async def feed(self, lab: str, after: int = 0, limit: int = 500) -> FeedPage:
        return parse_feed(await self._get(f"/v1/feeds/{quote(lab, safe='')}", _feed_params(after, limit)))

    async def post_envelopes(self, envelopes: Sequence[Envelope] | Sequence[str]) -> list[contracts.IngestResult]:
        status, headers, body = await self.request("POST", "/v1/envelopes", content=_envelopes_body(envelopes))
        _raise_for(status, headers, body)
        return parse_results(body)

    async def status(self) -> contracts.StatusDocument:
        return parse_status(await self._get("/v1/status"))

    async def roster(self) -> contracts.RosterDocument:
        return parse_roster(await self._get("/v1/roster"))

    async def equivocations(self) -> list[Any]:
        """The peer's equivocation proofs, unparsed (see :func:`parse_equivocations`)."""
        return parse_equivocations(await self._get("/v1/equivocations"))

    async def post_equivocations(self, proofs: Sequence[EquivocationProof]) -> list[dict[str, Any]]:
        """Offer equivocation proofs; one result per proof (accepted, duplicate or rejected)."""
        status, headers, body = await self.request("POST", "/v1/equivocations", content=_proofs_body(proofs))
        _raise_for(status, headers, body)
        return _parse_proof_results(body)
