"""Several workers over one behaviour database (shoprec issue 13): each keeps its in-memory state
(co-purchases, the ranked feed's event log) fresh by reading the others' events by id, rebuilds
when someone was forgotten anywhere, and serves a new ranker version without a restart.

In-process (both backends, deterministic: ``refresh(force=True)`` instead of waiting) and with two
real ``shoprec serve`` processes on PostgreSQL.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from qdrant_client import QdrantClient

from shoprec.config import Settings
from shoprec.indexing.edge import EdgeStore
from shoprec.indexing.server import ServerStore
from shoprec.indexing.store import ItemPoint
from shoprec.recommend.events import Event
from shoprec.recommend.segments import UserRow
from shoprec.service import Shoprec

GROUPS, PER_GROUP, DIM = 6, 4, 8


def items() -> list[ItemPoint]:
    """Six groups of four near-identical items: a shopper's items pull their group into the feed."""
    rng = np.random.default_rng(0)
    out = []
    for g in range(GROUPS):
        for n in range(PER_GROUP):
            v = np.eye(DIM, dtype=np.float32)[g] + rng.normal(0, 0.05, DIM).astype(np.float32)
            out.append(ItemPoint(f"g{g}-{n}", {"text": v, "image": v, "joint": v},
                                 {"title": f"item {g}-{n}", "category": f"c{g}", "price": 1.0, "in_stock": True,
                                  "created_at": "2020-01-01T00:00:00Z"}))
    return out


def popular_elsewhere() -> list[dict]:
    """Other shoppers buy group 5: a newcomer's feed is group 5 first."""
    return [{"user_id": f"o{i}", "item_id": f"g5-{i % PER_GROUP}", "type": "purchase", "ts": "2024-05-01T10:00:00Z"}
            for i in range(8)]


def shopper() -> list[dict]:
    return [{"user_id": "u", "item_id": "g2-0", "type": "purchase", "ts": "2024-05-02T10:00:00Z"},
            {"user_id": "u", "item_id": "g2-1", "type": "view", "ts": "2024-05-02T10:00:00Z"}]


def group2(ids: list[str]) -> int:
    return sum(i.startswith("g2-") for i in ids)


@pytest.fixture(params=["sqlite", "postgres"])
def workers(request, tmp_path) -> Iterator[tuple[Shoprec, Shoprec]]:
    """Two services over one events database and one vector store (what two hosts would share)."""
    store = ServerStore(QdrantClient(":memory:"))
    store.ensure_collection({"text": DIM, "image": DIM, "joint": DIM})
    store.upsert(items())
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    settings = Settings(store=tmp_path / "store", profile_vector="text", database_url=url,
                        events_db=tmp_path / "events.sqlite", min_free_mb=0, ranker_retrain_events=0)
    a, b = Shoprec(settings, store=store), Shoprec(settings, store=store)
    yield a, b
    a.close()
    b.close()


def feed(svc: Shoprec) -> list[str]:
    return [r.id for r in svc.engine.recommend_user("u", 6)]


def test_a_worker_follows_another_workers_events_and_forget(workers):
    a, b = workers
    a.engine.ingest([Event(**e) for e in popular_elsewhere()])
    cold = feed(b)  # B loads its state now: what follows reaches it only by following A
    assert group2(cold) == 0
    a.engine.ingest([Event(**e) for e in shopper()])
    b.engine.refresh(force=True)
    assert group2(feed(b)) == 4 and feed(b) == feed(a)
    assert b.engine.stats()["events"] == 10

    assert a.engine.forget_user("u") == 2
    b.engine.refresh(force=True)
    assert b.engine.history("u") == [] and not b.engine.ranked.has_history("u")
    assert feed(b) == cold
    # B writes after A's forget: its own events come right after the ones it followed
    b.engine.ingest([Event(**{**shopper()[0], "user_id": "v"})])
    a.engine.refresh(force=True)
    assert a.engine.ranked.has_history("v") and b.engine.ranked.has_history("v")



