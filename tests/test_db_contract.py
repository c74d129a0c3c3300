"""One contract, two backends: every test runs on SQLite (the embedded default) and on PostgreSQL
(skipped with the reason when SHOPREC_TEST_DATABASE_URL is unset; scripts/test.sh sets it).

What the behaviour state promises whichever database holds it: events stored once per event_id,
history, forget, the clock, the ingest ledger, Idempotency-Keys, user attributes, the online
tables, popularity, experiments, ranker versions, and what workers follow each other by (ids in
commit order, generation counters)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest

from shoprec.config import Settings
from shoprec.http.errors import ApiError
from shoprec.http.idempotency import Idempotency
from shoprec.online import attribution, stats
from shoprec.online.experiments import Assignment, Experiments, ExperimentSpec, Overrides
from shoprec.online.tracking import Tracker
from shoprec.recommend.event_store import FORGET, USERS, EventStore
from shoprec.recommend.events import Event
from shoprec.recommend.popularity import Popularity
from shoprec.recommend.ranking.features import FEATURES
from shoprec.recommend.ranking.model_store import DatabaseModels
from shoprec.recommend.ranking.rankers import LearnedRanker
from shoprec.recommend.segments import Segments, UserRow


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path) -> Iterator[EventStore]:
    where = tmp_path / "events.sqlite" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    store = EventStore(where, min_free_mb=0)
    yield store
    store.close()


def ev(user: str = "u1", item: str = "i1", type_: str = "view", day: int = 1, **more) -> Event:
    return Event(user_id=user, item_id=item, type=type_, ts=f"2024-05-{day:02d}T10:00:00Z", **more)


def put(db: EventStore, events: list[Event]) -> tuple[int, int]:
    with db.transaction() as conn:
        fresh, dups = EventStore.new_events(conn, events)
        EventStore.insert_events(conn, fresh)
        if fresh:
            EventStore.advance_clock(conn, max(e.epoch for e in fresh))
    return len(fresh), dups


def test_schema_opens_twice_and_records_its_version(db):
    again = EventStore(db.db.path if db.db.dialect == "sqlite" else db.db.url, min_free_mb=0)  # type: ignore[attr-defined]
    try:
        assert again.conn().execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == "3"
    finally:
        again.close()


def test_location_names_the_database_without_a_password(db):
    from shoprec.db import redact

    assert redact("postgresql://shop:s3cret@db:5432/shop") == "postgresql://shop:***@db:5432/shop"
    expected = str(db.path) if db.db.dialect == "sqlite" else redact(db.db.url)  # type: ignore[attr-defined]
    assert db.location == expected


def test_events_are_stored_once_per_event_id_and_in_id_order(db):
    assert put(db, [ev(event_id="a"), ev(event_id="a"), ev(item="i2"), ev(item="i3", event_id="b")]) == (3, 1)
    assert put(db, [ev(event_id="a"), ev(event_id="c")]) == (1, 1)
    rows = db.since(db.conn(), 0)
    assert [e.event_id for _, e in rows] == ["a", None, "b", "c"]
    ids = [i for i, _ in rows]
    assert ids == sorted(ids) and db.last_id() == ids[-1]
    assert [e.event_id for _, e in db.since(db.conn(), ids[1])] == ["b", "c"]
    assert [r["item_id"] for r in db.scan("item_id", upto=ids[1])] == ["i1", "i2"]


def test_a_failed_transaction_leaves_nothing(db):
    with pytest.raises(RuntimeError, match="boom"):
        with db.transaction() as conn:
            EventStore.insert_events(conn, [ev()])
            raise RuntimeError("boom")
    assert db.last_id() == 0 and db.history("u1") == []


def test_history_is_newest_first_and_user_items_summarise_it(db):
    put(db, [ev(day=1, item="i1"), ev(day=3, item="i2", type_="purchase", price=9.5, quantity=2),
             ev(day=2, item="i1", type_="cart"), ev(user="u2", day=4)])
    history = db.history("u1")
    assert [(e.item_id, e.type) for e in history] == [("i2", "purchase"), ("i1", "cart"), ("i1", "view")]
    assert history[0].price == 9.5 and history[0].quantity == 2
    assert [e.item_id for e in db.history("u1", limit=1)] == ["i2"]
    assert db.user_items("u1")[0][:2] == ("i2", "purchase")
    assert {(i, t) for i, t, _ in db.user_items("u1")} == {("i1", "view"), ("i1", "cart"), ("i2", "purchase")}


def test_clock_advances_never_backwards_and_forget_resets_it(db):
    put(db, [ev(day=5)])
    put(db, [ev(user="u2", day=2)])
    assert db.clock() == ev(day=5).epoch
    with db.transaction() as conn:
        assert sorted(EventStore.delete_user(conn, "u1")) == ["i1"]
        EventStore.reset_clock(conn)
    assert db.clock() == ev(day=2).epoch and db.history("u1") == []
    with db.transaction() as conn:
        EventStore.delete_user(conn, "u2")
        EventStore.reset_clock(conn)
    assert db.clock() is None


def test_ingest_ledger_prefixes(db):
    with db.transaction() as conn:
        EventStore.record_prefix(conn, "a" * 64, 10)
        EventStore.record_prefix(conn, "a" * 64, 10)  # recorded twice: kept once
        EventStore.record_prefix(conn, "b" * 64, 20)
    assert db.ingested_prefixes() == {10: {"a" * 64}, 20: {"b" * 64}}
    with db.transaction() as conn:
        assert EventStore.has_prefix(conn, "b" * 64) and not EventStore.has_prefix(conn, "c" * 64)


def test_idempotency_keys_replay_refuse_and_prune(db):
    keys = Idempotency(Settings(idempotency_max_keys=2))
    with db.transaction() as conn:
        assert keys.replay(conn, "events", "k1", "h1") is None
        keys.save(conn, "events", "k1", "h1", 200, {"ingested": 1, "text": "ü"})
    with db.transaction() as conn:
        answer = keys.replay(conn, "events", "k1", "h1")
        assert answer is not None and answer.status_code == 200
        assert json.loads(answer.body) == {"ingested": 1, "text": "ü"}
        with pytest.raises(ApiError, match="different events request"):
            keys.replay(conn, "events", "k1", "other")
        keys.save(conn, "events", "k1", "h1", 200, {"again": True})  # same key saved again: replaced
        keys.save(conn, "events", "k2", "h2", 200, {})
        keys.save(conn, "items", "k3", "h3", 201, {})
    kept = {(r[0], r[1]) for r in db.conn().execute("SELECT scope, key FROM idempotency")}
    assert len(kept) == 2 and ("items", "k3") in kept


def test_user_attributes_upsert_read_forget_and_bump_the_users_generation(db):
    segments = Segments(db, ["age", "region"])
    before = db.generations()[USERS]
    segments.upsert([UserRow(1, "u1", {"age": "34", "region": "north"}), UserRow(2, "u2", {"region": "south"})])
    segments.upsert([UserRow(1, "u1", {"age": "41", "region": "north"})])
    assert segments.attributes_of("u1") == {"age": "41", "region": "north"}
    assert segments.count() == 2 and db.generations()[USERS] == before + 2
    with db.transaction() as conn:
        segments.forget(conn, "u1")
    assert segments.attributes_of("u1") is None and segments.count() == 1


def test_forget_bumps_its_generation_and_later_ids_follow_the_remaining_ones(db):
    put(db, [ev(user="u2"), ev(), ev(item="i2")])
    with db.transaction() as conn:
        EventStore.delete_user(conn, "u1")
        assert db.bump(conn, FORGET) == 1
    with db.transaction() as conn:
        assert db.bump(conn, FORGET) == 2
    assert db.generations() == {FORGET: 2, USERS: 0}
    # SQLite may reuse a deleted id; a follower that saw the generation change rebuilt up to here
    remaining = db.last_id()
    put(db, [ev(user="u3")])
    assert [e.user_id for _, e in db.since(db.conn(), remaining)] == ["u3"]


def test_served_lists_impressions_and_attributions(db):
    tracker = Tracker(db)
    served = tracker.record("feed", "u1", Assignment(None, "control", Overrides()), ["i1", "i2"], 0)
    other = tracker.record("similar", None, Assignment("exp", "b", Overrides()), ["i3"], 0)
    tracker.flush()
    tracker.flush()  # nothing pending: a no-op
    with db.transaction() as conn:
        found = tracker.lookup(conn, [served.rec_id, other.rec_id, "nope"])
        assert found[served.rec_id].items == ("i1", "i2") and set(found) == {served.rec_id, other.rec_id}
        events = [ev(type_="impression", item="i2", rec_id=served.rec_id, event_id="imp"),
                  ev(type_="click", item="i2", rec_id=served.rec_id), ev(type_="purchase", item="i2", day=1,
                                                                          price=5.0, quantity=2)]
        assert attribution.record(conn, events, found, window_s=86400.0) == 2
        # an impression's event_id is taken: the same id as a behaviour event is a duplicate
        assert EventStore.new_events(conn, [ev(event_id="imp")])[1] == 1
    doc = stats.compute(db.conn(), None, catalogue=10)
    overall = next(g for g in doc["groups"] if g["surface"] == "all")
    assert overall["lists"] == 1 and overall["purchases"] == 1 and overall["revenue"] == 10.0
    counters = {(c[0], c[2]): c[4] for c in stats.counters(db.conn())}
    assert counters[("lists_served", "feed")] == 1 and counters[("impressions", "feed")] == 1
    with db.transaction() as conn:
        EventStore.delete_user(conn, "u1")
    assert stats.counters(db.conn()) == [("lists_served", "exp", "similar", "b", 1)]


def test_a_list_computed_before_a_forget_elsewhere_is_dropped_unwritten(db):
    tracker = Tracker(db)
    control = Assignment(None, "control", Overrides())
    before = tracker.record("feed", "u1", control, ["i1"], db.forgets(db.conn()))
    anonymous = tracker.record("trending", None, control, ["i2"], db.forgets(db.conn()))
    with db.transaction() as conn:  # another worker forgets u1: this tracker never hears who
        EventStore.delete_user(conn, "u1")
        db.bump(conn, FORGET)
    after = tracker.record("feed", "u2", control, ["i3"], db.forgets(db.conn()))
    tracker.flush()
    assert {r[0] for r in db.conn().execute("SELECT rec_id FROM recs")} == {anonymous.rec_id, after.rec_id}
    with db.transaction() as conn:  # nothing of u1 stays pending to be written later either
        assert tracker.lookup(conn, [before.rec_id]) == {}


def test_popularity_add_top_and_recount(db):
    pop = Popularity(db, Settings().event_weights, half_life_days=7.0)
    rows = [("i1", "shoes", "purchase", ev(day=2).epoch, 1), ("i2", "shoes", "view", ev(day=2).epoch, None),
            ("i3", "hats", "dislike", ev(day=2).epoch, None)]
    with db.transaction() as conn:
        pop.add(conn, rows)
        pop.add(conn, [("i2", "shoes", "view", ev(day=3).epoch, None)])
    assert [i for i, _ in pop.top(5)] == ["i1", "i2"]  # a dislike is no popularity
    assert [i for i, _ in pop.top(5, categories=["hats"])] == []
    assert [i for i, _ in pop.top(1, offset=1)] == ["i2"]
    scores = pop.log_scores(["i1", "i3", "zz"])
    assert np.isfinite(scores[0]) and scores[1] == -np.inf and scores[2] == -np.inf
    put(db, [ev(item="i2", day=3)])
    with db.transaction() as conn:
        pop.recount(conn, ["i1", "i2"])  # only i2 has events left in the table
    assert [i for i, _ in pop.top(5)] == ["i2"] and db.item_categories() == {"i2": "shoes", "i3": "hats"}


def test_experiments_start_stop_and_refuse_a_second_running_one(db):
    exps = Experiments(db)
    spec = ExperimentSpec.model_validate({"name": "e1", "variants": [{"name": "a"}, {"name": "b"}]})
    exps.start(spec)
    assert exps.running is not None and exps.running.name == "e1"
    with pytest.raises(Exception, match="is running"):
        exps.start(ExperimentSpec.model_validate({"name": "e2", "variants": [{"name": "a"}, {"name": "b"}]}))
    stopped = exps.stop("e1", promote="b")
    assert stopped.state == "stopped" and stopped.winner == "b" and Experiments(db).running is None


def test_ranker_versions_in_the_models_table(db):
    import lightgbm as lgb

    models = DatabaseModels(db)
    assert models.version() is None and models.load() is None
    models.save({"version": "v1", "reason": "too few events", "serves": False}, None)
    assert models.version() == "v1" and models.load() is None and models.card()["reason"] == "too few events"
    rng = np.random.default_rng(0)
    x, y = rng.random((60, len(FEATURES))), rng.integers(0, 2, 60)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 4}, lgb.Dataset(x, y), 3)
    card = {"version": "v2", "features": list(FEATURES), "serves": True}
    models.save(card, LearnedRanker(booster, card))
    loaded = models.load()
    assert models.version() == "v2" and loaded is not None and loaded.version == "v2"
    assert np.allclose(loaded.score(x), LearnedRanker(booster, card).score(x))


def test_the_models_table_keeps_only_the_newest_versions(db):
    models = DatabaseModels(db, keep=3)
    for v in range(6):
        models.save({"version": f"v{v}", "serves": False}, None)
    kept = [r[0] for r in db.conn().execute("SELECT version FROM models ORDER BY id").fetchall()]
    assert kept == ["v3", "v4", "v5"] and models.version() == "v5"


def test_an_unreachable_postgres_is_unavailable_and_its_password_stays_hidden():
    from shoprec import storage

    with pytest.raises(storage.StoreUnavailable, match=r"postgresql://shop:\*\*\*@127\.0\.0\.1:1/shop") as err:
        EventStore("postgresql://shop:s3cret@127.0.0.1:1/shop")
    assert "s3cret" not in str(err.value) and "SHOPREC_DATABASE_URL" in str(err.value)


def test_a_malformed_database_url_is_named_and_its_password_stays_hidden():
    from pydantic import ValidationError

    from shoprec import storage
    from shoprec.db import redact

    with pytest.raises(storage.StoreUnavailable, match="SHOPREC_DATABASE_URL is not a valid PostgreSQL URL") as err:
        EventStore("postgresql://shop:s3c ret@127.0.0.1:1/shop")  # libpq quotes the part it cannot parse
    assert "s3c" not in str(err.value) and err.value.__cause__ is None
    assert redact("postgresql://shop:p@ss@db/shop") == "postgresql://shop:***@db/shop"
    with pytest.raises(ValidationError, match="must be a PostgreSQL URL") as bad:
        Settings(database_url="mysql://shop:s3cret@db/shop")
    assert bad.value.errors()[0]["loc"] == ("database_url",) and "s3cret" not in bad.value.errors()[0]["msg"]
    assert Settings(database_url="").database_url is None  # set but empty: the SQLite file


def test_the_listener_reconnects_after_losing_its_connection_and_says_so_once(pg_url, caplog):
    import threading
    import time

    import psycopg

    from shoprec.db.postgres import PostgresDatabase

    db = PostgresDatabase(pg_url)
    wakes: list[float] = []
    stop = threading.Event()

    def listeners() -> list[int]:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            return [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN %'")]

    def until(check, what: str) -> None:  # liveness, not speed
        deadline = time.monotonic() + 30
        while not check():
            assert time.monotonic() < deadline, what
            time.sleep(0.05)

    thread = db.listen(lambda: wakes.append(time.monotonic()), every_s=60.0, stop=stop)
    try:
        until(lambda: len(listeners()) == 1 and wakes, "the listener never started")
        first = listeners()[0]
        for _ in range(2):  # two losses in a row: one warning while it is down
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'")
        until(lambda: listeners() and listeners()[0] != first, "the listener never reconnected")
        seen = len(wakes)
        with db.transaction() as conn:
            db.notify(conn, "1")
        until(lambda: len(wakes) > seen, "a notification after the reconnect never woke the follower")
        assert thread.is_alive()
        lost = [r for r in caplog.records if "notifications" in r.getMessage() and "lost" in r.getMessage()]
        assert 1 <= len(lost) <= 2 and all("s3cret" not in r.getMessage() for r in lost)
    finally:
        stop.set()
        with db.transaction() as conn:
            db.notify(conn, "stop")
        thread.join(10)
        db.close()
