"""Content kNN: a user is the mean of their purchases' content vectors; rank by cosine.

It needs no co-purchases, so it is the reference any content-aware method (shoprec's
encoders included) must beat on cold items, where CF baselines cannot answer at all.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from shoprec.evaluation.baselines._matrix import (
    InteractionMatrix,
    build_matrix,
    dense_features,
    exclude_cols,
    l2_normalise_rows,
    top_k,
)
from shoprec.evaluation.interactions import Interaction
from shoprec.evaluation.method import ItemFeatures, Scored


class ContentKNN:
    """Cosine between a user's mean (unit) content vector and every catalogue item.

    A user with no training purchases has no profile, so cold users are out of reach.
    """

    can_score_cold_items = True
    can_score_cold_users = False

    def __init__(self) -> None:
        self._m: InteractionMatrix | None = None
        self._unit = np.empty((0, 0), dtype=np.float32)

    def fit(self, train: Sequence[Interaction], item_ids: Sequence[str], item_features: ItemFeatures | None = None) -> None:
        if item_features is None:
            raise ValueError("ContentKNN needs item_features (one content vector per catalogue item)")
        self._m = build_matrix(train, item_ids)
        self._unit = l2_normalise_rows(dense_features(item_features, len(item_ids)))

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = frozenset()) -> Scored:
        if self._m is None:
            raise RuntimeError("fit first")
        seen = self._m.seen_cols(user_id)
        if seen.size == 0:
            return []
        profile = self._unit[seen].mean(axis=0)
        norm = float(np.linalg.norm(profile))
        if norm == 0.0:
            return []
        scores = self._unit @ (profile / norm)
        return top_k(scores, self._m.item_ids, k, exclude_cols(self._m.item_col, exclude))

    def similar_or_complementary(self, item_id: str, k: int) -> Scored | None:
        """Nearest items by content: similar, not complementary, which the bought-together
        numbers then show."""
        if self._m is None:
            raise RuntimeError("fit first")
        col = self._m.item_col.get(item_id)
        if col is None:
            return []
        scores = self._unit @ self._unit[col]
        return top_k(scores, self._m.item_ids, k, np.array([col]))
