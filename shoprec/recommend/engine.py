"""``RecommendEngine``: the one object the CLI and the HTTP app call for recommendations.

Every recommender shares one call shape — ``k`` and an ``ItemFilter`` in, ``list[Recommendation]``
(id, score, reason) out — like ``implicit``'s models. Content comes straight from the vector
store on every call (nothing is cached, so an item upserted a moment ago is recommendable at
once); behaviour comes from the event log (event_store), folded in incrementally so each
ingested event changes the next answer.

Several workers may share one database (PostgreSQL): each keeps its in-memory state (co-purchases,
the ranked feed's event log) equal to the events up to a watermark (the highest ``events.id``
folded in) and ``refresh`` folds in what the others committed since — at most
``refresh_interval_s`` late, or at once when the database notifies. A forget elsewhere (the
``forget_generation`` counter changed) is a rebuild; a new ranker version is loaded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..bounds import InputBounds
from ..caching import BoundedCache
from ..config import Settings
from ..db import Conn
from ..errors import UnknownItem
from ..indexing import serving_space
from ..indexing.store import Hit, ItemFilter, VectorStore
from ..lazy import is_built, lazy
from ..online.measurement import OnlineMeasurement
from ..online.tracking import ServedList
from ..results import Recommendation
from ..storage import StoreUnavailable
from . import reasons, visual
from .event_store import FORGET, USERS, EventStore
from .events import TRACKING_TYPES, Event, EventError, EventRow, IngestReport, read_events
from .feed import Feed
from .filters import narrowed
from .ledger import PrefixHasher, ingested_lines
from .popularity import Popularity, Sold
from .rerank import mmr as mmr_select
from .segments import Segments, UserError, UserRow, read_users

log = logging.getLogger("shoprec.engine")

# The co-purchase model (scipy) and the ranked feed (its pipeline and ranker) are imported where
# they are first used, and every part that opens a file (the events database) is built on first
# use (@lazy below): `shoprec similar` needs none of it, and a CLI query should answer in about a
# second (tests/test_cli_fast.py fails if one of them is imported for it).
if TYPE_CHECKING:
    from .cf import Behaviour
    from .ranked_feed import RankedFeed
    from .ranking.training import TrainReport, TrainSettings

__all__ = ["RecommendEngine", "UnknownItem"]

_T = TypeVar("_T")
_INGEST_BATCH = 1000
_MAX_CLOCK_SKEW_S = 86400.0


def _batched(it: Iterable[_T], n: int) -> Iterator[list[_T]]:
    batch: list[_T] = []
    for x in it:
        batch.append(x)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


class RecommendEngine:
    def __init__(self, store: VectorStore, settings: Settings, events_path: Path | None = None) -> None:
        self.store = store
        self.settings = settings
        self._events_location: Path | str = (events_path or settings.database_url or settings.events_db
                                             or Path(settings.store) / "events.sqlite")
        self.weights = settings.event_weights
        self._behaviour: Behaviour | None = None
        # Guards loading the in-memory behaviour model against ingest/forget: an event is either
        # in the table when the model is loaded or added to the model after, never both.
        self._behaviour_lock = threading.RLock()
        self.colour_mix = visual.ColourMix.of(settings)
        # "similar" answers, valid while the catalog is as it was (items_changed clears them; the
        # store's size tells of another writer)
        self._similar: BoundedCache[tuple[Any, ...], tuple[int, list[Recommendation]]] = BoundedCache(
            settings.similar_cache_size)
        self._events_since_training = 0
        self._training: threading.Thread | None = None
        self._applied_in_transaction = False  # see write_transaction
        # Following other writers (refresh): the highest events.id in memory, the generation
        # counters as last seen, when to look next, and the notification listener.
        self._watermark = 0
        self._known: dict[str, int] = {}
        self._clock_lock = threading.Lock()
        self._clock: tuple[float | None] | None = None  # the events database's clock, as last read
        self._clock_moves = 0
        self._next_refresh = 0.0
        self._stop_listening = threading.Event()
        self._warming: threading.Thread | None = None
        self._listener: threading.Thread | None = None
        self._following_failed = False  # said once per outage (refresh)

    # ------------------------------------------------------------------ parts, built on first use
    # `similar` touches only the store; `complementary` adds the co-purchase model (_cf); the feed
    # and ingestion open the events database and the ranked feed.
    @lazy
    def events(self) -> EventStore:
        store = EventStore(self._events_location, min_free_mb=self.settings.min_free_mb,
                           pool_size=self.settings.database_pool_size)
        self._watermark = store.last_id()
        self._known = store.generations()
        return store

    @lazy
    def online(self) -> OnlineMeasurement:
        """Served lists, impressions, attribution and experiments (shoprec/online/)."""
        return OnlineMeasurement(self.events, self.settings)

    @lazy
    def space(self) -> serving_space.SpaceChoice:
        return serving_space.resolve(self.settings.profile_vector, Path(self.settings.store), self.store)

    @property
    def vector(self) -> str:
        """The named vector the feed lives in (see indexing/serving_space.py)."""
        return self.space.vector

    @lazy
    def popularity(self) -> Popularity:
        s = self.settings
        return Popularity(self.events, self.weights, s.trending_half_life_days, s.popularity_max_units)

    @lazy
    def feed(self) -> Feed:
        return Feed(self.store, self.settings, self.vector, self.popularity, self._now)

    @lazy
    def segments(self) -> Segments:
        return Segments(self.events, [a.strip() for a in self.settings.segment_attributes.split(",")])

    @lazy
    def ranked(self) -> RankedFeed:
        # the ranking pipeline, scipy, threadpoolctl
        from .ranked_feed import RankedFeed

        from .ranking.model_store import DatabaseModels, FileModels

        s = self.settings
        # workers on other hosts share the database, not a folder: there models are rows
        models = (DatabaseModels(self.events) if self.events.db.dialect == "postgres"
                  else FileModels(s.ranker_dir or Path(s.store) / "ranker"))
        return RankedFeed(self.store, s, self.events, self.vector, self.segments, models, lambda: self._watermark,
                          self._behaviour_lock)

    def items_changed(self, item_ids: Sequence[str] | None) -> None:
        """Items were (re)indexed or deleted (None: the whole catalog): drop what depended on them."""
        self._similar.clear()
        if is_built(self, "ranked"):
            self.ranked.items_changed(item_ids)

    def open(self) -> None:
        """Build every part now: a server opens its events database (and learns the serving
        space) at start-up, so a fault there is one line then, not an error on a request."""
        for part in ("events", "online", "space", "popularity", "feed", "segments", "ranked"):
            getattr(self, part)
        if self._listener is None:  # PostgreSQL: wake on other workers' commits (SQLite: none)
            self._listener = self.events.db.listen(lambda: self.refresh(force=True),
                                                   self.settings.refresh_interval_s, self._stop_listening)
        if self.settings.warm_up and self._warming is None:
            self._warming = threading.Thread(target=self._warm_up, name="shoprec-warm-up", daemon=True)
            self._warming.start()

    @property
    def warm(self) -> bool:
        """Whether the start-up warm-up has run to its end (True where none was asked for)."""
        return self._warming is None or not self._warming.is_alive()

    def _warm_up(self) -> None:
        """Load the feed's state and its neighbour cache now, off the request path: the first
        shoppers then do not wait for the event log to load or for HNSW searches of their items."""
        try:
            started = time.perf_counter()
            anchors = self.ranked.warm_neighbours(self._stop_listening)
            log.info("feed warmed up in %.1fs (%d items' neighbours cached)", time.perf_counter() - started, anchors)
        except Exception as err:  # noqa: BLE001 - a warm-up is an optimisation: requests still work without it
            log.warning("feed warm-up stopped: %s", err)

    def close(self) -> None:
        """Wait for a background ranker training to finish (it reads the store and writes the
        model beside it), then close the events database (if it was opened)."""
        self._stop_listening.set()
        if self._listener is not None:
            self._listener.join(timeout=self.settings.refresh_interval_s + 5)
        if self._warming is not None:
            self._warming.join()
        if self._training is not None:
            self._training.join()
        if is_built(self, "online"):
            self.online.close()  # flushes served lists still queued for the database
        if is_built(self, "events"):
            self.events.close()

    # ------------------------------------------------------------------ shared helpers
    def _now(self) -> float:
        """The newest event time seen: live traffic keeps it at wall-clock time, and replayed
        logs behave as they did when they were recorded."""
        cached = self._clock
        if cached is None:  # read once, then kept until this worker's events or its refresh move it
            moves = self._clock_moves
            cached = (self.events.clock(),)
            with self._clock_lock:
                if moves == self._clock_moves:
                    self._clock = cached
        clock = cached[0]
        return clock if clock is not None else time.time()

    def _clock_moved(self) -> None:
        """Events were added or removed (here, or by another worker and folded in now)."""
        with self._clock_lock:
            self._clock_moves += 1
            self._clock = None

    def _cf(self) -> Behaviour:
        # scipy: only commands that use co-purchases pay for it
        from .cf import Behaviour

        with self._behaviour_lock:
            if self._behaviour is None:
                self._behaviour = Behaviour.load(
                    ((r["user_id"], r["item_id"], r["type"], r["basket"])
                     for r in self.events.scan("user_id, item_id, type, basket", upto=self._watermark)),
                    self.events.item_categories(), self.weights,
                    self.settings.cooc_basket_weight, self.settings.cooc_user_weight,
                    products=self._product_codes(),
                )
            return self._behaviour

    def _product_codes(self) -> dict[str, str]:
        """Product code of every item with events (colour variants share one), from the store."""
        ids = list(self.events.item_categories())
        codes: dict[str, str] = {}
        for start in range(0, len(ids), 2048):
            for hit in self.store.retrieve(ids[start:start + 2048]):
                code = reasons.product_code(hit.payload)
                if code:
                    codes[hit.item_id] = code
        return codes

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
        "line" in errors is its 1-based position in ``events``. Events whose ``event_id`` is
        already stored are skipped (``report.duplicates``)."""
        return self._ingest_rows(EventRow(i, e) for i, e in enumerate(events, start=1))

    def ingest_file(self, path: Path) -> IngestReport:
        """Ingest a JSONL/CSV events file; bad lines are reported (line + reason), never fatal.

        Lines this file's content was already ingested up to (an earlier run of the same file,
        or of the same file before lines were appended) are skipped (``report.skipped_lines``),
        so ingesting a file twice counts nothing twice; see ledger.py.
        """
        path = Path(path)
        read_events(path)  # a missing file or unknown format fails here, before any hashing
        skip = ingested_lines(path, self.events.ingested_prefixes())
        hasher = PrefixHasher(path)
        try:
            report = self._ingest_rows(read_events(path, InputBounds.of(self.settings), skip), hasher)
        finally:
            hasher.close()
        report.skipped_lines += skip
        return report

    @contextmanager
    def write_transaction(self) -> Iterator[Conn]:
        """One events transaction around several ingests and what the caller writes with them
        (an HTTP Idempotency-Key's answer): all of it is committed, or none. Locks are taken in
        the order ``_apply`` takes them, so this cannot deadlock with it or with a forget."""
        with self._behaviour_lock, self.ranked.lock:
            self._applied_in_transaction = False
            try:
                with self.events.transaction() as conn:
                    yield conn
            except BaseException:
                if self._applied_in_transaction:
                    # Events folded into memory were rolled back on disk: rebuild from the table.
                    self._rebuild()
                raise
            finally:
                if self._applied_in_transaction:
                    self._clock_moved()  # again once committed (or rolled back): see _now
                self._applied_in_transaction = False

    def _ingest_rows(self, rows: Iterable[EventRow | EventError], hasher: PrefixHasher | None = None) -> IngestReport:
        report = IngestReport()
        for batch in _batched(rows, _INGEST_BATCH):
            good: list[EventRow] = []
            for row in batch:
                (report.errors.append if isinstance(row, EventError) else good.append)(row)
            # Impressions name an item of a served list (checked against the list, not the store:
            # an item may leave the catalog after it was shown).
            ids = list(dict.fromkeys(r.event.item_id for r in good if r.event.type not in TRACKING_TYPES))
            hits = {h.item_id: h for h in self.store.retrieve(ids, with_vectors=[self.vector])} if ids else {}
            lists = self.online.lists(self.events.conn(), [r.event for r in good])
            accepted: list[Event] = []
            # The newest event is the engine's clock: one from the future would skew it for all.
            latest = time.time() + _MAX_CLOCK_SKEW_S
            for r in good:
                why = self.online.problem(r.event, lists)
                if why is not None:
                    field, reason = why
                    report.errors.append(EventError(r.line, reason, r.event.item_id, field))
                elif r.event.item_id not in hits and r.event.type not in TRACKING_TYPES:
                    report.errors.append(EventError(r.line, "unknown item (not in the catalog)", r.event.item_id,
                                                    "item_id"))
                elif r.event.epoch > latest:
                    report.errors.append(EventError(r.line, f"timestamp {r.event.ts.isoformat()} is in the future",
                                                    r.event.item_id, "ts"))
                else:
                    accepted.append(r.event)
            checkpoints = hasher.through(batch[-1].line) if hasher is not None else []
            applied = self._apply(accepted, hits, checkpoints, lists)
            if applied is None:  # another run ingested this part of the file meanwhile
                report.skipped_lines += len(batch)
                report.errors = [e for e in report.errors if e not in batch]
                continue
            report.ingested += applied[0]
            report.duplicates += applied[1]
            report.attributed += applied[2]
        report.errors.sort(key=lambda e: e.line)
        return report

    def _apply(self, events: Sequence[Event], hits: dict[str, Hit], checkpoints: Sequence[tuple[int, str]] = (),
               lists: dict[str, ServedList] | None = None) -> tuple[int, int, int] | None:
        """Store and fold in the events not already stored (by event_id), with the file
        checkpoints that cover them, in one transaction; impressions and the credits of clicks,
        carts and purchases to served lists go to the online tables in the same transaction.
        (ingested, duplicates, credited); None if the last checkpoint was already recorded (the
        batch was ingested by another run)."""
        if not events and not checkpoints:
            return 0, 0, 0
        with self._behaviour_lock, self.ranked.lock:
            with self.events.transaction() as conn:
                if checkpoints and EventStore.has_prefix(conn, checkpoints[-1][1]):
                    return None
                # Other workers' commits first: memory holds every event up to the watermark, and
                # this transaction's events (the next ids: one writer at a time) come right after.
                self._catch_up(conn)
                tracked, duplicates = EventStore.new_events(conn, events)
                credited = self.online.record(conn, tracked, lists or {}) if tracked else 0
                fresh = [e for e in tracked if e.type not in TRACKING_TYPES]  # behaviour only
                categories = {e.item_id: hits[e.item_id].payload.get("category") for e in fresh}
                sold = [Sold(e.item_id, categories[e.item_id], e.type, e.epoch, e.quantity) for e in fresh]
                if fresh:
                    EventStore.insert_events(conn, fresh)
                    self.popularity.add(conn, sold)
                    EventStore.advance_clock(conn, max(e.epoch for e in fresh))
                    watermark = self.events.last_id(conn)
                    self.events.db.notify(conn, str(watermark))
                for lines, sha in checkpoints:
                    EventStore.record_prefix(conn, sha, lines)
            if fresh:
                self._watermark = watermark
                # After the commit; inside a caller's write_transaction, again after its commit
                # (a reader between the two would otherwise keep the clock from before it).
                self._clock_moved()
            if self._behaviour is not None:
                for e in fresh:
                    self._behaviour.add(e.user_id, e.item_id, e.type, e.basket(), categories[e.item_id],
                                        reasons.product_code(hits[e.item_id].payload))
            if fresh:
                self.ranked.on_events(fresh, hits)
                self._applied_in_transaction = True
        if fresh:
            self._maybe_retrain(len(fresh))
        return len(tracked), duplicates, credited

    # ------------------------------------------------------------------ other workers
    def refresh(self, force: bool = False) -> None:
        """Fold in what other workers (processes sharing the database) committed since this one
        last looked: their events, a forget (a rebuild: who was forgotten is not said), new user
        attributes, a new ranker version. History, popularity and trending are read from the
        database on every request and need nothing. At most once per ``refresh_interval_s``
        unless ``force`` (a notification)."""
        now = time.monotonic()
        if not force and now < self._next_refresh:
            return
        self._next_refresh = now + self.settings.refresh_interval_s
        try:
            with self._behaviour_lock:
                self._catch_up(self.events.conn())
            if is_built(self, "ranked"):  # `complementary` alone never builds the ranked feed
                self.ranked.check_model()
        except StoreUnavailable as err:
            # The database is down: what is in memory still serves (a request that reads the
            # database itself answers 503); one line per outage, not one per request.
            if not self._following_failed:
                log.warning("not following other workers until the events database answers: %s", err)
            self._following_failed = True
            return
        if self._following_failed:
            log.info("following other workers again")
        self._following_failed = False

    def _catch_up(self, conn: Conn) -> None:
        """Under the state lock (the ranked feed loads its state under it too): bring memory up to
        what ``conn`` sees committed (the counters first: a forget committed after they were read
        is caught by the next look)."""
        seen = self.events.generations(conn)
        self._clock_moved()
        if seen[FORGET] != self._known.get(FORGET):
            self._rebuild(conn)
        else:
            rows = self.events.since(conn, self._watermark)
            if rows:
                self._fold([e for _, e in rows])
                self._watermark = rows[-1][0]
        if seen[USERS] != self._known.get(USERS):
            self.segments.reload()
            if is_built(self, "ranked"):
                self.ranked.attributes_changed()
        self._known = dict(seen)

    def _rebuild(self, conn: Conn | None = None) -> None:
        """Drop the in-memory behaviour state; it is loaded again, up to the newest event, on next use."""
        with self._behaviour_lock:
            self._behaviour = None
            if is_built(self, "ranked"):
                self.ranked.reset()
            self._watermark = self.events.last_id(conn)

    def _fold(self, events: Sequence[Event]) -> None:
        """Another worker's events into the in-memory models (their items' payloads from the store)."""
        ranked = self.ranked if is_built(self, "ranked") else None
        loaded = self._behaviour is not None or (ranked is not None and ranked.loaded)
        ids = list(dict.fromkeys(e.item_id for e in events))
        hits = {h.item_id: h for h in self.store.retrieve(ids, with_vectors=[self.vector])} if loaded else {}
        if self._behaviour is not None:
            for e in events:
                payload = hits[e.item_id].payload if e.item_id in hits else {}
                self._behaviour.add(e.user_id, e.item_id, e.type, e.basket(), payload.get("category"),
                                    reasons.product_code(payload))
        if ranked is not None:
            ranked.on_events(events, hits)

    def forgets_seen(self) -> int:
        """The forget generation this worker has seen committed (it may lag the database by a
        refresh, or be 0 before the events database is opened: a list stamped with it is then
        dropped after any newer forget, never kept wrongly)."""
        return self._known.get(FORGET, 0)

    # ------------------------------------------------------------------ ranker
    def train_ranker(self, settings: TrainSettings | None = None, progress: bool = False) -> TrainReport:
        """Learn the feed's ranker from this shop's events (time self-split; see ranking/training.py).
        The model serves only where it beat the hand-tuned blend on its validation window."""
        report = self.ranked.train(settings, progress)
        self._events_since_training = 0
        return report

    def _maybe_retrain(self, new_events: int) -> None:
        """Retrain in a background thread once enough new events arrived (one at a time)."""
        every = self.settings.ranker_retrain_events
        self._events_since_training += new_events
        if every <= 0 or self._events_since_training < every:
            return
        if self._training is not None and self._training.is_alive():
            return
        self._events_since_training = 0
        self._training = threading.Thread(target=self.ranked.train, name="shoprec-ranker-training", daemon=True)
        self._training.start()

    def ranking_status(self) -> dict[str, Any]:
        """Which space and ranker serve the feed, and why (for /health and reports)."""
        self.refresh()
        return {"space": self.vector, "space_reason": self.space.reason, **self.ranked.status()}

    # ------------------------------------------------------------------ users
    def add_users(self, rows: Iterable[UserRow | UserError]) -> tuple[int, list[UserError]]:
        """Store registration attributes; bad rows are returned with their line, the rest kept."""
        good: list[UserRow] = []
        errors: list[UserError] = []
        for row in rows:
            (errors.append if isinstance(row, UserError) else good.append)(row)
        for start in range(0, len(good), 1000):
            self.segments.upsert(good[start:start + 1000])
        if good:
            self.ranked.attributes_changed()  # a segment's favourites steer newcomers' feeds
        return len(good), errors

    def add_users_file(self, path: Path) -> tuple[int, list[UserError]]:
        return self.add_users(read_users(path, InputBounds.of(self.settings)))

    def forget_user(self, user_id: str) -> int:
        """Delete a user's events and attributes and recount what they fed (popularity,
        co-occurrence, user-kNN, the ranked feed's state) from the events that remain. Returns how
        many events were removed."""
        with self._behaviour_lock, self.ranked.lock:
            with self.events.transaction() as conn:
                self._catch_up(conn)  # so that the watermark can drop to the newest event left, below
                removed = conn.execute("SELECT COUNT(*) FROM events WHERE user_id = ?", (user_id,)).fetchone()[0]
                self.online.forget(conn, user_id)
                items = EventStore.delete_user(conn, user_id)
                self.segments.forget(conn, user_id)
                self.popularity.recount(conn, items)
                EventStore.reset_clock(conn)
                # every other worker rebuilds; this one was caught up, so it only drops the user
                generation = self.events.bump(conn, FORGET)
                # SQLite may hand the deleted ids out again: followers see ids above what is left
                self._watermark = self.events.last_id(conn)
            # Only once committed: answers begun from now on are stamped with it (forgets_seen),
            # and they can no longer read the user's rows.
            self._known[FORGET] = generation
            self._clock_moved()
            self._behaviour = None  # rebuilt from the remaining events on next use
            self.ranked.on_forget(user_id)
        self.events.checkpoint()
        return int(removed)

    def history(self, user_id: str, limit: int | None = None) -> list[Event]:
        """A user's events, newest first."""
        return self.events.history(user_id, limit)

    def stats(self) -> dict[str, Any]:
        out = self.events.counts()
        clock = self.events.clock()
        self.refresh()
        out["events_db"] = self.events.location
        out["clock"] = None if clock is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock))
        out.update(self._cf().stats())
        return out

    # ------------------------------------------------------------------ similar
    def similar(self, item_id: str, k: int = 10, modality: str = "joint", flt: ItemFilter | None = None,
                mmr: float | None = None) -> list[Recommendation]:
        """Nearest items to ``item_id`` on one named vector (itself excluded).

        Answers are cached until the catalog changes (they depend on nothing else): a product
        page's "similar items" is asked for on every view of it."""
        _check_k(k)
        if modality not in visual.MODALITIES:
            raise ValueError(f"modality must be one of {visual.MODALITIES}, got {modality!r}")
        diversity = self._diversity(mmr)
        key = (item_id, k, modality, repr(flt), diversity)
        stamp = self.store.points_count()
        cached = self._similar.get(key)
        if cached is not None and cached[0] == stamp:
            return list(cached[1])
        out = self._similar_uncached(item_id, k, modality, flt, diversity)
        self._similar.put(key, (stamp, out))
        return list(out)

    def _similar_uncached(self, item_id: str, k: int, modality: str, flt: ItemFilter | None,
                          diversity: float) -> list[Recommendation]:
        item = self._item(item_id, with_vectors=True)
        vec = item.vectors.get(modality)
        if vec is None:
            if modality == visual.COLOUR and visual.COLOUR not in (self.store.dense_dims() or {}):
                raise ValueError("this store was created without the colour vector: re-index the catalog into a "
                                 "new store folder to compare by colour")
            raise ValueError(f"item {item_id!r} has no {modality} vector")
        f = narrowed(flt, exclude=[item_id])
        pool = k if diversity <= 0 else max(4 * k, 50)
        colour = item.vectors.get(visual.COLOUR)
        ranked_by = visual.ranked_by(modality, item.vectors)
        wanted = ([ranked_by] if diversity > 0 else []) + ([visual.COLOUR] if colour is not None else [])
        hits = visual.search(self.store, modality, item.vectors, pool, self.colour_mix, f,
                             with_vectors=sorted(set(wanted)) or False)
        if diversity > 0 and hits:
            vecs = np.vstack([h.vectors[ranked_by] for h in hits])
            hits = [hits[i] for i in mmr_select(np.array([h.score for h in hits]), vecs, k, diversity)]
        anchor = reasons.title(item.payload, item_id)
        plain = reasons.similar_to(anchor, modality)
        coloured = self.colour_mix.weight(modality) > 0 or modality == visual.COLOUR
        return [Recommendation.from_payload(
                    h.item_id, h.score, h.payload,
                    reasons.same_colour(anchor, modality)
                    if coloured and visual.same_colour(colour, h, self.colour_mix) else plain)
                for h in hits[:k]]

    # ------------------------------------------------------------------ trending
    def trending(self, k: int = 10, category: str | None = None, flt: ItemFilter | None = None) -> list[Recommendation]:
        """Most popular items now (time-decayed), optionally within one category."""
        _check_k(k)
        f = narrowed(flt, categories=[category] if category else None)
        return [] if f is None else self.feed.trending(k, f)

    # ------------------------------------------------------------------ complementary
    def complementary(self, item_ids: Sequence[str], k: int = 10,
                      flt: ItemFilter | None = None) -> list[Recommendation]:
        """What goes with these items (see complements.py): co-purchases, then complementary
        categories by content; never the items themselves or another colour of them."""
        _check_k(k)
        from . import complements  # scipy, via the co-purchase model

        self.refresh()
        ids = list(dict.fromkeys(item_ids))
        if not ids:
            raise ValueError("give at least one item id")
        found = {h.item_id: h for h in self.store.retrieve(ids, with_vectors=True)}
        for i in ids:
            if i not in found:
                raise UnknownItem(i)
        return complements.complementary(self.store, self._cf(), self._complement_vector(found[ids[0]]),
                                         [found[i] for i in ids], k, flt)

    def _complement_vector(self, item: Hit) -> str:
        """Complementary categories are searched in the joint space where items have it (it
        measured better for bought-together than text: hit@10 0.0156 vs 0.0140 on H&M), whatever
        space the feed serves from; text otherwise."""
        if self.settings.profile_vector == "auto" and "joint" in item.vectors:
            return "joint"
        return self.vector

    # ------------------------------------------------------------------ personalised feed
    def recommend_user(self, user_id: str, k: int = 10, context_item: str | None = None,
                       exclude_purchased: bool = False, flt: ItemFilter | None = None,
                       mmr: float | None = None, as_of: float | None = None, ranker: str | None = None,
                       candidates: int | None = None) -> list[Recommendation]:
        """A user's feed. A user with history gets the ranked multi-source feed (ranked_feed.py);
        whether their purchases come back is the ranker's call unless ``exclude_purchased``. A
        user without history gets items like ``context_item`` if given, else what their segment
        buys (registration attributes), else trending, then new arrivals.

        ``as_of`` (epoch seconds): the feed as it would have been at that moment — the user's
        history, popularity and co-purchases cut there (evaluation of past visits; audits).

        ``ranker`` and ``candidates``: an A/B variant's overrides (see RankedFeed.recommend)."""
        _check_k(k)
        diversity = self._diversity(mmr)
        self.refresh()
        ctx = self._item(context_item, with_vectors=True) if context_item else None
        exclude = [ctx.item_id] if ctx is not None else []
        if exclude_purchased:
            exclude += [i for i, t, _ in self.events.user_items(user_id) if t == "purchase"]
        if ctx is None or self.ranked.has_history(user_id):
            out = self.ranked.recommend(user_id, k, exclude, flt, self._now() if as_of is None else as_of,
                                        diversity, context=ctx.item_id if ctx is not None else None, as_of=as_of,
                                        ranker=ranker, candidates=candidates)
            if len(out) < k:  # a young shop or a narrow filter: the newest items fill the feed
                rest = narrowed(flt, exclude=[*exclude, *self._disliked(user_id), *(r.id for r in out)])
                out += self.feed.new_arrivals(k - len(out), rest) if rest is not None else []
            return out
        # No history but a context item: items like it (feed.py), never ones they disliked.
        f = narrowed(flt, exclude=[*exclude, *self._disliked(user_id)])
        return [] if f is None else self.feed.cold_start(k, f, ctx, diversity)

    def _disliked(self, user_id: str) -> list[str]:
        return [i for i, t, _ in self.events.user_items(user_id) if t == "dislike"]

    def offer_only(self, item_ids: Iterable[str] | None) -> None:
        """Limit what the feed may offer (None: everything indexed); see RankedFeed.offer_only."""
        self.ranked.offer_only(item_ids)
