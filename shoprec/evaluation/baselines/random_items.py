"""Random items: the floor of the items-cold protocol, where popularity has nothing to say."""

from __future__ import annotations

import zlib
from collections.abc import Collection, Sequence

import numpy as np

from shoprec.evaluation.interactions import Interaction
from shoprec.evaluation.method import ItemFeatures, Scored


class RandomItems:
    can_score_cold_items = True
    can_score_cold_users = True

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._item_ids: tuple[str, ...] = ()
        self._offered: tuple[str, ...] | None = None

    def fit(self, train: Sequence[Interaction], item_ids: Sequence[str], item_features: ItemFeatures | None = None) -> None:
        self._item_ids = tuple(item_ids)

    def offer_only(self, item_ids: Collection[str] | None) -> None:
        self._offered = None if item_ids is None else tuple(i for i in self._item_ids if i in set(item_ids))

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = frozenset()) -> Scored:
        pool = [i for i in (self._offered if self._offered is not None else self._item_ids) if i not in exclude]
        rng = np.random.default_rng([self.seed, zlib.crc32(user_id.encode("utf-8"))])  # stable per user
        picked = rng.permutation(len(pool))[:k]
        return [(pool[i], float(k - r)) for r, i in enumerate(picked)]

    def similar_or_complementary(self, item_id: str, k: int) -> Scored | None:
        return None
