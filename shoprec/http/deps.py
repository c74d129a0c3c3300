"""Parameters several routes share: the service, ``k`` and the business filters.

Declared once so every endpoint validates them the same way (and OpenAPI documents them once).
The dependencies are ``async def`` although they never await: FastAPI runs a plain ``def``
dependency on a worker thread, and those thread hand-offs were the largest cost of a cached
answer (a py-spy profile of /items/{id}/similar under load).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi import Path as PathParam

from shoprec.config import Settings
from shoprec.http.metrics import HttpMetrics
from shoprec.indexing.store import ItemFilter
from shoprec.service import Shoprec

#: Same ceiling as the CLI's --k.
MAX_K = 1000

K = Annotated[int, Query(ge=1, le=MAX_K, description="How many results.")]
ItemId = Annotated[str, PathParam(min_length=1, max_length=256, description="The shop's item id.")]
UserId = Annotated[str, PathParam(min_length=1, max_length=256, description="The shop's user id.")]
#: Who the list is for, on answers that are not about a user: their A/B variant serves it and their
#: clicks on it are credited to it (an anonymous answer is variant 'default', any shopper's click counts).
Shopper = Annotated[str | None, Query(alias="user_id", min_length=1, max_length=256,
                                      description="The shopper the list is shown to (A/B assignment, credit).")]


async def service(request: Request) -> Shoprec:
    return request.app.state.service


async def http_settings(request: Request) -> Settings:
    """The app's settings: keys and HTTP limits (the service keeps its own for the store)."""
    return request.app.state.settings


async def metrics(request: Request) -> HttpMetrics:
    return request.app.state.metrics


async def item_filter(
    # A plain array, not "array or null": a query string has no null (absent is the default), and
    # the nullable form made contract generators send "non-arrays" that HTTP turns into strings.
    category: Annotated[list[str], Query(description="Only these categories (repeatable).")] = [],  # noqa: B006
    min_price: Annotated[float | None, Query(ge=0)] = None,
    max_price: Annotated[float | None, Query(ge=0)] = None,
    in_stock: Annotated[bool | None, Query(description="true: only items in stock.")] = None,
) -> ItemFilter | None:
    # min_price above max_price is a range nothing falls in: the answer is empty, like a category
    # nobody sells; it is a valid question, so not a 422.
    flt = ItemFilter(categories=category or None, min_price=min_price, max_price=max_price, in_stock=in_stock)
    return None if flt.is_empty() else flt


#: Annotated dependencies, so route signatures read as types.
Service = Annotated[Shoprec, Depends(service)]
HttpSettings = Annotated[Settings, Depends(http_settings)]
Metrics = Annotated[HttpMetrics, Depends(metrics)]
Filter = Annotated[ItemFilter | None, Depends(item_filter)]
