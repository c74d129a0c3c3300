"""API keys: who may call what, given which keys the server was started with.

A key comes as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` and is compared in constant
time. Three kinds of access:

- ``WRITE`` (catalog, events, users, forgetting a user) needs ``SHOPREC_API_KEY``; with only a
  read key configured it needs the read key (writes are never more open than reads).
- ``PERSONAL`` (anything keyed by a user id: a feed, a purchase history) needs a key whenever
  *any* key is configured, the API key or the read key: one shopper's history is nobody else's
  business, even on a server whose catalog is public.
- ``READ`` (the catalog: items, similar, complementary, search, trending, photos, metrics)
  needs the read key (or the API key) only when ``SHOPREC_READ_KEY`` is set.

docs/http.md has the matrix route x key configuration.
"""

from __future__ import annotations

import hmac
from enum import Enum

from fastapi import Depends, Request

from shoprec.config import Settings
from shoprec.http.errors import ApiError

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="shoprec"'}


class Access(Enum):
    READ = "read"
    PERSONAL = "personal read"
    WRITE = "write"


def presented_key(request: Request) -> str | None:
    """The key a request carries, from either header (Authorization wins when both are sent)."""
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    key = request.headers.get("x-api-key", "").strip()
    return key or None


def _same(given: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def needs_key(settings: Settings, access: Access) -> bool:
    """Whether this access needs a key on a server with these settings (also what OpenAPI declares)."""
    if access is Access.READ:
        return bool(settings.read_key)
    return bool(settings.api_key or settings.read_key)


def can_forbid(settings: Settings, access: Access) -> bool:
    """Whether a valid key can still be refused (403): the read key presented for a write."""
    return access is Access.WRITE and bool(settings.api_key and settings.read_key)


def check(settings: Settings, request: Request, access: Access) -> None:
    """Raise 401 (no or wrong key) or 403 (a read key used for a write); return if allowed."""
    if not needs_key(settings, access):
        return
    given = presented_key(request)
    if given is None:
        raise ApiError(401, f"this {access.value} needs an API key (Authorization: Bearer KEY or X-API-Key)",
                       field="Authorization", location="header", headers=_CHALLENGE)
    is_write = _same(given, settings.api_key or settings.read_key)
    is_read = _same(given, settings.read_key) or _same(given, settings.api_key)
    if access is Access.WRITE and not is_write:
        if is_read:
            raise ApiError(403, "the read key cannot write; use the API key", field="Authorization",
                           location="header")
        raise ApiError(401, "wrong API key", field="Authorization", location="header", headers=_CHALLENGE)
    if not is_read:
        raise ApiError(401, "wrong API key", field="Authorization", location="header", headers=_CHALLENGE)


async def require_read(request: Request) -> None:
    """Dependency for catalog reads."""
    check(request.app.state.settings, request, Access.READ)


async def require_personal(request: Request) -> None:
    """Dependency for every read keyed by a user id."""
    check(request.app.state.settings, request, Access.PERSONAL)


async def require_write(request: Request) -> None:
    """Dependency for every write route."""
    check(request.app.state.settings, request, Access.WRITE)


#: Which access each dependency grants (how the OpenAPI document finds an operation's access).
ACCESS_OF = {require_read: Access.READ, require_personal: Access.PERSONAL, require_write: Access.WRITE}

#: ``dependencies=`` lists for route decorators.
READ = [Depends(require_read)]
PERSONAL = [Depends(require_personal)]
WRITE = [Depends(require_write)]
