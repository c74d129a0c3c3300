"""The app's routes as a flat list, whatever FastAPI version nests them.

Recent FastAPI keeps included routers as nodes of a tree (``app.routes`` holds the routers, not
their routes); the 405 handler and the OpenAPI contract need every route, so both walk it here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from fastapi import routing
from starlette.routing import BaseRoute


def iter_routes(routes: Sequence[BaseRoute]) -> Iterator[tuple[Any, BaseRoute]]:
    """``(effective, original)`` per route: ``effective`` matches requests and knows the full
    path (``path_format``, ``methods``, ``matches``); ``original`` is the route as declared."""
    walk = getattr(routing, "iter_route_contexts", None)
    if walk is None:  # older FastAPI: routes are already flat
        for route in routes:
            yield route, route
        return
    for context in walk(routes):
        yield context, context.original_route
