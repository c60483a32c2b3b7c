"""GET /v1/status (pause state, open proposals, alerts; assembled in node.api.status) and
GET /v1/status/pause, the same pause state signed for a training gate's challenge (spec §6.9)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from node.api.deps import Ctx, MemberDep
from node.api.problems import problem_responses
from node.api.status import build_status
from node.contracts import CoordinationSection, StatusDocument
from protocol.canonical import format_time, utcnow
from protocol.envelope import Envelope
from protocol.pausestate import NONCE_PATTERN, pause_state_statement, sign_pause_state

router = APIRouter(tags=["status"])

Nonce = Annotated[
    str,
    Query(
        pattern=NONCE_PATTERN,
        description="The gate's challenge: 16 to 64 fresh random bytes, lowercase hex. "
        "The signed answer repeats it, so an old answer cannot be replayed.",
    ),
]


@router.get(
    "/v1/status",
    summary="Node status: pause state, open proposals, alerts, equivocations, peers",
    response_model=StatusDocument,
    # Optional members absent from the document stay absent on the wire.
    response_model_exclude_unset=True,
    responses=problem_responses(401, 403, 429),
)
def get_status(_: MemberDep, ctx: Ctx) -> StatusDocument:
    return build_status(ctx)


def _own_plans(status: StatusDocument, lab: str) -> list[dict[str, Any]]:
    """The node lab's plan states from the coordinator's latest pass (spec §6.12), as the
    signed pause state lists them for this lab's gates."""
    from protocol.plans import PlanRef

    coordination = status.coordination
    plans = coordination.plans if isinstance(coordination, CoordinationSection) else []
    refs = [
        PlanRef.model_validate(p.model_dump(mode="json", include=set(PlanRef.model_fields), exclude_none=True))
        for p in plans if p.lab == lab
    ]
    return [r.model_dump(mode="json") for r in refs[-256:]]


@router.get(
    "/v1/status/pause",
    summary="Pause state signed by this node's lab key, bound to the caller's nonce (for training gates)",
    response_model=Envelope,
    responses=problem_responses(400, 401, 403, 429),
)
def get_pause_state(nonce: Nonce, _: MemberDep, ctx: Ctx) -> Envelope:
    # The pause rule lives in build_status alone; this route only signs what it decided.
    status = build_status(ctx)
    statement = pause_state_statement(
        network=status.network,
        node=ctx.home.lab,
        issued_at=format_time(utcnow()),
        nonce=nonce,
        paused=status.paused,
        certificates=[
            {"proposal_id": c.proposal_id, "certificate": c.certificate, **({"scope": c.scope} if c.scope else {})}
            for c in status.pause.certificates
        ] if status.paused else [],
        roster_version=status.roster.version,
        plans=_own_plans(status, ctx.home.lab),
    )
    return sign_pause_state(statement, ctx.home.key)
