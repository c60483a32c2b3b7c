"""Dependencies shared by the routers: node context, request authentication, bounded bodies.

Routes declare what they need with the ``Annotated`` aliases at the bottom (``StoreDep``,
``MemberDep``, ``LabBodyDep`` ...), so every rule is applied in one place: a route cannot
forget to authenticate or to bound its body.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from node.api.metrics import NodeMetrics
from node.api.problems import ProblemError
from node.errors import AuthError, ForbiddenError
from node.net.auth import Caller, RateLimiter, RequestVerifier

if TYPE_CHECKING:
    from node.home import NodeHome
    from node.store import Store

JSON_MEDIA_TYPES = ("application/json",)


@dataclass
class NodeContext:
    """Everything a request handler may use; one per app, stored in ``app.state.node``."""

    home: NodeHome
    verifier: RequestVerifier
    limiter: RateLimiter
    metrics: NodeMetrics
    max_body_bytes: int
    syncer: Any | None = None
    """The running :class:`node.net.sync.Syncer`, when the app is served with sync."""
    byte_limiter: RateLimiter | None = None
    """Bytes of bodies each member may push per minute (``[server] ingest_bytes_per_minute``)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Room for components added later (the pause coordinator) without changing this class."""

    @property
    def store(self) -> Store:
        return self.home.store


def get_context(request: Request) -> NodeContext:
    ctx: NodeContext = request.app.state.node
    return ctx


Ctx = Annotated[NodeContext, Depends(get_context)]


def get_store(ctx: Ctx) -> Store:
    return ctx.store


StoreDep = Annotated[Any, Depends(get_store)]


async def read_limited_body(request: Request, limit: int) -> bytes:
    """Read the body, refusing it (413) as soon as it exceeds ``limit``.

    Content-Length is checked first so an honest oversized request is refused before any
    byte is read; the streamed count is checked too, because Content-Length can lie or be
    absent (chunked transfer encoding).
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise ProblemError(400, "bad-content-length", "Content-Length is not an integer") from None
        if n > limit:
            raise ProblemError(413, "body-too-large", f"request body of {n} bytes exceeds the limit of {limit}")
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise ProblemError(413, "body-too-large", f"request body exceeds the limit of {limit} bytes")
    return bytes(buf)


def _authenticate(ctx: NodeContext, request: Request, body: bytes | None) -> Caller:
    scope = request.scope
    path = scope.get("raw_path") or scope["path"].encode("utf-8")
    try:
        caller = ctx.verifier.verify(
            request.method,
            path.decode("latin-1"),
            scope.get("query_string", b"").decode("latin-1"),
            request.headers.items(),
            body,
        )
    except AuthError as e:
        ctx.metrics.auth_failures.labels(e.code).inc()
        raise
    # Spend a token only after authentication, so strangers cannot drain a member's bucket.
    _spend(ctx, ctx.limiter, caller, 1, f"rate limit for {caller.member} exceeded")
    return caller


def _spend(ctx: NodeContext, limiter: RateLimiter, caller: Caller, cost: float, what: str) -> None:
    """Take ``cost`` from ``caller``'s bucket or answer 429 with Retry-After."""
    wait = limiter.take(caller.keyid, cost)
    if wait > 0:
        ctx.metrics.auth_failures.labels("rate-limited").inc()
        raise ProblemError(
            429,
            "rate-limited",
            f"{what}; retry in {math.ceil(wait)} s",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


async def require_member(request: Request, ctx: Ctx) -> Caller:
    """Reads: any roster member (lab or observer) with a valid signed request."""
    # Off the event loop: verification records the request's nonce in the database (replay
    # protection across restarts), a write that must not stall every other connection.
    return await run_in_threadpool(_authenticate, ctx, request, None)


@dataclass(frozen=True, slots=True)
class SignedBody:
    caller: Caller
    body: bytes


async def require_lab_json_body(request: Request, ctx: Ctx) -> SignedBody:
    """Writes: a JSON body within the size limit, signed (with its digest) by a roster lab."""
    ctype = request.headers.get("content-type", "")
    if ctype.split(";", 1)[0].strip().lower() not in JSON_MEDIA_TYPES:
        raise ProblemError(
            415, "unsupported-media-type", f"content type {ctype or '(none)'!r}: send application/json"
        )
    body = await read_limited_body(request, ctx.max_body_bytes)
    caller = await run_in_threadpool(_authenticate, ctx, request, body)
    if caller.role != "lab":
        raise ForbiddenError(f"{caller.member} is an observer: observers may read but never push")
    if ctx.byte_limiter is not None:
        # After authentication (strangers cannot drain a member's budget) and before any
        # entry is decoded or verified: a flood costs the node little once it is over budget.
        _spend(ctx, ctx.byte_limiter, caller, len(body), f"{caller.member} pushed more than its byte budget")
    return SignedBody(caller, body)


MemberDep = Annotated[Caller, Depends(require_member)]
LabBodyDep = Annotated[SignedBody, Depends(require_lab_json_body)]
