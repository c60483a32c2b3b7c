"""GET /v1/certificates/{id}: pause/resume certificates by proposal id or entry id (spec §6.5)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from node.api.deps import Ctx, MemberDep
from node.api.problems import ProblemError, problem_responses
from node.api.routes._json import json_response
from node.api.routes.entries import EntryModel, entry_json

router = APIRouter(tags=["certificates"])

IdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="proposal_id or entry_id")]


@router.get(
    "/v1/certificates/{cert_id}",
    summary="A pause_certificate entry, by its proposal id or its own entry id",
    response_model=EntryModel,
    responses=problem_responses(400, 401, 403, 404, 429),
)
def get_certificate(cert_id: IdPath, _: MemberDep, ctx: Ctx) -> Response:
    # The first accepted certificate for a proposal is the one served: later ones for the
    # same proposal carry the same decision and add nothing.
    for e in ctx.store.entries(kind="pause_certificate"):
        if e.entry_id == cert_id or getattr(e.statement.body, "proposal_id", None) == cert_id:
            return json_response(entry_json(e))
    raise ProblemError(404, "certificate-not-found", f"no certificate for proposal or entry {cert_id}")
