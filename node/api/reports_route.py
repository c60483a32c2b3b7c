"""GET /v1/reports/latest: the node's current report, for roster members and observers.

Self-contained router: it finds the NodeHome at ``app.state.home`` (or the API context's
``app.state.node.home``), builds and verifies a fresh evidence bundle, and renders from the
verified bundle only. Rendering is cached per (log size, audience, format), so repeated
reads between new entries cost nothing. Authentication is the API's ``MemberDep``.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from node.api.deps import MemberDep
from node.api.problems import problem_responses

router = APIRouter(tags=["reports"])

#: No script may run and nothing may load, even if an escaping bug let markup through.
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
)
_lock = threading.Lock()


def _home(request: Request) -> Any:
    home = getattr(request.app.state, "home", None)
    if home is None:
        node = getattr(request.app.state, "node", None)
        home = getattr(node, "home", None)
    if home is None:
        raise RuntimeError("the app has no NodeHome at app.state.home")
    return home


def _render(home: Any, audience: Literal["public", "regulator"], fmt: str) -> bytes:
    from node.home.resources import spec_path
    from reports.bundle import verify_bundle
    from reports.render import render_html
    from reports.source import bundle_from_store, find_policy

    chain = home.store.roster_chain()
    policy = find_policy(chain.current.roster.policy_digest, search=[home.path, spec_path("policies")])
    bundle = bundle_from_store(home.store, key=home.key, lab=home.lab, policy=policy, audience=audience)
    if fmt == "json":
        return bundle.to_json_bytes()
    result = verify_bundle(bundle)
    return render_html(result.require(), report=result).encode("utf-8")


@router.get(
    "/v1/reports/latest",
    summary="The latest report (HTML) or its evidence bundle (JSON)",
    responses={200: {"content": {"text/html": {}, "application/json": {}}}, **problem_responses(401, 403, 429)},
)
def latest_report(
    _: MemberDep,
    request: Request,
    audience: Annotated[Literal["public", "regulator"], Query()] = "public",
    format: Annotated[Literal["html", "json"], Query()] = "html",
) -> Response:
    home = _home(request)
    key = (home.store.log_size(), audience, format)
    cache: dict[Any, bytes] | None = getattr(request.app.state, "report_cache", None)
    if cache is None:
        cache = request.app.state.report_cache = {}
    with _lock:
        body = cache.get(key)
        if body is None:
            body = _render(home, audience, format)
            cache.clear()
            cache[key] = body
    if format == "json":
        return Response(body, media_type="application/json")
    return Response(
        body,
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": REPORT_CSP, "X-Content-Type-Options": "nosniff"},
    )
