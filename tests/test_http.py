"""The HTTP API over the indexed demo shop: every endpoint's happy path and its 4xx answers.

One indexed demo (the session fixture) serves every app built here; apps differ only in their
settings (keys, limits). Tests that write clean up after themselves (new items deleted, new
users forgotten) so the shared demo stays as the other tests expect it.
"""

from __future__ import annotations

import io
import re
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from shoprec.http import create_app

RESULT_FIELDS = {"id", "score", "title", "category", "price", "image_url", "reason"}


def make_client(service, image_root: Path | None = None, **overrides) -> TestClient:
    settings = service.settings.model_copy(update={"image_root": image_root, **overrides})
    return TestClient(create_app(settings, service=service))


@pytest.fixture(scope="module")
def client(indexed_demo, demo_shop) -> Iterator[TestClient]:
    catalog, _ = demo_shop
    with make_client(indexed_demo, image_root=catalog.parent) as c:
        yield c


def results_of(response) -> list[dict]:
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    for r in results:
        assert RESULT_FIELDS <= set(r), r
        assert r["reason"], r
    return results


def error_fields(response) -> set[str]:
    return {e["field"] for e in response.json()["errors"]}


def png_bytes(colour=(25, 25, 25), size=(64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (a decompression bomb's calling card)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# ---------------------------------------------------------------- reads
def test_health_page_and_openapi(client):
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["items"] >= 48
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"] and "app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/items", "/items/{item_id}", "/items/{item_id}/similar", "/items/{item_id}/complementary",
                 "/cart/complementary", "/users/{user_id}/recommendations", "/users/{user_id}/history",
                 "/users/{user_id}", "/events", "/search", "/images/{item_id}", "/metrics", "/health"):
        assert path in paths, path


def test_get_item_is_the_catalog_format_without_bookkeeping(client):
    item = client.get("/items/tshirt-black").json()
    assert item["id"] == "tshirt-black" and item["category"] == "T恤" and item["in_stock"] is True
    assert item["image_url"] == "/images/tshirt-black"
    assert not {"image_path", "content_hash", "content_digest", "joint_version", "item_id"} & set(item)
    missing = client.get("/items/no-such-item")
    assert missing.status_code == 404 and error_fields(missing) == {"item_id"}


def test_similar_with_modality_and_filters(client):
    results = results_of(client.get("/items/tshirt-black/similar", params={"k": 5}))
    assert len(results) == 5 and "tshirt-black" not in {r["id"] for r in results}
    assert results[0]["category"] == "T恤"
    by_photo = results_of(client.get("/items/tshirt-black/similar", params={"k": 3, "modality": "image"}))
    assert len(by_photo) == 3
    params = {"k": 10, "max_price": 100, "category": ["手机壳", "T恤"], "in_stock": "true"}
    cheap = results_of(client.get("/items/phone-black/similar", params=params))
    assert cheap and all(r["price"] <= 100 and r["category"] in ("手机壳", "T恤") for r in cheap)


def test_complementary_for_an_item_and_a_cart(client):
    with_tee = results_of(client.get("/items/tshirt-black/complementary", params={"k": 3}))
    assert with_tee and with_tee[0]["category"] == "牛仔裤"
    cart = results_of(client.post("/cart/complementary", params={"k": 4}, json={"item_ids": ["phone-black"]}))
    assert cart and cart[0]["category"] == "手机壳" and "phone-black" not in {r["id"] for r in cart}


def test_user_feed_history_and_cold_start(client):
    feed = results_of(client.get("/users/u001/recommendations", params={"k": 5}))
    assert len(feed) == 5
    history = client.get("/users/u001/history", params={"limit": 3}).json()
    assert history["user_id"] == "u001" and len(history["events"]) == 3
    first = history["events"][0]
    assert first["type"] in ("view", "cart", "purchase") and first["title"] and first["image_url"]
    cold = results_of(client.get("/users/brand-new-visitor/recommendations", params={"k": 4}))
    assert len(cold) == 4
    steered = results_of(client.get("/users/brand-new-visitor/recommendations",
                                    params={"k": 3, "context_item": "runner-red"}))
    assert steered[0]["category"] in ("跑鞋", "运动袜")
    assert client.get("/users/brand-new-visitor/history").json()["events"] == []


def test_search_by_text_and_by_photo(client, demo_shop):
    tees = results_of(client.post("/search", params={"k": 5}, data={"q": "纯棉T恤"}))
    assert sum(r["category"] == "T恤" for r in tees) >= 3
    photo = (demo_shop[0].parent / "images" / "phone-blue.png").read_bytes()
    by_photo = results_of(client.post("/search", params={"k": 3}, files={"image": ("p.png", photo, "image/png")}))
    assert by_photo[0]["category"] == "手机"
    both = results_of(client.post("/search", params={"k": 3}, data={"q": "phone"},
                                  files={"image": ("p.png", photo, "image/png")}))
    assert both


def test_images_are_served_and_unknown_ones_are_404(client):
    photo = client.get("/images/tshirt-black")
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(photo.content)).size == (224, 224)
    assert client.get("/images/nope").status_code == 404


# ---------------------------------------------------------------- input errors are 4xx naming the field
@pytest.mark.parametrize(("url", "field"), [
    ("/items/tshirt-black/similar?k=0", "k"),
    ("/items/tshirt-black/similar?k=abc", "k"),
    ("/items/tshirt-black/similar?k=100000", "k"),
    ("/items/tshirt-black/similar?modality=smell", "modality"),
    ("/items/tshirt-black/similar?mmr=2", "mmr"),
    ("/items/tshirt-black/similar?min_price=-1", "min_price"),
    ("/users/u001/recommendations?k=-3", "k"),
    ("/users/u001/history?limit=0", "limit"),
])
def test_bad_parameters_are_422_naming_the_field(client, url, field):
    response = client.get(url)
    assert response.status_code == 422, response.text
    assert field in error_fields(response) and field in response.json()["detail"]


def test_an_empty_price_range_is_an_empty_answer_not_an_error(client):
    # min_price above max_price is a valid question nothing answers (like an unsold category).
    for url in ("/items/tshirt-black/similar", "/items/tshirt-black/complementary", "/trending"):
        assert results_of(client.get(url, params={"min_price": 10, "max_price": 5})) == [], url


@pytest.mark.parametrize(("method", "url", "kwargs"), [
    ("GET", "/items/nope/similar", {}),
    ("GET", "/items/nope/complementary", {}),
    ("POST", "/cart/complementary", {"json": {"item_ids": ["tshirt-black", "nope"]}}),
    ("GET", "/users/u001/recommendations?context_item=nope", {}),
    ("DELETE", "/items/nope", {}),
])
def test_unknown_items_are_404(client, method, url, kwargs):
    response = client.request(method, url, **kwargs)
    assert response.status_code == 404, response.text
    assert "nope" in response.json()["detail"]


def test_bad_bodies_are_422(client):
    assert client.post("/cart/complementary", json={"item_ids": []}).status_code == 422
    assert client.post("/items", json={"id": "not-a-list"}).status_code == 422
    assert client.post("/events", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    empty = client.post("/search", data={"q": "   "})
    assert empty.status_code == 422 and error_fields(empty) == {"q"}


def test_corrupt_truncated_and_bomb_images_are_rejected_before_decoding(client):
    corrupt = client.post("/search", files={"image": ("x.png", b"this is not an image", "image/png")})
    assert corrupt.status_code == 422 and error_fields(corrupt) == {"image"}
    truncated = client.post("/search", files={"image": ("t.png", png_bytes()[:60], "image/png")})
    assert truncated.status_code == 422 and error_fields(truncated) == {"image"}
    bomb = client.post("/search", files={"image": ("b.png", png_header_only(100_000, 100_000), "image/png")})
    assert bomb.status_code in (413, 422) and error_fields(bomb) == {"image"}
    assert "pixel" in bomb.json()["detail"]


def test_oversized_uploads_and_bodies_are_413(indexed_demo):
    with make_client(indexed_demo, max_upload_bytes=2_000, max_body_bytes=50_000) as small:
        upload = small.post("/search", files={"image": ("big.png", png_bytes(size=(300, 300)) + b"\0" * 3_000,
                                                          "image/png")})
        assert upload.status_code == 413 and error_fields(upload) == {"image"}
        declared = small.post("/items", content=b"[" + b" " * 60_000 + b"]",
                              headers={"content-type": "application/json"})
        assert declared.status_code == 413
        # No Content-Length (chunked): the limit is enforced while the body streams in.
        streamed = small.post("/events", content=iter([b"[" + b" " * 30_000, b" " * 30_000 + b"]"]),
                              headers={"content-type": "application/json"})
        assert streamed.status_code == 413 and "limit" in streamed.json()["detail"]
        assert small.get("/health").status_code == 200


# ---------------------------------------------------------------- writes
def test_posted_items_are_recommendable_at_once_and_bad_entries_are_reported(client, demo_shop, tmp_path):
    photos = demo_shop[0].parent / "images"
    shutil.copy(photos / "tshirt-blue.png", photos / "tshirt-navy.png")
    batch = [
        {"id": "tshirt-navy", "title": "藏青色纯棉短袖T恤", "category": "T恤", "price": 61.0,
         "description": "夏季纯棉面料，透气舒适", "image": "images/tshirt-navy.png", "attributes": {"colour": "navy"}},
        {"id": "bad-price", "title": "negative", "price": -5},
        {"title": "no id"},
        "not an object",
        {"id": "escape", "title": "x", "image": "../../etc/passwd"},
        {"id": "absolute", "title": "x", "image": "/etc/passwd"},
        {"id": "tshirt-navy", "title": "duplicate"},
        {"id": "gift-card", "title": "礼品卡 gift card", "category": "礼品卡", "price": 100},
    ]
    try:
        report = client.post("/items", json=batch)
        assert report.status_code == 200, report.text
        body = report.json()
        assert body["indexed"] == 2 and body["image_errors"] == []
        rejected = {(e["index"], e["field"]) for e in body["rejected"]}
        assert rejected == {(1, "price"), (2, "id"), (3, None), (4, "image"), (5, "image"), (6, "id")}

        similar = results_of(client.get("/items/tshirt-navy/similar", params={"k": 3}))
        assert all(r["category"] == "T恤" for r in similar)
        assert "tshirt-navy" in {r["id"] for r in results_of(client.get("/items/tshirt-blue/similar",
                                                                          params={"k": 3}))}
        assert client.get("/images/tshirt-navy").status_code == 200
        no_photo = client.get("/items/gift-card/similar", params={"modality": "image"})
        assert no_photo.status_code == 404 and error_fields(no_photo) == {"modality"}
        assert client.get("/images/gift-card").status_code == 404

        again = client.post("/items", json=batch[:1]).json()
        assert again["indexed"] == 0 and again["unchanged"] == 1
        all_bad = client.post("/items", json=batch[1:3])
        assert all_bad.status_code == 422 and len(all_bad.json()["rejected"]) == 2
    finally:
        for item_id in ("tshirt-navy", "gift-card"):
            client.delete(f"/items/{item_id}")
        (photos / "tshirt-navy.png").unlink(missing_ok=True)
    assert client.get("/items/tshirt-navy").status_code == 404
    assert client.delete("/items/tshirt-navy").status_code == 404


def test_events_report_positions_and_feed_history_and_forget(client):
    user = "http-test-shopper"
    events = [
        {"user_id": user, "item_id": "runner-red", "type": "purchase", "ts": "2026-03-10T10:00:00Z"},
        {"user_id": user, "item_id": "runner-red", "type": "teleport", "ts": "2026-03-10T10:01:00Z"},
        {"user_id": user, "item_id": "no-such-item", "type": "view", "ts": "2026-03-10T10:02:00Z"},
        ["not", "an", "object"],
        {"user_id": user, "item_id": "socks-red", "type": "view", "ts": "yesterday"},
        {"user_id": user, "item_id": "socks-red", "type": "cart", "ts": "2026-03-10T10:03:00Z"},
    ]
    try:
        report = client.post("/events", json=events)
        assert report.status_code == 200, report.text
        body = report.json()
        assert body["ingested"] == 2
        assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "type"), (2, "item_id"), (3, None), (4, "ts")]
        assert body["errors"][1]["id"] == "no-such-item"

        history = client.get(f"/users/{user}/history").json()["events"]
        assert [e["item_id"] for e in history] == ["socks-red", "runner-red"]
        feed = results_of(client.get(f"/users/{user}/recommendations", params={"k": 5}))
        assert "runner-red" in {r["id"] for r in feed}  # bought: the ranker may offer it again ...
        assert "runner-red" not in {r["id"] for r in results_of(client.get(  # ... unless the caller says no
            f"/users/{user}/recommendations", params={"k": 48, "exclude_purchased": "true"}))}

        none_valid = client.post("/events", json=events[1:4])
        assert none_valid.status_code == 422 and none_valid.json()["ingested"] == 0
    finally:
        forgotten = client.delete(f"/users/{user}")
    assert forgotten.status_code == 200 and forgotten.json()["events_removed"] == 2
    assert client.get(f"/users/{user}/history").json()["events"] == []


