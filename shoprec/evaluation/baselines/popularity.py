"""Popularity baselines: the floor every personalised method has to beat.

All-time and recent popularity share one implementation; "recent" only narrows the training
window to the last N days before the training data ends, which is what tracks a fashion
catalogue's season.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import timedelta

import numpy as np

from shoprec.evaluation.baselines._matrix import exclude_cols, top_k
from shoprec.evaluation.interactions import Interaction
from shoprec.evaluation.method import ItemFeatures, Scored


class Popularity:
    """Rank by number of distinct buyers in training (optionally only the last ``days``).

    Items nobody bought in the window score 0 and still rank (last, in catalogue order):
    with a window, an item sold only earlier is "not popular now", not unscoreable. Items
    never bought in training at all are unscoreable and never returned.
    """

    can_score_cold_items = False
    can_score_cold_users = True

    def __init__(self, days: int | None = None) -> None:
        if days is not None and days < 1:
            raise ValueError("days must be >= 1")
        self.days = days
        self._item_ids: tuple[str, ...] = ()
        self._item_col: dict[str, int] = {}
        self._scores = np.empty(0)

    def fit(self, train: Sequence[Interaction], item_ids: Sequence[str], item_features: ItemFeatures | None = None) -> None:
        self._item_ids = tuple(item_ids)
        self._item_col = {item: col for col, item in enumerate(self._item_ids)}
        window = list(train)
        if self.days is not None and window:
            end = max(e.ts for e in window)
            start = end - timedelta(days=self.days)
            window = [e for e in window if e.ts > start]
        buyers: dict[str, set[str]] = {}
        for e in window:
            buyers.setdefault(e.item_id, set()).add(e.user_id)
        scores = np.full(len(self._item_ids), -np.inf)
        for e in train:  # anything bought in training is scoreable
            col = self._item_col.get(e.item_id)
            if col is not None:
                scores[col] = 0.0
        for item, users in buyers.items():
            col = self._item_col.get(item)
            if col is not None:
                scores[col] = float(len(users))
        self._scores = scores

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = frozenset()) -> Scored:
        return top_k(self._scores, self._item_ids, k, exclude_cols(self._item_col, exclude))

    def similar_or_complementary(self, item_id: str, k: int) -> Scored | None:
        """The same best-sellers whatever the item: the bought-together floor."""
        return top_k(self._scores, self._item_ids, k, exclude_cols(self._item_col, {item_id}))
