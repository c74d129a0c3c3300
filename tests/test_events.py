"""Events in: the file format and its errors, durable storage, and the incremental models
(popularity, co-occurrence, user-kNN) checked against direct recomputation."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from shoprec.config import Settings
from shoprec.indexing.server import ServerStore
from shoprec.indexing.store import ItemPoint
from shoprec.recommend import Event, EventError, EventRow, RecommendEngine, read_events
from shoprec.recommend.cf import Behaviour
from shoprec.recommend.event_store import EventStore
from shoprec.recommend.popularity import EPOCH, Popularity
from shoprec.recommend.rerank import blend, minmax

T = datetime(2024, 5, 1, tzinfo=timezone.utc)
WEIGHTS = Settings().event_weights


def good(user: str = "u1", item: str = "i1", type_: str = "view", ts: str = "2024-05-01T10:00:00Z", **more) -> dict:
    return {"user_id": user, "item_id": item, "type": type_, "ts": ts, **more}


# ---------------------------------------------------------------------------- format
def test_event_times_are_aware_and_iso_8601_only():
    assert Event(**good(ts="2024-05-01T10:00:00")).ts == datetime(2024, 5, 1, 10, tzinfo=timezone.utc)
    assert Event(**good(ts="2024-05-01T12:00:00+02:00")).epoch == Event(**good(ts="2024-05-01T10:00:00Z")).epoch
    assert Event(**good(ts="2024-05-01")).ts == datetime(2024, 5, 1, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="ISO 8601"):
        Event(**good(ts=1714557600))
    assert Event(**good(type_=" Purchase ", user=42)).type == "purchase"


def test_basket_is_the_session_or_the_users_day():
    a = Event(**good(session_id="s1"))
    assert a.basket() != Event(**good(session_id="s2")).basket()
    assert a.basket() != Event(**good(user="u2", session_id="s1")).basket()  # sessions are per user
    day = Event(**good(ts="2024-05-01T23:00:00-02:00"))  # 01:00 UTC on the 2nd
    assert day.basket() == Event(**good(ts="2024-05-02T08:00:00Z")).basket()


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_read_jsonl_reports_each_bad_line_and_keeps_the_rest(tmp_path):
    path = write_lines(tmp_path / "e.jsonl", [
        json.dumps(good()).encode(),                       # 1 ok
        b"{not json",                                      # 2
        json.dumps(good(type_="like")).encode(),           # 3 unknown type
        json.dumps(good(ts="yesterday")).encode(),         # 4 bad timestamp
        json.dumps({k: v for k, v in good().items() if k != "user_id"}).encode(),  # 5 no user
        b"",                                               # 6 blank: skipped
        json.dumps(good(item="caf\xe9")).encode("latin-1").replace(b"\\u00e9", b"\xe9"),  # 7 bad UTF-8
        json.dumps([1, 2]).encode(),                       # 8 not an object
        json.dumps(good(user="u2", price=9.5, quantity=2, session_id="s")).encode(),  # 9 ok
    ])
    rows = list(read_events(path))
    ok = [r for r in rows if isinstance(r, EventRow)]
    bad = {r.line: r.reason for r in rows if isinstance(r, EventError)}
    assert [r.line for r in ok] == [1, 9] and ok[1].event.quantity == 2
    assert set(bad) == {2, 3, 4, 5, 7, 8}
    assert "invalid JSON" in bad[2]
    assert "'type'" in bad[3] and "'view'" in bad[3]
    assert "'ts'" in bad[4] and "ISO 8601" in bad[4]
    assert bad[5] == "field 'user_id': missing"
    assert "UTF-8" in bad[7]
    assert "object" in bad[8]


def test_read_csv_reports_bad_records_with_their_lines(tmp_path):
    path = write_lines(tmp_path / "e.csv", [
        b"user_id,item_id,type,ts,session_id,price,quantity",
        b"u1,i1,view,2024-05-01T10:00:00Z,,,",
        b"u1,i2,purchase,2024-05-01T10:05:00Z,s9,19.9,3",
        b"u1,i2,purchase,not-a-time,,,",
        b",i2,cart,2024-05-01T10:05:00Z,,,",
        b"u1,i2,cart,2024-05-01T10:05:00Z,,,,extra",
        b"u\xff,i1,view,2024-05-01T10:00:00Z,,,",
    ])
    rows = list(read_events(path))
    ok = {r.line: r.event for r in rows if isinstance(r, EventRow)}
    bad = {r.line: r.reason for r in rows if isinstance(r, EventError)}
    assert set(ok) == {2, 3} and ok[3].price == 19.9 and ok[3].session_id == "s9" and ok[2].session_id is None
    assert set(bad) == {4, 5, 6, 7}
    assert "'ts'" in bad[4] and "'user_id'" in bad[5] and "more fields" in bad[6] and "UTF-8" in bad[7]


def test_unsupported_or_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_events(tmp_path / "none.jsonl")
    (tmp_path / "e.xml").write_text("<x/>")
    with pytest.raises(ValueError, match="unsupported"):
        read_events(tmp_path / "e.xml")


# ---------------------------------------------------------------------------- ingest
@pytest.fixture
def engine(tmp_path):
    store = ServerStore(QdrantClient(":memory:"))
    store.ensure_collection({"text": 4, "image": 4, "joint": 4})
    store.upsert([ItemPoint(f"i{n}", {"joint": np.eye(4, dtype=np.float32)[n % 4]},
                            {"title": f"item {n}", "category": "c", "price": 1.0, "in_stock": True})
                  for n in range(1, 4)])
    eng = RecommendEngine(store, Settings(store=tmp_path), events_path=tmp_path / "ev.sqlite")
    yield eng
    eng.close()
    store.close()


def test_ingest_file_reports_bad_events_and_ingests_the_others(engine, tmp_path):
    path = write_lines(tmp_path / "e.jsonl", [
        json.dumps(good(item="i1")).encode(),
        json.dumps(good(item="ghost")).encode(),
        b"{",
        json.dumps(good(item="i2", type_="purchase")).encode(),
        json.dumps(good(item="i3", type_="teleport")).encode(),
    ])
    report = engine.ingest_file(path)
    assert report.ingested == 2
    assert [(e.line, e.item_id) for e in report.errors] == [(2, "ghost"), (3, None), (5, "i3")]
    assert "unknown item" in str(report.errors[0]) and str(report.errors[0]).startswith("line 2 (item ghost)")
    assert [e.item_id for e in engine.history("u1")] == ["i2", "i1"]


def test_ingest_positions_are_lines_for_plain_events(engine):
    future = (datetime.now(timezone.utc) + timedelta(days=3)).isoformat()
    report = engine.ingest([Event(**good(item="i1")), Event(**good(item="nope")), Event(**good(ts=future))])
    assert report.ingested == 1
    assert [e.line for e in report.errors] == [2, 3] and "in the future" in report.errors[1].reason


def test_acknowledged_events_survive_a_crash(tmp_path):
    db = tmp_path / "ev.sqlite"
    code = f"""
