"""Unauthenticated operational endpoints: /healthz and /metrics (spec: HTTP exceptions)."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.responses import Response

from node.api.deps import Ctx
from node.api.routes._json import json_response

router = APIRouter(tags=["ops"])


class Health(BaseModel):
    status: str
    lab: str


@router.get("/healthz", summary="Liveness: the process serves and its store answers", response_model=Health)
def healthz(ctx: Ctx) -> Response:
    # Reveals nothing beyond what the roster already publishes (the lab id).
    ctx.store.log_size()
    return json_response({"status": "ok", "lab": ctx.home.lab})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(ctx: Ctx) -> Response:
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
