"""POST /v1/envelopes: offer one envelope or a batch (spec: HTTP; §4.2 accept rule)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from node.api.deps import Ctx, LabBodyDep
from node.api.problems import ProblemError, problem_response, problem_responses
from node.contracts import BatchResult, IngestResult
from protocol.canonical import _no_duplicates
from protocol.envelope import Envelope
from protocol.errors import CanonicalFormError, FloatInSignedDataError, PeerDataError

router = APIRouter(tags=["envelopes"])

#: Largest batch accepted in one request (the body limit bounds it too).
MAX_BATCH = 5000


_ENVELOPE_SCHEMA = {
    "type": "object",
    "required": ["payloadType", "payload", "signatures"],
    "properties": {
        "payloadType": {"type": "string"},
        "payload": {"type": "string"},
        "signatures": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["sig"],
                "properties": {"keyid": {"type": "string"}, "sig": {"type": "string"}},
            },
        },
    },
}

_OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One DSSE envelope, or a JSON array of envelopes (a batch).",
        "content": {
            "application/json": {
                "schema": {"oneOf": [_ENVELOPE_SCHEMA, {"type": "array", "items": _ENVELOPE_SCHEMA}]}
            }
        },
    }
}


def _reject_float(s: str) -> Any:
    raise FloatInSignedDataError(f"float {s} in the request body: envelopes carry only strings")


def _reject_constant(s: str) -> Any:
    raise CanonicalFormError(f"{s} is not JSON")


def _parse_body(body: bytes) -> Any:
    """Parse the request body: strict JSON (no duplicate keys, floats or NaN), depth-bounded.

    The signed payloads inside get the full canonical-form checks in the store; this is the
    request framing, so the C parser is used (its recursion guard refuses deep nesting) rather
    than the signed-data parser, whose character-level depth scan would cost a quarter of a
    signature check per envelope.
    """
    try:
        text = body.decode("utf-8")
        return json.loads(
            text, object_pairs_hook=_no_duplicates, parse_float=_reject_float, parse_constant=_reject_constant
        )
    except UnicodeDecodeError as e:
        raise ProblemError(400, "non-canonical", f"request body is not UTF-8: {e.reason}") from e
    except RecursionError as e:
        raise ProblemError(400, "oversize", "request body JSON is nested too deeply") from e
    except PeerDataError as e:
        raise ProblemError(400, e.code, f"request body: {e.message}") from e
    except ValueError as e:
        raise ProblemError(400, "non-canonical", f"request body is not valid JSON: {e}") from e


def _status_for_code(code: str | None) -> int:
    # A conflicting signed entry (or a frozen feed) is a conflict with held state; any other
    # refusal is invalid content.
    return 409 if code in ("equivocation", "feed-forked") else 422


def _result(o: Any) -> IngestResult:
    return IngestResult(status=o.status, entry_id=o.entry_id, lab=o.lab, seq=o.seq, code=o.code, reason=o.reason)


@router.post(
    "/v1/envelopes",
    summary="Offer envelopes (one, or a batch as a JSON array)",
    response_model=BatchResult | IngestResult,
    responses=problem_responses(400, 401, 403, 409, 413, 415, 422, 429),
    openapi_extra=_OPENAPI_BODY,
)
def post_envelopes(req: LabBodyDep, ctx: Ctx) -> BatchResult | IngestResult | Response:
    """A single envelope is answered with its result (4xx problem when rejected); a batch is
    answered 200 with one result per envelope. Nothing invalid is stored; equivocation
    evidence is the only thing kept from a rejected entry."""
    data = _parse_body(req.body)
    single = isinstance(data, dict)
    items = [data] if single else data
    if not isinstance(items, list):
        raise ProblemError(400, "bad-request-body", "send one envelope object or a JSON array of envelopes")
    if not items:
        raise ProblemError(400, "empty-batch", "the batch is empty")
    if len(items) > MAX_BATCH:
        raise ProblemError(413, "batch-too-large", f"{len(items)} envelopes; at most {MAX_BATCH} per request")
    results: list[IngestResult | None] = [None] * len(items)
    valid: list[Envelope] = []
    where: list[int] = []
    for i, item in enumerate(items):
        try:
            valid.append(Envelope.parse(item))
            where.append(i)
        except PeerDataError as e:
            results[i] = IngestResult(
                status="rejected", entry_id=None, lab=None, seq=None, code=e.code, reason=e.message
            )
    if valid:
        outcomes = ctx.store.ingest(valid, source=req.caller.member)
        for i, o in zip(where, outcomes, strict=True):
            results[i] = _result(o)
    done = [r for r in results if r is not None]
    assert len(done) == len(results)
    counts: dict[str, int] = {}
    for r in done:
        counts[r.status] = counts.get(r.status, 0) + 1
    for status, n in counts.items():
        ctx.metrics.ingest.labels(status, "http").inc(n)
    if single:
        [r] = done
        if r.status == "rejected":
            return problem_response(_status_for_code(r.code), r.code or "rejected", r.reason or "")
        return r
    return BatchResult(results=done)
