"""`tripwire serve` and `tripwire sync`: run the node's API with sync, or one sync round."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

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
    from node.home import NodeHome
    from node.server import serve

    node = NodeHome.open(home)
    try:
        cfg = node.config.server
        console.print(
            f"serving {node.lab} on http://{host or cfg.host}:{port or cfg.port} "
            f"({'with' if sync else 'without'} sync)",
            highlight=False,
        )
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
    from node.sync import Syncer
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
                console.print(f"{peer}: [red]failed[/] {s.get('error')}", highlight=False)
    if any(not s.get("ok") for s in summary.values()):
        raise typer.Exit(4)
