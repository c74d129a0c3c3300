"""Blend candidate signals and, optionally, diversify with MMR.

Signals live on different scales (cosine, neighbour votes, decayed counts), so each is
min-max normalised over the candidate set before the ``blend_*`` weights apply: the weights
then mean "how much this signal may reorder the list", whatever the data's scale.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def unit(v: np.ndarray | None) -> np.ndarray | None:
    """``v`` scaled to length 1 (float64), or None for a missing or zero vector."""
    if v is None:
        return None
    v = np.asarray(v, dtype=np.float64)
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else None


def minmax(x: np.ndarray) -> np.ndarray:
    """[0, 1] over the candidates; non-finite values count as the minimum. A signal that does
    not vary carries no ranking information: 1 if it is positive everywhere, else 0."""
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.any():
        return np.zeros_like(x)
    lo, hi = x[finite].min(), x[finite].max()
    if hi - lo <= 1e-12:
        return np.where(finite, 1.0 if hi > 0 else 0.0, 0.0)
    return np.where(finite, (x - lo) / (hi - lo), 0.0)


def blend(signals: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Weighted sum of normalised signals, and each signal's contribution (for reasons)."""
    parts = {name: weights.get(name, 0.0) * minmax(values) for name, values in signals.items()}
    n = len(next(iter(signals.values()))) if signals else 0
    total = np.zeros(n) if not parts else np.sum(list(parts.values()), axis=0)
    return total, parts


def mmr(relevance: np.ndarray, vectors: np.ndarray, k: int, diversity: float) -> np.ndarray:
    """Indices of ``k`` candidates chosen greedily by
    ``(1 - diversity) * relevance - diversity * max cosine to those already chosen``.

    ``diversity`` 0 is plain ranking by relevance; 1 picks the most mutually different items.
    Relevance should be on the cosine's scale (a cosine, or a blend scaled into [0, 1]) so the
    two terms trade fairly; it is not re-normalised here, which would zero the last candidate.
    """
    n = len(relevance)
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    rel = np.asarray(relevance, dtype=np.float64)
    if diversity <= 0:
        return np.argsort(-rel, kind="stable")[:k]
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    chosen: list[int] = []
    max_sim = np.full(n, -np.inf)
    available = np.ones(n, dtype=bool)
    for _ in range(k):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        gain = np.where(available, (1 - diversity) * rel - diversity * penalty, -np.inf)
        best = int(np.argmax(gain))
        chosen.append(best)
        available[best] = False
        max_sim = np.maximum(max_sim, unit @ unit[best])
    return np.asarray(chosen, dtype=np.int64)