import os
from shoprec.recommend.event_store import EventStore
from shoprec.recommend.events import Event
store = EventStore({str(db)!r})
with store.transaction() as conn:
    EventStore.insert_events(conn, [Event(user_id="u", item_id="i", type="view", ts="2024-05-01T00:00:00Z")])
os._exit(0)  # no close, no checkpoint: like a killed process
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    store = EventStore(db)
    assert [e.item_id for e in store.history("u")] == ["i"]
    conn = store.conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


def test_failed_transaction_leaves_nothing(tmp_path):
    store = EventStore(tmp_path / "ev.sqlite")
    with pytest.raises(RuntimeError):
        with store.transaction() as conn:
            EventStore.insert_events(conn, [Event(**good())])
            raise RuntimeError("boom")
    assert store.history("u1") == []
    store.close()


# ---------------------------------------------------------------------------- popularity
def test_popularity_in_log_space_equals_the_decayed_sum(tmp_path):
    store = EventStore(tmp_path / "ev.sqlite")
    pop = Popularity(store, WEIGHTS, half_life_days=7.0)
    rows = [("a", "c", "view", T.timestamp() - 14 * 86400, None), ("a", "c", "purchase", T.timestamp(), 2),
            ("b", "d", "click", T.timestamp() - 86400, None), ("b", "d", "dislike", T.timestamp(), None)]
    with store.transaction() as conn:
        pop.add(conn, rows[:2])
    with store.transaction() as conn:
        pop.add(conn, rows[2:])  # a second batch folds into the stored value
    now = T.timestamp() + 7 * 86400
    got = pop.decayed(pop.log_scores(["a", "b", "zzz"]), now)
    expect_a = 1.0 * 0.5 ** 3 + 8.0 * 2 * 0.5
    expect_b = 2.0 * 0.5 ** (8 / 7)  # the dislike adds nothing
    assert got == pytest.approx([expect_a, expect_b, 0.0])
    assert [i for i, _ in pop.top(10)] == ["a", "b"] and [i for i, _ in pop.top(10, categories=["d"])] == ["b"]
    assert EPOCH < T.timestamp()
    store.close()


# ---------------------------------------------------------------------------- cf
EVENTS = [  # (user, item, type, basket)
    ("u1", "a", "purchase", "b1"), ("u1", "b", "purchase", "b1"), ("u1", "c", "cart", "b2"),
    ("u2", "a", "purchase", "b3"), ("u2", "b", "cart", "b3"), ("u2", "b", "purchase", "b3"),
    ("u3", "c", "view", "b4"), ("u3", "a", "click", "b4"), ("u3", "d", "purchase", "b5"),
    ("u4", "d", "view", "b6"), ("u4", "e", "dislike", "b6"),
]
CATS = {"a": "dress", "b": "shoes", "c": "shoes", "d": "bags", "e": "bags"}


