"""`tripwire init | identity | roster ... | peers ... | status`: set up and inspect a node home.

Thin: parse, call node.home / node.store / protocol, print, and let :func:`node.cli.main`
turn errors into exit codes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from node.cli._app import app, console
from node.errors import InputFileError
from node.home import NodeHome
from node.home.ceremony import combine_signatures, draft_from_identities, sign_roster
from protocol.canonical import parse_json_strict, utcnow
from protocol.envelope import Envelope
from protocol.errors import ConfigurationError, KeyFileError, TripwireError
from protocol.roster import decode_roster

if TYPE_CHECKING:
    from node.pause.view import SharedAnalysis

HomeOpt = Annotated[Path, typer.Option("--home", help="Node home directory.", show_default=False)]
OutOpt = Annotated[Path, typer.Option("--out", help="File to write.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

roster_app = typer.Typer(
    help="Draft, sign, combine, install and show the network roster.", no_args_is_help=True
)
peers_app = typer.Typer(help="List and add the peers this node syncs with.", no_args_is_help=True)
app.add_typer(roster_app, name="roster")
app.add_typer(peers_app, name="peers")

#: Extra sections of `tripwire status` (name -> function of the open home and the one
#: analysis of its store that every section of the call reads); the pause, plan and
#: forecast commands register theirs here.
STATUS_SECTIONS: dict[str, Callable[[NodeHome, SharedAnalysis], Any]] = {}


# --- helpers -------------------------------------------------------------------------------


def _read_json(path: Path, what: str) -> Any:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputFileError(f"cannot read {what} {path}: {e.strerror or e}") from e
    try:
        return parse_json_strict(data, max_bytes=16 * 1024 * 1024)
    except TripwireError as e:
        raise InputFileError(f"{what} {path} is not valid JSON: {e.message}") from e


def _write_json(path: Path, obj: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    except OSError as e:
        raise InputFileError(f"cannot write {path}: {e.strerror or e}") from e


def _read_roster_envelope(path: Path) -> Envelope:
    data = _read_json(path, "roster envelope")
    if not isinstance(data, dict) or "payloadType" not in data:
        raise InputFileError(
            f"{path} is a roster draft, not a signed envelope: run `tripwire roster sign` first"
        )
    env = Envelope.parse(data)
    decode_roster(env)
    return env


def _open(home: Path) -> NodeHome:
    return NodeHome.open(home)


def _parse_date(text: str) -> datetime:
    try:
        if len(text) == 10:
            return datetime.combine(datetime.strptime(text, "%Y-%m-%d").date(), time(0, 0), tzinfo=UTC)
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ConfigurationError(f"--expires {text!r} is not a date (YYYY-MM-DD) or RFC 3339 time") from e
    if dt.tzinfo is None:
        raise ConfigurationError(f"--expires {text!r} has no time zone; add Z for UTC")
    return dt.astimezone(UTC)


def _weights(specs: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in specs:
        lab, sep, value = s.partition("=")
        if not sep or not value.isdigit() or int(value) < 1:
            raise ConfigurationError(f"--weight {s!r} must look like LAB=N with N >= 1")
        out[lab] = int(value)
    return out


# --- init / identity -----------------------------------------------------------------------


@app.command("init")
def init_cmd(
    home: HomeOpt,
    lab: Annotated[str, typer.Option("--lab", help="This lab's id in the roster (a-z, 0-9, '-').")],
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="URL peers reach this node at (roster endpoint).")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="SQLAlchemy URL; default SQLite tripwire.db in the home."),
    ] = None,
    passphrase_env: Annotated[
        str | None,
        typer.Option(
            "--passphrase-env", help="Environment variable holding a passphrase to encrypt the key."
        ),
    ] = None,
) -> None:
    """Create a node home: signing key, node.toml and the database."""
    passphrase = None
    if passphrase_env:
        passphrase = os.environ.get(passphrase_env)
        if not passphrase:
            raise KeyFileError(
                f"--passphrase-env {passphrase_env}: that environment variable is not set or empty"
            )
    h = NodeHome.init(
        home,
        lab,
        passphrase=passphrase,
        database_url=database_url,
        endpoint=endpoint,
        passphrase_env=passphrase_env,
    )
    with h:
        console.print(f"initialized node home {h.path} for lab [bold]{h.lab}[/]", highlight=False)
        console.print(f"  keyid     {h.key.keyid}", highlight=False)
        console.print(f"  endpoint  {h.endpoint()}", highlight=False)
        console.print(f"  database  {h.store.safe_url}", highlight=False)
        console.print("next: `tripwire identity --home DIR > LAB.json` and share it for the roster ceremony")


@app.command("identity")
def identity_cmd(
    home: HomeOpt,
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Export this lab's public identity (lab, keyid, public key, endpoint) as JSON."""
    with _open(home) as h:
        ident = h.identity()
    if out is None:
        typer.echo(json.dumps(ident, indent=2))
    else:
        _write_json(out, ident)


