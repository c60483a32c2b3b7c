"""Signed checkpoints of the node's log and RFC 9162 proofs over it (spec: Merkle commitments).

Leaves are the UTF-8 bytes of accepted entry ids, in the node's accept order.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.responses import Response

from node.api.deps import Ctx, MemberDep
from node.api.problems import ProblemError, problem_responses
from node.api.routes._json import json_response
from protocol.envelope import Envelope

router = APIRouter(tags=["proofs"])

Hex64 = Annotated[str, Query(pattern=r"^[0-9a-f]{64}$")]
Size = Annotated[int, Query(ge=0, le=2**53 - 1)]


class InclusionProofModel(BaseModel):
    entry_id: str
    index: int
    """0-based leaf index of the entry in the node's log."""
    size: int
    """Tree size the proof is against."""
    path: list[str]
    """Audit path, hex node hashes, leaf to root (RFC 9162 §2.1.3)."""


class ConsistencyProofModel(BaseModel):
    old: int
    new: int
    path: list[str]
    """Consistency path, hex node hashes (RFC 9162 §2.1.4)."""


@router.get(
    "/v1/checkpoint",
    summary="A checkpoint of this node's log, signed by the node's lab key",
    response_model=Envelope,
    responses=problem_responses(401, 403, 429),
)
def get_checkpoint(_: MemberDep, ctx: Ctx) -> Response:
    env = ctx.store.signed_checkpoint(ctx.home.key, ctx.home.lab)
    return json_response(env.to_dict())


@router.get(
    "/v1/proofs/inclusion",
    summary="Inclusion proof of an entry in the log at a tree size",
    response_model=InclusionProofModel,
    responses=problem_responses(400, 401, 403, 404, 429),
)
def get_inclusion(
    entry_id: Hex64, _: MemberDep, ctx: Ctx, size: Annotated[int | None, Query(ge=1, le=2**53 - 1)] = None
) -> Response:
    size_now = ctx.store.log_size()
    if size is not None and size > size_now:
        raise ProblemError(400, "size-beyond-log", f"size {size} exceeds the log size {size_now}")
    if ctx.store.get(entry_id) is None:
        raise ProblemError(404, "entry-not-found", f"no accepted entry {entry_id}")
    index, tree_size, path = ctx.store.inclusion_proof(entry_id, size)
    return json_response({"entry_id": entry_id, "index": index, "size": tree_size, "path": list(path)})


@router.get(
    "/v1/proofs/consistency",
    summary="Consistency proof between two tree sizes of the log",
    response_model=ConsistencyProofModel,
    responses=problem_responses(400, 401, 403, 429),
)
def get_consistency(old: Size, new: Size, _: MemberDep, ctx: Ctx) -> Response:
    size_now = ctx.store.log_size()
    if not 0 <= old <= new <= size_now:
        raise ProblemError(
            400, "bad-tree-sizes", f"need 0 <= old <= new <= {size_now} (log size); got old={old}, new={new}"
        )
    path = ctx.store.consistency_proof(old, new)
    return json_response({"old": old, "new": new, "path": list(path)})
