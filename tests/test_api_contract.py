"""The HTTP API keeps its OpenAPI contract: generated requests (schemathesis) and fixed regressions.

The generated part runs every documented operation through schemathesis' examples, coverage
(boundary values, wrong types, undocumented methods) and fuzzing phases, derandomized and
bounded, once on a server without keys and once with both keys, and holds each answer to the
document: never a 5xx; status code, content type, body and headers as documented; 405 with an
``Allow`` header; schema-valid requests accepted and schema-invalid ones refused; with keys,
the key really required where security is declared.

Two deliberate exceptions, each for a documented reason:

- batch writes (POST /items, /events, /users) validate entry by entry, so a batch with a bad
  entry is partly accepted (200 with the entry reported) — not a schema-violating request
  "accepted" — and an entry can be refused for what no schema can say (an event about an
  item not in the catalog, an attribute name that is not printable); a batch where nothing was
  accepted is the documented 422 carrying the report;
- POST /search: random bytes in the photo field are schema-valid but no photo (422).

The generated writes go to a store of their own (never the shared demo), built module-wide.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.config import SchemathesisConfig

from shoprec.config import Settings
from shoprec.http import create_app
from shoprec.service import Shoprec

WRITER, READER = "contract-writer", "contract-reader"
KEY_CONFIGS = {"no-keys": {}, "both-keys": {"api_key": WRITER, "read_key": READER}}

#: Examples per operation and phase: enough to reach every branch the coverage phase opens,
#: small enough for a busy 2-core machine (POST /items encodes what it accepts, so it gets fewer).
MAX_EXAMPLES = 25
MAX_EXAMPLES_ENCODING = 8

_BATCH_WRITES = ["/items", "/events", "/users"]


def _config(keyed: bool) -> SchemathesisConfig:
    checks = {name: {"enabled": True} for name in (
        "not_a_server_error", "status_code_conformance", "content_type_conformance",
        "response_schema_conformance", "response_headers_conformance", "unsupported_method",
        "allow_header_conformance", "missing_required_header", "positive_data_acceptance",
        "negative_data_rejection")}
    checks["ignored_auth"] = {"enabled": keyed}
    for stateful_only in ("use_after_free", "ensure_resource_availability", "object_level_authorization"):
        checks[stateful_only] = {"enabled": False}
    data: dict = {
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "suppress-health-check": ["all"],
        "cache": {"enabled": False},  # no replay of old failures, no files left in the checkout
        "phases": {"stateful": {"enabled": False}},
        "checks": checks,
        "operations": [
            {"include-path": "/items", "include-method": "POST",
             "generation": {"max-examples": MAX_EXAMPLES_ENCODING}},
            {"include-path": _BATCH_WRITES, "include-method": "POST",
             "checks": {"positive_data_acceptance": {"enabled": False},
                        "negative_data_rejection": {"enabled": False}}},
            {"include-path": "/search", "include-method": "POST",
             "checks": {"positive_data_acceptance": {"enabled": False}}},
        ],
    }
    if keyed:
        data["auth"] = {"openapi": {"apiKeyHeader": {"api_key": WRITER}}}
    return SchemathesisConfig.from_dict(data)


@pytest.fixture(scope="module")
def contract_service(demo_shop, tmp_path_factory):
    """The demo shop in a store of its own: generated writes must not touch the shared one."""
    catalog, events = demo_shop
    service = Shoprec(Settings(store=tmp_path_factory.mktemp("contract-store")))
    assert service.index_catalog(catalog, progress=False).indexed == 48
    service.ingest_events_file(events)
    yield service
    service.close()


def _app(service: Shoprec, image_root: Path, **keys: str):
    return create_app(service.settings.model_copy(update={"image_root": image_root, **keys}), service=service)


def _document(keys: dict[str, str]) -> dict:
    """The OpenAPI document of a server with these keys (it needs no store: nothing is opened)."""
    settings = Settings(store="unused-contract-store", **keys)
    return create_app(settings, service=Shoprec(settings)).openapi()


class _Served:
    """An ASGI app that forwards to the app a fixture builds: schemathesis needs an app when the
    module is imported (one test per operation), the demo store only exists once fixtures ran."""

    def __init__(self) -> None:
        self.app = None

    async def __call__(self, scope, receive, send) -> None:
        assert self.app is not None, "the contract fixtures did not run"
        await self.app(scope, receive, send)


SERVED = {name: _Served() for name in KEY_CONFIGS}


def _schema(name: str):
    loaded = schemathesis.openapi.from_dict(_document(KEY_CONFIGS[name]), config=_config(bool(KEY_CONFIGS[name])))
    loaded.app = SERVED[name]  # what from_asgi does with the app it loaded the document from
    return loaded


def _serve(service: Shoprec, demo_shop, name: str) -> None:
    keys = KEY_CONFIGS[name]
    app = _app(service, demo_shop[0].parent, **keys)
    with TestClient(app) as c:
        assert c.get("/openapi.json").json() == _document(keys), "the tested document is not the served one"
    SERVED[name].app = app


@pytest.fixture(scope="module")
def keyless_app(contract_service, demo_shop):
    _serve(contract_service, demo_shop, "no-keys")


@pytest.fixture(scope="module")
def keyed_app(contract_service, demo_shop):
    _serve(contract_service, demo_shop, "both-keys")


@_schema("no-keys").parametrize()
def test_every_operation_keeps_the_contract_without_keys(case, keyless_app):
    case.call_and_validate()


@_schema("both-keys").parametrize()
def test_every_operation_keeps_the_contract_with_keys(case, keyed_app):
    case.call_and_validate()


# ---------------------------------------------------------------- the document itself
@pytest.fixture(scope="module")
def open_client(contract_service, demo_shop):
    with TestClient(_app(contract_service, demo_shop[0].parent)) as c:
        yield c


def _operations(doc: dict):
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield path, method.upper(), op


def test_every_error_answer_is_documented_as_error_body(open_client):
    doc = open_client.get("/openapi.json").json()
    assert "HTTPValidationError" not in str(doc)  # FastAPI's 422 shape is never what we send
    error_body = doc["components"]["schemas"]["ErrorBody"]
    assert set(error_body["required"]) == {"detail", "errors"}
    for path, method, op in _operations(doc):
        for status, response in op["responses"].items():
            if not status.startswith(("4", "5")) or path == "/health":
                continue
            schema = response["content"]["application/json"]["schema"]
            refs = [schema.get("$ref")] + [s.get("$ref") for s in schema.get("anyOf", [])]
            assert "#/components/schemas/ErrorBody" in refs, (method, path, status)
        has_input = op.get("parameters") or op.get("requestBody")
        assert not has_input or "422" in op["responses"], (method, path)


@pytest.mark.parametrize(("keys", "secured"), [
    ({}, set()),
    ({"api_key": WRITER}, {"POST /items", "DELETE /items/{item_id}", "POST /events", "POST /users",
                           "DELETE /users/{user_id}", "GET /users/{user_id}/recommendations",
                           "GET /users/{user_id}/history", "POST /experiments", "POST /experiments/{name}/stop"}),
    ({"read_key": READER}, "all but health"),
])
def test_security_is_declared_where_this_server_asks_for_a_key(contract_service, demo_shop, keys, secured):
    with TestClient(_app(contract_service, demo_shop[0].parent, **keys)) as c:
        doc = c.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKeyHeader"]["in"] == "header" and schemes["apiKeyHeader"]["name"] == "X-API-Key"
    declared = {f"{method} {path}" for path, method, op in _operations(doc) if op.get("security")}
    if secured == "all but health":
        secured = {f"{method} {path}" for path, method, _ in _operations(doc)} - {"GET /health"}
    assert declared == secured
    for path, method, op in _operations(doc):
        assert ("401" in op["responses"]) == (f"{method} {path}" in secured), (method, path)


# ---------------------------------------------------------------- regressions the generated probe found
def test_405_lists_every_method_of_the_path(open_client):
    for method, url, allowed in [("PATCH", "/items/tshirt-black", "DELETE, GET"), ("PUT", "/users/u001", "DELETE"),
                                 ("DELETE", "/health", "GET"), ("GET", "/events", "POST"),
                                 ("DELETE", "/static/app.js", "GET, HEAD")]:
        response = open_client.request(method, url)
        assert response.status_code == 405, (method, url)
        assert response.headers["allow"] == allowed, (method, url)
        assert set(response.json()) == {"detail", "errors"} and allowed in response.json()["detail"]


def test_malformed_json_names_the_body_and_where(open_client):
    response = open_client.post("/events", content=b'[\n  {"user_id": "u1"},\n  {"item_id" 2}]',
                                headers={"content-type": "application/json"})
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "body" and error["location"] == "body"
    assert "malformed JSON at line 3 column 14" in error["message"]


def test_deeply_nested_json_is_400_on_the_body(open_client):
    deep = b"[" * 100_000 + b"]" * 100_000
    response = open_client.post("/cart/complementary", content=deep, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "body", "location": "body",
                                          "message": "the JSON body is nested too deeply"}]


def test_a_body_that_is_not_utf8_is_400_on_the_body(open_client):
    response = open_client.post("/cart/complementary", content=b'{"item_ids": ["\xff"]}',
                                headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "body"


def test_json_without_a_json_content_type_is_415(open_client):
    response = open_client.post("/cart/complementary", content=b'{"item_ids": ["mug-red"]}',
                                headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert response.json()["errors"][0]["field"] == "Content-Type"


def test_a_lone_surrogate_in_a_cart_is_422_naming_the_entry(open_client):
    response = open_client.post("/cart/complementary", content=b'{"item_ids": ["mug-red", "x\\ud800"]}',
                                headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["item_ids.1"]


def test_lone_surrogates_in_batch_entries_are_reported_not_500(contract_service, demo_shop):
    with TestClient(_app(contract_service, demo_shop[0].parent)) as c:
        items = c.post("/items", content=b'[{"id": "x\\udc00", "title": "t"}, {"id": "y", "title": "t\\ud800"}]',
                       headers={"content-type": "application/json"})
        events = c.post("/events", content=b'[{"user_id": "u\\ud800", "item_id": "mug-red\\ud800", '
                                           b'"type": "view", "ts": "2026-03-01T00:00:00Z"}]',
                        headers={"content-type": "application/json"})
    assert items.status_code == 422 and [e["index"] for e in items.json()["rejected"]] == [0, 1]
    assert items.json()["rejected"][0]["id"] == "x\\udc00"  # escaped, so the report can be sent
    assert events.status_code == 422 and {e["field"] for e in events.json()["errors"]} == {"user_id", "item_id"}


def test_an_unexpected_failure_is_a_logged_500_in_the_error_shape(contract_service, demo_shop, caplog):
    app = _app(contract_service, demo_shop[0].parent)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("disk on fire")

    with TestClient(app, raise_server_exceptions=False) as c, caplog.at_level("ERROR", logger="shoprec.http"):
        response = c.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error: the server could not handle this request (logged)",
                               "errors": []}
    assert "disk on fire" not in response.text
    assert any("RuntimeError on GET /boom: disk on fire" in r.getMessage() for r in caplog.records)
