"""``create_app``: the FastAPI app over one ``Shoprec`` service.

The app holds no recommender logic: routes validate input, call the service and shape JSON.
Sync routes run in FastAPI's threadpool; the embedded store serialises writes itself, and the
service's lazy parts are built once at startup so threads never race to open the store.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from shoprec.config import Settings
from shoprec.http import contract, errors
from shoprec.http.limits import BodyLimitMiddleware
from shoprec.http.metrics import HttpMetrics, MetricsMiddleware
from shoprec.http.routes import ROUTERS
from shoprec.http.routes.system import WEB_DIR
from shoprec.service import Shoprec

log = logging.getLogger("shoprec.http")

_DESCRIPTION = """Multimodal product recommendations: search by words or photo, similar and
complementary products, personalised feeds, catalog and behaviour ingestion.

Keys come as `Authorization: Bearer KEY` or `X-API-Key: KEY`. Writes need the API key when
`SHOPREC_API_KEY` is set. Anything about one shopper (their feed, their history) needs a key, the
API key or the read key, whenever either is set. Catalog reads (items, similar, complementary,
search, trending, photos, metrics) need the read key (or the API key) only when `SHOPREC_READ_KEY`
is set. The `security` of each operation below says what this server, as configured, asks for.
Every error answer has the `ErrorBody` shape."""


def _index_size(service: Shoprec):
    def read() -> float:
        try:
            return float(service.count())
        except Exception:  # noqa: BLE001 - a store outage must not break the whole scrape
            return float("nan")

    return read


def create_app(settings: Settings | None = None, service: Shoprec | None = None) -> FastAPI:
    """Build the app. A ``service`` passed in stays the caller's (not closed on shutdown).

    ``settings`` governs the HTTP layer (keys, limits); without it the service's settings are used.
    """
    owns_service = service is None
    settings = settings or (service.settings if service is not None else Settings())
    service = service if service is not None else Shoprec(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Open the store, events database and serving space now (the parts are lazy, see lazy.py):
        # a held, full or read-only store is then a start-up failure, not a first request's error.
        service.store, service.indexer  # noqa: B018
        service.engine.open()
        if not settings.api_key and not settings.read_key:
            log.warning("SHOPREC_API_KEY is not set: anyone who can reach this server can write")
        try:
            yield
        finally:
            if owns_service:
                service.close()

    app = FastAPI(title="shoprec", version="0.1.0", description=_DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.service = service
    app.state.metrics = HttpMetrics(_index_size(service), lambda: service.engine.online.counters())

    errors.install(app)
    contract.install(app, settings)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    # Added last = outermost: metrics also see the limiter's 413s.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
