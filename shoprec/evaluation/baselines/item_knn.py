"""Item-kNN collaborative filtering: cosine between items' buyer vectors.

The classic "people who bought this also bought" signal, written in scipy so every step is
visible: S = normalise(X)^T normalise(X), keep each item's top neighbours, score a user by
summing the neighbour rows of what they bought.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import scipy.sparse as sp

from shoprec.evaluation.baselines._matrix import InteractionMatrix, build_matrix, exclude_cols, top_k
from shoprec.evaluation.interactions import Interaction
from shoprec.evaluation.method import ItemFeatures, Scored


def cosine_item_similarity(matrix: sp.csr_matrix, neighbours: int) -> sp.csr_matrix:
    """Items x items cosine of the columns of ``matrix``, diagonal removed, top ``neighbours``
    per row kept (the usual kNN pruning, which also bounds memory)."""
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=0)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    normed = (matrix @ sp.diags(inv.astype(np.float32))).tocsc()
    sim = (normed.T @ normed).tocsr()
    sim.setdiag(0.0)
    sim.eliminate_zeros()
    rows, cols, vals = [], [], []
    for r in range(sim.shape[0]):
        start, end = sim.indptr[r], sim.indptr[r + 1]
        if start == end:
            continue
        data = sim.data[start:end]
        idx = sim.indices[start:end]
        if data.size > neighbours:
            # Stable pick: highest similarity, then lowest column, so pruning is reproducible.
            keep = np.lexsort((idx, -data))[:neighbours]
            data, idx = data[keep], idx[keep]
        rows.append(np.full(idx.size, r))
        cols.append(idx)
        vals.append(data)
    if not rows:
        return sp.csr_matrix(sim.shape, dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=sim.shape, dtype=np.float32
    )


class ItemKNN:
    """Item-based CF over training purchases.

    Only items with positive evidence are returned (a list may be shorter than k): padding
    with arbitrary zero-score items would credit the method with guesses it did not make.
    """

    can_score_cold_items = False
    can_score_cold_users = False

    def __init__(self, neighbours: int = 100) -> None:
        if neighbours < 1:
            raise ValueError("neighbours must be >= 1")
        self.neighbours = neighbours
        self._m: InteractionMatrix | None = None
        self._sim = sp.csr_matrix((0, 0))

    def fit(self, train: Sequence[Interaction], item_ids: Sequence[str], item_features: ItemFeatures | None = None) -> None:
        self._m = build_matrix(train, item_ids)
        self._sim = cosine_item_similarity(self._m.matrix, self.neighbours)

    def _positive_top(self, scores: np.ndarray, k: int, exclude: np.ndarray) -> Scored:
        assert self._m is not None
        scores = np.where(scores > 0, scores, -np.inf)
        return top_k(scores, self._m.item_ids, k, exclude)

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = frozenset()) -> Scored:
        if self._m is None:
            raise RuntimeError("fit first")
        seen = self._m.seen_cols(user_id)
        if seen.size == 0:
            return []
        scores = np.asarray(self._sim[seen].sum(axis=0)).ravel()
        return self._positive_top(scores, k, exclude_cols(self._m.item_col, exclude))

    def similar_or_complementary(self, item_id: str, k: int) -> Scored | None:
        if self._m is None:
            raise RuntimeError("fit first")
        col = self._m.item_col.get(item_id)
        if col is None:
            return []
        scores = self._sim[col].toarray().ravel()
        return self._positive_top(scores, k, np.array([col]))
