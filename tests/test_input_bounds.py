"""Every field of the catalog and event formats is bounded and valid Unicode, checked per entry
before anything is written (shoprec issue 9: "nothing counted twice, no 500s").

The probe behind these tests: a lone surrogate in one event's item_id let the valid event
commit and then broke the JSON answer (500, the client retried, three purchases); a 1 MB
category took 94 s to index; quantity 10^18 made one item #1 trending for every new visitor;
price Infinity silently dropped part of a batch; quantity 10^30 was a 500.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from qdrant_client import QdrantClient

from shoprec.bounds import InputBounds
from shoprec.catalog import CatalogRow, RowError, parse_row, read_catalog
from shoprec.config import Settings
from shoprec.http import create_app
from shoprec.indexing.server import ServerStore
from shoprec.indexing.store import ItemPoint
from shoprec.recommend.event_store import EventStore
from shoprec.recommend.events import EventError, EventRow, parse_event, read_events
from shoprec.recommend.popularity import Popularity
from shoprec.recommend.ranking.state import EventLog
from shoprec.service import Shoprec

SURROGATE = "x\ud800"
TS = "2024-05-01T10:00:00Z"


def event(**more) -> dict:
    return {"user_id": "u1", "item_id": "i1", "type": "purchase", "ts": TS, **more}


def product(**more) -> dict:
    return {"id": "p1", "title": "a shirt", **more}


def product_error(raw: dict, bounds: InputBounds | None = None) -> str:
    row = parse_row(raw, 7, bounds)
    assert isinstance(row, RowError), f"{raw} was accepted"
    assert row.line == 7
    return row.reason


def event_error(raw: dict, bounds: InputBounds | None = None) -> str:
    row = parse_event(raw, 3, bounds)
    assert isinstance(row, EventError), f"{raw} was accepted"
    return row.reason


# ---------------------------------------------------------------------------- the formats
@pytest.mark.parametrize("field, limit", [("id", 256), ("title", 2000), ("description", 20000),
                                          ("category", 256), ("brand", 256), ("image", 2048)])
def test_every_product_string_is_bounded_at_its_default(field, limit):
    assert isinstance(parse_row(product(**{field: "a" * limit}), 1), CatalogRow)
    reason = product_error(product(**{field: "a" * (limit + 1)}))
    assert reason.startswith(f"field '{field}'") and f"over the limit of {limit}" in reason


def test_product_attributes_are_bounded_in_count_key_and_value():
    assert "over the limit of 64" in product_error(product(attributes={f"k{i}": "v" for i in range(65)}))
    assert "attribute name" in product_error(product(attributes={"k" * 129: "v"}))
    assert "over the limit of 1000" in product_error(product(attributes={"colour": "v" * 1001}))
    ok = parse_row(product(attributes={f"k{i}": "v" * 1000 for i in range(64)}), 1)
    assert isinstance(ok, CatalogRow) and len(ok.product.attributes) == 64


@pytest.mark.parametrize("raw, field", [
    (product(id=SURROGATE), "id"), (product(title=SURROGATE), "title"), (product(description=SURROGATE), "description"),
    (product(category=SURROGATE), "category"), (product(brand=SURROGATE), "brand"), (product(image=SURROGATE), "image"),
    (product(attributes={"colour": SURROGATE}), "attributes"), (product(attributes={SURROGATE: "red"}), "attributes"),
])
def test_lone_surrogates_anywhere_in_a_product_are_rejected_naming_the_field(raw, field):
    reason = product_error(raw)
    assert reason.startswith(f"field '{field}'") and ("surrogate" in reason)
    reason.encode("utf-8")  # the report itself is printable


@pytest.mark.parametrize("price", [float("inf"), float("-inf"), float("nan"), -1.0])
def test_prices_must_be_finite_and_not_negative(price):
    assert product_error(product(price=price)).startswith("field 'price'")
    assert event_error(event(price=price)).startswith("field 'price'")


@pytest.mark.parametrize("field", ["user_id", "item_id", "session_id", "event_id"])
def test_event_ids_are_bounded_and_valid_unicode(field):
    assert isinstance(parse_event(event(**{field: "a" * 256}), 1), EventRow)
    assert f"field '{field}'" in event_error(event(**{field: "a" * 257}))
    assert f"field '{field}'" in event_error(event(**{field: SURROGATE}))


@pytest.mark.parametrize("quantity", [0, -3, 10_001, 10 ** 18, 10 ** 30])
def test_quantity_is_an_integer_from_1_to_the_maximum(quantity):
    assert event_error(event(quantity=quantity)).startswith("field 'quantity'")


def test_bounds_follow_the_settings():
    bounds = InputBounds.of(Settings(max_label_chars=10, max_quantity=5, max_id_chars=4))
    assert "SHOPREC_MAX_LABEL_CHARS" in product_error(product(category="c" * 11), bounds)
    assert "over the limit of 5" in event_error(event(quantity=6), bounds)
    assert "over the limit of 4" in event_error(event(user_id="u1234"), bounds)
    assert isinstance(parse_event(event(quantity=6), 1), EventRow)  # the defaults elsewhere


# ---------------------------------------------------------------------------- files: per line, keep going
def test_catalog_file_reports_oversized_and_invalid_lines_and_keeps_the_rest(tmp_path):
    path = tmp_path / "catalog.jsonl"
    path.write_text("\n".join([
        json.dumps(product(id="ok1")),
        json.dumps(product(id="huge", category="c" * 1_000_000)),
        json.dumps(product(id="inf", price=float("inf"))),  # json writes Infinity
        '{"id": "sur", "title": "x\\ud800"}',
        json.dumps(product(id="ok2")),
    ]), encoding="utf-8")
    rows = list(read_catalog(path))
    assert [r.product.id for r in rows if isinstance(r, CatalogRow)] == ["ok1", "ok2"]
    errors = {r.line: r for r in rows if isinstance(r, RowError)}
    assert sorted(errors) == [2, 3, 4]
    assert "category" in errors[2].reason and "price" in errors[3].reason and "title" in errors[4].reason
    assert len(str(errors[2])) < 500  # the megabyte is not echoed


def test_csv_catalog_bounds_attribute_columns(tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text("id,title,attr.colour\nok,shirt,red\nlong,shirt," + "r" * 1001 + "\n", encoding="utf-8")
    rows = list(read_catalog(path))
    assert isinstance(rows[0], CatalogRow)
    assert isinstance(rows[1], RowError) and rows[1].line == 3 and "attribute 'colour'" in rows[1].reason


def test_events_file_reports_bad_quantities_prices_and_surrogates_per_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([
        json.dumps(event()),
        json.dumps(event(quantity=10 ** 30)),
        '{"user_id": "u\\udfff", "item_id": "i1", "type": "view", "ts": "2024-05-01T10:00:00Z"}',
        '{"user_id": "u1", "item_id": "i1", "type": "view", "ts": "2024-05-01T10:00:00Z", "price": 1e999}',
        json.dumps(event(session_id="s" * 300)),
        json.dumps(event(type="view")),
    ]), encoding="utf-8")
    rows = list(read_events(path))
    assert [r.line for r in rows if isinstance(r, EventRow)] == [1, 6]
    errors = [(r.line, r.reason.split("'")[1]) for r in rows if isinstance(r, EventError)]
    assert errors == [(2, "quantity"), (3, "user_id"), (4, "price"), (5, "session_id")]


# ---------------------------------------------------------------------------- popularity counts buyers
def test_one_huge_order_cannot_outweigh_several_buyers(tmp_path):
    store = EventStore(tmp_path / "ev.sqlite")
    pop = Popularity(store, Settings().event_weights, 7.0, max_units=3)
    t = 1_700_000_000.0
    rows = [("whale", "c", "purchase", t, 10_000)] + [("popular", "c", "purchase", t, 1) for _ in range(4)]
    with store.transaction() as conn:
        pop.add(conn, rows)
    assert [i for i, _ in pop.top(2)] == ["popular", "whale"]
    mass = pop.decayed(pop.log_scores(["whale", "popular"]), t)
    assert mass == pytest.approx([3 * 8.0, 4 * 8.0])
    with store.transaction() as conn:  # a recount (after a forget) counts the same way
        conn.execute("INSERT INTO events (user_id, item_id, type, ts, basket, quantity) VALUES "
                     "('u', 'whale', 'purchase', ?, 'b', 10000)", (t,))
        pop.recount(conn, ["whale"])
    assert pop.decayed(pop.log_scores(["whale"]), t) == pytest.approx([3 * 8.0])
    store.close()

    log = EventLog(Settings().event_weights, max_units=3)  # the ranker's windows agree
    log.add("u", 0, "purchase", t, "b", quantity=10_000)
    assert log.arrays()[2].tolist() == [3 * 8.0]


# ---------------------------------------------------------------------------- HTTP: reject before writing
@pytest.fixture
def small_service(tmp_path) -> Iterator[Shoprec]:
    """A service over three 4-d items in an in-memory Qdrant: no encoder is loaded."""
    store = ServerStore(QdrantClient(":memory:"))
    store.ensure_collection({"text": 4, "image": 4, "joint": 4})
    eye = np.eye(4, dtype=np.float32)
    store.upsert([ItemPoint(f"i{n}", {"text": eye[n], "joint": eye[n]},
                            {"title": f"item {n}", "category": "c", "price": 1.0, "in_stock": True})
                  for n in range(1, 4)])
    service = Shoprec(Settings(store=tmp_path / "store", profile_vector="text"), store=store)
    yield service
    service.close()


def post_raw(client: TestClient, url: str, text: str, **headers: str):
    return client.post(url, content=text.encode("utf-8"), headers={"content-type": "application/json", **headers})


def test_a_lone_surrogate_is_a_4xx_entry_and_the_valid_event_counts_once(small_service):
    body = json.dumps([event(), event(item_id=SURROGATE)])  # ensure_ascii: "x\ud800" stays an escape
    with TestClient(create_app(small_service.settings, service=small_service)) as client:
        response = post_raw(client, "/events", body)
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["ingested"] == 1
        assert [(e["index"], e["field"]) for e in report["errors"]] == [(1, "item_id")]
        assert "Unicode" in report["errors"][0]["message"] and report["errors"][0]["id"] == "x\\ud800"
        assert len(small_service.history("u1")) == 1  # the answer was 200: the client does not retry

        only_bad = post_raw(client, "/events", json.dumps([event(user_id=SURROGATE), event(session_id=SURROGATE)]))
        assert only_bad.status_code == 422 and {e["field"] for e in only_bad.json()["errors"]} == {
            "user_id", "session_id"}
        bounded = client.post("/events", json=[event(quantity=10 ** 30), event(quantity=10 ** 18), event(quantity=2)])
        assert bounded.status_code == 200 and bounded.json()["ingested"] == 1
        assert [e["field"] for e in bounded.json()["errors"]] == ["quantity", "quantity"]
        infinite = post_raw(client, "/events", '[{"user_id": "u1", "item_id": "i1", "type": "view", '
                                               '"ts": "2024-05-01T10:00:00Z", "price": Infinity}]')
        assert infinite.status_code == 422 and infinite.json()["errors"][0]["field"] == "price"
    assert len(small_service.history("u1")) == 2


def test_invalid_items_are_rejected_before_indexing(small_service):
    raw = [product(id="a", title=SURROGATE), product(id="b", category="c" * 1_000_000),
           product(id="c", price=float("inf")), product(id="d", attributes={SURROGATE: "x"}),
           product(id="e" * 257)]
    body = json.dumps(raw)
    with TestClient(create_app(small_service.settings, service=small_service)) as client:
        response = post_raw(client, "/items", body)
        assert response.status_code == 422, response.text  # none valid: nothing was encoded or written
        rejected = [(e["index"], e["field"]) for e in response.json()["rejected"]]
        assert rejected == [(0, "title"), (1, "category"), (2, "price"), (3, "attributes"), (4, "id")]
        assert len(response.json()["rejected"][4]["id"]) < 300  # echoed ids are cut
    assert small_service.count() == 3