def test_the_clock_moves_with_this_workers_events_a_followed_worker_and_a_forget(workers):
    """The feed's "now" (the newest event) is kept in memory between requests: it must move when
    this worker ingests, when it folds in another worker's events, and when a forget drops the
    newest ones."""
    a, b = workers
    epoch = lambda ts: Event(user_id="x", item_id="g0-0", type="view", ts=ts).epoch  # noqa: E731
    a.engine.ingest([Event(**e) for e in popular_elsewhere()])
    assert a.engine._now() == b.engine._now() == epoch("2024-05-01T10:00:00Z")
    a.engine.ingest([Event(**e) for e in shopper()])
    assert a.engine._now() == epoch("2024-05-02T10:00:00Z")
    assert b.engine._now() == epoch("2024-05-01T10:00:00Z")  # B has not looked yet: its state is older too
    b.engine.refresh(force=True)
    assert b.engine._now() == epoch("2024-05-02T10:00:00Z")
    b.engine.forget_user("u")  # the newest events were u's
    assert b.engine._now() == epoch("2024-05-01T10:00:00Z")
    a.engine.refresh(force=True)
    assert a.engine._now() == epoch("2024-05-01T10:00:00Z")

#: Every table that holds a user id (a forget must leave none of the user's rows in any of them).
USER_TABLES = ("events", "recs", "impressions", "attributions", "user_attributes")


def rows_of(svc: Shoprec, user: str) -> dict[str, int]:
    conn = svc.engine.events.conn()
    return {t: conn.execute(f"SELECT COUNT(*) FROM {t} WHERE user_id = ?", (user,)).fetchone()[0]
            for t in USER_TABLES}


def test_a_list_served_just_before_another_workers_forget_is_never_written(workers):
    a, b = workers
    a.engine.ingest([Event(**e) for e in popular_elsewhere() + shopper()])
    a.engine.add_users([UserRow(1, "u", {"age": "30"})])
    shown = a.serve("feed", "u", lambda o: a.recommend("u", 6, overrides=o))
    a.engine.ingest([Event(user_id="u", item_id=shown.results[0].id, type=t, rec_id=shown.rec_id,
                           ts="2024-05-03T10:00:00Z") for t in ("impression", "click")])  # list written too
    again = a.serve("feed", "u", lambda o: a.recommend("u", 6, overrides=o))  # still in A's buffer
    anonymous = a.serve("trending", None, lambda o: a.trending(6))
    assert all(rows_of(a, "u").values())

    b.engine.forget_user("u")
    a.engine.online.tracker.flush()  # A has not yet looked at the database since the forget

    assert rows_of(a, "u") == dict.fromkeys(USER_TABLES, 0)
    written = {r[0] for r in a.engine.events.conn().execute("SELECT rec_id FROM recs")}
    assert again.rec_id not in written and anonymous.rec_id in written
    # a list begun after A saw the forget is the returning shopper's own: it is kept
    a.engine.refresh(force=True)
    later = a.serve("feed", "u", lambda o: a.recommend("u", 6, overrides=o))
    a.engine.online.tracker.flush()
    assert rows_of(a, "u")["recs"] == 1 and later.rec_id in {
        r[0] for r in a.engine.events.conn().execute("SELECT rec_id FROM recs")}


def test_a_worker_serves_a_ranker_version_trained_elsewhere(workers):
    a, b = workers
    assert "no ranker trained yet" in b.engine.ranking_status()["why"]
    a.engine.ranked.models.save({"version": "v-elsewhere", "reason": "too few events to train", "serves": False},
                                None)
    b.engine.refresh(force=True)
    assert b.engine.ranking_status()["why"] == "hand-tuned blend: too few events to train"


def test_new_user_attributes_reach_the_other_worker(workers):
    a, b = workers
    assert b.engine.segments.count() == 0
    a.engine.add_users([UserRow(1, "n", {"age": "30"})])
    b.engine.refresh(force=True)
    assert b.engine.segments.count() == 1


def test_a_worker_keeps_serving_from_memory_while_the_database_is_away(workers, monkeypatch, caplog):
    from shoprec.storage import StoreUnavailable

    caplog.set_level("INFO", "shoprec.engine")
    a, _ = workers
    a.engine.ingest([Event(**e) for e in popular_elsewhere()])
    before = [r.id for r in a.engine.complementary(["g5-0"], k=3)]

    def away(conn=None):
        raise StoreUnavailable("could not read events PostgreSQL at postgresql://shop:***@db/shop: refused")

    monkeypatch.setattr(a.engine.events, "generations", away)
    for _ in range(2):
        a.engine.refresh(force=True)  # the follower does not raise: the request is answered from memory
        assert [r.id for r in a.engine.complementary(["g5-0"], k=3)] == before
    assert len([r for r in caplog.records if "not following other workers" in r.getMessage()]) == 1
    monkeypatch.undo()
    a.engine.refresh(force=True)
    assert any("following other workers again" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------- two real processes
def _call(port: int, method: str, path: str, body: object = None) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())


