"""Prometheus metrics, one registry per app so tests (and embedders) can build many apps.

Requests are labelled by route *template* (``/items/{item_id}/similar``), never the raw path,
so one label per endpoint, not one per item id; unmatched paths share the label ``unmatched``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Latency buckets (seconds) spanning a cached ANN lookup to a batch upsert that encodes images.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class HttpMetrics:
    def __init__(self, index_size: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("shoprec_http_requests", "HTTP requests by route template and status.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("shoprec_http_request_duration_seconds", "HTTP request latency by route template.",
                                 ["method", "route"], buckets=_BUCKETS, registry=self.registry)
        self.events_ingested = Counter("shoprec_events_ingested", "Behaviour events accepted via POST /events.",
                                       registry=self.registry)
        self.events_rejected = Counter("shoprec_events_rejected", "Behaviour events rejected via POST /events.",
                                       registry=self.registry)
        self.items_upserted = Counter("shoprec_items_upserted", "Catalog items (re)indexed via POST /items.",
                                      registry=self.registry)
        self.index_items = Gauge("shoprec_index_items", "Items in the vector store (read at scrape time).",
                                 registry=self.registry)
        self.index_items.set_function(index_size)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def route_label(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


class MetricsMiddleware:
    """Times every HTTP request and counts it by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = route_label(scope)
            method = scope.get("method", "")
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
            self.metrics.requests.labels(method, route, str(status)).inc()
