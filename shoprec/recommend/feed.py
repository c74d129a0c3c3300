"""Cold start and fallbacks: the feed of a user without history, trending, new arrivals.

A shopper with history is served by ranked_feed.py. One without history who is looking at an
item (``context_item``) gets items like it, nudged by popularity and optionally diversified with
MMR; without a usable context item they get trending, then the newest items. Each item's reason
names the signal that ranked it: the context item it resembles, trending, or a new arrival.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..config import Settings
from ..indexing.store import Hit, ItemFilter, VectorStore
from ..results import Recommendation
from . import reasons
from .filters import matcher, narrowed
from .popularity import Popularity
from .rerank import blend, mmr, unit


class Feed:
    def __init__(self, store: VectorStore, settings: Settings, vector: str, popularity: Popularity,
                 now: Callable[[], float]) -> None:
        self.store = store
        self.settings = settings
        self.popularity = popularity
        self.now = now
        self.vector = vector

    def _blend_weights(self) -> dict[str, float]:
        s = self.settings
        return {"similarity": s.blend_similarity, "popularity": s.blend_popularity}

    def _order(self, total: np.ndarray, hits: list[Hit], k: int, diversity: float) -> np.ndarray:
        if diversity > 0 and all(self.vector in h.vectors for h in hits):
            scale = sum(w for w in self._blend_weights().values() if w > 0) or 1.0
            return mmr(total / scale, np.vstack([h.vectors[self.vector] for h in hits]), k, diversity)
        return np.argsort(-total, kind="stable")[:k]

    def cold_start(self, k: int, f: ItemFilter, ctx: Hit | None, diversity: float) -> list[Recommendation]:
        """No positive history: items like the context item ``ctx`` (retrieved with vectors;
        nudged by popularity), else trending, then the newest items. ``f`` must already exclude
        whatever the caller does not want back (the context item itself, dislikes)."""
        ctx_vec = unit(ctx.vectors.get(self.vector)) if ctx is not None else None
        if ctx is not None and ctx_vec is not None:
            hits = self.store.search(self.vector, ctx_vec, max(5 * k, 50), f,
                                     with_vectors=[self.vector] if diversity > 0 else False)
            if hits:
                ids = [h.item_id for h in hits]
                pop = np.log1p(self.popularity.decayed(self.popularity.log_scores(ids), self.now()))
                total, parts = blend({"similarity": np.array([h.score for h in hits]), "popularity": pop},
                                     self._blend_weights())
                order = self._order(total, hits, k, diversity)
                anchor = reasons.title(ctx.payload, ctx.item_id)
                return [Recommendation.from_payload(
                            hits[i].item_id, float(total[i]), hits[i].payload,
                            reasons.trending(hits[i].payload)
                            if parts["popularity"][i] > parts["similarity"][i] else reasons.similar_to(anchor))
                        for i in order]
        out = self.trending(k, f)
        if len(out) < k:
            rest = narrowed(f, exclude=[r.id for r in out])
            if rest is not None:
                out += self.new_arrivals(k - len(out), rest)
        return out

    def trending(self, k: int, f: ItemFilter) -> list[Recommendation]:
        """Items by time-decayed popularity that pass ``f``, checked on their live payloads
        (an item's price or stock may have changed since its events)."""
        ok = matcher(f)
        now = self.now()
        out: list[Recommendation] = []
        page, offset = max(4 * k, 64), 0
        while len(out) < k:
            rows = self.popularity.top(page, offset, f.categories)
            offset += len(rows)
            pops = dict(rows)
            for h in self.store.retrieve([r[0] for r in rows]):
                if ok(h.item_id, h.payload):
                    score = float(self.popularity.decayed(np.float64(pops[h.item_id]), now))
                    out.append(Recommendation.from_payload(h.item_id, score, h.payload, reasons.trending(h.payload)))
                    if len(out) == k:
                        break
            if len(rows) < page:
                break
            page = min(2 * page, 2048)  # a narrow filter: widen the pages rather than crawl
        return out

    def new_arrivals(self, k: int, f: ItemFilter) -> list[Recommendation]:
        """Newest items (by ``created_at``) to fill a feed that behaviour cannot fill."""
        fields = ["title", "category", "price", "image", "created_at"]
        hits = list(self.store.scroll(f, fields=fields))
        hits.sort(key=lambda h: reasons.created(h.payload) or float("-inf"), reverse=True)
        now = self.now()
        days = self.settings.new_arrival_days
        return [Recommendation.from_payload(
                    h.item_id, 0.0, h.payload,
                    reasons.NEW_ARRIVAL if reasons.is_new(h.payload, now, days) else reasons.IN_CATALOG)
                for h in hits[:k]]
