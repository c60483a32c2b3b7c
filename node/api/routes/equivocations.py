"""Equivocation proofs (spec §4.4): ``GET /v1/equivocations`` serves every proof this node
keeps; ``POST /v1/equivocations`` offers proofs found elsewhere, so that a fork seen by one
node freezes the lab's feed on every node (sync pulls and pushes them)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.responses import Response

from node.api.deps import Ctx, LabBodyDep, MemberDep
from node.api.problems import ProblemError, problem_response, problem_responses
from node.api.routes._json import json_response
from node.api.routes.envelopes import _parse_body
from protocol.feed import EquivocationProof

router = APIRouter(tags=["equivocations"])

#: Most proofs accepted in one request (each costs two signature checks).
MAX_PROOFS = 256


class EquivocationItem(BaseModel):
    proof_id: str
    proof: EquivocationProof


class EquivocationList(BaseModel):
    equivocations: list[EquivocationItem]


class ProofResult(BaseModel):
    """What happened to one offered proof."""

    status: Literal["accepted", "duplicate", "rejected"]
    """``accepted``: verified and kept, the lab's feed is now frozen from ``seq``;
    ``duplicate``: already kept; ``rejected``: does not verify, nothing changed."""
    proof_id: str | None = None
    lab: str | None = None
    seq: int | None = None
    code: str | None = None
    """Machine code of the rejection (a protocol error code)."""
    reason: str | None = None
    """Human explanation of the rejection."""


class ProofResults(BaseModel):
    results: list[ProofResult]
    """One result per offered proof, in request order."""


_PROOF_SCHEMA = {"type": "object", "description": "An equivocation proof (specs/schemas/equivocation-proof)."}
_OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One equivocation proof, or a JSON array of proofs.",
        "content": {
            "application/json": {"schema": {"oneOf": [_PROOF_SCHEMA, {"type": "array", "items": _PROOF_SCHEMA}]}}
        },
    }
}


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


@router.post(
    "/v1/equivocations",
    summary="Offer equivocation proofs (one, or a batch as a JSON array)",
    response_model=ProofResults | ProofResult,
    responses=problem_responses(400, 401, 403, 413, 415, 422, 429),
    openapi_extra=_OPENAPI_BODY,
)
def post_equivocations(req: LabBodyDep, ctx: Ctx) -> Response:
    """Each proof is verified against the roster chain before anything changes; a valid
    one is kept and freezes the lab's feed. A single proof is answered with its result
    (a 422 problem with the refusal's code when it does not verify); a batch is answered
    200 with one result per proof."""
    data = _parse_body(req.body)
    single = isinstance(data, dict)
    items = [data] if single else data
    if not isinstance(items, list):
        raise ProblemError(400, "bad-request-body", "send one proof object or a JSON array of proofs")
    if not items:
        raise ProblemError(400, "empty-batch", "the batch is empty")
    if len(items) > MAX_PROOFS:
        raise ProblemError(413, "batch-too-large", f"{len(items)} proofs; at most {MAX_PROOFS} per request")
    results = [o.to_dict() for o in ctx.store.add_equivocations(items)]
    if single:
        r = results[0]
        if r["status"] == "rejected":
            return problem_response(422, r["code"] or "rejected", r["reason"] or "")
        return json_response(r)
    return json_response({"results": results})