def test_batches_over_the_entry_limit_are_413(indexed_demo):
    with make_client(indexed_demo, max_batch_items=2) as small:
        response = small.post("/events", json=[{}, {}, {}])
        assert response.status_code == 413 and "limit" in response.json()["detail"]


# ---------------------------------------------------------------- keys
def test_api_key_guards_writes_via_either_header(indexed_demo):
    no_valid_event = [{"user_id": "x", "item_id": "nope", "type": "view", "ts": "2026-03-10T10:00:00Z"}]
    with make_client(indexed_demo, api_key="s3cret") as c:
        for method, url, kwargs in [("POST", "/items", {"json": []}), ("DELETE", "/items/nope", {}),
                                    ("POST", "/events", {"json": no_valid_event}), ("DELETE", "/users/nobody", {})]:
            denied = c.request(method, url, **kwargs)
            assert denied.status_code == 401, (method, url)
            assert denied.headers["www-authenticate"].startswith("Bearer")
            assert c.request(method, url, headers={"X-API-Key": "wrong"}, **kwargs).status_code == 401
        # Past the key check, each reaches its own answer (404 / 422 / 200), not 401.
        assert c.delete("/items/nope", headers={"Authorization": "Bearer s3cret"}).status_code == 404
        assert c.post("/events", json=no_valid_event, headers={"X-API-Key": "s3cret"}).status_code == 422
        assert c.delete("/users/nobody", headers={"X-API-Key": "s3cret"}).json()["events_removed"] == 0
        # Reads stay open without a read key.
        assert c.get("/items/tshirt-black/similar").status_code == 200
        assert c.post("/search", data={"q": "mug"}).status_code == 200


