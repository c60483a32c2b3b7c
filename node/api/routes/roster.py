"""GET /v1/roster: the chain of accepted roster envelopes, genesis first (spec §7)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.responses import Response

from node.api.deps import Ctx, MemberDep
from node.api.problems import problem_responses
from node.api.routes._json import json_response
from protocol.envelope import Envelope

router = APIRouter(tags=["roster"])


class RosterChainModel(BaseModel):
    network: str
    """Network id (the genesis roster id)."""
    version: int
    """Current roster version."""
    expires: str
    expired: bool
    envelopes: list[Envelope]
    """Every accepted roster envelope, version 1 first; verify with the genesis signatures."""


@router.get(
    "/v1/roster",
    summary="Roster chain (every accepted version, genesis first)",
    response_model=RosterChainModel,
    responses=problem_responses(401, 403, 429),
)
def get_roster(_: MemberDep, ctx: Ctx) -> Response:
    from protocol.canonical import utcnow

    chain = ctx.store.roster_chain()
    cur = chain.current.roster
    return json_response(
        {
            "network": chain.network_id,
            "version": cur.version,
            "expires": cur.expires,
            "expired": cur.expired(utcnow()),
            "envelopes": [e.to_dict() for e in chain.envelopes()],
        }
    )
