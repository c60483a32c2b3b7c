"""Prometheus metrics of one node (a registry per app, so several nodes can share a process)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class NodeMetrics:
    """Counters and histograms exported at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "tripwire_http_requests", "HTTP requests served", ["route", "method", "status"], registry=r
        )
        self.http_latency = Histogram(
            "tripwire_http_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.auth_failures = Counter(
            "tripwire_auth_failures", "Requests refused by authentication", ["code"], registry=r
        )
        self.ingest = Counter(
            "tripwire_ingest_envelopes", "Envelopes offered for ingest, by outcome", ["status", "via"], registry=r
        )
        self.sync_rounds = Counter(
            "tripwire_sync_rounds", "Anti-entropy rounds per peer and result", ["peer", "result"], registry=r
        )
        self.sync_bytes = Counter(
            "tripwire_sync_bytes", "Bytes exchanged with peers by sync", ["peer", "direction"], registry=r
        )
        self.sync_entries = Counter(
            "tripwire_sync_entries", "Entries fetched or pushed by sync, by outcome", ["peer", "op", "status"],
            registry=r,
        )
        self.peer_misbehaviour = Counter(
            "tripwire_peer_misbehaviour", "Invalid data or protocol violations seen from a peer", ["peer", "code"],
            registry=r,
        )
        self.log_size = Gauge("tripwire_log_size", "Entries in this node's log", registry=r)

    def bind_log_size(self, fn: Callable[[], int]) -> None:
        self.log_size.set_function(lambda: float(fn()))


class MetricsMiddleware:
    """Pure ASGI middleware counting requests by route template (bounded label values)."""

    def __init__(self, app: ASGIApp, metrics: NodeMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            # Unmatched paths share one label so that scanners cannot blow up cardinality.
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.http_requests.labels(name, scope.get("method", ""), str(status["code"])).inc()
            self.metrics.http_latency.labels(name).observe(time.perf_counter() - start)
