"""GET /v1/misbehaviour: data peers served that this node refused (durable, bounded per peer)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.responses import Response

from node.api.deps import Ctx, MemberDep
from node.api.problems import problem_responses
from node.api.routes._json import json_response
from node.store.misbehaviour import MAX_READ

router = APIRouter(tags=["misbehaviour"])


class MisbehaviourItem(BaseModel):
    peer: str
    """Lab id of the peer that served the data."""
    serial: int
    """1-based count of this peer's records; the newest one's is the peer's total."""
    at: str
    """When this node refused the data (RFC 3339 UTC)."""
    code: str
    """Stable machine code of the refusal."""
    reason: str
    url: str
    """Where the data came from (peer endpoint, with the request path when known)."""
    lab: str | None
    """Lab whose feed the data claimed to extend, when known."""
    seq: int | None
    entry_id: str | None


class MisbehaviourCountModel(BaseModel):
    total: int
    """Records ever written for the peer."""
    kept: int
    """Records still stored (older ones are pruned beyond the retention limit)."""
    last_at: str


class MisbehaviourList(BaseModel):
    records: list[MisbehaviourItem]
    """Newest first: one peer's by serial, or every peer's by time."""
    counts: dict[str, MisbehaviourCountModel]
    """Per peer with any record."""


@router.get(
    "/v1/misbehaviour",
    summary="Recorded peer misbehaviour (refused forged, truncated, reordered or equivocating data)",
    response_model=MisbehaviourList,
    responses=problem_responses(400, 401, 403, 429),
)
def get_misbehaviour(
    _: MemberDep,
    ctx: Ctx,
    peer: Annotated[str | None, Query(pattern=r"^[a-z0-9-]{1,64}$", description="Only this peer's records")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_READ)] = 100,
) -> Response:
    counts = ctx.store.misbehaviour_counts()
    records = ctx.store.misbehaviour(peer, limit)
    return json_response(
        {
            "records": [r.to_dict() for r in records],
            "counts": {p: c.to_dict() for p, c in counts.items() if peer is None or p == peer},
        }
    )