def behaviour(incremental: bool) -> Behaviour:
    if incremental:
        model = Behaviour(WEIGHTS, 1.0, 0.25)
        for half in (EVENTS[:5], EVENTS[5:]):  # reads between appends must not lose any
            for u, i, t, b in half:
                model.add(u, i, t, b, CATS[i])
            model.co_bought(["a"], 5)
        return model
    return Behaviour.load(EVENTS, CATS, WEIGHTS, 1.0, 0.25)


def brute_cooc(x: str, y: str) -> float:
    bought = [(u, i, b) for u, i, t, b in EVENTS if t in ("cart", "purchase")]
    baskets = {b: {i for _, i, bb in bought if bb == b} for _, _, b in bought}
    users = {u: {i for uu, i, _ in bought if uu == u} for u, _, _ in bought}
    return (sum(x in s and y in s for s in baskets.values())
            + 0.25 * sum(x in s and y in s for s in users.values()))


@pytest.mark.parametrize("incremental", [False, True])
def test_co_bought_matches_counting_by_hand(incremental):
    model = behaviour(incremental)
    got = {c.item_id: c.score for c in model.co_bought(["a"], 10)}
    assert got == {"b": pytest.approx(brute_cooc("a", "b")), "c": pytest.approx(brute_cooc("a", "c"))}
    assert got["b"] == pytest.approx(2.5)  # two baskets + two buyers
    both = model.co_bought(["a", "c"], 10)
    assert [c.item_id for c in both] == ["b"] and both[0].because_of == "a"


@pytest.mark.parametrize("incremental", [False, True])
def test_category_affinity_counts_item_pairs_across_categories(incremental):
    model = behaviour(incremental)
    pairs = [(x, y) for x, y in combinations(CATS, 2) if CATS[x] != CATS[y]]
    expect: dict[str, float] = {}
    for x, y in pairs:
        for p, q in ((x, y), (y, x)):
            if CATS[p] == "dress":
                expect[CATS[q]] = expect.get(CATS[q], 0.0) + brute_cooc(p, q)
    got = model.category_affinity(["dress"])
    assert got == pytest.approx({k: v for k, v in expect.items() if v > 0})
    assert "dress" not in got


@pytest.mark.parametrize("incremental", [False, True])
def test_user_knn_matches_dense_cosine(incremental):
    model = behaviour(incremental)
    users, items = ["u1", "u2", "u3", "u4"], list(CATS)
    m = np.zeros((4, 5))
    for u, i, t, _ in EVENTS:
        if WEIGHTS[t] > 0:
            m[users.index(u), items.index(i)] += WEIGHTS[t]
    unit = m / np.linalg.norm(m, axis=1, keepdims=True)
    sims = unit @ unit[2]
    sims[2] = 0
    top = np.argsort(-sims)[:2]
    expect = sims[top] @ unit[top]
    assert model.user_knn("u3", items, neighbours=2) == pytest.approx(expect, abs=1e-6)
    assert model.user_knn("stranger", items, 2).tolist() == [0.0] * 5
    assert model.user_knn("u3", ["nothing"], 2).tolist() == [0.0]


# ---------------------------------------------------------------------------- rerank
def test_minmax_and_blend():
    assert minmax(np.array([1.0, 3.0, -np.inf])).tolist() == [0.0, 1.0, 0.0]
    assert minmax(np.array([0.0, 0.0])).tolist() == [0.0, 0.0]  # a flat signal carries nothing
    total, parts = blend({"a": np.array([0.0, 10.0]), "b": np.array([5.0, 4.0])}, {"a": 1.0, "b": 0.5})
    assert total.tolist() == [0.5, 1.0] and parts["b"].tolist() == [0.5, 0.0]


def test_event_store_refuses_another_schema(tmp_path):
    db = tmp_path / "ev.sqlite"
    EventStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    with pytest.raises(RuntimeError, match="schema 99"):
        EventStore(db)


def test_event_store_opens_a_file_with_the_old_profiles_table_and_drops_it(tmp_path):
    db = tmp_path / "ev.sqlite"
    store = EventStore(db)
    with store.transaction() as conn:
        EventStore.insert_events(conn, [Event(**good())])
    store.close()
    with sqlite3.connect(db) as conn:  # what an earlier shoprec left: per-user preference vectors
        conn.execute("CREATE TABLE profiles (user_id TEXT PRIMARY KEY, vector_name TEXT NOT NULL, long_vec BLOB)")
        conn.execute("INSERT INTO profiles VALUES ('u1', 'joint', x'00')")
    store = EventStore(db)
    assert [e.user_id for e in store.history("u1")] == ["u1"]
    tables = {r[0] for r in store.conn().execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "profiles" not in tables and {"events", "items", "meta"} <= tables
    store.close()
