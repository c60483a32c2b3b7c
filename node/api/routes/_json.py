"""Fast JSON responses for large, already-validated payloads (feeds, batches)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


def json_response(data: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    # Envelopes and heads are plain str/int data; FastAPI's response-model validation of
    # hundreds of envelopes per page would dominate the cost of a feed request.
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )
