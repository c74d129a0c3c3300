"""Profiles always exist: a catalog without photos serves a personalised feed on the text space,
and says so; registration attributes give new users their segment's favourites."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from shoprec.cli import app
from shoprec.config import Settings
from shoprec.indexing import serving_space
from shoprec.recommend.segments import Segments, age_band, parse_user
from shoprec.service import Shoprec


@pytest.fixture(scope="module")
def text_only_shop(demo_shop, tmp_path_factory) -> Shoprec:
    """The demo shop with every ``image`` field removed, indexed and with its events."""
    catalog, events = demo_shop
    folder = tmp_path_factory.mktemp("no-photos")
    rows = [json.loads(line) for line in catalog.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        row.pop("image", None)
    (folder / "catalog.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    service = Shoprec(Settings(store=folder / "store"))
    report = service.index_catalog(folder / "catalog.jsonl", progress=False)
    assert report.indexed == len(rows)
    assert report.serving_space["vector"] == "text"
    assert "no joint space" in report.serving_space["reason"]
    service.ingest_events_file(events)
    yield service
    service.close()


def test_a_catalog_without_photos_gets_a_personalised_feed_on_text(text_only_shop: Shoprec) -> None:
    engine = text_only_shop.engine
    assert engine.vector == "text" and "no joint space" in engine.space.reason
    users = sorted({e.user_id for e in engine.history("u001")} | {"u001", "u002", "u003", "u004"})
    feeds = {u: [r.id for r in text_only_shop.recommend(u, k=8)] for u in users}
    assert len({tuple(f) for f in feeds.values()}) == len(feeds)  # not one trending list for everyone
    for user, feed in feeds.items():
        mine = {e.item_id for e in engine.history(user)}
        reasons = [r.reason for r in text_only_shop.recommend(user, k=8)]
        assert len(feed) == 8
        # personal evidence (own items, variants, neighbours of their items) leads each feed
        assert set(feed) & mine or any("similar to" in r or "colour" in r for r in reasons), (user, reasons)


def test_the_serving_space_decision_is_saved_and_an_explicit_setting_wins(text_only_shop: Shoprec) -> None:
    folder = Path(text_only_shop.settings.store)
    saved = serving_space.load(folder)
    assert saved is not None and saved.vector == "text"
    forced = serving_space.resolve("joint", folder, text_only_shop.store)
    assert forced.vector == "joint" and "SHOPREC_PROFILE_VECTOR" in forced.reason


def test_a_shop_with_photos_weighs_the_joint_space_against_text(indexed_demo) -> None:
    choice = serving_space.load(Path(indexed_demo.settings.store))
    assert choice is not None and choice.vector in ("text", "joint")
    # 48 photos are too few to trust heads trained on them: text serves, and the reason says why
    assert choice.vector == "text" and "photo pairs" in choice.reason


def test_health_reports_the_space_and_the_ranker(text_only_shop: Shoprec) -> None:
    from shoprec.http.app import create_app

    with TestClient(create_app(text_only_shop.settings, service=text_only_shop)) as client:
        body = client.get("/health").json()
    assert body["space"] == "text" and "photos" in body["space_reason"]
    assert body["ranker"] == "blend" and "no ranker trained" in body["ranker_reason"]


# ---------------------------------------------------------------------------- user attributes
def test_user_rows_are_validated_one_by_one() -> None:
    assert parse_user({"user_id": "u1", "age": 34, "region": "north"}, 1).attributes == {"age": "34", "region": "north"}
    assert parse_user({"customer_id": "c9", "age": ""}, 2).user_id == "c9"
    assert "user_id" in str(parse_user({"age": 3}, 3))
    assert "attributes must be scalars" in str(parse_user({"user_id": "u", "tags": ["a"]}, 4))
    assert "longer than" in str(parse_user({"user_id": "u", "bio": "x" * 500}, 5))
    assert [age_band("34"), age_band("nan"), age_band("-1"), age_band("old")] == ["30s", None, None, None]


def test_segment_keys_use_the_configured_attributes() -> None:
    seg = Segments.__new__(Segments)
    seg.attributes = ["age", "region"]
    assert seg.key({"age": "34", "region": "north", "gender": "f"}) == "age=30s|region=north"
    assert seg.key({"gender": "f"}) is None


def test_new_users_with_attributes_get_what_their_segment_buys(demo_shop, tmp_path) -> None:
    catalog, events = demo_shop
    service = Shoprec(Settings(store=tmp_path / "store", segment_attributes="age"))
    service.index_catalog(catalog, progress=False)
    service.ingest_events_file(events)
    engine = service.engine
    history = [json.loads(line) for line in events.read_text(encoding="utf-8").splitlines()]
    young = sorted({e["user_id"] for e in history})[:5]
    bought = Counter(e["item_id"] for e in history if e["user_id"] in young and e["type"] == "purchase")
    stored, errors = engine.add_users([parse_user({"user_id": u, "age": 22}, i) for i, u in enumerate(young)]
                                      + [parse_user({"user_id": "newbie", "age": 25}, 9),
                                         parse_user({"age": 5}, 10)])
    assert stored == 6 and [e.line for e in errors] == [10]
    feed = engine.recommend_user("newbie", k=5)
    assert feed and feed[0].reason == "popular with shoppers like you"
    assert feed[0].id in bought  # their segment's best seller comes first
    plain = engine.recommend_user("stranger", k=5)
    assert [r.id for r in plain] != [r.id for r in feed]
    engine.forget_user("newbie")
    assert engine.segments.attributes_of("newbie") is None
    service.close()


def test_cli_users_reports_bad_lines_and_keeps_the_rest(demo_shop, tmp_path) -> None:
    catalog, _ = demo_shop
    store = tmp_path / "store"
    assert CliRunner().invoke(app, ["index", str(catalog), "--store", str(store)]).exit_code == 0
    users = tmp_path / "users.csv"
    users.write_text("user_id,age,region\nu1,34,north\n,40,south\nu2,19,west\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["users", str(users), "--store", str(store), "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["stored"] == 2 and body["errors"] == [{"line": 3, "reason": "user_id: missing or empty"}]


def test_post_users_stores_good_rows_and_reports_bad_ones(text_only_shop: Shoprec) -> None:
    from shoprec.http.app import create_app

    with TestClient(create_app(text_only_shop.settings, service=text_only_shop)) as client:
        ok = client.post("/users", json=[{"user_id": "web-1", "age": 30}, {"age": 3}, {"user_id": "w", "x": [1]}])
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert body["stored"] == 1 and [(e["index"], e["field"]) for e in body["errors"]] == [(1, "user_id"), (2, "x")]
        assert client.post("/users", json=[{"age": 3}]).status_code == 422
        assert client.post("/users", json={"user_id": "not a list"}).status_code == 422
    assert text_only_shop.engine.segments.attributes_of("web-1") == {"age": "30"}


def test_cli_train_reports_what_serves_and_why(demo_shop, tmp_path) -> None:
    catalog, events = demo_shop
    store = tmp_path / "store"
    assert CliRunner().invoke(app, ["index", str(catalog), "--store", str(store)]).exit_code == 0
    assert CliRunner().invoke(app, ["events", str(events), "--store", str(store)]).exit_code == 0
    result = CliRunner().invoke(app, ["train", "--store", str(store), "--json", "--label-days", "3"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert isinstance(body["serves"], bool) and body["reason"]
    assert body["card"]["features"] and body["card"]["events"] == 600
    health = Shoprec(Settings(store=store))
    try:
        status = health.engine.ranking_status()
        assert (status["ranker"] != "blend") == body["serves"]
    finally:
        health.close()


def test_post_users_never_answers_500_on_hostile_keys(text_only_shop: Shoprec) -> None:
    from shoprec.http.app import create_app

    with TestClient(create_app(text_only_shop.settings, service=text_only_shop)) as client:
        bodies = ['[{"user_id": "u", "\\ud800": "x"}]',  # a lone surrogate as a key, escaped in JSON
                  json.dumps([{"user_id": "u", "k" * 5000: "x"}]),
                  json.dumps([{"user_id": "u", "a\x00b": 1}])]
        for body in bodies:
            response = client.post("/users", content=body, headers={"content-type": "application/json"})
            assert response.status_code == 422, response.text
            assert response.json()["errors"][0]["index"] == 0


def test_users_file_errors_name_their_line_and_never_crash(tmp_path) -> None:
    from shoprec.recommend.segments import read_users

    path = tmp_path / "users.jsonl"
    path.write_text('{"user_id": "ok", "age": 30}\n{"user_id": "big", "n": 1' + "0" * 5000 + '}\n'
                    + "[" * 100_000 + "\n" + '{"user_id": "u", "[/]": "x"}\n', encoding="utf-8")
    rows = list(read_users(path))
    assert [type(r).__name__ for r in rows] == ["UserRow", "UserError", "UserError", "UserRow"]
    assert rows[1].line == 2 and "invalid JSON" in rows[1].reason
    bom = tmp_path / "users.csv"
    bom.write_bytes("\ufeffuser_id,age\nu1,20\n".encode("utf-8"))
    assert [r.user_id for r in read_users(bom)] == ["u1"]