# --- roster ----------------------------------------------------------------------------------


@roster_app.command("draft")
def roster_draft(
    out: OutOpt,
    network_name: Annotated[str, typer.Option("--network-name", help="Human name of the network.")],
    lab: Annotated[list[Path], typer.Option("--lab", help="Identity JSON of a lab (repeat per lab).")],
    pause_weight: Annotated[int, typer.Option("--pause-weight", help="Vote weight a pause needs.")],
    resume_weight: Annotated[int, typer.Option("--resume-weight", help="Vote weight a resume needs.")],
    roster_threshold: Annotated[
        int, typer.Option("--roster-threshold", help="Labs that must sign a roster change.")
    ],
    policy: Annotated[Path, typer.Option("--policy", help="Threshold policy file (YAML or JSON).")],
    expires: Annotated[
        str, typer.Option("--expires", help="Expiry date (YYYY-MM-DD, UTC) or RFC 3339 time.")
    ],
    suite: Annotated[
        list[Path] | None, typer.Option("--suite", help="Eval suite file to pin (repeat).")
    ] = None,
    observer: Annotated[
        list[Path] | None, typer.Option("--observer", help="Identity JSON of an observer (regulator).")
    ] = None,
    weight: Annotated[
        list[str] | None, typer.Option("--weight", help="Vote weight LAB=N (default 1).")
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Draft the next version of the roster installed in this home."),
    ] = None,
    no_pins: Annotated[
        bool,
        typer.Option(
            "--no-pins",
            help="With --home: leave out the feed pins (by default the update pins every lab's feed "
            "at the head this node holds, so entries written after it cannot be back-dated before it).",
        ),
    ] = False,
) -> None:
    """Draft a roster statement (unsigned) from the labs' identity files."""
    expiry = _parse_date(expires)
    with _open(home) if home is not None else nullcontext() as h:
        roster = draft_from_identities(
            network_name=network_name,
            labs=lab,
            observers=observer or [],
            weights=_weights(weight or []),
            pause_weight=pause_weight,
            resume_weight=resume_weight,
            roster_threshold=roster_threshold,
            policy=policy,
            suites=suite or [],
            expires=expiry,
            now=utcnow(),
            home=h,
            pins=not no_pins,
        )
    _write_json(out, roster.model_dump(mode="json"))
    pinned = f", {len(roster.pins)} feed pins" if roster.pins else ""
    console.print(
        f"wrote roster draft v{roster.version} ({len(roster.labs)} labs, {len(roster.observers)} observers"
        f"{pinned}) to {out}; each lab now runs `tripwire roster sign`",
        highlight=False,
    )


@roster_app.command("sign")
def roster_sign(
    file: Annotated[Path, typer.Argument(help="Roster draft or roster envelope JSON.")],
    home: HomeOpt,
    out: OutOpt,
) -> None:
    """Add this lab's signature to a roster envelope (or sign a draft)."""
    data = _read_json(file, "roster")
    if not isinstance(data, dict):
        raise InputFileError(f"{file} must hold a JSON object")
    with _open(home) as h:
        roster, signed = sign_roster(h, data, file)
    _write_json(out, signed.to_dict())
    console.print(
        f"signed roster v{roster.version} as {h.lab}: {len(signed.signatures)} signature(s) in {out}"
    )


@roster_app.command("combine")
def roster_combine(
    files: Annotated[list[Path], typer.Argument(help="Signed roster envelopes of the same draft.")],
    out: OutOpt,
) -> None:
    """Merge the signatures of envelopes over the same roster payload."""
    combined = combine_signatures([(f, _read_roster_envelope(f)) for f in files])
    _write_json(out, combined.to_dict())
    console.print(f"combined {len(combined.signatures)} signature(s) into {out}")


@roster_app.command("install")
def roster_install(
    file: Annotated[Path, typer.Argument(help="Signed roster envelope (genesis or next version).")],
    home: HomeOpt,
) -> None:
    """Verify and install a roster: the genesis, or the next version of the installed one."""
    env = _read_roster_envelope(file)
    with _open(home) as h:
        if h.store.has_roster():
            vr = h.store.apply_roster(env, now=datetime.now(UTC))
        else:
            vr = h.store.install_genesis(env)
        console.print(
            f"installed roster v{vr.version} of network {vr.network_id} "
            f"(signed by {', '.join(sorted(vr.signed_by))})",
            highlight=False,
        )


