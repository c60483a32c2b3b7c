"""``serve(home, host, port)``: the node's API under uvicorn, with sync running in-process.

With ``[tls]`` in node.toml the API is served over HTTPS only, and by default only to
clients presenting a certificate from the configured CA bundle (mutual TLS).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import TYPE_CHECKING, Any

import uvicorn

from node.api import create_app
from node.sync import Syncer

if TYPE_CHECKING:
    from node.home import NodeHome

log = logging.getLogger(__name__)


def build_server(
    home: NodeHome, host: str | None = None, port: int | None = None, *, sync: bool = True, coordinate: bool = True
) -> uvicorn.Server:
    """A configured uvicorn server for ``home`` (sync and the pause coordinator start and stop
    with the app)."""
    tls: dict[str, Any] = {}
    if home.config.tls is not None:
        from node.tls import load_tls

        tls = load_tls(home.config.tls, home.path).uvicorn_options()
    syncer = Syncer(home) if sync else None
    app = create_app(home, syncer=syncer)
    if coordinate:
        from node.coordinator import attach

        attach(app, home)
    config = uvicorn.Config(
        app,
        host=host or home.config.server.host,
        port=port or home.config.server.port,
        log_level="warning",
        access_log=False,
        # Body size is enforced per route (413 on Content-Length and streamed bytes);
        # these bound what uvicorn itself buffers before a route sees the request.
        h11_max_incomplete_event_size=64 * 1024,
        timeout_keep_alive=30,
        lifespan="on",
        **tls,
    )
    return uvicorn.Server(config)


def serve(home: NodeHome, host: str | None = None, port: int | None = None, *, sync: bool = True) -> None:
    """Serve the API (and sync with peers) until interrupted."""
    server = build_server(home, host, port, sync=sync)
    _tune_gc()
    asyncio.run(server.serve())


def _tune_gc() -> None:
    """Keep the cyclic garbage collector off the ingest path.

    A batch of envelopes allocates thousands of short-lived containers, which triggers
    collections; a full one walks every object the process holds (the web stack, SQLAlchemy,
    pydantic schemas: over 100,000 objects, tens of milliseconds). Objects alive after start-up
    live as long as the server, so they are moved out of the collector's sight
    (``gc.freeze``), and young collections run less often; reference counting still frees
    everything acyclic at once.
    """
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 20_000), gen1, gen2)
