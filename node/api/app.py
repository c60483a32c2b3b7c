"""The node's FastAPI application factory (spec: HTTP, under /v1)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from node.api.deps import NodeContext
from node.api.metrics import MetricsMiddleware, NodeMetrics
from node.api.problems import install_handlers
from node.api.routes import (
    certificates,
    entries,
    envelopes,
    equivocations,
    feeds,
    ops,
    proofs,
    roster,
    status,
)
from node.auth import RateLimiter, RequestVerifier

if TYPE_CHECKING:
    from node.home import NodeHome

API_VERSION = "1.0.0"


def create_app(home: NodeHome, *, syncer: Any | None = None) -> FastAPI:
    """Build the API for ``home``. With ``syncer`` (a :class:`node.sync.Syncer`), sync runs
    for the lifetime of the app (started and stopped by the ASGI lifespan)."""
    cfg = home.config.server
    metrics = NodeMetrics()
    ctx = NodeContext(
        home=home,
        verifier=RequestVerifier(lambda: home.store.roster_chain().current.roster, clock_skew_s=cfg.clock_skew_s),
        limiter=RateLimiter(cfg.rate_limit_per_minute),
        metrics=metrics,
        max_body_bytes=cfg.max_body_bytes,
        syncer=syncer,
    )
    metrics.bind_log_size(home.store.log_size)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if syncer is not None:
            await syncer.start(metrics)
        try:
            yield
        finally:
            if syncer is not None:
                await syncer.stop()

    app = FastAPI(
        title="Tripwire node API",
        version=API_VERSION,
        description=(
            "One lab's Tripwire node: signed feeds, roster, pause status, checkpoints and proofs. "
            "Every /v1 request must carry an RFC 9421 HTTP Message Signature (ed25519, keyid = roster "
            "keyid, covering @method, @path, @query and content-digest for bodies). Errors are RFC 9457 "
            "problem JSON with a stable `code`."
        ),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.node = ctx
    install_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    for r in (envelopes, feeds, roster, status, entries, equivocations, certificates, proofs, ops):
        app.include_router(r.router)
    return app
