"""Who may call what: every route under every key configuration, with every key one can present.

The table below is the access matrix of docs/http.md written out by hand (not derived from
auth.py), so a change to the policy has to change both. The point of issue 9: a shopper's
history and feed are never open on a server that has any key, even where the catalog is.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from shoprec.http import create_app

WRITER, READER = "the-api-key", "the-read-key"
CONFIGS = {"no keys": {}, "API key only": {"api_key": WRITER}, "read key only": {"read_key": READER},
           "both keys": {"api_key": WRITER, "read_key": READER}}
PRESENTED = (None, WRITER, READER)  # no key, the API key's value, the read key's value

OK = "ok"  # the route's own answer (200, or 404 for deleting an unknown item)

#: access kind -> configuration -> answer to (no key, API key value, read key value)
MATRIX = {
    "catalog": {
        "no keys": (OK, OK, OK),
        "API key only": (OK, OK, OK),
        "read key only": (401, 401, OK),
        "both keys": (401, OK, OK),
    },
    "personal": {
        "no keys": (OK, OK, OK),
        "API key only": (401, OK, 401),
        "read key only": (401, 401, OK),
        "both keys": (401, OK, OK),
    },
    "write": {
        "no keys": (OK, OK, OK),
        "API key only": (401, OK, 401),
        "read key only": (401, 401, OK),
        "both keys": (401, OK, 403),
    },
}

#: (access kind, method, url, request kwargs, the route's own status once let in)
ROUTES = [
    ("catalog", "GET", "/items/tshirt-black", {}, 200),
    ("catalog", "GET", "/items/tshirt-black/similar?k=3", {}, 200),
    ("catalog", "GET", "/items/tshirt-black/complementary?k=3", {}, 200),
    ("catalog", "POST", "/cart/complementary?k=3", {"json": {"item_ids": ["phone-black"]}}, 200),
    ("catalog", "POST", "/search?k=3", {"data": {"q": "mug"}}, 200),
    ("catalog", "GET", "/trending?k=3", {}, 200),
    ("catalog", "GET", "/images/tshirt-black", {}, 200),
    ("catalog", "GET", "/metrics", {}, 200),
    ("catalog", "GET", "/stats", {}, 200),
    ("catalog", "GET", "/experiments", {}, 200),
    ("personal", "GET", "/users/u001/recommendations?k=3", {}, 200),
    ("personal", "GET", "/users/u001/history?limit=2", {}, 200),
    ("write", "POST", "/items", {"json": []}, 200),
    ("write", "DELETE", "/items/no-such-item", {}, 404),
    ("write", "POST", "/events", {"json": []}, 200),
    ("write", "POST", "/users", {"json": []}, 200),
    ("write", "DELETE", "/users/nobody-at-all", {}, 200),
    # never a valid experiment here: it would change what the shared demo serves other tests
    ("write", "POST", "/experiments", {"json": {}}, 422),
    ("write", "POST", "/experiments/no-such-experiment/stop", {}, 404),
]


@pytest.fixture(scope="module", params=list(CONFIGS))
def configured(request, indexed_demo, demo_shop) -> Iterator[tuple[str, TestClient]]:
    settings = indexed_demo.settings.model_copy(update={"image_root": demo_shop[0].parent, **CONFIGS[request.param]})
    with TestClient(create_app(settings, service=indexed_demo)) as client:
        yield request.param, client


def _headers(key: str | None, style: int) -> dict[str, str]:
    if key is None:
        return {}
    return {"Authorization": f"Bearer {key}"} if style % 2 else {"X-API-Key": key}


@pytest.mark.parametrize(("kind", "method", "url", "kwargs", "own_status"), ROUTES,
                         ids=[f"{m} {u.split('?')[0]}" for _, m, u, _, _ in ROUTES])
def test_access_matrix(configured, kind, method, url, kwargs, own_status):
    config, client = configured
    for style, (key, expected) in enumerate(zip(PRESENTED, MATRIX[kind][config], strict=True)):
        response = client.request(method, url, headers=_headers(key, style), **kwargs)
        want = own_status if expected == OK else expected
        who = "no key" if key is None else ("the API key" if key == WRITER else "the read key")
        assert response.status_code == want, f"{config}: {method} {url} with {who} -> {response.text[:200]}"
        if want in (401, 403):
            body = response.json()
            assert body["errors"][0]["field"] == "Authorization", body
        if want == 401:
            assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_history_never_leaks_when_only_the_api_key_is_set(indexed_demo):
    # The case: with SHOPREC_API_KEY alone, anyone could read a purchase history.
    settings = indexed_demo.settings.model_copy(update={"api_key": WRITER})
    with TestClient(create_app(settings, service=indexed_demo)) as client:
        history = client.get("/users/u001/history")
        assert history.status_code == 401 and "events" not in history.text
        assert "personal read" in history.json()["detail"]
        assert client.get("/users/u001/recommendations").status_code == 401
        assert client.get("/users/u001/history", headers={"X-API-Key": WRITER}).json()["events"]
        assert client.get("/items/tshirt-black/similar").status_code == 200  # the catalog stays public


@pytest.mark.parametrize("path", ["/health", "/", "/static/app.js", "/static/style.css", "/openapi.json", "/docs"])
def test_the_page_health_and_docs_stay_open(configured, path):
    _, client = configured
    assert client.get(path).status_code == 200, path


def test_trending_is_what_a_new_visitor_would_be_shown(configured):
    config, client = configured
    headers = {"X-API-Key": READER} if "read_key" in CONFIGS[config] else {}
    trending = client.get("/trending", params={"k": 8}, headers=headers)
    assert trending.status_code == 200
    results = trending.json()["results"]
    assert len(results) == 8 and len({r["id"] for r in results}) == 8
    assert all(r["reason"] for r in results)
    cheap = client.get("/trending", params={"k": 8, "max_price": 60}, headers=headers).json()["results"]
    assert cheap and all(r["price"] <= 60 for r in cheap)
