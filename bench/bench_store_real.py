"""HNSW on a real indexed catalog: recall@k against exact search, and latency of both.

Random vectors are HNSW's worst case (bench_store.py); real embeddings cluster. This opens an
existing store (e.g. the H&M catalog indexed by `shoprec index`), takes ``--queries`` stored
items as queries and compares Qdrant's answer with a numpy brute-force top-k over every stored
vector of the same name, measured in the same run.

    python bench/bench_store_real.py --store /tmp/hm-store
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shoprec.config import Settings  # noqa: E402
from shoprec.indexing.factory import open_store  # noqa: E402


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    store = open_store(Settings(store=args.store))
    hits = list(store.scroll(fields=["item_id"], with_vectors=True))
    print(f"{len(hits)} items in {args.store}; {args.queries} queries, top-{args.k}")
    print(f"{'vector':<8}{'recall':>8}{'qdrant p50':>12}{'p99':>8}{'numpy p50':>12}{'p99':>8}  ms")
    rng = np.random.default_rng(args.seed)
    for name in ("text", "image", "joint"):
        rows = [h for h in hits if name in h.vectors]
        ids = np.array([h.item_id for h in rows])
        matrix = np.stack([h.vectors[name] for h in rows]).astype(np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        picks = rng.choice(len(rows), size=min(args.queries, len(rows)), replace=False)
        found, exact, t_q, t_np = 0, 0, [], []
        for i in picks:
            q = matrix[i]
            start = time.perf_counter()
            got = [h.item_id for h in store.search(name, q, args.k)]
            t_q.append(time.perf_counter() - start)
            start = time.perf_counter()
            scores = matrix @ q
            top = ids[np.argpartition(-scores, args.k)[: args.k]]
            t_np.append(time.perf_counter() - start)
            found += len(set(got) & set(top))
            exact += args.k
        print(f"{name:<8}{found / exact:>8.3f}{pct(t_q, 50):>12.2f}{pct(t_q, 99):>8.2f}"
              f"{pct(t_np, 50):>12.2f}{pct(t_np, 99):>8.2f}")
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