def _roster_summary(h: NodeHome) -> dict[str, Any]:
    chain = h.store.roster_chain()
    r = chain.current.roster
    return {
        "network": chain.network_id,
        "network_name": r.network_name,
        "version": r.version,
        "roster_id": chain.current.roster_id,
        "issued_at": r.issued_at,
        "expires": r.expires,
        "expired": r.expired(datetime.now(UTC)),
        "labs": [{"id": m.id, "name": m.name, "endpoint": m.endpoint, "weight": m.weight} for m in r.labs],
        "observers": [{"id": o.id, "name": o.name} for o in r.observers],
        "quorum": r.quorum.model_dump(mode="json"),
        "policy_digest": r.policy_digest,
        "suites": [s.model_dump(mode="json") for s in r.suites],
    }


@roster_app.command("show")
def roster_show(home: HomeOpt, as_json: JsonOpt = False) -> None:
    """Show the installed roster (current version)."""
    with _open(home) as h:
        s = _roster_summary(h)
    if as_json:
        typer.echo(json.dumps(s, indent=2))
        return
    console.print(f"network   {s['network_name']} ({s['network']})", highlight=False)
    console.print(
        f"version   {s['version']}  expires {s['expires']}"
        + ("  [bold red]EXPIRED[/]" if s["expired"] else "")
    )
    for m in s["labs"]:
        console.print(f"  lab      {m['id']:<20} weight {m['weight']:<4} {m['endpoint']}", highlight=False)
    for o in s["observers"]:
        console.print(f"  observer {o['id']}", highlight=False)
    q = s["quorum"]
    console.print(
        f"quorum    pause {q['pause']['weight']}, resume {q['resume']['weight']}, roster {q['roster']} labs"
    )
    console.print(f"policy    {s['policy_digest']}", highlight=False)


@roster_app.command("export")
def roster_export(
    home: HomeOpt,
    out: OutOpt,
    version: Annotated[
        int, typer.Option("--version", help="Roster version to export (1 = the genesis roster).")
    ] = 1,
) -> None:
    """Write a signed roster version (default: the genesis) in the form `tripwire verify --roster` takes."""
    with _open(home) as h:
        chain = h.store.roster_chain()
    if not 1 <= version <= chain.current.version:
        raise ConfigurationError(
            f"--version {version}: this node holds roster versions 1 to {chain.current.version}"
        )
    _write_json(out, chain.envelopes()[version - 1].to_dict())
    what = "genesis roster" if version == 1 else f"roster version {version}"
    console.print(
        f"wrote {what} to {out} (network {chain.network_id}); give it to readers to pin: "
        f"`tripwire verify REPORT --roster {out.name}`",
        highlight=False,
    )


# --- peers -----------------------------------------------------------------------------------


@peers_app.command("list")
def peers_list(home: HomeOpt, as_json: JsonOpt = False) -> None:
    """List the peers this node syncs with (roster endpoints, overridden by node.toml)."""
    with _open(home) as h:
        peers = [p.model_dump() for p in h.peers()]
    if as_json:
        typer.echo(json.dumps(peers, indent=2))
        return
    if not peers:
        console.print("no peers (install a roster or run `tripwire peers add`)")
    for p in peers:
        console.print(f"{p['lab']:<20} {p['url']}", highlight=False)


@peers_app.command("add")
def peers_add(
    home: HomeOpt,
    lab: Annotated[str, typer.Option("--lab", help="The peer's lab id.")],
    url: Annotated[str, typer.Option("--url", help="The peer's base URL.")],
) -> None:
    """Add (or replace) a peer in node.toml."""
    with _open(home) as h:
        h.add_peer(lab, url)
    console.print(f"peer {lab} -> {url} saved", highlight=False)


# --- status ----------------------------------------------------------------------------------


