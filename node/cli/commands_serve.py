"""`tripwire serve`, `tripwire sync` and `tripwire tls`: run the node's API with sync, one
sync round, or set up the node's TLS certificate."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from node.cli._app import app, console

_HOME = typer.Option("--home", help="The node home directory (node.toml, keys, database).")


@app.command("serve")
def serve_command(
    home: Annotated[Path, _HOME],
    host: Annotated[str | None, typer.Option("--host", help="Interface to bind (default: node.toml [server] host).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="TCP port (default: node.toml [server] port).")] = None,
    sync: Annotated[bool, typer.Option("--sync/--no-sync", help="Sync with peers while serving.")] = True,
) -> None:
    """Serve the node's HTTP API (/v1) and sync with peers until interrupted."""
    from node.api.server import serve
    from node.home import NodeHome
    from node.net.auth import NodeOrigins

    node = NodeHome.open(home)
    try:
        cfg = node.config.server
        tls = node.config.tls
        scheme = "http" if tls is None else "https"
        how = "plain HTTP" if tls is None else "mutual TLS" if tls.require_client_cert else "TLS, no client certificates"
        console.print(
            f"serving {node.lab} on {scheme}://{host or cfg.host}:{port or cfg.port} "
            f"({'with' if sync else 'without'} sync, {how})",
            highlight=False,
        )
        names = NodeOrigins.for_config(node.config, host, port).names()
        # Signed requests must name one of these (@authority); a peer failing with
        # misdirected-request is using another name (set server.public_url or server.authorities).
        console.print(f"  answering signed requests addressed to {', '.join(names)}", highlight=False)
        serve(node, host, port, sync=sync)
    finally:
        node.close()


@app.command("sync")
def sync_command(
    home: Annotated[Path, _HOME],
    once: Annotated[bool, typer.Option("--once", help="Run one round with every peer and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the per-peer summary as JSON.")] = False,
) -> None:
    """Pull missing entries from every peer and push this lab's new entries (one round)."""
    from node.home import NodeHome
    from node.net.sync import Syncer
    from protocol.errors import ConfigurationError

    if not once:
        raise ConfigurationError("continuous sync runs inside `tripwire serve`; use `tripwire sync --once`")
    node = NodeHome.open(home)
    try:
        summary = asyncio.run(Syncer(node).sync_once())
    finally:
        node.close()
    if as_json:
        console.print_json(json.dumps(summary))
    else:
        for peer, s in summary.items():
            if s.get("ok"):
                console.print(f"{peer}: fetched {s['fetched']}, pushed {s['pushed']}", highlight=False)
            else:
                console.print(f"{peer}: [red]failed[/] {escape(str(s.get('error')))}", highlight=False)
    if any(not s.get("ok") for s in summary.values()):
        raise typer.Exit(4)


# --- tls -----------------------------------------------------------------------------------------

tls_app = typer.Typer(help="Create and inspect the node's TLS certificate ([tls] in node.toml).", no_args_is_help=True)
app.add_typer(tls_app, name="tls")

_WILDCARD_HOSTS = {"0.0.0.0", "::", ""}


@tls_app.command("selfsign")
def tls_selfsign(
    home: Annotated[Path, _HOME],
    hosts: Annotated[
        list[str] | None,
        typer.Option("--host", help="Host name or IP address peers use for this node (repeatable); the "
                     "public URL's host and [server] host are always included."),
    ] = None,
    days: Annotated[int, typer.Option("--days", help="Days the certificate is valid.", min=1, max=3650)] = 365,
    cert: Annotated[str, typer.Option("--cert", help="Certificate file to write, relative to the home.")] = (
        "tls/cert.pem"
    ),
    key: Annotated[str, typer.Option("--key", help="Private key file to write (mode 0600), relative to the home.")] = (
        "tls/key.pem"
    ),
) -> None:
    """Write a new key and a self-signed certificate for this node, for networks that pin
    each other's certificates (every lab puts every peer's certificate in its [tls] ca)."""
    from urllib.parse import urlsplit

    from cryptography import x509

    from node.home.config import load_config
    from node.home.tls import write_selfsigned

    # The [tls] files may not exist yet (this command makes them): do not check them.
    cfg = load_config(home)
    names = list(hosts or [])
    public_host = urlsplit(cfg.server.public_url).hostname if cfg.server.public_url else None
    for h in (public_host, cfg.server.host):
        if h and h not in _WILDCARD_HOSTS:
            names.append(h)
    cert_path, key_path = write_selfsigned(home, f"tripwire node {cfg.lab}", names, days=days, cert=cert, key=key)
    info = _cert_info(x509.load_pem_x509_certificate(cert_path.read_bytes()), datetime.now(UTC))
    console.print(f"wrote {key_path} (mode 0600) and {cert_path}", highlight=False)
    console.print(f"  certificate  {info['certificate']}", highlight=False)
    console.print(f"  hosts        {', '.join(info['hosts'])}", highlight=False)
    console.print(f"  expires      {info['not_after']} ({info['days_left']} days)", highlight=False)
    console.print(f"  sha256       {info['sha256']}", highlight=False)
    console.print(
        "Send the certificate (not the key) to the other labs. Every lab's tls.ca bundle holds every\n"
        "lab's certificate, this one included (the training gate connects to its own node). Then set\n"
        "in node.toml:\n\n"
        f'[tls]\ncert = "{cert}"\nkey = "{key}"\nca = "tls/peers.pem"',
        highlight=False,
        markup=False,
    )


def _cert_info(c: Any, now: datetime) -> dict[str, Any]:
    from node.home.tls import describe, fingerprint, host_names

    return {
        "certificate": describe(c),
        "hosts": host_names(c),
        "not_after": c.not_valid_after_utc.isoformat(),
        "days_left": (c.not_valid_after_utc - now).days,
        "sha256": fingerprint(c),
    }


@tls_app.command("show")
def tls_show(
    home: Annotated[Path, _HOME],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Check the [tls] files (as `serve` does) and show this node's certificate and the
    certificates trusted for peers."""
    from node.home.config import load_config
    from node.home.tls import load_tls
    from protocol.errors import ConfigurationError

    cfg = load_config(home)
    if cfg.tls is None:
        raise ConfigurationError(f"{home / 'node.toml'} has no tls section: the node serves plain HTTP")
    files = load_tls(cfg.tls, home)
    now = datetime.now(UTC)
    me = _cert_info(files.certificate, now)
    trusted = [_cert_info(c, now) for c in files.trusted]
    if as_json:
        info = {"cert": str(files.cert), "key": str(files.key), "ca": str(files.ca),
                "require_client_cert": files.require_client_cert, "this_node": me, "trusted": trusted}
        console.print_json(json.dumps(info))
        return
    console.print(f"this node  {me['certificate']}", highlight=False)
    console.print(f"  hosts    {', '.join(me['hosts'])}", highlight=False)
    console.print(f"  expires  {me['not_after']} ({me['days_left']} days)", highlight=False)
    console.print(f"  sha256   {me['sha256']}", highlight=False)
    console.print(f"client certificates {'required' if files.require_client_cert else 'not required'}", highlight=False)
    console.print(f"trusted for peers ({files.ca}):", highlight=False)
    for t in trusted:
        console.print(f"  {t['certificate']}  expires {t['not_after'][:10]} ({t['days_left']} days)", highlight=False)