def _feed(port: int, user: str = "u") -> list[str]:
    return [r["id"] for r in _call(port, "GET", f"/users/{user}/recommendations?k=6")["results"]]


def _until(check, what: str, limit_s: float = 20.0) -> None:
    """Wait for ``check`` (liveness, not speed: bench/bench_events_pg.py measures the staleness)."""
    deadline = time.monotonic() + limit_s
    while not check():
        assert time.monotonic() < deadline, f"worker B never saw {what}"
        time.sleep(0.05)


def test_two_serve_processes_share_one_postgres(pg_url, tmp_path, serve_process):
    # Qdrant Edge is embedded and single-process: each worker gets its own copy of one small store
    # (with a Qdrant server they would share the collection); the behaviour state is what they share.
    built = tmp_path / "built"
    edge = EdgeStore(built)
    edge.ensure_collection({"text": DIM, "image": DIM, "joint": DIM})
    edge.upsert(items())
    edge.close()
    ports = []
    for name in "ab":
        shutil.copytree(built, tmp_path / name)
        ports.append(serve_process(tmp_path / name, SHOPREC_DATABASE_URL=pg_url, SHOPREC_REFRESH_INTERVAL_S="0.5",
                                   SHOPREC_RANKER_RETRAIN_EVENTS="0")[1])
    a, b = ports
    assert _call(b, "GET", "/health")["database"] == "postgres"
    assert _call(a, "POST", "/events", popular_elsewhere())["ingested"] == 8
    # a new shopper each time: a feed B cached before it followed would be reused for up to
    # SHOPREC_FEED_CACHE_TTL_S (other shoppers' events do not invalidate it, on one worker either)
    probes = iter(range(10_000))
    _until(lambda: _feed(b, f"probe-{next(probes)}")[0].startswith("g5-"), "the other shoppers' purchases")
    assert group2(_feed(b)) == 0

    assert _call(a, "POST", "/events", shopper())["ingested"] == 2
    _until(lambda: group2(_feed(b)) == 4, "the shopper's events")
    assert _feed(b) == _feed(a)

    assert _call(a, "DELETE", "/users/u")["events_removed"] == 2
    assert _call(b, "GET", "/users/u/history")["events"] == []
    _until(lambda: group2(_feed(b)) == 0, "the forget")


def test_postgres_going_away_is_a_503_without_its_address_and_coming_back_serves_again(pg_proxy, tmp_path, caplog):
    from fastapi.testclient import TestClient

    from shoprec.http import create_app

    url, proxy = pg_proxy
    url = url.replace("postgresql://shoprec@", "postgresql://shoprec:s3cret@", 1)  # trust auth ignores it
    store = ServerStore(QdrantClient(":memory:"))
    store.ensure_collection({"text": DIM, "image": DIM, "joint": DIM})
    store.upsert(items())
    settings = Settings(store=tmp_path / "store", profile_vector="text", database_url=url, min_free_mb=0,
                        ranker_retrain_events=0)
    svc = Shoprec(settings, store=store)
    try:
        with TestClient(create_app(service=svc)) as client:
            assert client.post("/events", json=popular_elsewhere()).status_code == 200
            assert client.get("/health").json()["database"] == "postgres"
            complements = client.get("/items/g5-0/complementary?k=3").json()["results"]
            proxy.down()
            health = client.get("/health")
            feed_ = client.get("/users/u/recommendations?k=3")
            write = client.post("/events", json=shopper())
            assert (health.status_code, feed_.status_code, write.status_code) == (503, 503, 503)
            for answer in (health, feed_, write):
                text = answer.text
                assert "s3cret" not in text and "\n" not in answer.json().get("detail", "x")
            assert "127.0.0.1" not in health.text  # /health is open: no address
            # a part served from memory alone still answers
            still = client.get("/items/g5-0/complementary?k=3")
            assert still.status_code == 200, still.text
            assert [r["id"] for r in still.json()["results"]] == [r["id"] for r in complements]
            proxy.up()  # the pool reconnects after its back-off
            _until(lambda: client.get("/health").status_code == 200, "PostgreSQL back")
            assert client.post("/events", json=shopper()).status_code == 200
    finally:
        svc.close()
    assert all("s3cret" not in r.getMessage() for r in caplog.records)
