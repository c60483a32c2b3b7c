"""``serve(home, host, port)``: the node's API under uvicorn, with sync running in-process.

With ``[tls]`` in node.toml the API is served over HTTPS only, and by default only to
clients presenting a certificate from the configured CA bundle (mutual TLS).

The node faces other labs' nodes, any of which may be hostile, so the HTTP layer bounds what
a connection may hold before a route sees it (``[server]`` in node.toml, see the operator
guide): connections in all and per client address (more are answered 503 and closed), the
time to send a request's line and headers and then its body (slower ones are closed), and
request framing: a request with both Content-Length and Transfer-Encoding, or with more
than one Host, is refused with 400 (RFC 9112 §6.1, §3.2), because a proxy in front of the
node may frame it differently (request smuggling).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from typing import TYPE_CHECKING, Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from node.api import create_app
from node.net.auth import NodeOrigins
from node.net.sync import Syncer

if TYPE_CHECKING:
    from node.home import NodeHome
    from node.home.config import ServerConfig

log = logging.getLogger(__name__)


def _problem_bytes(status: int, reason: str, code: str, detail: str, extra: str = "") -> bytes:
    """A complete HTTP/1.1 problem-JSON response that closes the connection, written before
    (or instead of) the ASGI app, in the same shape as the app's problems."""
    body = json.dumps(
        {"type": f"urn:tripwire:problem:{code}", "title": reason, "status": status, "detail": detail, "code": code}
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n"
    )
    return head.encode("ascii") + body


class _StrictConnection(h11.Connection):
    """h11, refusing the ambiguous framings it would otherwise resolve on its own."""

    last_error = ""
    """Why the last request was refused (uvicorn's own 400 names no reason)."""

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as e:
            self.last_error = str(e)
            raise
        if isinstance(event, h11.Request):
            names = [name for name, _ in event.headers]
            if b"transfer-encoding" in names and b"content-length" in names:
                self.last_error = (
                    "the request carries both Content-Length and Transfer-Encoding (RFC 9112 §6.1): refused, "
                    "because a proxy may frame it differently (request smuggling)"
                )
            elif names.count(b"host") > 1:
                self.last_error = "the request carries more than one Host header field (RFC 9112 §3.2)"
            else:
                return event
            raise h11.RemoteProtocolError(self.last_error, 400)
        return event


def _client_host(protocol: object) -> str | None:
    client = getattr(protocol, "client", None)
    return client[0] if isinstance(client, tuple) and client else None


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with connection caps, request-read deadlines and strict framing.

    Limits come from ``limits`` (the node's ``[server]`` settings), set on the class by
    :func:`guarded_protocol` because uvicorn builds one protocol per connection itself.
    """

    limits: ServerConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _StrictConnection(h11.SERVER, self.conn._max_incomplete_event_size)
        self._deadline: asyncio.TimerHandle | None = None
        self._reading_body = False
        self._refused = False

    # --- connection caps --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's H11Protocol: asyncio.Protocol declares BaseTransport
        limits = self.limits
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) and peer else None
        why = None
        if len(self.connections) >= limits.max_connections:
            why = f"the node holds its limit of {limits.max_connections} connections"
        elif host is not None and limits.max_connections_per_client < limits.max_connections:
            mine = sum(1 for c in self.connections if _client_host(c) == host)
            if mine >= limits.max_connections_per_client:
                why = f"{host} holds its limit of {limits.max_connections_per_client} connections"
        if why is not None:
            # Refused before it counts: the connection never enters the server's set.
            self._refused = True
            self.transport = transport
            log.warning("connection refused: %s", why)
            transport.write(
                _problem_bytes(503, "Service Unavailable", "too-many-connections", f"{why}; retry later",
                               "retry-after: 1\r\n")
            )
            transport.close()
            return
        super().connection_made(transport)
        self._arm(limits.header_timeout_s, "send its request line and headers")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._disarm()
        super().connection_lost(exc)

    # --- deadlines ----------------------------------------------------------------------

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire, seconds, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, seconds: float, what: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.warning("closing connection from %s: it did not %s within %g s", client, what, seconds)
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(
                _problem_bytes(408, "Request Timeout", "request-timeout", f"the request was not sent within {seconds:g} s")
            )
        else:
            # The app is reading the body: it sees a disconnect and stops.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        # A new request's first bytes start its header deadline, a complete head starts the
        # body deadline, a complete request stops it (the keep-alive timeout covers idle time).
        if self.conn.their_state is h11.IDLE and self._deadline is None:
            self._arm(self.limits.header_timeout_s, "send its request line and headers")
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if not self._reading_body:
                self._reading_body = True
                self._arm(self.limits.body_timeout_s, "send its request body")
        elif state is not h11.IDLE:
            self._reading_body = False
            self._disarm()

    def send_400_response(self, msg: str) -> None:
        self._disarm()
        detail = getattr(self.conn, "last_error", "") or msg
        self.transport.write(_problem_bytes(400, "Bad Request", "bad-http-request", detail))
        self.transport.close()


def guarded_protocol(limits: ServerConfig) -> type[GuardedH11Protocol]:
    """A protocol class bound to one server's limits."""
    return type("NodeH11Protocol", (GuardedH11Protocol,), {"limits": limits})


def build_server(
    home: NodeHome, host: str | None = None, port: int | None = None, *, sync: bool = True, coordinate: bool = True
) -> uvicorn.Server:
    """A configured uvicorn server for ``home`` (sync and the pause coordinator start and stop
    with the app)."""
    tls: dict[str, Any] = {}
    if home.tls is not None:
        from node.net.tls import server_options

        tls = server_options(home.tls)
    syncer = Syncer(home) if sync else None
    app = create_app(home, syncer=syncer)
    # Requests must be signed for a name this node answers as; the address actually bound
    # (a --host/--port override) is one of them.
    app.state.node.verifier.origins = NodeOrigins.for_config(home.config, host, port)
    if coordinate:
        from node.pause.coordinator import attach

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
        http=guarded_protocol(home.config.server),
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
