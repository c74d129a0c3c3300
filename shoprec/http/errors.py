"""One error shape for every 4xx, so a client can always tell which field was wrong.

Every error body is ``{"detail": "<sentence>", "errors": [{"field", "location", "message"}]}``:
``detail`` for people, ``errors`` for programs. FastAPI's own validation errors are reshaped to
match, and the service's ``UnknownItem`` becomes a 404 instead of a 500.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shoprec.recommend.engine import UnknownItem
from shoprec.storage import StoreError, StoreFull


class ApiError(Exception):
    """An input problem with the field it concerns; raised by routes, rendered by ``install``."""

    def __init__(self, status: int, message: str, field: str | None = None, location: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.location = location
        self.headers = headers


def error_body(message: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"detail": message, "errors": errors or []}


def _field_error(field: str | None, location: str | None, message: str) -> dict[str, Any]:
    return {"field": field, "location": location, "message": message}


def _validation_entry(err: dict[str, Any]) -> dict[str, Any]:
    loc = [str(part) for part in err.get("loc", ())]
    location = loc[0] if loc and loc[0] in ("query", "path", "body", "header", "cookie") else None
    rest = loc[1:] if location else loc
    field = ".".join(rest) if rest else location
    message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return _field_error(field, location, message)


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    errors = [_field_error(exc.field, exc.location, exc.message)] if exc.field else []
    return JSONResponse(error_body(exc.message, errors), status_code=exc.status, headers=exc.headers)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    entries = [_validation_entry(e) for e in exc.errors()]
    message = "; ".join(f"{e['location'] or 'request'} field '{e['field']}': {e['message']}" for e in entries)
    return JSONResponse(error_body(message or "invalid request", entries), status_code=422)


async def _unknown_item(_: Request, exc: UnknownItem) -> JSONResponse:
    message = f"unknown item {exc.item_id!r}"
    return JSONResponse(error_body(message, [_field_error("item_id", None, message)]), status_code=404)


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    # 404 for unknown routes, 405, and the body limiter's 413 keep the same shape as the rest.
    return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers)


async def _store_error(_: Request, exc: StoreError) -> JSONResponse:
    # Nothing of the request was written (the check runs before the write); 507 tells the client
    # that retrying later is right, 503 that the store itself cannot be used now.
    status = 507 if isinstance(exc, StoreFull) else 503
    return JSONResponse(error_body(str(exc), [_field_error("store", None, str(exc))]), status_code=status)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(UnknownItem, _unknown_item)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(StoreError, _store_error)
