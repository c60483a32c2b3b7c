"""The node's FastAPI application factory (spec: HTTP, under /v1)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from node.api import reports_route
from node.api.deps import NodeContext
from node.api.metrics import MetricsMiddleware, NodeMetrics
from node.api.problems import install_handlers
from node.api.routes import (
    certificates,
    entries,
    envelopes,
    equivocations,
    feeds,
    misbehaviour,
    ops,
    proofs,
    roster,
    status,
)
from node.net.auth import NodeOrigins, RateLimiter, RequestVerifier
from node.pause.tracker import PauseTracker
from node.store.nonces import NonceTable

if TYPE_CHECKING:
    from node.home import NodeHome

API_VERSION = "1.0.0"
_ROUTERS = (
    envelopes,
    feeds,
    roster,
    status,
    entries,
    equivocations,
    misbehaviour,
    certificates,
    proofs,
    ops,
    reports_route,
)
_DESCRIPTION = (
    "One lab's Tripwire node: signed feeds, roster, pause status, checkpoints and proofs.\n\n"
    "Every /v1 request must carry an RFC 9421 HTTP Message Signature: label `tw`, tag "
    "`tripwire/1`, algorithm `ed25519`, `keyid` = the caller's roster keyid, a `nonce`, `created` "
    "within the node's clock skew, covering `@method`, `@authority` (a name the receiving node answers "
    "as), `@path`, `@query` and, for requests with a body, `content-digest` (RFC 9530, sha-256). Reads are open to roster labs and observers; "
    "POST /v1/envelopes to labs only. /healthz and /metrics are open.\n\n"
    "Errors are RFC 9457 problem JSON (`application/problem+json`) with a stable machine `code`."
)


def _bare_app(lifespan: Any = None) -> FastAPI:
    app = FastAPI(
        title="Tripwire node API",
        version=API_VERSION,
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_handlers(app)
    for r in _ROUTERS:
        app.include_router(r.router)
    return app


def create_app(home: NodeHome, *, syncer: Any | None = None) -> FastAPI:
    """Build the API for ``home``. With ``syncer`` (a :class:`node.net.sync.Syncer`), sync runs
    for the lifetime of the app (started and stopped by the ASGI lifespan)."""
    cfg = home.config.server
    metrics = NodeMetrics()
    ctx = NodeContext(
        home=home,
        verifier=RequestVerifier(
            lambda: home.store.roster_chain().current.roster,
            origins=NodeOrigins.for_config(home.config),
            nonces=NonceTable.for_store(home.store),
            clock_skew_s=cfg.clock_skew_s,
        ),
        limiter=RateLimiter(cfg.rate_limit_per_minute),
        byte_limiter=RateLimiter(cfg.ingest_bytes_per_minute, capacity=2 * cfg.max_body_bytes),
        metrics=metrics,
        max_body_bytes=cfg.max_body_bytes,
        syncer=syncer,
    )
    metrics.bind_log_size(home.store.log_size)
    # The pause state behind /v1/status, kept current by its own worker while the app runs.
    tracker = ctx.extra["pause_tracker"] = PauseTracker(home.store)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tracker.start()
        if syncer is not None:
            await syncer.start(metrics)
        try:
            yield
        finally:
            if syncer is not None:
                await syncer.stop()
            tracker.stop()

    app = _bare_app(lifespan)
    app.state.node = ctx
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the API (no node needed; routes are the same for every node)."""
    return _bare_app().openapi()


def openapi_json() -> str:
    """The committed form of ``specs/openapi.json`` (stable key order, trailing newline)."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
