"""How fast is the embedded store, and is HNSW worth building?

Fills an EdgeStore with N random normalised 512-d "joint" vectors, then times top-10 queries
before and after ``optimize()`` (plain scan vs HNSW), beside a numpy brute-force top-10 over
the same matrix in the same run, so the ratio says something on any machine. Recall@10 is
measured against that exact numpy answer.

    python bench/bench_store.py --n 20000
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

try:
    import shoprec  # noqa: F401
except ModuleNotFoundError:  # run from a checkout without `pip install -e .`
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shoprec.indexing.edge import EdgeStore
from shoprec.indexing.store import ItemFilter, ItemPoint

CATEGORIES = ("shoes", "bags", "hats", "coats", "toys")
FILTER = ItemFilter(categories=["shoes", "bags"], in_stock=True)  # ~20% of items


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def clustered_rows(rng: np.random.Generator, centroids: np.ndarray, n: int, spread: float) -> np.ndarray:
    """Points around random centroids: closer to real embeddings (which cluster by product
    type) than uniform noise, which is HNSW's worst case in 512-d."""
    x = centroids[rng.integers(0, len(centroids), n)]
    x = x + spread * unit_rows(rng, n, centroids.shape[1])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def percentiles(fn: Callable[[np.ndarray], list[str]], queries: np.ndarray, warmup: int = 5
                ) -> tuple[float, float, list[list[str]]]:
    """p50 and p99 latency in ms of ``fn`` over ``queries``, and its answers."""
    for q in queries[:warmup]:
        fn(q)
    times, answers = [], []
    for q in queries:
        t0 = time.perf_counter()
        answers.append(fn(q))
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
    return statistics.median(times), p99, answers


def recall(got: list[list[str]], exact: list[list[str]]) -> float:
    return float(np.mean([len(set(g) & set(e)) / max(len(e), 1) for g, e in zip(got, exact)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="items to index")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--batch", type=int, default=1000, help="items per upsert() call")
    ap.add_argument("--path", type=Path, default=None, help="store folder (default: a temp dir, removed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hnsw-ef", default="", help="extra comma-separated hnsw_ef values to time after optimize")
    ap.add_argument("--data", choices=("random", "clustered"), default="random",
                    help="uniform random unit vectors, or 200 clusters (more like real embeddings)")
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    n, k = args.n, args.k
    if args.data == "random":
        x = unit_rows(rng, n, args.dim)
        queries = unit_rows(rng, args.queries, args.dim)
    else:
        centroids = unit_rows(rng, 200, args.dim)
        x = clustered_rows(rng, centroids, n, spread=1.0)
        queries = clustered_rows(rng, centroids, args.queries, spread=1.0)
    item_ids = [f"item{i}" for i in range(n)]
    category = np.array([CATEGORIES[i % len(CATEGORIES)] for i in range(n)])
    in_stock = rng.random(n) < 0.5
    mask = np.isin(category, FILTER.categories) & in_stock

    root = args.path or Path(tempfile.mkdtemp(prefix="bench-store-"))
    store = EdgeStore(root)
    try:
        store.ensure_collection({"joint": args.dim})
        t0 = time.perf_counter()
        for start in range(0, n, args.batch):
            stop = min(n, start + args.batch)
            store.upsert([
                ItemPoint(item_ids[i], {"joint": x[i]},
                          {"category": str(category[i]), "price": float(i % 500), "in_stock": int(in_stock[i])})
                for i in range(start, stop)
            ])
        upsert_s = time.perf_counter() - t0

        def numpy_top(q: np.ndarray, rows: np.ndarray | None = None) -> list[str]:
            mat = x if rows is None else x[rows]
            sims = mat @ q
            top = np.argpartition(-sims, k)[:k]
            top = top[np.argsort(-sims[top])]
            idx = top if rows is None else rows[top]
            return [item_ids[i] for i in idx]

        rows_f = np.flatnonzero(mask)
        np50, np99, exact = percentiles(numpy_top, queries)
        npf50, npf99, exact_f = percentiles(lambda q: numpy_top(q, rows_f), queries)

        def edge(flt: ItemFilter | None) -> Callable[[np.ndarray], list[str]]:
            return lambda q: [h.item_id for h in store.search("joint", q, k, flt=flt)]

        table: list[tuple[str, float, float, float, float]] = []

        def measure(label: str) -> None:
            p50, p99, got = percentiles(edge(None), queries)
            table.append((label, p50, p99, p50 / np50, recall(got, exact)))
            p50, p99, got = percentiles(edge(FILTER), queries)
            table.append((label + " +filter", p50, p99, p50 / npf50, recall(got, exact_f)))

        measure("edge, before optimize")
        t0 = time.perf_counter()
        store.optimize()
        optimize_s = time.perf_counter() - t0
        measure("edge, after optimize")
        for ef in [int(e) for e in args.hnsw_ef.split(",") if e.strip()]:
            store.hnsw_ef = ef
            measure(f"edge, HNSW ef={ef}")
        store.hnsw_ef = None
        table.append(("numpy brute force", np50, np99, 1.0, 1.0))
        table.append(("numpy brute force +filter", npf50, npf99, 1.0, 1.0))
    finally:
        store.close()
        if args.path is None:
            shutil.rmtree(root, ignore_errors=True)

    print(f"\nEdgeStore: {n:,} {args.data} items x {args.dim}-d, top-{k}, {args.queries} queries, "
          f"{os.cpu_count()} CPUs; filter = {FILTER.categories} & in_stock ({mask.mean():.0%} of items)")
    print(f"upsert: {n / upsert_s:,.0f} items/s ({upsert_s:.1f} s, batches of {args.batch}, flush per batch)")
    print(f"optimize (HNSW build): {optimize_s:.1f} s\n")
    head = f"{'query path':<30}{'p50 ms':>9}{'p99 ms':>9}{'p50 / numpy':>13}{'recall@' + str(k):>11}"
    print(head)
    print("-" * len(head))
    for label, p50, p99, ratio, rec in table:
        print(f"{label:<30}{p50:>9.2f}{p99:>9.2f}{ratio:>12.2f}x{rec:>11.3f}")


if __name__ == "__main__":
    main()
