"""The OpenAPI document as a contract a generated-case tester can hold the server to.

FastAPI documents what it knows: response models and parameters. What it cannot know is added
here, and the tests (tests/test_api_contract.py) check the server keeps to it:

- every error answer is ``ErrorBody``: routes list theirs with ``errors(...)``, and FastAPI's own
  ``HTTPValidationError`` (a shape this API never sends) is replaced wherever it would appear;
- batch bodies are documented entry by entry (``batch_body``) although the routes take any JSON
  array, because each entry is validated on its own (one bad entry never sinks the batch);
- security follows the server's configuration: an operation declares the bearer and
  ``X-API-Key`` schemes, and its 401 (and 403), exactly when that server would ask for a key.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from shoprec.catalog import Product
from shoprec.config import Settings
from shoprec.http.auth import ACCESS_OF, Access, can_forbid, needs_key
from shoprec.http.routetree import iter_routes
from shoprec.http.schemas import ErrorBody
from shoprec.recommend.events import Event
from shoprec.recommend.segments import MAX_ATTRIBUTES, MAX_KEY_CHARS, MAX_VALUE_CHARS

REF = "#/components/schemas/"

#: What each documented error status means in this API.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The body could not be read at all: not UTF-8, JSON nested too deeply, a broken multipart form.",
    401: "A key is needed and was missing or wrong.",
    403: "The read key was presented for a write.",
    404: "An unknown item (in the path, the body or context_item), or an unknown experiment.",
    409: "The request conflicts with the current state (an experiment that exists, runs or is stopped already).",
    413: "Body, upload or batch over its limit.",
    415: "A JSON body sent without Content-Type: application/json.",
    422: "Invalid input: each entry of `errors` names a field and what is wrong with it.",
    507: "The store cannot take the write (disk full or read-only); nothing was written.",
}

#: What any route with a JSON body can answer besides its own errors.
JSON_BODY_ERRORS = (400, 413, 415, 422)

SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer",
                   "description": "The API key (or the read key, for reads) as `Authorization: Bearer KEY`."},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                     "description": "The same key as `X-API-Key: KEY`."},
}
_SECURITY = [{"bearerAuth": []}, {"apiKeyHeader": []}]

#: Entry schemas of the batch bodies (components of the document).
_USER_ENTRY = {
    "title": "UserEntry",
    "type": "object",
    "description": "A user: `user_id` plus scalar registration attributes (age, gender, region, ...).",
    "required": ["user_id"],
    "properties": {"user_id": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": r"\S"}},
    "propertyNames": {"maxLength": MAX_KEY_CHARS},
    "maxProperties": MAX_ATTRIBUTES + 1,
    "additionalProperties": {"anyOf": [{"type": "string", "maxLength": MAX_VALUE_CHARS}, {"type": "number"},
                                       {"type": "boolean"}, {"type": "null"}]},
}


def _entry_schemas() -> dict[str, dict[str, Any]]:
    return {"Product": Product.model_json_schema(), "Event": Event.model_json_schema(), "UserEntry": _USER_ENTRY}


def errors(*statuses: int, report: type[BaseModel] | None = None) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: these error statuses, documented as ``ErrorBody``.

    ``report``: a batch route's report, which is also its 422 body when nothing was accepted.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]}
    if report is not None and 422 in out:
        out[422] = {"model": report | ErrorBody,
                    "description": "Nothing in the batch was accepted: the report, as for 200. Or the request "
                                   "itself is invalid: an ErrorBody naming the field."}
    return out


def batch_body(entry: str, description: str) -> dict[str, Any]:
    """``openapi_extra`` documenting a batch body as an array of ``entry`` objects."""
    schema = {"type": "array", "items": {"$ref": REF + entry}, "description": description}
    return {"requestBody": {"content": {"application/json": {"schema": schema}}}}


def _access(route: APIRoute) -> Access | None:
    for dependency in route.dependencies:
        access = ACCESS_OF.get(dependency.dependency)  # type: ignore[call-overload]
        if access is not None:
            return access
    return None


def _replace_refs(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        return {k: (new if k == "$ref" and v == old else _replace_refs(v, old, new)) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_refs(v, old, new) for v in node]
    return node


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {"description": ERROR_DESCRIPTIONS[status],
                                "content": {"application/json": {"schema": {"$ref": REF + "ErrorBody"}}}}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"description": 'Bearer realm="shoprec"',
                                                    "schema": {"type": "string"}}}
    return response


def build(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """The document for this app as configured (security depends on which keys are set)."""
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.setdefault("ErrorBody", ErrorBody.model_json_schema(ref_template=REF + "{model}"))
    schemas.update(ErrorBody.model_json_schema(ref_template=REF + "{model}").pop("$defs", {}))
    schemas["ErrorBody"].pop("$defs", None)
    for name, schema in _entry_schemas().items():
        schemas.setdefault(name, schema)
    # FastAPI's default 422 body is not what this API sends: point any leftover at ErrorBody.
    doc = _replace_refs(doc, REF + "HTTPValidationError", REF + "ErrorBody")
    doc["components"]["schemas"].pop("HTTPValidationError", None)
    doc["components"]["schemas"].pop("ValidationError", None)
    doc["components"]["securitySchemes"] = SECURITY_SCHEMES

    for route, original in iter_routes(app.routes):
        if not isinstance(original, APIRoute) or not original.include_in_schema:
            continue
        access = _access(original)
        for method in route.methods or ():
            operation = doc["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            if access is None or not needs_key(settings, access):
                operation.pop("security", None)
                continue
            operation["security"] = _SECURITY
            operation["responses"]["401"] = _error_response(401)
            if can_forbid(settings, access):
                operation["responses"]["403"] = _error_response(403)
    return doc


def install(app: FastAPI, settings: Settings) -> None:
    """Serve ``build``'s document at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
