"""shoprec's own recommender under the evaluation's ``Method`` shape.

It runs the real path: a ``RecommendEngine`` over an already indexed store (the whole
catalogue is indexed before anyone buys, as in a shop), fed the training events only, through
a throw-away events database so the evaluation never touches a shop's real history.
"""

from __future__ import annotations

import tempfile
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from shoprec.config import Settings
from shoprec.evaluation.interactions import Interaction
from shoprec.evaluation.method import ItemFeatures, Scored
from shoprec.evaluation.ncf import NCF
from shoprec.indexing.store import ItemFilter, VectorStore
from shoprec.recommend.engine import RecommendEngine
from shoprec.recommend.events import Event


class ShoprecMethod:
    can_score_cold_items = True   # content vectors: new items are recommendable at once
    can_score_cold_users = True   # trending / context cold start

    def __init__(self, store: VectorStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._tmp = tempfile.TemporaryDirectory(prefix="shoprec-eval-")
        self.engine: RecommendEngine | None = None

    def fit(self, train: Sequence[Interaction], item_ids: Sequence[str],
            item_features: ItemFeatures | None = None) -> None:
        if self.engine is not None:
            self.engine.close()
        self.engine = RecommendEngine(self.store, self.settings, events_path=Path(self._tmp.name) / "events.sqlite")
        report = self.engine.ingest(
            Event(user_id=i.user_id, item_id=i.item_id, type=i.type, ts=i.ts, session_id=i.session_id, price=i.price)
            for i in train
        )
        if report.errors:
            raise ValueError(f"{len(report.errors)} training events rejected, first: {report.errors[0]}")

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = frozenset()) -> Scored:
        assert self.engine is not None, "fit first"
        flt = ItemFilter(exclude_ids=list(exclude)) if exclude else None
        results = self.engine.recommend_user(user_id, k=k, exclude_purchased=True, flt=flt)
        return [(r.id, r.score) for r in results]

    def similar_or_complementary(self, item_id: str, k: int) -> Scored | None:
        assert self.engine is not None, "fit first"
        return [(r.id, r.score) for r in self.engine.complementary([item_id], k=k)]

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self._tmp.cleanup()


class ShoprecNCFRerank(ShoprecMethod):
    """shoprec's candidates reranked by the NCF model (with content features): the "seed's
    neural model" as a reranker, kept out of the default path unless it wins on NDCG@10."""

    def __init__(self, store: VectorStore, settings: Settings, candidates: int = 100, seed: int = 0) -> None:
        super().__init__(store, settings)
        self.candidates = candidates
        self.ncf = NCF(seed=seed)

    def fit(self, train: Sequence[Interaction], item_ids: Sequence[str],
            item_features: ItemFeatures | None = None) -> None:
        super().fit(train, item_ids, item_features)
        self.ncf.fit(train, item_ids, item_features)

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = frozenset()) -> Scored:
        pool = super().recommend(user_id, max(k, self.candidates), exclude)
        if not pool:
            return []
        scores = self.ncf.score(user_id, [item for item, _ in pool])
        if np.all(np.isnan(scores)):
            return pool[:k]  # a user NCF never saw: keep shoprec's order
        # Unscoreable candidates sink below scored ones but keep shoprec's order among themselves.
        order = sorted(range(len(pool)), key=lambda i: (np.isnan(scores[i]), -np.nan_to_num(scores[i]), i))
        return [(pool[i][0], float(np.nan_to_num(scores[i], nan=-1e9))) for i in order[:k]]
