"""The personalised feed of a user with history: multi-source candidates, ranked.

Wires the ranking pipeline (``ranking/``) to the live system: the item table is loaded from
the vector store once and grows as new items show up (in events or in ANN results), the event
log is loaded from the event store once and every ingested event is appended, the per-history
ANN goes to Qdrant, and the ranker is the learned model beside the store when one serves, else
the hand-tuned blend. Results come back with reasons naming the signal that won.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from ..config import Settings
from ..indexing.store import Hit, ItemFilter, VectorStore
from ..results import Recommendation
from ..caching import BoundedCache
from . import reasons
from .event_store import EventStore
from .events import Event
from .filters import matcher
from .ranking.candidates import SIMILAR_PER_ITEM, Neighbours
from .ranking.pipeline import PipelineSettings, Ranked, RankingPipeline
from .ranking.model_store import ModelStore
from .ranking.rankers import BLEND_WEIGHTS, COLD_BLEND_WEIGHTS, BlendRanker, LearnedRanker, Ranker
from .ranking.state import EventLog, ItemTable, UserHistory, facts_from_payload
from .rerank import mmr as mmr_select
from .ranking.training import TrainReport, TrainSettings, train
from .segments import Segments

_FIELDS = ["item_id", "title", "category", "price", "attributes", "created_at"]


@lru_cache(maxsize=1)
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


class _SingleThreadedBlas:
    """A feed multiplies small matrices (a few hundred candidates by a few anchors): there,
    waking OpenBLAS's worker threads costs more than the product, and on a busy 2-core server
    it made the feed 2x slower at the median and far worse at the tail (bench/bench_feed.py).

    BLAS's thread count is process-wide, so the feeds being computed share one limit: the
    first in sets it, the last out restores it (a limit per feed let one feed restore the
    default under another, and cost ~50 us per feed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        self._limit: Any = None

    def __enter__(self) -> None:
        with self._lock:
            if self._inside == 0:
                self._limit = _blas().limit(limits=1, user_api="blas")
            self._inside += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._inside -= 1
            if self._inside == 0:
                self._limit.restore_original_limits()
                self._limit = None

    def hold(self) -> None:
        """For a serving process: one BLAS thread for good. OpenBLAS's worker threads, woken each
        time a feed restored the default, spun between feeds: with one feed at a time the server
        spent 8.4 ms of CPU per first visit against 4.6 ms without them (bench/bench_http.py)."""
        self.__enter__()  # never left: the count stays above zero


single_threaded_blas = _SingleThreadedBlas()


class _Yours:
    """What a user did to items, as a feed's reasons ask it: about ten items, so the event types
    are read per item asked (the in-memory log: no database read per feed)."""

    def __init__(self, history: UserHistory) -> None:
        self.kinds = history.kinds
        items = history.items.tolist()
        self.codes = set(items)
        self.typed = set(history.items[history.types >= 0].tolist())  # items with a known event type
        self.recent = list(dict.fromkeys(items[::-1]))[:10]


class RankedFeed:
    def __init__(self, store: VectorStore, settings: Settings, events: EventStore, vector: str,
                 segments: Segments, models: ModelStore, upto: Callable[[], int] | None = None,
                 state_lock: threading.RLock | None = None) -> None:
        """``upto``: the highest events.id the engine's in-memory state holds (the pipeline loads
        the events up to it; later ones arrive through ``on_events``); ``state_lock``: held by the
        engine while it moves that mark, and here while the pipeline loads."""
        self.store = store
        self.settings = settings
        self.events = events
        self.vector = vector
        self.segments = segments
        self.models = models
        self._upto = upto or (lambda: None)  # type: ignore[return-value]
        self._state_lock = state_lock or threading.RLock()
        self._pipeline: RankingPipeline | None = None
        self._ranker: Ranker | None = None
        self._model_version: str | None = None
        self._learned: tuple[LearnedRanker | None] | None = None  # for A/B variants that ask for it
        self._allowed_ids: frozenset[str] | None = None
        self._allowed: tuple[int, np.ndarray] | None = None
        self._lock = threading.RLock()
        self._computing = threading.BoundedSemaphore(settings.feed_concurrency)
        # payloads of items the feed shows or quotes in reasons: the few hundred best sellers and
        # neighbours recur in most feeds, and a store read was a tenth of a computed feed. Each
        # entry is (read at, generation, hit): another writer's change shows within the feed
        # cache's TTL, and a read that raced a catalog change is never served after it.
        self._payloads: BoundedCache[str, tuple[float, int, Hit]] = BoundedCache(
            settings.payload_cache_size if settings.feed_cache_ttl_s > 0 else 0)
        self._neighbour_cache: BoundedCache[tuple[bytes, int], tuple[np.ndarray, np.ndarray]] = BoundedCache(
            settings.neighbour_cache_size)
        # Finished feeds, reused while nothing they depend on changed: the user's own events
        # (per-user generation), the catalog, assortment or ranker (global generation); what
        # other shoppers do moves popularity slowly, so that drift is bounded by a TTL instead.
        self.feeds: BoundedCache[tuple[Any, ...], tuple[int, int, float, list[Recommendation]]] = BoundedCache(
            settings.feed_cache_size if settings.feed_cache_ttl_s > 0 else 0)
        self._generation = 0
        self._user_generation: dict[str, int] = {}
        self._points_count = -1
        self.ranker_note = ""

    # ------------------------------------------------------------------ state
    @property
    def lock(self) -> threading.RLock:
        """Held while the state loads; the engine holds it from committing a batch to appending
        it, so a load never sees a batch that is then appended again."""
        return self._lock

    @property
    def loaded(self) -> bool:
        """Whether the state is in memory (else there is nothing to append events to)."""
        return self._pipeline is not None

    def pipeline(self) -> RankingPipeline:
        p = self._pipeline
        if p is not None:
            return p
        with self._state_lock, self._lock:  # the engine's order: its state lock, then this one
            if self._pipeline is None:
                table = ItemTable()
                for hit in self.store.scroll(fields=_FIELDS, with_vectors=[self.vector]):
                    self._add_item(table, hit)
                log = EventLog(self.settings.event_weights, self.settings.trending_half_life_days,
                               self.settings.popularity_max_units)
                for r in self.events.scan("user_id, item_id, type, basket, ts, quantity, price", upto=self._upto()):
                    log.add(r["user_id"], table.ensure(r["item_id"]), r["type"], r["ts"], r["basket"],
                            r["quantity"], r["price"])
                s = self.settings
                self._pipeline = RankingPipeline(
                    table, log, PipelineSettings(half_life_days=s.half_life_days, new_arrival_days=s.new_arrival_days,
                                                 basket_weight=s.cooc_basket_weight, user_weight=s.cooc_user_weight,
                                                 cf_neighbours=s.cf_neighbours,
                                                 session_timeout_s=s.session_timeout_minutes * 60),
                    neighbours=self._neighbours(table),
                    segment_items=lambda user, now: self.segments.top_items(user, log, table, now))
            return self._pipeline

    def _add_item(self, table: ItemTable, hit: Hit) -> int:
        return table.add(hit.item_id, facts_from_payload(hit.payload, hit.vectors.get(self.vector),
                                                         self.settings.group_attribute))

    def _neighbours(self, table: ItemTable) -> Neighbours:
        """Per-history-item ANN in Qdrant; items the table has not met yet (indexed after it was
        loaded) are fetched and added, so a new item is a candidate the moment it is indexed.

        Answers are cached per anchor vector: an item's neighbours change only when the catalog
        does (``items_changed`` clears the cache), and shoppers' recent items overlap heavily,
        so most feed requests find their anchors' neighbours here instead of in the HNSW graph."""
        cache = self._neighbour_cache

        def search(vectors: np.ndarray, limit: int) -> list[tuple[np.ndarray, np.ndarray]]:
            keys = [(v.tobytes(), limit) for v in vectors]
            out: list[tuple[np.ndarray, np.ndarray] | None] = [cache.get(key) for key in keys]
            todo = [i for i, found in enumerate(out) if found is None]
            if todo:
                answers = self.store.search_many(self.vector, [vectors[i] for i in todo], limit, fields=[])
                for i, hits in zip(todo, answers):
                    missing = [h.item_id for h in hits if h.item_id not in table.pos]
                    if missing:
                        for h in self.store.retrieve(missing, with_vectors=[self.vector]):
                            self._add_item(table, h)
                    found = (np.array([table.ensure(h.item_id) for h in hits], dtype=np.int64),
                             np.array([h.score for h in hits], dtype=np.float64))
                    cache.put(keys[i], found)
                    out[i] = found
            return out  # type: ignore[return-value]

        return search

    def warm_neighbours(self, stop: threading.Event | None = None, chunk: int = 64) -> int:
        """Fill the neighbour cache for the items shoppers touched, most recently touched first
        (up to the cache's capacity), so a shopper's first feed finds its anchors' neighbours
        in memory instead of paying one HNSW search per recent item. Run once at server start
        on a background thread (``RecommendEngine.open``); stops early when ``stop`` is set or
        the catalog changes under it. Returns how many anchors it searched."""
        p = self.pipeline()
        capacity = self._neighbour_cache.capacity
        if capacity <= 0:
            return 0
        self._notice_other_writers()  # learn the store's size now, or the first request clears the cache
        _, items, _, ts = p.log.arrays()
        newest_first = items[np.argsort(-ts, kind="stable")]
        _, first_seen = np.unique(newest_first, return_index=True)
        anchors = newest_first[np.sort(first_seen)]
        matrix = p.table.matrix()
        anchors = anchors[anchors < len(matrix)]
        vecs = matrix[anchors]
        vecs = vecs[np.linalg.norm(vecs, axis=1) > 0][:capacity]
        search = self._neighbours(p.table)
        with self._lock:
            generation = self._generation
        done = 0
        for start in range(0, len(vecs), chunk):
            if (stop is not None and stop.is_set()) or self._generation != generation:
                break
            batch = vecs[start:start + chunk]
            search(batch, SIMILAR_PER_ITEM)
            done += len(batch)
        return done

    def on_events(self, events: Sequence[Event], hits: dict[str, Hit]) -> None:
        """Append accepted events (their items' hits carry payloads and vectors)."""
        with self._lock:
            p = self._pipeline
            if p is None:
                self._generation += 1  # no state yet; any cached feed predates these events
                return
            for e in events:
                self._user_generation[e.user_id] = self._user_generation.get(e.user_id, 0) + 1
                code = p.table.pos.get(e.item_id)
                if code is None:
                    if e.item_id not in hits:  # another worker's event on an item deleted since
                        continue
                    code = self._add_item(p.table, hits[e.item_id])
                p.log.add(e.user_id, code, e.type, e.epoch, e.basket(), e.quantity, e.price)

    def items_changed(self, item_ids: Sequence[str] | None) -> None:
        """Items were (re)indexed: refresh their facts and vectors; None means the whole catalog
        (a re-index may have moved every vector: the state is reloaded on next use)."""
        with self._lock:
            self._payloads.clear()
            self._neighbour_cache.clear()  # a new or moved item may now be anyone's neighbour
            self._generation += 1
            self.segments.clear_cache()
            if self._pipeline is None:
                return
            if item_ids is None:
                self._pipeline = None
                return
            table = self._pipeline.table
            for hit in self.store.retrieve(list(item_ids), with_vectors=[self.vector]):
                self._add_item(table, hit)

    def _notice_other_writers(self) -> None:
        """Items added or removed by another writer (a second replica on a Qdrant server, a direct
        store write) change the store's size: then no cached feed or neighbour list is trusted."""
        count = self.store.points_count()
        with self._lock:
            if count != self._points_count:
                self._points_count = count
                self._payloads.clear()
                self._neighbour_cache.clear()
                self._generation += 1

    def attributes_changed(self) -> None:
        """Users' registration attributes changed: segments (and so cold feeds) may differ."""
        with self._lock:
            self._generation += 1

    def reset(self) -> None:
        """Another worker forgot someone (who, this one cannot know): load the state again on next use."""
        with self._lock:
            self._pipeline = None
            self._generation += 1
            self.segments.clear_cache()

    def on_forget(self, user_id: str) -> None:
        with self._lock:
            self._generation += 1  # their events leave popularity and co-purchases for everyone
            if self._pipeline is not None:
                self._pipeline.log.drop_user(user_id)

    def offer_only(self, item_ids: Iterable[str] | None) -> None:
        """Restrict what the feed may offer (None: the whole catalog). The evaluation uses it to
        serve the catalogue as it was at the cut; a shop could use it for a live assortment."""
        with self._lock:
            self._allowed_ids = None if item_ids is None else frozenset(item_ids)
            self._allowed = None
            self._generation += 1

    def _allowed_mask(self, table: ItemTable) -> np.ndarray | None:
        if self._allowed_ids is None:
            return None
        if self._allowed is None or self._allowed[0] != len(table):
            mask = np.zeros(len(table), dtype=bool)
            for i in self._allowed_ids:
                code = table.pos.get(i)
                if code is not None:
                    mask[code] = True
            self._allowed = (len(table), mask)
        return self._allowed[1]

    # ------------------------------------------------------------------ ranker
    def ranker(self) -> Ranker:
        with self._lock:
            if self._ranker is None:
                self._model_version = self.models.version()
                learned = None if self.settings.ranker == "blend" else self._load_learned()
                if learned is not None:
                    self._ranker, self.ranker_note = learned, f"learned ranker {learned.version}"
                else:
                    card = self.models.card()
                    why = ("SHOPREC_RANKER=blend" if self.settings.ranker == "blend"
                           else (card or {}).get("reason", "no ranker trained yet (shoprec train)"))
                    self._ranker, self.ranker_note = self.blend(), f"hand-tuned blend: {why}"
            return self._ranker

    def _load_learned(self) -> LearnedRanker | None:
        learned = self.models.load()
        if learned is not None:
            learned.screen_trees = self.settings.ranker_screen_trees
        return learned

    def ranker_for(self, choice: str | None) -> Ranker:
        """The ranker an A/B variant asks for (shoprec/online/experiments.py): None or 'auto' is
        the serving one; 'learned' falls back to the blend where no model serves; 'popular' is the
        cold blend (best sellers, no personal signal) for everyone."""
        if choice in (None, "auto"):
            return self.ranker()
        if choice == "blend":
            return self.blend()
        if choice == "popular":
            return BlendRanker(COLD_BLEND_WEIGHTS, "cold-blend")
        if choice == "learned":
            with self._lock:
                if self._learned is None:
                    self._learned = (self._load_learned(),)
                return self._learned[0] or self.blend()
        raise ValueError(f"unknown ranker {choice!r}: auto, blend, learned or popular")

    def blend(self) -> BlendRanker:
        """The hand-tuned blend; the live session's pull follows ``session_weight``."""
        return BlendRanker({**BLEND_WEIGHTS, "sim_session": 3.0 * self.settings.session_weight})

    def train(self, settings: TrainSettings | None = None, progress: bool = False) -> TrainReport:
        """Train on the shop's events, save the model card (and the model when it serves) and
        switch to it at once."""
        serving = self.pipeline()  # loaded before this lock is taken: the lock order is the engine's
        with self._lock:
            # its own pipeline: training's cut-time caches must not evict (or be mistaken for) the
            # serving ones. Same neighbour search as serving (Qdrant, then the catalogue as it was
            # at the cut): with exact search inside the catalogue of the cut, training saw more
            # similar candidates than serving offers, and the model lost its validation on H&M.
            pipeline = RankingPipeline(serving.table, serving.log, serving.settings, neighbours=serving.neighbours,
                                       segment_items=serving.segment_items)
        report = train(pipeline, settings or TrainSettings(label_days=self.settings.ranker_label_days),
                       progress=progress)
        report.card["reason"] = report.reason
        if report.ranker is not None:
            report.ranker.card = report.card
        self.models.save(report.card, report.ranker)
        self._use_new_model()
        return report

    def _use_new_model(self) -> None:
        with self._lock:
            self._ranker = None
            self._learned = None
            self._generation += 1

    def check_model(self) -> None:
        """Serve the current model version if another worker trained a new one since it loaded."""
        if self._ranker is not None and self.models.version() != self._model_version:
            self._use_new_model()

    def status(self) -> dict[str, Any]:
        ranker = self.ranker()
        card = self.models.card() or {}
        return {"ranker": ranker.name, "why": self.ranker_note, "validation": card.get("validation"),
                "trained_at": card.get("trained_at")}

    # ------------------------------------------------------------------ the feed
    def has_history(self, user_id: str) -> bool:
        p = self.pipeline()
        return not p.log.history(user_id).positive().empty

    def recommend(self, user_id: str, k: int, exclude: Sequence[str], flt: ItemFilter | None,
                  now: float, diversity: float = 0.0, context: str | None = None,
                  as_of: float | None = None, ranker: str | None = None,
                  candidates: int | None = None) -> list[Recommendation]:
        """``as_of``: rank with everything cut at that moment (see RecommendEngine.recommend_user).
        ``ranker`` and ``candidates``: an A/B variant's choice of ranker (``ranker_for``) and of
        how many candidates it scores (default ``max(200, 20 k)``)."""
        p = self.pipeline()
        key = (user_id, k, tuple(sorted(exclude)), repr(flt), diversity, context, ranker, candidates)
        self._notice_other_writers()
        with self._lock:
            stamp = (self._generation, self._user_generation.get(user_id, 0))
        if as_of is None:
            cached = self.feeds.get(key)
            if cached is not None and cached[:2] == stamp \
                    and time.monotonic() - cached[2] < self.settings.feed_cache_ttl_s:
                return list(cached[3])
        with self._computing, single_threaded_blas:
            out = self._recommend(p, user_id, k, exclude, flt, now, diversity, context, as_of, ranker, candidates)
        if as_of is None:
            self.feeds.put(key, (*stamp, time.monotonic(), list(out)))
        return out

    def _recommend(self, p: RankingPipeline, user_id: str, k: int, exclude: Sequence[str], flt: ItemFilter | None,
                   now: float, diversity: float, context: str | None, as_of: float | None,
                   choice: str | None = None, candidates: int | None = None) -> list[Recommendation]:
        with self._lock:
            allowed = self._allowed_mask(p.table)
        excluded = {p.table.pos[i] for i in exclude if i in p.table.pos}
        ctx_code = p.table.pos.get(context) if context else None
        # The learned ranker knows shoppers with history; a newcomer is ranked by the cold blend
        # (long-run best sellers, their segment's favourites, new arrivals).
        history = p.log.history(user_id, before=as_of).positive()
        ranker = self.ranker_for(choice) if not history.empty else BlendRanker(COLD_BLEND_WEIGHTS, "cold-blend")
        limits = None
        if candidates:  # an A/B variant's pool: every source's share scaled to about that many
            total = sum(p.settings.limits.values())
            limits = {n: max(1, round(v * candidates / total)) for n, v in p.settings.limits.items()}
        ranked = p.rank(user_id, now, max(200, 20 * k), ranker, allowed=allowed, exclude=excluded,
                        context_item=ctx_code, cut=as_of, limits=limits)
        if diversity > 0 and len(ranked) > k:
            pool = ranked[: max(4 * k, 50)]
            scores = np.array([r.score for r in pool])
            span = float(scores.max() - scores.min()) or 1.0
            chosen = mmr_select((scores - scores.min()) / span, p.table.matrix()[[r.code for r in pool]], k, diversity)
            ranked = [pool[i] for i in chosen] + [r for i, r in enumerate(pool) if i not in set(chosen)]
        return self._materialise(p, history, ranked, k, flt, now, p.windows(now, as_of).all_time)

    def _materialise(self, p: RankingPipeline, history: UserHistory, ranked: Sequence[Ranked], k: int,
                     flt: ItemFilter | None, now: float, sold: np.ndarray) -> list[Recommendation]:
        """Fetch payloads for the best ranked items, page by page, until ``k`` pass the filters."""
        ok = matcher(flt)
        out: list[Recommendation] = []
        page = k  # without a filter the first k all pass
        yours = _Yours(history)
        start, seen = 0, set()
        while start < len(ranked) and len(out) < k:
            chunk = ranked[start:start + page]
            start += len(chunk)
            hits = self._hits([p.table.ids[r.code] for r in chunk])
            for r in chunk:
                h = hits.get(p.table.ids[r.code])
                if h is not None and h.item_id not in seen and ok(h.item_id, h.payload):
                    seen.add(h.item_id)
                    out.append(Recommendation.from_payload(h.item_id, r.score, h.payload,
                                                           self._reason(p, r, h, yours, now, sold)))
                    if len(out) == k:
                        break
            page = min(4 * max(page, 20), 2000)  # a narrow filter: widen the pages rather than crawl
        return out

    def _reason(self, p: RankingPipeline, r: Ranked, hit: Hit, yours: "_Yours", now: float, sold: np.ndarray) -> str:
        """``sold``: all-time popularity per item code, as the ranking saw it."""
        source = r.reason_source
        t = p.table
        if source == "rebuy" or r.code in yours.typed:
            strongest = reasons.strongest((yours.kinds(r.code) or {"purchase"}) - {"dislike"} or {"view"})
            return reasons.BUY_AGAIN if strongest == "purchase" else reasons.yours(strongest)
        if source == "variant":
            mine = [c for c in t.variants(r.code) if c in yours.codes]
            return reasons.another_colour(self._title(t.ids[mine[-1]])) if mine else reasons.BUY_AGAIN
        if source in ("new", "similar") and reasons.is_new(hit.payload, now, self.settings.new_arrival_days) \
                and not (r.code < len(sold) and sold[r.code] > 0):
            return reasons.NEW_ARRIVAL
        recent = yours.recent
        if source == "co_bought" and recent:
            anchor = p.copurchase().best_anchor(r.code, recent)
            if anchor is not None:
                return reasons.bought_with(self._title(t.ids[anchor]))
        if source in ("similar", "co_bought") and recent:
            m = t.matrix()
            cos = m[recent] @ m[r.code]
            best = int(np.argmax(cos))
            if cos[best] >= 0.5:
                verb = reasons.strongest(yours.kinds(recent[best]) - {"dislike"} or {"view"})
                return reasons.similar_to_yours(self._title(t.ids[recent[best]]), verb)
        if source == "group_trending":
            group = t.groups.keys[int(t.group[r.code])] if t.group[r.code] >= 0 else hit.payload.get("category")
            return reasons.popular_in(group)
        if source in ("segment", "shoppers"):
            return reasons.SHOPPERS_LIKE_YOU
        if source == "new" and reasons.is_new(hit.payload, now, self.settings.new_arrival_days):
            return reasons.NEW_ARRIVAL
        return reasons.trending(hit.payload)

    def _title(self, item_id: str) -> str:
        """The title of an anchor item quoted in a reason."""
        hit = self._hits([item_id]).get(item_id)
        return reasons.title(hit.payload, item_id) if hit is not None else item_id

    def _hits(self, item_ids: Sequence[str]) -> dict[str, Hit]:
        """Stored payloads by id (ids no longer in the store are absent), through the cache."""
        generation, now = self._generation, time.monotonic()
        found: dict[str, Hit] = {}
        missing = []
        for item_id in item_ids:
            cached = self._payloads.get(item_id)
            if cached is not None and cached[1] == generation and now - cached[0] < self.settings.feed_cache_ttl_s:
                found[item_id] = cached[2]
            else:
                missing.append(item_id)
        if missing:
            for hit in self.store.retrieve(missing):
                found[hit.item_id] = hit
                self._payloads.put(hit.item_id, (now, generation, hit))
        return found
