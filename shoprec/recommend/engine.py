"""``RecommendEngine``: the one object the CLI and the HTTP app call for recommendations.

Every recommender shares one call shape — ``k`` and an ``ItemFilter`` in, ``list[Recommendation]``
(id, score, reason) out — like ``implicit``'s models. Content comes straight from the vector
store on every call (nothing is cached, so an item upserted a moment ago is recommendable at
once); behaviour comes from the event log (event_store), folded in incrementally so each
ingested event changes the next answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..config import Settings
from ..indexing.store import DENSE_VECTORS, Hit, ItemFilter, VectorStore
from ..results import Recommendation
from . import reasons
from .cf import Behaviour
from .event_store import EventStore
from .events import Event, EventError, EventRow, IngestReport, read_events
from .filters import matcher, narrowed
from .popularity import Popularity
from .profiles import ProfileBook, Update
from .rerank import blend, mmr as mmr_select

__all__ = ["RecommendEngine", "UnknownItem"]

_T = TypeVar("_T")
_INGEST_BATCH = 1000
#: Most complementary categories searched by content when co-purchases run short.
_MAX_COMPLEMENT_CATEGORIES = 5
#: History items a feed result may be explained by.
_ANCHORS = 20
#: Below this cosine a history item does not explain a result ("matches your taste" instead).
_ANCHOR_MIN_COSINE = 0.5


class UnknownItem(LookupError):
    """An item id the store does not hold."""

    def __init__(self, item_id: str) -> None:
        super().__init__(f"unknown item {item_id!r}")
        self.item_id = item_id


def _batched(it: Iterable[_T], n: int) -> Iterator[list[_T]]:
    batch: list[_T] = []
    for x in it:
        batch.append(x)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def _unit(v: np.ndarray | None) -> np.ndarray | None:
    if v is None:
        return None
    v = np.asarray(v, dtype=np.float64)
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else None


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


class RecommendEngine:
    def __init__(self, store: VectorStore, settings: Settings, events_path: Path | None = None) -> None:
        self.store = store
        self.settings = settings
        path = events_path or settings.events_db or Path(settings.store) / "events.sqlite"
        self.events = EventStore(path)
        self.weights = settings.event_weights
        self.vector = settings.profile_vector
        self.popularity = Popularity(self.events, self.weights, settings.trending_half_life_days)
        self.profiles = ProfileBook(self.events, self.vector, settings.half_life_days)
        self._behaviour: Behaviour | None = None
        # Guards loading the in-memory behaviour model against ingest/forget: an event is either
        # in the table when the model is loaded or added to the model after, never both.
        self._behaviour_lock = threading.RLock()

    def close(self) -> None:
        self.events.close()

    # ------------------------------------------------------------------ shared helpers
    def _now(self) -> float:
        """The newest event time seen: live traffic keeps it at wall-clock time, and replayed
        logs behave as they did when they were recorded."""
        clock = self.events.clock()
        return clock if clock is not None else time.time()

    def _cf(self) -> Behaviour:
        with self._behaviour_lock:
            if self._behaviour is None:
                self._behaviour = Behaviour.load(
                    ((r["user_id"], r["item_id"], r["type"], r["basket"])
                     for r in self.events.scan("user_id, item_id, type, basket")),
                    self.events.item_categories(), self.weights,
                    self.settings.cooc_basket_weight, self.settings.cooc_user_weight,
                )
            return self._behaviour

    def _item(self, item_id: str, with_vectors: bool = False) -> Hit:
        found = self.store.retrieve([item_id], with_vectors=with_vectors)
        if not found:
            raise UnknownItem(item_id)
        return found[0]

    def _diversity(self, mmr: float | None) -> float:
        d = self.settings.mmr_lambda if mmr is None else mmr
        if not 0.0 <= d <= 1.0:
            raise ValueError(f"mmr (diversity) must be within [0, 1], got {d}")
        return d

    # ------------------------------------------------------------------ events in
    def ingest(self, events: Iterable[Event]) -> IngestReport:
        """Validate item ids against the store and fold the events into every model. An event's
        "line" in errors is its 1-based position in ``events``."""
        return self._ingest_rows(EventRow(i, e) for i, e in enumerate(events, start=1))

    def ingest_file(self, path: Path) -> IngestReport:
        """Ingest a JSONL/CSV events file; bad lines are reported (line + reason), never fatal."""
        return self._ingest_rows(read_events(path))

    def _ingest_rows(self, rows: Iterable[EventRow | EventError]) -> IngestReport:
        report = IngestReport()
        for batch in _batched(rows, _INGEST_BATCH):
            good: list[EventRow] = []
            for row in batch:
                (report.errors.append if isinstance(row, EventError) else good.append)(row)
            ids = list(dict.fromkeys(r.event.item_id for r in good))
            hits = {h.item_id: h for h in self.store.retrieve(ids, with_vectors=True)}
            accepted: list[Event] = []
            for r in good:
                if r.event.item_id in hits:
                    accepted.append(r.event)
                else:
                    report.errors.append(EventError(r.line, "unknown item (not in the catalog)", r.event.item_id))
            self._apply(accepted, hits)
            report.ingested += len(accepted)
        report.errors.sort(key=lambda e: e.line)
        return report

    def _apply(self, events: Sequence[Event], hits: dict[str, Hit]) -> None:
        if not events:
            return
        updates: list[Update] = []
        pop_rows = []
        for e in events:
            hit = hits[e.item_id]
            category = hit.payload.get("category")
            pop_rows.append((e.item_id, category, e.type, e.epoch, e.quantity))
            vec = hit.vectors.get(self.vector)
            if self.weights[e.type] > 0 and vec is not None:
                updates.append((e.user_id, vec, self.weights[e.type], e.epoch, e.basket()))
        with self._behaviour_lock:
            with self.events.transaction() as conn:
                # Profiles first: a user rebuilt from history must not see this batch twice.
                self.profiles.apply(conn, updates, replay=self._replay)
                EventStore.insert_events(conn, events)
                self.popularity.add(conn, pop_rows)
                EventStore.advance_clock(conn, max(e.epoch for e in events))
            if self._behaviour is not None:
                for e in events:
                    self._behaviour.add(e.user_id, e.item_id, e.type, e.basket(), hits[e.item_id].payload.get("category"))

    def _replay(self, user_id: str) -> list[Update]:
        """A user's stored positive events as profile updates, oldest first."""
        history = [e for e in reversed(self.events.history(user_id)) if self.weights[e.type] > 0]
        if not history:
            return []
        ids = list(dict.fromkeys(e.item_id for e in history))
        vecs = {h.item_id: h.vectors.get(self.vector) for h in self.store.retrieve(ids, with_vectors=True)}
        return [(e.user_id, vecs[e.item_id], self.weights[e.type], e.epoch, e.basket())
                for e in history if vecs.get(e.item_id) is not None]

    def forget_user(self, user_id: str) -> int:
        """Delete a user's events and profile and recount what they fed (popularity, co-occurrence,
        user-kNN) from the events that remain. Returns how many events were removed."""
        with self._behaviour_lock:
            with self.events.transaction() as conn:
                removed = conn.execute("SELECT COUNT(*) FROM events WHERE user_id = ?", (user_id,)).fetchone()[0]
                items = EventStore.delete_user(conn, user_id)
                self.popularity.recount(conn, items)
                EventStore.reset_clock(conn)
            self._behaviour = None  # rebuilt from the remaining events on next use
        self.events.checkpoint()
        return int(removed)

    def history(self, user_id: str, limit: int | None = None) -> list[Event]:
        """A user's events, newest first."""
        return self.events.history(user_id, limit)

    def stats(self) -> dict[str, Any]:
        out = self.events.counts()
        clock = self.events.clock()
        out["events_db"] = str(self.events.path)
        out["clock"] = None if clock is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock))
        out.update(self._cf().stats())
        return out

    # ------------------------------------------------------------------ similar
    def similar(self, item_id: str, k: int = 10, modality: str = "joint", flt: ItemFilter | None = None,
                mmr: float | None = None) -> list[Recommendation]:
        """Nearest items to ``item_id`` on one named vector (itself excluded)."""
        _check_k(k)
        if modality not in DENSE_VECTORS:
            raise ValueError(f"modality must be one of {DENSE_VECTORS}, got {modality!r}")
        diversity = self._diversity(mmr)
        item = self._item(item_id, with_vectors=True)
        vec = item.vectors.get(modality)
        if vec is None:
            raise ValueError(f"item {item_id!r} has no {modality} vector")
        f = narrowed(flt, exclude=[item_id])
        pool = k if diversity <= 0 else max(4 * k, 50)
        hits = self.store.search(modality, vec, pool, f, with_vectors=diversity > 0)
        if diversity > 0 and hits:
            vecs = np.vstack([h.vectors[modality] for h in hits])
            hits = [hits[i] for i in mmr_select(np.array([h.score for h in hits]), vecs, k, diversity)]
        reason = reasons.similar_to(reasons.title(item.payload, item_id), modality)
        return [Recommendation.from_payload(h.item_id, h.score, h.payload, reason) for h in hits[:k]]

    # ------------------------------------------------------------------ trending
    def trending(self, k: int = 10, category: str | None = None, flt: ItemFilter | None = None) -> list[Recommendation]:
        """Most popular items now (time-decayed), optionally within one category."""
        _check_k(k)
        f = narrowed(flt, categories=[category] if category else None)
        return [] if f is None else self._trending(k, f)

    def _trending(self, k: int, f: ItemFilter) -> list[Recommendation]:
        ok = matcher(f)
        now = self._now()
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
        return out

    def _new_arrivals(self, k: int, f: ItemFilter) -> list[Recommendation]:
        """Newest items (by ``created_at``) to fill a feed that behaviour cannot fill."""
        fields = ["title", "category", "price", "image", "created_at"]
        hits = list(self.store.scroll(f, fields=fields))
        hits.sort(key=lambda h: str(h.payload.get("created_at") or ""), reverse=True)
        now = self._now()
        days = self.settings.new_arrival_days
        return [Recommendation.from_payload(
                    h.item_id, 0.0, h.payload,
                    reasons.NEW_ARRIVAL if reasons.is_new(h.payload, now, days) else reasons.IN_CATALOG)
                for h in hits[:k]]

    # ------------------------------------------------------------------ complementary
    def complementary(self, item_ids: Sequence[str], k: int = 10, flt: ItemFilter | None = None) -> list[Recommendation]:
        """What goes with these items: co-purchases first, then — for items with little history —
        content search within the categories that baskets pair with theirs.

        Never returns the query items, the same product in another colour (same
        ``attributes.product_code``), or, in the content fallback, the query items' categories.
        Scores: co-purchases in (0.5, 1], content matches in [0, 0.5].
        """
        _check_k(k)
        ids = list(dict.fromkeys(item_ids))
        if not ids:
            raise ValueError("give at least one item id")
        query = {h.item_id: h for h in self.store.retrieve(ids, with_vectors=True)}
        for i in ids:
            if i not in query:
                raise UnknownItem(i)
        codes = {c for c in (reasons.product_code(h.payload) for h in query.values()) if c}
        base = narrowed(flt, exclude=ids)
        ok = matcher(base)

        def allowed(h: Hit) -> bool:
            return ok(h.item_id, h.payload) and reasons.product_code(h.payload) not in codes

        out: list[Recommendation] = []
        behaviour = self._cf()
        co = behaviour.co_bought(ids, limit=max(5 * k, 50))
        if co:
            found = {h.item_id: h for h in self.store.retrieve([c.item_id for c in co])}
            best = co[0].score
            for c in co:
                h = found.get(c.item_id)
                if h is not None and allowed(h):
                    why = reasons.bought_with(reasons.title(query[c.because_of].payload, c.because_of))
                    out.append(Recommendation.from_payload(h.item_id, 0.5 + 0.5 * c.score / best, h.payload, why))
                    if len(out) == k:
                        return out
        out.extend(self._complements_by_content(list(query.values()), k - len(out), base, allowed,
                                                exclude=[r.id for r in out]))
        return out

    def _complements_by_content(self, query: list[Hit], k: int, base: ItemFilter | None, allowed: Any,
                                exclude: list[str]) -> list[Recommendation]:
        own = {h.payload.get("category") for h in query} - {None}
        affinity = self._cf().category_affinity(own)
        vecs = [v for v in (_unit(h.vectors.get(self.vector)) for h in query) if v is not None]
        if not affinity or not vecs or k <= 0:
            return []
        q = _unit(np.mean(vecs, axis=0))
        if q is None:
            return []
        anchors = np.vstack(vecs)
        anchor_hits = [h for h in query if h.vectors.get(self.vector) is not None]
        top = sorted(affinity.items(), key=lambda kv: -kv[1])[:_MAX_COMPLEMENT_CATEGORIES]
        strongest = top[0][1]
        scored: list[tuple[float, Hit, str]] = []
        for category, weight in top:
            f = narrowed(base, exclude=exclude, categories=[category])
            if f is None:
                continue
            for h in self.store.search(self.vector, q, k, f, with_vectors=True):
                if allowed(h) and h.payload.get("category") not in own:
                    scored.append((0.5 * (weight / strongest) * max(h.score, 0.0), h, category))
        scored.sort(key=lambda s: -s[0])
        out: list[Recommendation] = []
        seen: set[str] = set()
        for score, h, category in scored:
            if h.item_id in seen:
                continue
            seen.add(h.item_id)
            v = h.vectors.get(self.vector)
            anchor = anchor_hits[int(np.argmax(anchors @ v))] if v is not None else anchor_hits[0]
            why = reasons.goes_with(category, reasons.title(anchor.payload, anchor.item_id))
            out.append(Recommendation.from_payload(h.item_id, score, h.payload, why))
            if len(out) == k:
                break
        return out

    # ------------------------------------------------------------------ personalised feed
    def recommend_user(self, user_id: str, k: int = 10, context_item: str | None = None,
                       exclude_purchased: bool = True, flt: ItemFilter | None = None,
                       mmr: float | None = None) -> list[Recommendation]:
        """A user's feed: ANN candidates around their profile vector (pushed away from their
        dislikes), reranked by user-kNN and popularity. Users without positive history get a
        cold start: items like ``context_item`` if given, else trending, then new arrivals."""
        _check_k(k)
        diversity = self._diversity(mmr)
        ctx = self._item(context_item, with_vectors=True) if context_item else None
        ctx_vec = _unit(ctx.vectors.get(self.vector)) if ctx else None
        mine = self.events.user_items(user_id)
        disliked = list(dict.fromkeys(i for i, t, _ in mine if t == "dislike"))
        exclude = list(disliked)
        if exclude_purchased:
            exclude += [i for i, t, _ in mine if t == "purchase"]
        if context_item:
            exclude.append(context_item)
        f = narrowed(flt, exclude=exclude)
        if f is None:
            return []
        now = self._now()
        sw = self.settings.session_weight
        profile = self.profiles.get(user_id)
        q = None if profile is None else profile.query_vector(now, sw, self.settings.session_timeout_minutes * 60)
        if q is None:
            return self._cold_start(k, f, ctx, ctx_vec, diversity)
        if ctx_vec is not None:
            q = _unit((1.0 - sw) * q + sw * ctx_vec)
        negatives = [h.vectors[self.vector] for h in
                     self.store.retrieve(disliked[: self.settings.max_negatives], with_vectors=True)
                     if self.vector in h.vectors]
        hits = self.store.search(self.vector, q, max(self.settings.candidate_pool, k), f,
                                 negatives=negatives, with_vectors=diversity > 0)
        if not hits:
            return []
        ids = [h.item_id for h in hits]
        signals = {
            "similarity": np.array([h.score for h in hits]),
            "cf": self._cf().user_knn(user_id, ids, self.settings.cf_neighbours),
            "popularity": np.log1p(self.popularity.decayed(self.popularity.log_scores(ids), now)),
        }
        total, parts = blend(signals, self._blend_weights())
        order = self._order(total, hits, k, diversity)
        return self._explain_feed(user_id, [hits[i] for i in order], {n: p[order] for n, p in parts.items()},
                                  signals["popularity"][order], mine, ctx, now)

    def _blend_weights(self) -> dict[str, float]:
        s = self.settings
        return {"similarity": s.blend_similarity, "cf": s.blend_cf, "popularity": s.blend_popularity}

    def _order(self, total: np.ndarray, hits: list[Hit], k: int, diversity: float) -> np.ndarray:
        if diversity > 0 and all(self.vector in h.vectors for h in hits):
            return mmr_select(total, np.vstack([h.vectors[self.vector] for h in hits]), k, diversity)
        return np.argsort(-total, kind="stable")[:k]

    def _cold_start(self, k: int, f: ItemFilter, ctx: Hit | None, ctx_vec: np.ndarray | None,
                    diversity: float) -> list[Recommendation]:
        if ctx is not None and ctx_vec is not None:
            hits = self.store.search(self.vector, ctx_vec, max(5 * k, 50), f, with_vectors=diversity > 0)
            if hits:
                ids = [h.item_id for h in hits]
                pop = np.log1p(self.popularity.decayed(self.popularity.log_scores(ids), self._now()))
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
        out = self._trending(k, f)
        if len(out) < k:
            rest = narrowed(f, exclude=[r.id for r in out])
            if rest is not None:
                out += self._new_arrivals(k - len(out), rest)
        return out

    def _explain_feed(self, user_id: str, chosen: list[Hit], parts: dict[str, np.ndarray], pop: np.ndarray,
                      mine: list[tuple[str, str, float]], ctx: Hit | None, now: float) -> list[Recommendation]:
        """Scores and reasons for the chosen feed items, from whichever signal ranked each one."""
        total = np.sum(list(parts.values()), axis=0)
        kinds: dict[str, set[str]] = {}
        for item, kind, _ in mine:  # newest first
            if kind != "dislike":
                kinds.setdefault(item, set()).add(kind)
        anchor_ids = list(kinds)[:_ANCHORS]
        need = [h.item_id for h in chosen if self.vector not in h.vectors]
        vecs = {h.item_id: h.vectors[self.vector] for h in chosen if self.vector in h.vectors}
        vecs.update({h.item_id: h.vectors[self.vector]
                     for h in self.store.retrieve(need, with_vectors=True) if self.vector in h.vectors})
        anchors = [h for h in self.store.retrieve(anchor_ids, with_vectors=True) if self.vector in h.vectors]
        anchor_mat = np.vstack([_unit(h.vectors[self.vector]) for h in anchors]) if anchors else None
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
        v = _unit(vecs.get(h.item_id))
        if v is not None and anchor_mat is not None:
            cos = anchor_mat @ v
            best = int(np.argmax(cos))
            if cos[best] >= _ANCHOR_MIN_COSINE:
                a = anchors[best]
                return reasons.similar_to_yours(reasons.title(a.payload, a.item_id), reasons.strongest(kinds[a.item_id]))
        if ctx is not None:
            return reasons.similar_to(reasons.title(ctx.payload, ctx.item_id))
        return reasons.YOUR_TASTE