def test_read_key_guards_reads_and_cannot_write(indexed_demo):
    with make_client(indexed_demo, api_key="writer", read_key="reader") as c:
        for url in ("/items/tshirt-black", "/items/tshirt-black/similar", "/users/u001/recommendations",
                    "/images/tshirt-black", "/metrics"):
            assert c.get(url).status_code == 401, url
            assert c.get(url, headers={"X-API-Key": "reader"}).status_code == 200, url
            assert c.get(url, headers={"Authorization": "Bearer writer"}).status_code == 200, url
        assert c.post("/search", data={"q": "mug"}).status_code == 401
        assert c.post("/search", data={"q": "mug"}, headers={"X-API-Key": "reader"}).status_code == 200
        assert c.delete("/users/nobody", headers={"X-API-Key": "reader"}).status_code == 403
        assert c.get("/health").status_code == 200 and c.get("/").status_code == 200
    with make_client(indexed_demo, read_key="only") as c:
        # No API key configured: writes are never more open than reads.
        assert c.delete("/users/nobody").status_code == 401
        assert c.delete("/users/nobody", headers={"X-API-Key": "only"}).status_code == 200


# ---------------------------------------------------------------- metrics
def metric(text: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name + (f"{{{label_text}}}" if labels else "")) + r" ([0-9.e+-]+|NaN)"
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_metrics_count_requests_by_route_template(indexed_demo):
    with make_client(indexed_demo) as c:
        for item in ("tshirt-black", "mug-red", "phone-blue"):
            assert c.get(f"/items/{item}/similar", params={"k": 2}).status_code == 200
        assert c.get("/items/nope/similar").status_code == 404
        assert c.get("/no/such/route").status_code == 404
        user = "metrics-shopper"
        c.post("/events", json=[{"user_id": user, "item_id": "mug-red", "type": "view", "ts": "2026-03-01T00:00:00Z"},
                                {"user_id": user, "item_id": "nope", "type": "view", "ts": "2026-03-01T00:00:00Z"}])
        text = c.get("/metrics").text
        c.delete(f"/users/{user}")
    route = "/items/{item_id}/similar"
    assert metric(text, "shoprec_http_requests_total", method="GET", route=route, status="200") == 3
    assert metric(text, "shoprec_http_requests_total", method="GET", route=route, status="404") == 1
    assert metric(text, "shoprec_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert metric(text, "shoprec_http_request_duration_seconds_count", method="GET", route=route) == 4
    assert "tshirt-black" not in text  # raw paths never become labels
    assert metric(text, "shoprec_events_ingested_total") == 1
    assert metric(text, "shoprec_events_rejected_total") == 1
    assert metric(text, "shoprec_index_items") >= 48
