"""Matrix factorisation baseline: implicit's ALS (Hu, Koren & Volinsky 2008), CPU build.

Scores are computed here from implicit's learned factors with numpy rather than through
``model.recommend`` so exclusion, masking of unscoreable items and tie-breaking match the
other baselines exactly.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from shoprec.evaluation.baselines._matrix import (
    InteractionMatrix,
    build_matrix,
    exclude_cols,
    l2_normalise_rows,
    top_k,
)
from shoprec.evaluation.interactions import Interaction
from shoprec.evaluation.method import ItemFeatures, Scored


class ALS:
    """Weighted ALS on binary purchases; items never bought in training are masked (their
    factors are only the regulariser's zero, not knowledge)."""

    can_score_cold_items = False
    can_score_cold_users = False

    def __init__(
        self,
        factors: int = 32,
        regularization: float = 0.05,
        alpha: float = 10.0,
        iterations: int = 15,
        seed: int = 0,
        num_threads: int = 1,
    ) -> None:
        self.params = dict(factors=factors, regularization=regularization, alpha=alpha, iterations=iterations)
        self.seed = seed
        self.num_threads = num_threads
        self._m: InteractionMatrix | None = None
        self._user_factors = np.empty((0, 0), dtype=np.float32)
        self._item_factors = np.empty((0, 0), dtype=np.float32)
        self._item_unit = np.empty((0, 0), dtype=np.float32)
        self._mask = np.empty(0)

    def fit(self, train: Sequence[Interaction], item_ids: Sequence[str], item_features: ItemFeatures | None = None) -> None:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        self._m = build_matrix(train, item_ids)
        # implicit warns (and slows down) when BLAS also multithreads inside its own threads;
        # it checks when the model is built, so both steps run under the limit.
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                **self.params, random_state=self.seed, num_threads=self.num_threads, calculate_training_loss=False
            )
            model.fit(self._m.matrix, show_progress=False)
        self._user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self._item_factors = np.asarray(model.item_factors, dtype=np.float32)
        self._item_unit = l2_normalise_rows(self._item_factors)
        self._mask = np.where(self._m.warm_items, 0.0, -np.inf)

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = frozenset()) -> Scored:
        if self._m is None:
            raise RuntimeError("fit first")
        row = self._m.user_row.get(user_id)
        if row is None:
            return []
        scores = self._item_factors @ self._user_factors[row] + self._mask
        return top_k(scores, self._m.item_ids, k, exclude_cols(self._m.item_col, exclude))

    def similar_or_complementary(self, item_id: str, k: int) -> Scored | None:
        """Cosine between item factors, as ``implicit``'s ``similar_items`` does."""
        if self._m is None:
            raise RuntimeError("fit first")
        col = self._m.item_col.get(item_id)
        if col is None or not self._m.warm_items[col]:
            return []
        scores = self._item_unit @ self._item_unit[col] + self._mask
        return top_k(scores, self._m.item_ids, k, np.array([col]))
