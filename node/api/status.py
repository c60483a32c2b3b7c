"""Assembly of ``GET /v1/status``: one function, extended by the components that own each part.

:func:`build_status` returns what the store knows, as a :class:`node.contracts.StatusDocument`: roster state, heads, log size, the pause
state (:func:`protocol.pause.pause_state`, kept current by :class:`node.pause.tracker.PauseTracker`), open proposals, recent alerts, equivocations, recorded peer
misbehaviour and (when the node runs sync) per-peer sync state. Components added later (the pause coordinator) add
their sections by registering a contributor with :func:`register_status_section`, so the
route never changes. ``tripwire status`` builds the same document from an open home with
:class:`LocalStatusContext` (no server, no sync).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from node.contracts import MisbehaviourCount, PeerSync, StatusDocument, StatusRoster
from node.pause.tracker import EntryIndex, PauseTracker
from protocol.canonical import utcnow
from protocol.entries import PauseProposalBody, ResumeProposalBody, SafetyCaseBody
from protocol.pause import PauseState

if TYPE_CHECKING:
    from node.home import NodeHome
    from node.store import Store

#: Most recent alerts listed in the status document.
MAX_ALERTS = 50


class StatusContext(Protocol):
    """What :func:`build_status` reads of a node: a served app's
    :class:`~node.api.deps.NodeContext`, or a :class:`LocalStatusContext`."""

    home: NodeHome
    syncer: Any | None
    extra: dict[str, Any]

    @property
    def store(self) -> Store: ...


@dataclass
class LocalStatusContext:
    """An open home outside a running server (``tripwire status``): no sync, no coordinator,
    caches that live as long as this object."""

    home: NodeHome
    syncer: Any | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        return self.home.store


StatusSection = Callable[[StatusContext, dict[str, Any]], None]
_SECTIONS: list[StatusSection] = []
_LOCK = threading.Lock()


def register_status_section(fn: StatusSection) -> StatusSection:
    """Register ``fn(ctx, status)`` to add or refine keys of the status document (in order).

    The sections write into the document's JSON form before it is validated, so a key that
    :class:`~node.contracts.StatusDocument` does not name fails loudly, never goes out."""
    if fn not in _SECTIONS:
        _SECTIONS.append(fn)
    return fn


def pause_tracker(ctx: StatusContext) -> PauseTracker:
    """The node's :class:`~node.pause.tracker.PauseTracker` (one per app, made on first use)."""
    tracker = ctx.extra.get("pause_tracker")
    if tracker is None:
        with _LOCK:
            tracker = ctx.extra.get("pause_tracker")
            if tracker is None:
                tracker = ctx.extra["pause_tracker"] = PauseTracker(ctx.store)
    return tracker


def _open_proposals(state: PauseState) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for pid, p in state.proposals.items():
        if p.status != "open":
            continue
        body = p.entry.statement.body
        item: dict[str, Any] = {"proposal_id": pid, "action": p.action, "entry_id": p.entry.entry_id, "lab": p.entry.lab}
        if isinstance(body, PauseProposalBody):
            item["trigger"] = body.trigger.model_dump(mode="json")
        elif isinstance(body, ResumeProposalBody):
            if body.pause_proposal in state.resumed:
                continue
            item["pause_proposal"] = body.pause_proposal
        elif isinstance(body, SafetyCaseBody):
            item["plan"] = body.plan
        out.append(item)
    return out


def _coordinator_passes(ctx: StatusContext) -> int:
    coord = ctx.extra.get("coordinator")
    return int(getattr(coord, "passes", 0)) if coord is not None else 0


def build_status(ctx: StatusContext, *, sections: bool = True) -> StatusDocument:
    """The status document served at ``GET /v1/status`` (and signed, in part, at
    ``GET /v1/status/pause``) and shown by ``tripwire status``: the one place it is assembled.

    ``sections=False`` leaves out the registered sections (the coordinator's), for a caller
    that shows its own views of them (the CLI) and need not pay for them twice.

    What depends on stored entries is built once per new pause state (the tracker makes one
    when the node log or roster chain changes) or coordinator pass, and cached; while the
    tracker's worker runs, a request touches no database and only fills in the clock and
    peer fields (spec §13: status must not be a denial-of-service lever).
    """
    store = ctx.store
    tracker = pause_tracker(ctx)
    state = tracker.state()
    # Keyed by the state object (held by the cache, so its identity is never reused): a new
    # one exists exactly when the log or roster chain changed.
    passes = (_coordinator_passes(ctx), sections)
    cached = ctx.extra.get("status_cache")
    if cached is None or cached[0] is not state or cached[1] != passes:
        chain = store.roster_chain()
        roster = chain.current.roster
        index = ctx.extra.setdefault("alert_index", EntryIndex(("alert",)))
        recent = index.update(store)["alert"]
        del recent[:-MAX_ALERTS]  # only the most recent are listed; keep memory bounded
        alerts = [
            {"entry_id": e.entry_id, "lab": e.lab, "issued_at": e.statement.issued_at,
             "body": e.statement.body.model_dump(mode="json")}
            for e in recent
        ]
        base: dict[str, Any] = {
            "node": ctx.home.lab,
            "network": chain.network_id,
            # ``expired`` is judged per request, below.
            "roster": {"version": roster.version, "expires": roster.expires, "expired": False},
            "paused": state.paused,
            "pause": state.to_json(),
            "open_proposals": _open_proposals(state),
            "pause_flags": [f.to_json() for f in state.flags][:MAX_ALERTS],
            "alerts": alerts,
            "equivocations": [
                {"proof_id": p.proof_id, "lab": p.lab, "seq": p.seq} for p in store.equivocations()
            ],
            "heads": {lab: {"seq": h.seq, "entry_id": h.entry_id} for lab, h in sorted(store.heads().items())},
            "log_size": store.log_size(),
        }
        for section in _SECTIONS if sections else ():
            section(ctx, base)
        # The pause state is the tracker's, whatever a section wrote.
        base["paused"], base["pause"] = state.paused, state.to_json()
        # Filled in per request; validated here so the cached part is checked once.
        base.update(time="", peers={}, misbehaviour={})
        cached = (state, passes, StatusDocument.model_validate(base), chain)
        ctx.extra["status_cache"] = cached
    now = utcnow()
    doc: StatusDocument = cached[2]
    peers = ctx.syncer.peer_status() if ctx.syncer is not None else {}
    return doc.model_copy(
        update={
            "roster": StatusRoster(
                version=doc.roster.version, expires=doc.roster.expires, expired=cached[3].current.roster.expired(now)
            ),
            "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "peers": {peer: PeerSync.model_validate(p) for peer, p in peers.items()},
            # From the store (a read; WAL readers never wait for writers), so it also shows
            # peers this node no longer syncs with, and survives restarts.
            "misbehaviour": {
                peer: MisbehaviourCount.model_validate(c.to_dict()) for peer, c in store.misbehaviour_counts().items()
            },
        }
    )
