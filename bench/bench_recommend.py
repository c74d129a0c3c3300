"""How fast is the recommend engine: events in, recommendations out?

Builds a synthetic shop in a temp dir — N items with random normalised vectors in an EdgeStore
(optimized, i.e. HNSW), users whose events follow a few favourite clusters — then measures:

- ingest: events/s through ``RecommendEngine.ingest`` (validated against the store, popularity,
  co-occurrence and the ranked feed's event log updated, committed with fsync), in batches and
  one event per call (what an HTTP "track" endpoint does);
- query latency p50/p99 of similar / complementary / recommend_user (with history, cold, and
  cold with a context item) / trending, and of "one event then the same user's feed" (the
  incremental path);
- the baseline, measured in the same run: a bare ``store.search`` top-k on the same vectors, so
  the engine's overhead is a ratio.

    python bench/bench_recommend.py                      # H&M-sized: 17,033 items, 31,662 events
    python bench/bench_recommend.py --items 2000 --events 5000 --queries 50   # quick
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

try:
    import shoprec  # noqa: F401
except ModuleNotFoundError:  # run from a checkout without `pip install -e .`
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shoprec.config import Settings
from shoprec.indexing.edge import EdgeStore
from shoprec.indexing.store import ItemPoint
from shoprec.recommend import Event, RecommendEngine

TYPES = np.array(["view", "click", "cart", "purchase", "dislike"])
TYPE_P = np.array([0.60, 0.18, 0.10, 0.10, 0.02])
START = datetime(2024, 1, 1, tzinfo=timezone.utc)


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def percentiles(fn: Callable[[int], object], n: int, warmup: int = 3) -> tuple[float, float]:
    """p50 and p99 latency in ms of ``fn(i)`` for i in range(n)."""
    for i in range(min(warmup, n)):
        fn(i)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[min(n - 1, int(round(0.99 * (n - 1))))]


def synthetic_events(rng: np.random.Generator, n_events: int, n_users: int, n_items: int,
                     n_clusters: int, cluster_of: np.ndarray) -> list[Event]:
    """Sessions of ~5 events; each user shops mostly in 3 favourite clusters, over 90 days."""
    by_cluster = [np.flatnonzero(cluster_of == c) for c in range(n_clusters)]
    favourites = rng.integers(0, n_clusters, (n_users, 3))
    users = rng.integers(0, n_users, n_events)
    explore = rng.random(n_events) < 0.2
    fav = favourites[users, rng.integers(0, 3, n_events)]
    items = np.empty(n_events, dtype=np.int64)
    for i in range(n_events):
        pool = by_cluster[fav[i]]
        items[i] = rng.integers(0, n_items) if explore[i] or len(pool) == 0 else pool[rng.integers(0, len(pool))]
    types = rng.choice(TYPES, n_events, p=TYPE_P)
    minutes = np.sort(rng.uniform(0, 90 * 24 * 60, n_events))
    return [Event(user_id=f"u{users[i]}", item_id=f"item{items[i]}", type=str(types[i]),
                  ts=START + timedelta(minutes=float(minutes[i])),
                  session_id=f"u{users[i]}-{int(minutes[i] // 30)}")
            for i in range(n_events)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=17_033)
    ap.add_argument("--users", type=int, default=1_364)
    ap.add_argument("--events", type=int, default=31_662)
    ap.add_argument("--dims", default="text=512,image=1280,joint=256",
                    help="named vectors as stored by the default encoders")
    ap.add_argument("--categories", type=int, default=98)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--single", type=int, default=200, help="events ingested one per call")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    dims = {name: int(d) for name, d in (part.split("=") for part in args.dims.split(","))}
    rng = np.random.default_rng(args.seed)
    n, k = args.items, args.k
    n_clusters = max(1, args.categories)
    cluster_of = rng.integers(0, n_clusters, n)
    centroids = {name: unit_rows(rng, n_clusters, d) for name, d in dims.items()}
    root = Path(tempfile.mkdtemp(prefix="bench-recommend-"))
    store = EdgeStore(root / "store")
    engine: RecommendEngine | None = None
    try:
        store.ensure_collection(dims)
        t0 = time.perf_counter()
        for start in range(0, n, 1000):
            rows = range(start, min(n, start + 1000))
            vecs = {name: centroids[name][cluster_of[rows.start:rows.stop]]
                    + 0.8 * unit_rows(rng, len(rows), d) for name, d in dims.items()}
            store.upsert([
                ItemPoint(f"item{i}", {name: v[j] / np.linalg.norm(v[j]) for name, v in vecs.items()},
                          {"title": f"item {i}", "category": f"cat{cluster_of[i]}", "price": float(i % 300),
                           "in_stock": int(i % 7 != 0),
                           "attributes": {"product_code": f"p{i // 3}"}, "created_at": "2023-06-01T00:00:00Z"})
                for j, i in enumerate(rows)
            ])
        store.optimize()
        build_s = time.perf_counter() - t0

        events = synthetic_events(rng, args.events, args.users, n, n_clusters, cluster_of)
        # No background ranker retraining: it would compete with the timed calls for the CPUs and
        # outlive the store this script closes at the end.
        settings = Settings(store=root, ranker_retrain_events=0)
        engine = RecommendEngine(store, settings, events_path=root / "events.sqlite")
        engine.stats()  # loads the (empty) behaviour model so ingest also pays for its updates
        t0 = time.perf_counter()
        report = engine.ingest(events)
        ingest_s = time.perf_counter() - t0
        assert report.ingested == len(events) and not report.errors, report.errors[:3]

        extra = synthetic_events(rng, args.single, args.users, n, n_clusters, cluster_of)
        single_ms = percentiles(lambda i: engine.ingest([extra[i]]), len(extra), warmup=0)

        engine.close()  # a fresh process: the behaviour model loads from SQLite on first use
        engine = RecommendEngine(store, settings, events_path=root / "events.sqlite")
        t0 = time.perf_counter()
        engine.stats()
        load_s = time.perf_counter() - t0

        q = args.queries
        users = [f"u{u}" for u in rng.integers(0, args.users, q)]
        items = [f"item{i}" for i in rng.integers(0, n, q)]
        basket_items = [e.item_id for e in events if e.type == "purchase"]
        baskets = [basket_items[i] for i in rng.integers(0, len(basket_items), q)]
        query_vecs = unit_rows(rng, q, dims["joint"])
        table = [
            ("store.search top-k (baseline)", percentiles(lambda i: store.search("joint", query_vecs[i], k), q)),
            ("similar", percentiles(lambda i: engine.similar(items[i], k), q)),
            ("similar, mmr=0.3", percentiles(lambda i: engine.similar(items[i], k, mmr=0.3), q)),
            ("complementary (bought items)", percentiles(lambda i: engine.complementary([baskets[i]], k), q)),
            ("complementary (any item)", percentiles(lambda i: engine.complementary([items[i]], k), q)),
            ("recommend_user", percentiles(lambda i: engine.recommend_user(users[i], k), q)),
            ("recommend_user, cold start", percentiles(lambda i: engine.recommend_user(f"new{i}", k), q)),
            ("recommend_user, cold + context",
             percentiles(lambda i: engine.recommend_user(f"new{i}", k, context_item=items[i]), q)),
            ("trending", percentiles(lambda i: engine.trending(k), q)),
        ]
        more = synthetic_events(rng, q + 3, args.users, n, n_clusters, cluster_of)

        def event_then_feed(i: int) -> None:
            engine.ingest([more[i]])
            engine.recommend_user(more[i].user_id, k)

        table.append(("1 event + recommend_user", percentiles(event_then_feed, q)))
        stats = engine.stats()
    finally:
        if engine is not None:
            engine.close()
        store.close()
        shutil.rmtree(root, ignore_errors=True)

    base = table[0][1][0]
    print(f"\nRecommendEngine on EdgeStore (optimized): {n:,} items {dims}, {args.users:,} users, "
          f"{args.events:,} events, {os.cpu_count()} CPUs")
    print(f"store build + optimize: {build_s:.1f} s; behaviour model load from SQLite: {load_s * 1000:.0f} ms "
          f"({stats['baskets']:,} baskets, {stats['cf_users']:,} users)")
    print(f"ingest, batched: {len(events) / ingest_s:,.0f} events/s ({ingest_s:.1f} s for {len(events):,})")
    print(f"ingest, one event per call: p50 {single_ms[0]:.1f} ms, p99 {single_ms[1]:.1f} ms "
          f"(~{1000 / single_ms[0]:,.0f} events/s; each call is a durable commit)\n")
    head = f"{'query (k=' + str(k) + ')':<34}{'p50 ms':>9}{'p99 ms':>9}{'p50 / baseline':>16}"
    print(head)
    print("-" * len(head))
    for label, (p50, p99) in table:
        print(f"{label:<34}{p50:>9.2f}{p99:>9.2f}{p50 / base:>15.1f}x")


if __name__ == "__main__":
    main()
