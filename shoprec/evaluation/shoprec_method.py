"""shoprec's own recommender under the evaluation's ``Method`` shape.

It runs the real path: a ``RecommendEngine`` over an already indexed store (the whole
catalogue is indexed before anyone buys, as in a shop), fed the training events only, through
a throw-away events database and ranker folder so the evaluation never touches a shop's real
history or model. After ingesting, it trains its ranker on those events exactly as
``shoprec train`` would (time self-split inside the training events); the evaluation's test
period is never seen by it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from shoprec.config import Settings
from shoprec.evaluation.interactions import Interaction
from shoprec.evaluation.method import ItemFeatures, Scored
from shoprec.evaluation.ncf import NCF
from shoprec.indexing.store import ItemFilter, VectorStore
from shoprec.recommend.engine import RecommendEngine
from shoprec.recommend.events import Event


def _events(interactions: Sequence[Interaction]) -> list[Event]:
    return [Event(user_id=i.user_id, item_id=i.item_id, type=i.type, ts=i.ts, session_id=i.session_id, price=i.price)
            for i in interactions]


class ShoprecMethod:
    can_score_cold_items = True   # content vectors: new items are recommendable at once
    can_score_cold_users = True   # trending / segment / context cold start

    def __init__(self, store: VectorStore, settings: Settings, train_ranker: bool = True,
                 users_file: Path | None = None) -> None:
        self.store = store
        self._tmp = tempfile.TemporaryDirectory(prefix="shoprec-eval-")
        self.settings = settings.model_copy(update={"ranker_dir": Path(self._tmp.name) / "ranker",
                                                    "ranker_retrain_events": 0})
        self.train_ranker = train_ranker
        self.users_file = users_file
        self.engine: RecommendEngine | None = None
        self.training: dict[str, Any] | None = None
        self._offered: set[str] | None = None

    def fit(self, train: Sequence[Interaction], item_ids: Sequence[str],
            item_features: ItemFeatures | None = None) -> None:
        if self.engine is not None:
            self.engine.close()
        events_db = Path(self._tmp.name) / "events.sqlite"
        events_db.unlink(missing_ok=True)
        self.engine = RecommendEngine(self.store, self.settings, events_path=events_db)
        if self.users_file is not None:
            self.engine.add_users_file(self.users_file)
        self._offered = set(item_ids)
        self.engine.offer_only(self._offered)
        report = self.engine.ingest(_events(train))
        if report.errors:
            raise ValueError(f"{len(report.errors)} training events rejected, first: {report.errors[0]}")
        if self.train_ranker:
            result = self.engine.train_ranker()
            self.training = {"serves": result.serves, "reason": result.reason, **result.card}

    def update(self, events: Sequence[Interaction], new_items: Sequence[str]) -> None:
        """Replay: a day's events arrive; the items they introduce go on offer."""
        assert self.engine is not None, "fit first"
        self.engine.ingest(_events(events))
        if self._offered is not None:
            self._offered.update(new_items)
            self.engine.offer_only(self._offered)

    def offer_only(self, item_ids: Collection[str] | None) -> None:
        assert self.engine is not None, "fit first"
        self._offered = None if item_ids is None else set(item_ids)
        self.engine.offer_only(self._offered)

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = frozenset()) -> Scored:
        assert self.engine is not None, "fit first"
        flt = ItemFilter(exclude_ids=list(exclude)) if exclude else None
        results = self.engine.recommend_user(user_id, k=k, flt=flt)
        if self._offered is not None:  # the cold-start path (trending) is not narrowed by offer_only
            results = [r for r in results if r.id in self._offered]
        return [(r.id, r.score) for r in results]

    def recommend_at(self, user_id: str, k: int, at: datetime, exclude: Collection[str] = frozenset()) -> Scored:
        """The feed as the shop would have served it at ``at`` (leave-last: the user's last visit
        is long before the newest event; popularity and co-purchases from after it are not used)."""
        assert self.engine is not None, "fit first"
        flt = ItemFilter(exclude_ids=list(exclude)) if exclude else None
        results = self.engine.recommend_user(user_id, k=k, flt=flt, as_of=at.timestamp())
        if self._offered is not None:
            results = [r for r in results if r.id in self._offered]
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

    def recommend_at(self, user_id: str, k: int, at: datetime, exclude: Collection[str] = frozenset()) -> Scored:
        return self._rerank(user_id, k, super().recommend_at(user_id, max(k, self.candidates), at, exclude))

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = frozenset()) -> Scored:
        return self._rerank(user_id, k, super().recommend(user_id, max(k, self.candidates), exclude))

    def _rerank(self, user_id: str, k: int, pool: Scored) -> Scored:
        if not pool:
            return []
        scores = self.ncf.score(user_id, [item for item, _ in pool])
        if np.all(np.isnan(scores)):
            return pool[:k]  # a user NCF never saw: keep shoprec's order
        # Unscoreable candidates sink below scored ones but keep shoprec's order among themselves.
        order = sorted(range(len(pool)), key=lambda i: (np.isnan(scores[i]), -np.nan_to_num(scores[i]), i))
        return [(pool[i][0], float(np.nan_to_num(scores[i], nan=-1e9))) for i in order[:k]]
