"""Prometheus metrics, one registry per app so tests (and embedders) can build many apps.

Requests are labelled by route *template* (``/items/{item_id}/similar``), never the raw path,
so one label per endpoint, not one per item id; unmatched paths share the label ``unmatched``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Latency buckets (seconds) spanning a cached ANN lookup to a batch upsert that encodes images.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


#: Online counters (shoprec/online/stats.py ``counters``) and their help texts.
_ONLINE = {
    "lists_served": "Ranked answers served (each a rec_id).",
    "lists_with_impressions": "Served lists with at least one impression.",
    "impressions": "Items of served lists reported shown (impression events).",
    "clicks": "Clicks credited to a served list.",
    "carts": "Add-to-carts credited to a served list.",
    "purchases": "Purchases credited to a served list.",
    "revenue": "Revenue (price x quantity) of purchases credited to a served list.",
}

OnlineCounters = Callable[[], list[tuple[str, str, str, str, float]]]


class OnlineCollector(Collector):
    """Online counters by experiment, surface and variant, read from the event log at scrape time,
    so they equal GET /stats and survive restarts (a forget can lower them: a counter reset)."""

    def __init__(self, read: OnlineCounters) -> None:
        self.read = read

    def describe(self) -> list[Metric]:
        return []  # read at scrape time only: registering must not query the database

    def collect(self) -> Iterator[Metric]:
        families = {name: CounterMetricFamily(f"shoprec_rec_{name}", help_, labels=["experiment", "surface", "variant"])
                    for name, help_ in _ONLINE.items()}
        try:
            rows = self.read()
        except Exception:  # noqa: BLE001 - an events database fault must not break the whole scrape
            logging.getLogger("shoprec.http").exception("online counters not read")
            rows = []
        for name, experiment, surface, variant, value in rows:
            if name in families:
                families[name].add_metric([experiment, surface, variant], value)
        yield from families.values()


class HttpMetrics:
    def __init__(self, index_size: Callable[[], float], online: OnlineCounters | None = None) -> None:
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
        if online is not None:
            self.registry.register(OnlineCollector(online))

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
