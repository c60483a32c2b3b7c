"""GET /v1/roster: the chain of accepted roster envelopes, genesis first (spec §7)."""

from __future__ import annotations

from fastapi import APIRouter

from node.api.deps import Ctx, MemberDep
from node.api.problems import problem_responses
from node.contracts import RosterDocument

router = APIRouter(tags=["roster"])


@router.get(
    "/v1/roster",
    summary="Roster chain (every accepted version, genesis first)",
    response_model=RosterDocument,
    responses=problem_responses(401, 403, 429),
)
def get_roster(_: MemberDep, ctx: Ctx) -> RosterDocument:
    from protocol.canonical import utcnow

    chain = ctx.store.roster_chain()
    cur = chain.current.roster
    return RosterDocument(
        network=chain.network_id,
        version=cur.version,
        expires=cur.expires,
        expired=cur.expired(utcnow()),
        envelopes=list(chain.envelopes()),
    )
