"""RFC 9457 problem details: the only place errors become HTTP status codes.

Every error response is ``application/problem+json`` with the standard members (``type``,
``title``, ``status``, ``detail``) plus ``code``, a stable machine code: for protocol errors
it is the error's ``.code`` (the same codes as the negative test vectors and CLI output), so
clients branch on ``code``, never on the human ``detail``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from node.errors import AuthError
from protocol.errors import (
    TripwireError,
)

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
#: Problem type URIs are names, not links (RFC 9457 §3.1.1 allows non-dereferenceable URIs).
TYPE_PREFIX = "urn:tripwire:problem:"


class Problem(BaseModel):
    """An RFC 9457 problem document (the schema of every 4xx/5xx body)."""

    type: str
    """``urn:tripwire:problem:<code>``."""
    title: str
    """Short, code-level summary (the same for every occurrence of ``code``)."""
    status: int
    detail: str
    """Human explanation of this occurrence."""
    code: str
    """Stable machine code; protocol errors use their ``.code``."""


class ProblemError(Exception):
    """Raised in the HTTP layer for request-level failures that are not protocol errors."""

    def __init__(
        self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers or {}


_TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal error",
    502: "Bad gateway",
    503: "Service unavailable",
}


def status_for(err: TripwireError) -> int:
    """HTTP status for a Tripwire error: its class's ``http_status`` (by whose fault it is;
    an unauthenticated request is 401 or 403, a missing roster 503)."""
    if isinstance(err, AuthError):
        return err.status
    return err.http_status


def problem_response(
    status: int, code: str, detail: str, *, headers: dict[str, str] | None = None
) -> Response:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + code,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    return Response(
        json.dumps(body, ensure_ascii=False).encode("utf-8"),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def install_handlers(app: FastAPI) -> None:
    """Register the exception handlers that render every error as problem JSON."""

    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> Response:
        return problem_response(exc.status, exc.code, exc.detail, headers=exc.headers)

    @app.exception_handler(TripwireError)
    async def _tripwire(_: Request, exc: TripwireError) -> Response:
        status = status_for(exc)
        if status >= 500:
            log.error("request failed: %s", exc.diagnostics())
        return problem_response(status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = ".".join(str(p) for p in first.get("loc", ()))
        return problem_response(400, "invalid-request", f"{loc}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, f"http-{exc.status_code}")
        headers = dict(exc.headers) if exc.headers else None
        return problem_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> Response:
        # Never leak internals to a peer; the log has the traceback.
        log.exception("unhandled error", exc_info=exc)
        return problem_response(500, "internal", "internal error; see the node's log")


#: OpenAPI ``responses`` fragment for problem bodies.
def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        s: {"model": Problem, "description": _TITLES.get(s, "Error"), "content": {PROBLEM_MEDIA_TYPE: {}}}
        for s in statuses
    }
