"""Ranking metrics as pure functions over ranked id lists and relevant id sets.

Binary relevance throughout: a purchase either happened or not, and purchase counts in
sparse shop data (median article bought once) carry little graded signal. Averaging over
users is the runner's job, so every function here scores one list (or one batch of lists
for the catalogue-level measures) and can be checked by hand.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def recall_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """|top-k ∩ relevant| / |relevant|; 0.0 when nothing is relevant.

    Dividing by |relevant| (not min(|relevant|, k)) keeps the usual definition, so numbers
    compare with published baselines; NDCG carries the k-capped ideal instead.
    """
    _check_k(k)
    if not relevant:
        return 0.0
    rel = set(relevant)
    hits = len(rel.intersection(ranked[:k]))
    return hits / len(rel)


def dcg_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Sum over hits of 1 / log2(rank + 1), rank counted from 1; a repeated id counts once."""
    _check_k(k)
    rel = set(relevant)
    seen: set[str] = set()
    total = 0.0
    for rank, item in enumerate(ranked[:k], start=1):
        if item in rel and item not in seen:
            total += 1.0 / math.log2(rank + 1)
        seen.add(item)
    return total


def ndcg_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """DCG@k over the ideal DCG of min(|relevant|, k) hits at the top; 0.0 when nothing is relevant."""
    _check_k(k)
    n_ideal = min(len(set(relevant)), k)
    if n_ideal == 0:
        return 0.0
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, n_ideal + 1))
    return dcg_at_k(ranked, relevant, k) / ideal


def reciprocal_rank(ranked: Sequence[str], relevant: Collection[str], k: int | None = None) -> float:
    """1 / rank of the first relevant id (within the top k when given), else 0.0.

    Mean over users is MRR; cutting at k keeps it comparable across methods that return
    lists of different lengths.
    """
    rel = set(relevant)
    limit = len(ranked) if k is None else min(k, len(ranked))
    for rank, item in enumerate(ranked[:limit], start=1):
        if item in rel:
            return 1.0 / rank
    return 0.0


def hit_at_k(ranked: Sequence[str], target: str, k: int) -> float:
    """1.0 when ``target`` is in the top k: one held-out bought-together pair (a, b) scored
    on the list of items recommended for a."""
    _check_k(k)
    return 1.0 if target in ranked[:k] else 0.0


def hit_rate(results: Iterable[tuple[Sequence[str], str]], k: int) -> float:
    """Share of (ranked list, target) pairs whose target is in the top k; 0.0 for no pairs."""
    _check_k(k)
    scores = [hit_at_k(ranked, target, k) for ranked, target in results]
    return float(np.mean(scores)) if scores else 0.0


def catalogue_coverage(lists: Iterable[Sequence[str]], catalogue_size: int, k: int) -> float:
    """Share of the catalogue that appears in at least one top-k list.

    Popularity baselines score well on accuracy while showing a few hundred items; coverage
    makes that visible next to recall.
    """
    _check_k(k)
    if catalogue_size < 1:
        raise ValueError("catalogue_size must be >= 1")
    shown: set[str] = set()
    for ranked in lists:
        shown.update(ranked[:k])
    return len(shown) / catalogue_size


def novelty(lists: Iterable[Sequence[str]], counts: Mapping[str, int], n_users: int, k: int) -> float:
    """Mean self-information of the recommended items over all top-k lists (items pooled).

    ``counts`` maps item -> number of training users who bought it; items missing from it
    count 0. p(i) = (count + 1) / (n_users + 1): the +1 keeps items nobody bought in
    training (cold items) finite, at the largest value, which is what novelty should say
    about them. Higher means less obvious recommendations.
    """
    if n_users < 0:
        raise ValueError("n_users must be >= 0")
    _check_k(k)
    denom = n_users + 1
    values = [
        -math.log2((counts.get(item, 0) + 1) / denom)
        for ranked in lists
        for item in ranked[:k]
    ]
    return float(np.mean(values)) if values else 0.0
