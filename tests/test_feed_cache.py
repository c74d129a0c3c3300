"""The serving caches: a repeat feed request is answered from memory, and never a stale one
where it matters (the user's own event, a catalog change, a new ranker); other shoppers' events
reach it within the TTL."""

from __future__ import annotations

import numpy as np
import pytest

from shoprec.recommend import ranked_feed
from test_recommend import ev, ids, open_engine, store  # noqa: F401 (store is a fixture)


@pytest.fixture
def engine(store, tmp_path):  # noqa: F811
    eng = open_engine(store, tmp_path, feed_cache_ttl_s=60)
    eng.ingest([ev("u", "d1", "view"), ev("u", "d3", "view", 1), ev("n", "d1", "view", 2)])
    yield eng
    eng.close()


def _counting_searches(engine, monkeypatch) -> list[int]:
    calls: list[int] = []
    real = engine.store.search_many

    def counted(vector, vectors, k, **kw):
        calls.append(len(vectors))
        return real(vector, vectors, k, **kw)

    monkeypatch.setattr(engine.store, "search_many", counted)
    return calls


def test_a_repeat_request_is_served_from_the_cache(engine):
    first = engine.recommend_user("u", k=5)
    hits = engine.ranked.feeds.hits
    again = engine.recommend_user("u", k=5)
    assert ids(again) == ids(first) and [r.reason for r in again] == [r.reason for r in first]
    assert engine.ranked.feeds.hits == hits + 1
    # different parameters are a different feed
    engine.recommend_user("u", k=3)
    assert engine.ranked.feeds.hits == hits + 1


def test_the_users_own_event_invalidates_their_feed_at_once(engine):
    before = engine.recommend_user("u", k=5)
    engine.ingest([ev("u", "b2", "purchase", 5), ev("u", "b1", "cart", 6)])
    after = engine.recommend_user("u", k=5)
    assert ids(after) != ids(before) and after[0].category == "bags"


