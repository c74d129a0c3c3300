"""The personalised feed and its cold start (trending, then new arrivals).

A known user's feed: ANN candidates around their profile vector (a Qdrant recommend query
pushed away from their dislikes), reranked by a blend of that similarity, user-kNN and
popularity, optionally diversified with MMR. Each item's reason names the signal that ranked
it: an item of theirs it resembles, shoppers like them, trending, or a new arrival.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..config import Settings
from ..indexing.store import Hit, ItemFilter, VectorStore
from ..results import Recommendation
from . import reasons
from .cf import Behaviour
from .event_store import EventStore
from .filters import matcher, narrowed
from .popularity import Popularity
from .profiles import ProfileBook
from .rerank import blend, mmr, unit

#: History items a feed result may be explained by.
ANCHORS = 20
#: Below this cosine a history item does not explain a result ("matches your taste" instead).
ANCHOR_MIN_COSINE = 0.5


class Feed:
    def __init__(self, store: VectorStore, settings: Settings, vector: str, events: EventStore,
                 profiles: ProfileBook, popularity: Popularity, behaviour: Callable[[], Behaviour],
                 now: Callable[[], float]) -> None:
        self.store = store
        self.settings = settings
        self.events = events
        self.profiles = profiles
        self.popularity = popularity
        self.behaviour = behaviour
        self.now = now
        self.vector = vector

    def recommend(self, user_id: str, k: int, ctx: Hit | None, exclude_purchased: bool,
                  flt: ItemFilter | None, diversity: float) -> list[Recommendation]:
        """``ctx``: the context item, retrieved with vectors, or None. Excludes the user's
        dislikes, their purchases if asked, and the context item itself."""
        ctx_vec = unit(ctx.vectors.get(self.vector)) if ctx else None
        mine = self.events.user_items(user_id)
        disliked = list(dict.fromkeys(i for i, t, _ in mine if t == "dislike"))
        exclude = list(disliked)
        if exclude_purchased:
            exclude += [i for i, t, _ in mine if t == "purchase"]
        if ctx is not None:
            exclude.append(ctx.item_id)
        f = narrowed(flt, exclude=exclude)
        if f is None:
            return []
        now = self.now()
        sw = self.settings.session_weight
        profile = self.profiles.get(user_id)
        q = None if profile is None else profile.query_vector(now, sw, self.settings.session_timeout_minutes * 60)
        if q is None:
            return self.cold_start(k, f, ctx, ctx_vec, diversity)
        if ctx_vec is not None:
            q = unit((1.0 - sw) * q + sw * ctx_vec)
        negatives = [h.vectors[self.vector] for h in
                     self.store.retrieve(disliked[: self.settings.max_negatives], with_vectors=[self.vector])
                     if self.vector in h.vectors]
        hits = self.store.search(self.vector, q, max(self.settings.candidate_pool, k), f,
                                 negatives=negatives, with_vectors=[self.vector] if diversity > 0 else False)
        hits += self._trending_candidates(q, f, {h.item_id for h in hits})
        if not hits:
            return []
        ids = [h.item_id for h in hits]
        signals = {
            "similarity": np.array([h.score for h in hits]),
            "cf": self.behaviour().user_knn(user_id, ids, self.settings.cf_neighbours),
            "popularity": np.log1p(self.popularity.decayed(self.popularity.log_scores(ids), now)),
        }
        total, parts = blend(signals, self._blend_weights())
        order = self._order(total, hits, k, diversity)
        return self._explain([hits[i] for i in order], {n: p[order] for n, p in parts.items()},
                             signals["popularity"][order], mine, ctx, now)

    def _trending_candidates(self, q: np.ndarray, f: ItemFilter, seen: set[str]) -> list[Hit]:
        """Trending items the ANN pool missed, scored by the same cosine: popularity can only
        rerank what is in the pool, and on sparse shops the best sellers are often far from a
        user's few past items."""
        n = self.settings.trending_candidates
        if n <= 0:
            return []
        ok = matcher(f)
        ids = [item for item, _ in self.popularity.top(n, 0, f.categories) if item not in seen]
        out = []
        for h in self.store.retrieve(ids, with_vectors=[self.vector]):
            v = unit(h.vectors.get(self.vector))
            if v is not None and ok(h.item_id, h.payload):
                out.append(Hit(h.item_id, float(v @ q), h.payload, h.vectors))
        return out

    def _blend_weights(self) -> dict[str, float]:
        s = self.settings
        return {"similarity": s.blend_similarity, "cf": s.blend_cf, "popularity": s.blend_popularity}

    def _order(self, total: np.ndarray, hits: list[Hit], k: int, diversity: float) -> np.ndarray:
        if diversity > 0 and all(self.vector in h.vectors for h in hits):
            scale = sum(w for w in self._blend_weights().values() if w > 0) or 1.0
            return mmr(total / scale, np.vstack([h.vectors[self.vector] for h in hits]), k, diversity)
        return np.argsort(-total, kind="stable")[:k]

    def cold_start(self, k: int, f: ItemFilter, ctx: Hit | None, ctx_vec: np.ndarray | None,
                   diversity: float) -> list[Recommendation]:
        """No positive history: items like the context item (nudged by popularity), else
        trending, then the newest items."""
        if ctx is not None and ctx_vec is not None:
            hits = self.store.search(self.vector, ctx_vec, max(5 * k, 50), f,
                                     with_vectors=[self.vector] if diversity > 0 else False)
            if hits:
                ids = [h.item_id for h in hits]
                pop = np.log1p(self.popularity.decayed(self.popularity.log_scores(ids), self.now()))
                w = self._blend_weights()
                total, parts = blend({"similarity": np.array([h.score for h in hits]), "popularity": pop},
                                     {"similarity": w["similarity"], "popularity": w["popularity"]})
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

    def _explain(self, chosen: list[Hit], parts: dict[str, np.ndarray], pop: np.ndarray,
                 mine: list[tuple[str, str, float]], ctx: Hit | None, now: float) -> list[Recommendation]:
        """Scores and reasons for the chosen feed items, from whichever signal ranked each one."""
        total = np.sum(list(parts.values()), axis=0)
        kinds: dict[str, set[str]] = {}
        for item, kind, _ in mine:  # newest first
            if kind != "dislike":
                kinds.setdefault(item, set()).add(kind)
        anchor_ids = list(kinds)[:ANCHORS]
        need = [h.item_id for h in chosen if self.vector not in h.vectors]
        vecs = {h.item_id: h.vectors[self.vector] for h in chosen if self.vector in h.vectors}
        vecs.update({h.item_id: h.vectors[self.vector]
                     for h in self.store.retrieve(need, with_vectors=[self.vector]) if self.vector in h.vectors})
        anchors = [h for h in self.store.retrieve(anchor_ids, with_vectors=[self.vector]) if self.vector in h.vectors]
        anchor_mat = np.vstack([unit(h.vectors[self.vector]) for h in anchors]) if anchors else None
        out = []
        for i, h in enumerate(chosen):
            sim, cf, popc = parts["similarity"][i], parts["cf"][i], parts["popularity"][i]
            if h.item_id in kinds:
                why = reasons.yours(reasons.strongest(kinds[h.item_id]))
            elif pop[i] == 0 and reasons.is_new(h.payload, now, self.settings.new_arrival_days):
                why = reasons.NEW_ARRIVAL
            elif cf > 0 and cf > sim and cf >= popc:
                why = reasons.SHOPPERS_LIKE_YOU
            elif popc > sim:
                why = reasons.trending(h.payload)
            else:
                why = self._anchor_reason(h, vecs, anchors, anchor_mat, kinds, ctx)
            out.append(Recommendation.from_payload(h.item_id, float(total[i]), h.payload, why))
        return out

    def _anchor_reason(self, h: Hit, vecs: dict[str, np.ndarray], anchors: list[Hit],
                       anchor_mat: np.ndarray | None, kinds: dict[str, set[str]], ctx: Hit | None) -> str:
        v = unit(vecs.get(h.item_id))
        if v is not None and anchor_mat is not None:
            cos = anchor_mat @ v
            best = int(np.argmax(cos))
            if cos[best] >= ANCHOR_MIN_COSINE:
                a = anchors[best]
                return reasons.similar_to_yours(reasons.title(a.payload, a.item_id),
                                                reasons.strongest(kinds[a.item_id]))
        if ctx is not None:
            return reasons.similar_to(reasons.title(ctx.payload, ctx.item_id))
        return reasons.YOUR_TASTE

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

