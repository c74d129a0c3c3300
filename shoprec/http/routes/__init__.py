"""One module per resource; ``ROUTERS`` is the order they appear in the OpenAPI docs."""

from shoprec.http.routes import catalog, events, online, recommend, search, system, users

ROUTERS = [search.router, recommend.router, users.router, catalog.router, events.router, online.router, system.router]

__all__ = ["ROUTERS"]
