"""Assembly of ``GET /v1/status``: one function, extended by the components that own each part.

:func:`build_status` returns what the store knows: roster state, heads, log size, the pause
state derived from certificates, open proposals, recent alerts, equivocations, recorded peer
misbehaviour and (when the node runs sync) per-peer sync state. Components added later (the pause coordinator) add
their sections by registering a contributor with :func:`register_status_section`, so the
route never changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from protocol.canonical import utcnow
from protocol.errors import PeerDataError
from protocol.quorum import verify_certificate

if TYPE_CHECKING:
    from node.api.deps import NodeContext

#: Most recent alerts listed in the status document.
MAX_ALERTS = 50

StatusSection = Callable[["NodeContext", dict[str, Any]], None]
_SECTIONS: list[StatusSection] = []


def register_status_section(fn: StatusSection) -> StatusSection:
    """Register ``fn(ctx, status)`` to add or refine keys of the status document (in order)."""
    if fn not in _SECTIONS:
        _SECTIONS.append(fn)
    return fn


def _pause_state(store: Any, chain: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Pause state from certificates (spec §6.5–6.7): paused while some pause certificate has
    no later resume certificate ending it."""
    certified: dict[str, dict[str, Any]] = {}
    resumed: set[str] = set()
    resumes_by_id: dict[str, str] = {}
    for e in store.entries(kind="resume_proposal"):
        resumes_by_id[e.statement.body.proposal_id] = e.statement.body.pause_proposal
    for e in store.entries(kind="pause_certificate"):
        body = e.statement.body
        try:
            verify_certificate(body, chain)
        except PeerDataError:
            continue  # an invalid certificate is not evidence of anything
        if body.action == "pause":
            certified.setdefault(
                body.proposal_id,
                {"proposal_id": body.proposal_id, "certificate": e.entry_id, "lab": e.lab, "issued_at": e.statement.issued_at},
            )
        else:
            ended = resumes_by_id.get(body.proposal_id)
            if ended is not None:
                resumed.add(ended)
    active = [c for pid, c in certified.items() if pid not in resumed]
    proposals = []
    decided = set(certified) | set(resumes_by_id)
    for e in store.entries(kind="pause_proposal"):
        pid = e.statement.body.proposal_id
        if pid in decided or any(p["proposal_id"] == pid for p in proposals):
            continue
        proposals.append(
            {"proposal_id": pid, "action": "pause", "entry_id": e.entry_id, "lab": e.lab,
             "trigger": e.statement.body.trigger.model_dump(mode="json")}
        )
    for e in store.entries(kind="resume_proposal"):
        pid = e.statement.body.proposal_id
        if pid in {c["proposal_id"] for c in certified.values()} or e.statement.body.pause_proposal in resumed:
            continue
        proposals.append(
            {"proposal_id": pid, "action": "resume", "entry_id": e.entry_id, "lab": e.lab,
             "pause_proposal": e.statement.body.pause_proposal}
        )
    return {"paused": bool(active), "certificates": active}, proposals


def build_status(ctx: NodeContext) -> dict[str, Any]:
    """The status document served at ``GET /v1/status``."""
    store = ctx.store
    chain = store.roster_chain()
    roster = chain.current.roster
    now = utcnow()
    pause, proposals = _pause_state(store, chain)
    alerts = [
        {"entry_id": e.entry_id, "lab": e.lab, "issued_at": e.statement.issued_at,
         "body": e.statement.body.model_dump(mode="json")}
        for e in store.entries(kind="alert")
    ][-MAX_ALERTS:]
    status: dict[str, Any] = {
        "node": ctx.home.lab,
        "network": chain.network_id,
        "roster": {"version": roster.version, "expires": roster.expires, "expired": roster.expired(now)},
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "paused": pause["paused"],
        "pause": pause,
        "open_proposals": proposals,
        "alerts": alerts,
        "equivocations": [
            {"proof_id": p.proof_id, "lab": p.lab, "seq": p.seq} for p in store.equivocations()
        ],
        "heads": {lab: {"seq": h.seq, "entry_id": h.entry_id} for lab, h in sorted(store.heads().items())},
        "log_size": store.log_size(),
        "peers": ctx.syncer.peer_status() if ctx.syncer is not None else {},
        # From the store, so it also shows peers this node no longer syncs with, and survives restarts.
        "misbehaviour": {peer: c.to_dict() for peer, c in store.misbehaviour_counts().items()},
    }
    for section in _SECTIONS:
        section(ctx, status)
    return status
