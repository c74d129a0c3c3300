"""One error shape for every error answer, so a client can always tell which field was wrong.

Every error body is ``{"detail": "<sentence>", "errors": [{"field", "location", "message"}]}``
(``ErrorBody`` in schemas.py): ``detail`` for people, ``errors`` for programs. FastAPI's own
validation and body-parsing errors are reshaped to match (a broken JSON body names field
``body`` and the line and column), the service's ``UnknownItem`` becomes a 404, a 405 lists the
methods the path does allow, and anything unexpected is a logged 500 in the same shape instead
of a bare "Internal Server Error".
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from shoprec.http.routetree import iter_routes
from shoprec.recommend.engine import UnknownItem
from shoprec.storage import StoreError, StoreFull

log = logging.getLogger("shoprec.http")

#: What FastAPI says when a body could not be read at all (its cause tells us why).
_PARSE_FAILURE = "There was an error parsing the body"


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


def _line_column(doc: str, pos: int) -> tuple[int, int]:
    line = doc.count("\n", 0, pos) + 1
    return line, pos - (doc.rfind("\n", 0, pos) + 1) + 1


def _validation_entry(err: dict[str, Any], body: Any) -> dict[str, Any]:
    loc = [str(part) for part in err.get("loc", ())]
    if err.get("type") == "json_invalid":
        # FastAPI puts the character offset where a field name goes; say where, in words.
        pos = err["loc"][1] if len(err.get("loc", ())) > 1 and isinstance(err["loc"][1], int) else 0
        line, column = _line_column(body if isinstance(body, str) else "", pos)
        reason = (err.get("ctx") or {}).get("error", "invalid JSON")
        return _field_error("body", "body", f"malformed JSON at line {line} column {column}: {reason}")
    location = loc[0] if loc and loc[0] in ("query", "path", "body", "header", "cookie") else None
    rest = loc[1:] if location else loc
    field = ".".join(rest) if rest else location
    message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return _field_error(field, location, message)


def _unparsed_json(exc: RequestValidationError) -> bool:
    """A JSON body sent without a JSON content type: FastAPI hands the raw bytes to validation."""
    return any(tuple(e.get("loc", ())) == ("body",) and isinstance(e.get("input"), bytes) for e in exc.errors())


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    errors = [_field_error(exc.field, exc.location, exc.message)] if exc.field else []
    return JSONResponse(error_body(exc.message, errors), status_code=exc.status, headers=exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    if _unparsed_json(exc):
        sent = request.headers.get("content-type") or "none"
        message = f"the body must be JSON sent as Content-Type: application/json (got {sent})"
        return JSONResponse(error_body(message, [_field_error("Content-Type", "header", message)]),
                            status_code=415)
    entries = [_validation_entry(e, exc.body) for e in exc.errors()]
    message = "; ".join(f"{e['location'] or 'request'} field '{e['field']}': {e['message']}" for e in entries)
    return JSONResponse(error_body(message or "invalid request", entries), status_code=422)


async def _unknown_item(_: Request, exc: UnknownItem) -> JSONResponse:
    message = f"unknown item {exc.item_id!r}"
    return JSONResponse(error_body(message, [_field_error("item_id", None, message)]), status_code=404)


def _parse_failure(cause: BaseException | None) -> str:
    if isinstance(cause, RecursionError):
        return "the JSON body is nested too deeply"
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not valid UTF-8 (byte {cause.start})"
    return f"the body could not be parsed: {cause}" if cause else "the body could not be parsed"


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (a path may be split over several routes)."""
    methods: set[str] = set()
    for route, _ in iter_routes(request.app.router.routes):
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # 404 for unknown routes, 405, the body limiter's 413 and body parse failures keep the shape.
    headers = dict(exc.headers or {})
    if exc.status_code == 400 and exc.detail == _PARSE_FAILURE:
        message = _parse_failure(exc.__cause__)
        return JSONResponse(error_body(message, [_field_error("body", "body", message)]), status_code=400)
    if exc.status_code == 405:
        allowed = allowed_methods(request) or [m.strip() for m in headers.get("Allow", "GET, HEAD").split(",")]
        headers["Allow"] = ", ".join(allowed)
        message = f"method {request.method} is not allowed here; allowed: {headers['Allow']}"
        return JSONResponse(error_body(message), status_code=405, headers=headers)
    return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code, headers=headers or None)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this answer, so the server still logs the traceback; this line
    # ties it to the request. The client learns nothing internal.
    log.error("unexpected %s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
    return JSONResponse(error_body("internal error: the server could not handle this request (logged)"),
                        status_code=500)


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
    app.add_exception_handler(Exception, _unexpected)