def test_other_shoppers_events_reach_the_feed_within_the_ttl(engine, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(ranked_feed.time, "monotonic", lambda: clock[0])
    before = {r.id: r.reason for r in engine.recommend_user("u", k=20)}
    assert not before.get("h2", "").startswith("often bought with")
    engine.ingest([ev("n", "d3", "purchase", 7, "b"), ev("n", "h2", "purchase", 7, "b")])
    clock[0] += 30  # within the TTL: the cached feed stands
    assert {r.id: r.reason for r in engine.recommend_user("u", k=20)} == before
    clock[0] += 31  # past it: recomputed with n's purchases (h2 was bought with d3, which u viewed)
    after = {r.id: r.reason for r in engine.recommend_user("u", k=20)}
    assert after["h2"].startswith("often bought with") and after["h2"] != before.get("h2")


def test_a_catalog_change_invalidates_feeds_and_neighbours(engine, monkeypatch):
    engine.recommend_user("u", k=5)
    calls = _counting_searches(engine, monkeypatch)
    engine.recommend_user("u", k=5)
    assert calls == []  # the whole feed came from the cache
    engine.items_changed(["d1"])  # what Shoprec.upsert_items / delete_items call
    engine.recommend_user("u", k=5)
    assert calls, "after a catalog change the neighbours are searched again"


def test_payloads_are_read_from_memory_until_the_item_changes(engine, monkeypatch):
    """A computed feed reads no payload it read before; a re-indexed item (new price, out of
    stock) shows its new payload at once, and the stock filter sees it."""
    from test_recommend import point

    from shoprec.indexing.store import ItemFilter

    engine.ranked.feeds.capacity = 0  # every feed computed
    first = {r.id: r for r in engine.recommend_user("u", k=8)}
    reads: list[list[str]] = []
    real = engine.store.retrieve
    monkeypatch.setattr(engine.store, "retrieve", lambda ids, **kw: reads.append(list(ids)) or real(ids, **kw))
    again = {r.id: r for r in engine.recommend_user("u", k=8)}
    assert again.keys() == first.keys() and reads == []
    changed = point("d2")
    changed.payload.update(price=19.0, in_stock=False)
    engine.store.upsert([changed])
    engine.items_changed(["d2"])  # what Shoprec.upsert_items calls after writing the store
    after = {r.id: r for r in engine.recommend_user("u", k=8)}
    assert "d2" in after and after["d2"].price == 19.0 and reads
    assert "d2" not in ids(engine.recommend_user("u", k=8, flt=ItemFilter(in_stock=True)))


def test_another_writers_payload_change_shows_within_the_ttl(engine, monkeypatch):
    """A price changed by another process (no items_changed here, same item count) reaches the
    feed once the cached payload is older than SHOPREC_FEED_CACHE_TTL_S."""
    from test_recommend import point

    clock = [1000.0]
    monkeypatch.setattr(ranked_feed.time, "monotonic", lambda: clock[0])
    engine.ranked.feeds.capacity = 0
    assert {r.id: r.price for r in engine.recommend_user("u", k=8)}["d2"] == 42.0
    changed = point("d2")
    changed.payload.update(price=19.0)
    engine.store.upsert([changed])
    clock[0] += 30
    assert {r.id: r.price for r in engine.recommend_user("u", k=8)}["d2"] == 42.0  # cached, within the TTL
    clock[0] += 31
    assert {r.id: r.price for r in engine.recommend_user("u", k=8)}["d2"] == 19.0


def test_neighbours_are_cached_per_anchor_across_users(engine, monkeypatch):
    engine.ingest([ev("w", "d1", "view", 3), ev("w", "d3", "view", 4)])
    engine.recommend_user("u", k=5)  # u's anchors (d3, d1) are searched once
    calls = _counting_searches(engine, monkeypatch)
    engine.recommend_user("w", k=5)  # w has the same anchors: no HNSW search at all
    assert calls == []
    engine.ingest([ev("w", "h1", "view", 5)])
    engine.recommend_user("w", k=5)  # only the new anchor is searched
    assert calls == [1]


def test_as_of_requests_bypass_the_cache(engine):
    engine.recommend_user("u", k=5)
    hits = engine.ranked.feeds.hits
    engine.recommend_user("u", k=5, as_of=engine._now())
    assert engine.ranked.feeds.hits == hits


def test_similar_items_are_cached_until_the_catalog_changes(engine, monkeypatch):
    first = engine.similar("d1", k=3)
    calls: list[str] = []
    real = engine.store.search
    monkeypatch.setattr(engine.store, "search", lambda *a, **kw: calls.append("search") or real(*a, **kw))
    assert ids(engine.similar("d1", k=3)) == ids(first) and calls == []
    engine.similar("d1", k=3, modality="text")
    assert calls == ["search"]  # another modality is another answer
    engine.items_changed(["d2"])  # an item was re-indexed: its neighbours may have moved
    assert ids(engine.similar("d1", k=3)) == ids(first) and calls == ["search", "search"]
    engine.store.delete(["d2"])  # another writer removed an item: the store's size tells
    assert "d2" not in ids(engine.similar("d1", k=3))


def test_warm_up_caches_every_touched_items_neighbours(engine, monkeypatch):
    """After the server's warm-up, a shopper's first feed asks Qdrant for nothing: the
    neighbours of every item anyone touched are in memory, and the feed is the one a cold
    engine computes."""
    cold = engine.recommend_user("n", k=5)
    engine.ranked.items_changed(["d1"])  # empties the neighbour cache (and the feed cache's stamp)
    assert engine.ranked.warm_neighbours() == 2  # d1 and d3: the items u and n touched
    calls = _counting_searches(engine, monkeypatch)
    assert ids(engine.recommend_user("u", k=5)) and calls == []
    assert ids(engine.recommend_user("n", k=5)) == ids(cold) and calls == []


def test_warm_up_stops_when_asked(engine):
    import threading

    stop = threading.Event()
    stop.set()
    assert engine.ranked.warm_neighbours(stop) == 0


def test_the_server_warms_up_in_the_background(store, tmp_path, caplog, monkeypatch):  # noqa: F811
    import logging

    eng = open_engine(store, tmp_path, feed_cache_ttl_s=60)
    eng.ingest([ev("u", "d1", "view"), ev("u", "d3", "view", 1)])
    with caplog.at_level(logging.INFO, logger="shoprec.engine"):
        eng.open()
        eng._warming.join(timeout=30)
    calls = _counting_searches(eng, monkeypatch)
    eng.recommend_user("u", k=5)
    eng.close()
    assert calls == []  # the first feed found its anchors' neighbours warmed
    assert any("feed warmed up" in r.getMessage() and "2 items' neighbours" in r.getMessage() for r in caplog.records)
    quiet = open_engine(store, tmp_path / "quiet", warm_up=False)
    quiet.open()
    assert quiet._warming is None
    quiet.close()


def test_at_most_feed_concurrency_feeds_are_computed_at_once(store, tmp_path, monkeypatch):  # noqa: F811
    """More threads than cores only pass the GIL back and forth: a server computes at most
    ``feed_concurrency`` feeds at a time and queues the rest (each still gets its own feed)."""
    import threading
    import time

    from test_recommend import open_engine

    eng = open_engine(store, tmp_path, feed_concurrency=2, feed_cache_size=0)
    eng.ingest([ev(u, "d1", "view") for u in ("a", "b", "c", "d", "e", "f")])
    running, peak, lock = [0], [0], threading.Lock()
    real = eng.ranked._recommend

    def slow(*args, **kwargs):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(eng.ranked, "_recommend", slow)
    feeds: dict[str, list[str]] = {}
    threads = [threading.Thread(target=lambda u=u: feeds.__setitem__(u, ids(eng.recommend_user(u, k=3))))
               for u in "abcdef"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    eng.close()
    assert peak[0] == 2 and len(feeds) == 6 and all(len(f) == 3 for f in feeds.values())


def _blas_threads() -> list[int]:
    """Threads of the BLAS libraries the feed limits: those loaded when it first limited (numpy's,
    which runs its products; torch's, loaded by other tests, is not the feed's business)."""
    return [lib["num_threads"] for lib in ranked_feed._blas().select(user_api="blas").info()]


def test_feeds_share_one_blas_limit_and_a_server_holds_it():
    """Feeds run BLAS on one thread; overlapping feeds share the limit (the last out restores
    it, never one feed under another), and a serving process holds it for good: restoring
    woke OpenBLAS's worker threads, which spun between feeds."""
    default = _blas_threads()
    if not default or max(default) < 2:
        pytest.skip(f"BLAS runs on one thread here already ({default}): nothing to limit")
    blas = ranked_feed._SingleThreadedBlas()
    blas.__enter__()  # two feeds at once
    blas.__enter__()
    assert set(_blas_threads()) == {1}
    blas.__exit__()
    assert set(_blas_threads()) == {1}  # the other feed still runs
    blas.__exit__()
    assert _blas_threads() == default
    blas.hold()
    try:
        with blas:
            assert set(_blas_threads()) == {1}
        assert set(_blas_threads()) == {1}  # held: no restore between feeds
    finally:
        blas.__exit__()  # this test's process is no server
    assert _blas_threads() == default


def test_the_clock_read_by_another_request_during_a_write_transaction_moves_after_its_commit(engine):
    """An ingest inside a caller's transaction (an Idempotency-Key) commits only when the caller's
    transaction does: a request that reads the clock in between reads the old one, and must not
    keep it once the new events are committed."""
    import threading

    before = engine._now()
    with engine.write_transaction():
        engine.ingest([ev("u", "d2", "view", 30)])
        reader = threading.Thread(target=engine._now)  # another request, on its own connection
        reader.start()
        reader.join()
        assert engine._clock is None or engine._clock[0] == before  # it saw the committed clock
    assert engine._now() == ev("u", "d2", "view", 30).epoch > before


def test_new_arrivals_use_a_reindexed_items_new_vector():
    """The fresh items' vectors are kept with the popularity snapshot; an item indexed again with
    another vector replaces the table's matrix, and the kept vectors with it."""
    from shoprec.recommend.ranking.candidates import NewArrivals, UserContext
    from shoprec.recommend.ranking.state import EventLog, ItemFacts, ItemTable, UserHistory

    now = 1_700_000_000.0
    t = ItemTable()
    t.add("old", ItemFacts("c", "g", "P0", 1.0, now - 300 * 86400, np.array([1.0, 0.0], np.float32)))
    t.add("new", ItemFacts("c", "g", "P1", 1.0, now - 86400, np.array([0.0, 1.0], np.float32)))
    log = EventLog({"view": 1.0})
    log.add("u", 0, "view", now - 60, "b")
    windows = log.windows(now, len(t), t)

    def proposed() -> dict[int, float]:
        history = UserHistory(np.array([0]), np.ones(1), np.array([now - 60]), np.zeros(1, bool), np.zeros(1),
                              np.zeros(1, np.int64), np.zeros(1, np.int8))
        return NewArrivals().generate(UserContext("u", now, history, set(), t, windows), 5).as_dict()

    assert proposed() == {}  # orthogonal to the user's item: no score, not proposed
    t.add("new", ItemFacts("c", "g", "P1", 1.0, now - 86400, np.array([0.6, 0.8], np.float32)))
    assert proposed() == {1: pytest.approx(0.6)}
