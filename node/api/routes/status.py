"""GET /v1/status: pause state, open proposals, alerts (assembled in node.api.status)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from node.api.deps import Ctx, MemberDep
from node.api.problems import problem_responses
from node.api.routes._json import json_response
from node.api.status import build_status

router = APIRouter(tags=["status"])


@router.get(
    "/v1/status",
    summary="Node status: pause state, open proposals, alerts, equivocations, peers",
    response_model=dict[str, Any],
    responses=problem_responses(401, 403, 429),
)
def get_status(_: MemberDep, ctx: Ctx) -> Response:
    return json_response(build_status(ctx))
