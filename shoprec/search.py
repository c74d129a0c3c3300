"""Text and image search: dense and lexical result lists fused by reciprocal rank.

Fusion is done here over plain result lists (not inside Qdrant) so both backends answer
identically, including qdrant-client's local mode which lacks server-side fusion.
"""

from __future__ import annotations

from collections.abc import Sequence

from shoprec.indexing.store import Hit

RRF_K = 60


def rrf_fuse(result_lists: Sequence[Sequence[Hit]], k: int, weights: Sequence[float] | None = None) -> list[Hit]:
    """Reciprocal rank fusion: robust to the very different score scales of BM25 and cosine."""
    weights = weights or [1.0] * len(result_lists)
    fused: dict[str, float] = {}
    first_seen: dict[str, Hit] = {}
    for hits, weight in zip(result_lists, weights):
        for rank, hit in enumerate(hits):
            fused[hit.item_id] = fused.get(hit.item_id, 0.0) + weight / (RRF_K + rank + 1)
            first_seen.setdefault(hit.item_id, hit)
    ranked = sorted(fused.items(), key=lambda kv: kv[1], reverse=True)[:k]
    return [Hit(item_id, score, first_seen[item_id].payload) for item_id, score in ranked]
