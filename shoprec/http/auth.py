"""API keys: writes need ``SHOPREC_API_KEY``; reads need ``SHOPREC_READ_KEY`` (or the API key) when set.

A key comes as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` and is compared in constant
time. Writes are never more open than reads: with only a read key configured, writes need it too.
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


def check(settings: Settings, request: Request, access: Access) -> None:
    """Raise 401 (no or wrong key) or 403 (a read key used for a write); return if allowed."""
    write_key = settings.api_key or settings.read_key
    needed = write_key if access is Access.WRITE else settings.read_key
    if not needed:
        return
    given = presented_key(request)
    if given is None:
        raise ApiError(401, f"this {access.value} needs an API key (Authorization: Bearer KEY or X-API-Key)",
                       field="Authorization", location="header", headers=_CHALLENGE)
    is_write = _same(given, write_key)
    is_read = _same(given, settings.read_key)
    if access is Access.WRITE and not is_write:
        if is_read and settings.api_key:
            raise ApiError(403, "the read key cannot write; use the API key", field="Authorization",
                           location="header")
        raise ApiError(401, "wrong API key", field="Authorization", location="header", headers=_CHALLENGE)
    if access is Access.READ and not (is_read or _same(given, settings.api_key)):
        raise ApiError(401, "wrong API key", field="Authorization", location="header", headers=_CHALLENGE)


def require_read(request: Request) -> None:
    """Dependency for every read route."""
    check(request.app.state.settings, request, Access.READ)


def require_write(request: Request) -> None:
    """Dependency for every write route."""
    check(request.app.state.settings, request, Access.WRITE)


#: ``dependencies=`` lists for route decorators.
READ = [Depends(require_read)]
WRITE = [Depends(require_write)]
