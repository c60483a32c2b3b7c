"""GET /v1/entries/{entry_id}: one accepted entry with its decoded statement."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel
from starlette.responses import Response

from node.api.deps import Ctx, MemberDep
from node.api.problems import ProblemError, problem_responses
from node.api.routes._json import json_response
from protocol.envelope import Envelope

router = APIRouter(tags=["entries"])

EntryIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="entry_id (hex SHA-256)")]


class EntryModel(BaseModel):
    entry_id: str
    lab: str
    seq: int
    kind: str
    roster_version: int
    """Roster version the signature verified under."""
    envelope: Envelope
    statement: dict[str, Any]
    """The decoded statement (the envelope payload is the authority)."""


def entry_json(e: Any) -> dict[str, Any]:
    return {
        "entry_id": e.entry_id,
        "lab": e.lab,
        "seq": e.seq,
        "kind": e.kind,
        "roster_version": e.roster_version,
        "envelope": e.envelope.to_dict(),
        "statement": e.statement.to_json(),
    }


@router.get(
    "/v1/entries/{entry_id}",
    summary="One accepted entry",
    response_model=EntryModel,
    responses=problem_responses(400, 401, 403, 404, 429),
)
def get_entry(entry_id: EntryIdPath, _: MemberDep, ctx: Ctx) -> Response:
    e = ctx.store.get(entry_id)
    if e is None:
        raise ProblemError(404, "entry-not-found", f"no accepted entry {entry_id}")
    return json_response(entry_json(e))