def collect_status(h: NodeHome) -> dict[str, Any]:
    """The node's local view (no network): identity, roster, feeds, proofs, peer misbehaviour, log.

    The shared part is the node's status document as ``GET /v1/status`` serves it
    (:func:`node.api.status.build_status`, built in that one place), shown in this command's
    shape; the pause, plan and forecast views are the CLI's own sections (``STATUS_SECTIONS``).
    """
    from node.api.status import LocalStatusContext, build_status

    out: dict[str, Any] = {"lab": h.lab, "keyid": h.key.keyid, "endpoint": h.endpoint()}
    if h.store.has_roster():
        doc = build_status(LocalStatusContext(h), sections=False)
        out["network"] = doc.network
        out["roster"] = doc.roster.to_json()
        out["heads"] = {lab: hd.to_json() for lab, hd in doc.heads.items()}
        out["equivocations"] = len(doc.equivocations)
        misbehaviour = {peer: c.to_json() for peer, c in doc.misbehaviour.items()}
        log_size = doc.log_size
    else:
        # No roster, no status document (the node cannot serve yet): what the store holds.
        out["network"] = None
        out["roster"] = None
        out["heads"] = {lab: {"seq": hd.seq, "entry_id": hd.entry_id} for lab, hd in h.store.heads().items()}
        out["equivocations"] = len(h.store.equivocations())
        misbehaviour = {peer: c.to_dict() for peer, c in h.store.misbehaviour_counts().items()}
        log_size = h.store.log_size()
    out["frozen_feeds"] = sorted(h.store.frozen_labs())
    out["held"] = h.store.held_count()
    out["misbehaviour"] = misbehaviour
    out["log_size"] = log_size
    out["pause"] = {"state": "unknown", "note": "pause coordination is not running in this view"}
    from node.pause.view import SharedAnalysis

    shared = SharedAnalysis(h)
    for name, fn in STATUS_SECTIONS.items():
        out[name] = fn(h, shared)
    return out


@app.command("status")
def status_cmd(home: HomeOpt, as_json: JsonOpt = False) -> None:
    """Show this node's local state: roster, feed heads, equivocations, peer misbehaviour, pause state."""
    with _open(home) as h:
        s = collect_status(h)
    if as_json:
        typer.echo(json.dumps(s, indent=2))
        return
    console.print(f"lab        {s['lab']}  ({s['endpoint']})", highlight=False)
    if s["roster"] is None:
        console.print("roster     [bold yellow]none installed[/] (run `tripwire roster install`)")
    else:
        r = s["roster"]
        flag = "  [bold red]EXPIRED: no new votes are accepted[/]" if r["expired"] else ""
        console.print(f"network    {s['network']}", highlight=False)
        console.print(f"roster     v{r['version']}, expires {r['expires']}{flag}", highlight=False)
    for lab, hd in s["heads"].items():
        console.print(f"  feed     {lab:<20} seq {hd['seq']:<6} {hd['entry_id'][:16]}…", highlight=False)
    eq = s["equivocations"]
    console.print(
        f"equivocations {eq}"
        + (f"  [bold red]frozen feeds: {', '.join(s['frozen_feeds'])}[/]" if eq else ""),
        highlight=False,
    )
    if not s["misbehaviour"]:
        console.print("misbehaviour none recorded")
    for peer, c in s["misbehaviour"].items():
        console.print(
            f"  [bold yellow]misbehaviour[/] peer {peer:<14} {c['total']} refused"
            f" ({c['kept']} kept), last {c['last_at']}",
            highlight=False,
        )
    console.print(f"held       {s['held']} out-of-order entries;  node log size {s['log_size']}")
    console.print(f"pause      {s['pause']['state']}", highlight=False)
    pause = s["pause"]
    for p in pause.get("in_force", []):
        console.print(f"  in force {p['proposal_id'][:16]}…  covers {p['covers']}", highlight=False, soft_wrap=True)
    for p in pause.get("open_proposals", []):
        kind = "discretionary pause" if p.get("discretionary") else f"{p['action']}"
        until = f", voting closes {p['deadline']}" if p.get("deadline") else ""
        covers = f", would cover {p['covers']}" if p.get("covers") else ""
        console.print(f"  open     {p['proposal_id'][:16]}…  {kind}{covers}{until}", highlight=False, soft_wrap=True)
    for r in pause.get("runs", []):
        if r["stopped_by"]:
            verdict = "[bold red]STOPPED[/] by " + ", ".join(pid[:16] + "…" for pid in r["stopped_by"])
        elif r["will_be_stopped_by"]:
            verdict = "[yellow]will stop[/] before its planned compute, by " + ", ".join(
                pid[:16] + "…" for pid in r["will_be_stopped_by"]
            )
        else:
            verdict = "not covered by any pause in force"
        compute = f" at {r['current_flop']} FLOP" if r["current_flop"] else ""
        console.print(f"  run      {r['model']}{compute} ({r['source']}): {verdict}", highlight=False, soft_wrap=True)
    for p in (s.get("plans") or {}).get("plans") or []:
        stop = f", stop point {p['stop_flop']} FLOP" if p.get("stop_flop") else ""
        console.print(f"plan       {p['plan'][:16]}… {p['model']} to {p['planned_flop']} FLOP: {p['status']}{stop}", highlight=False)
