"""Mutual TLS between nodes, on the transport: the server's HTTPS options and the clients' context.

TLS is a layer *under* the protocol's own authentication, not a replacement for it: every
``/v1`` request stays signed with the caller's roster key (RFC 9421) and every entry with
its lab's key. What TLS adds is confidentiality of what nodes exchange, authentication of
the server before any request is sent, and refusal of callers without a certificate from
the network's CA before any byte reaches the HTTP layer (see docs/adr/0006-mutual-tls.md).

The files are the home's, checked once when it is opened (:mod:`node.home.tls`, kept as
``home.tls``); this module only turns them into the standard library's ``ssl`` (OpenSSL)
set-up that uvicorn and httpx use.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from node.errors import TLSConfigError

if TYPE_CHECKING:
    from node.home import NodeHome
    from node.home.tls import TLSFiles


def server_options(files: TLSFiles) -> dict[str, Any]:
    """``uvicorn.Config`` keyword arguments that serve HTTPS with ``files``."""
    return {
        "ssl_certfile": str(files.cert),
        "ssl_keyfile": str(files.key),
        "ssl_ca_certs": str(files.ca),
        # CERT_REQUIRED: the handshake fails for a client without a certificate chaining
        # to `ca`, before the HTTP layer sees a byte. Without it, clients are not asked.
        "ssl_cert_reqs": ssl.CERT_REQUIRED if files.require_client_cert else ssl.CERT_NONE,
    }


def client_context(files: TLSFiles) -> ssl.SSLContext:
    """Client side: present this node's certificate, trust only ``ca`` for the peer (not the
    system's CAs), and check the peer's host name against its certificate."""
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files.ca))
        ctx.load_cert_chain(str(files.cert), str(files.key))
    except (ssl.SSLError, OSError) as e:
        raise TLSConfigError(f"tls: OpenSSL refused {files.cert}, {files.key} or {files.ca}: {e}") from e
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def client_context_for(home: NodeHome) -> ssl.SSLContext | None:
    """The TLS context this home's clients use towards https:// peers (None without ``[tls]``)."""
    return None if home.tls is None else client_context(home.tls)


__all__ = ["client_context", "client_context_for", "server_options"]
