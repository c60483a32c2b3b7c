"""GET /v1/equivocations: every stored equivocation proof (portable evidence, spec §4.4)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.responses import Response

from node.api.deps import Ctx, MemberDep
from node.api.problems import problem_responses
from node.api.routes._json import json_response
from protocol.feed import EquivocationProof

router = APIRouter(tags=["equivocations"])


class EquivocationItem(BaseModel):
    proof_id: str
    proof: EquivocationProof


class EquivocationList(BaseModel):
    equivocations: list[EquivocationItem]


@router.get(
    "/v1/equivocations",
    summary="Equivocation proofs (two signed entries of one lab at one seq)",
    response_model=EquivocationList,
    responses=problem_responses(401, 403, 429),
)
def get_equivocations(_: MemberDep, ctx: Ctx) -> Response:
    return json_response(
        {
            "equivocations": [
                {"proof_id": p.proof_id, "proof": p.model_dump(mode="json")} for p in ctx.store.equivocations()
            ]
        }
    )
