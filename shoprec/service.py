"""The one object the CLI and the HTTP app call; neither holds recommender logic.

``Shoprec`` wires settings -> store -> embedder -> indexer and recommend engine, lazily, so a
query command never loads an encoder it does not need.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoprec.config import Settings
from shoprec.errors import UnknownItem
from shoprec.indexing.factory import open_store
from shoprec.indexing.store import ItemFilter, VectorStore
from shoprec.lazy import is_built, lazy
from shoprec.online.experiments import Overrides
from shoprec.results import Recommendation, Served
from shoprec.search import rrf_fuse

# Each part below imports its modules when first built, so a CLI query pays only for what it
# touches (encoders and PIL for a search, the indexer for `index`, the engine for the rest).
if TYPE_CHECKING:
    from PIL import Image

    from shoprec.catalog import Product
    from shoprec.images import ImageLimits
    from shoprec.indexing.embedder import ProductEmbedder
    from shoprec.indexing.indexer import Indexer
    from shoprec.indexing.report import IndexReport
    from shoprec.recommend.engine import RecommendEngine

__all__ = ["Shoprec", "UnknownItem"]


class Shoprec:
    def __init__(self, settings: Settings | None = None, store: VectorStore | None = None) -> None:
        self.settings = settings or Settings()
        self._store = store

    # ------------------------------------------------------------------ wiring
    @lazy
    def store(self) -> VectorStore:
        return self._store if self._store is not None else open_store(self.settings)

    @lazy
    def embedder(self) -> ProductEmbedder:
        from shoprec.indexing.embedder import ProductEmbedder

        embedder = ProductEmbedder(self.settings)
        embedder.bind(self.store)  # an existing store's vectors decide what queries compute
        return embedder

    @lazy
    def indexer(self) -> Indexer:
        from shoprec.indexing.indexer import Indexer

        return Indexer(self.store, self.embedder, self.settings)

    @lazy
    def engine(self) -> RecommendEngine:
        from shoprec.recommend.engine import RecommendEngine

        return RecommendEngine(self.store, self.settings)

    @property
    def image_limits(self) -> ImageLimits:
        return self.indexer.limits

    def __enter__(self) -> "Shoprec":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if is_built(self, "engine"):
            self.engine.close()
        if is_built(self, "store"):
            self.store.close()

    # ------------------------------------------------------------------ catalog
    def index_catalog(self, path: Path, delete_missing: bool = False, progress: bool = True) -> IndexReport:
        report = self.indexer.index_catalog(path, delete_missing=delete_missing, progress=progress)
        self._items_changed(None)
        return report

    def upsert_items(self, products: Sequence[Product], base_dir: Path | None = None) -> IndexReport:
        report = self.indexer.upsert_products(products, base_dir or Path.cwd())
        self._items_changed([p.id for p in products])
        return report

    def _items_changed(self, item_ids: Sequence[str] | None) -> None:
        """The feed keeps item facts and vectors in memory: tell it (if it is loaded) what moved."""
        if is_built(self, "engine"):
            self.engine.items_changed(item_ids)

    def delete_items(self, item_ids: Sequence[str]) -> int:
        removed = self.indexer.delete(item_ids)
        if removed:
            self._items_changed(list(item_ids))  # cached feeds and neighbours may hold them
        return removed

    def get_item(self, item_id: str) -> dict[str, Any] | None:
        found = self.store.retrieve([item_id])
        return found[0].payload if found else None

    def image_path(self, item_id: str) -> Path | None:
        payload = self.get_item(item_id)
        if not payload or not payload.get("image_path"):
            return None
        path = Path(payload["image_path"])
        return path if path.is_file() else None

    def count(self) -> int:
        return self.store.count()

    # ------------------------------------------------------------------ search
    def search(self, text: str | None = None, image: Image.Image | bytes | None = None, k: int = 10,
               flt: ItemFilter | None = None) -> list[Recommendation]:
        """Text (dense + lexical) and/or image (visual + joint) search, fused by rank."""
        if not text and image is None:
            raise ValueError("give a text query, an image, or both")
        lists = []
        depth = max(k * 3, 30)
        if text:
            dense, joint, lexical = self.embedder.query_text(text)
            lists.append(self.store.search("text", dense, depth, flt))
            if joint is not None:
                lists.append(self.store.search("joint", joint, depth, flt))
            if lexical.indices:
                lists.append(self.store.search_sparse(lexical, depth, flt))
        if image is not None:
            if isinstance(image, bytes):
                from shoprec.images import decode_image

                image = decode_image(image, self.image_limits)
            photo, joint = self.embedder.query_image(image)
            from shoprec.recommend import visual

            colour = self.embedder.query_colour(image)
            vectors = {"image": photo, visual.COLOUR: colour, visual.LOOK: self.embedder.query_look(photo, colour)}
            lists.append(visual.search(self.store, "image", vectors, depth, visual.ColourMix.of(self.settings), flt))
            if joint is not None:
                lists.append(self.store.search("joint", joint, depth, flt))
        fused = rrf_fuse(lists, k)
        reason = "matches your search" if text else "looks like your photo"
        return [Recommendation.from_payload(h.item_id, h.score, h.payload, reason) for h in fused]

    # ------------------------------------------------------------------ served answers
    def serve(self, surface: str, user_id: str | None,
              answer: Callable[[Overrides], list[Recommendation]]) -> Served:
        """A ranked answer as shown to a shopper: ``answer`` is computed with the settings of
        the user's A/B variant, then gets a fresh ``rec_id`` and positions, and is recorded so
        that impressions, clicks and purchases naming the rec_id are credited to it."""
        online = self.engine.online
        assignment = online.assign(user_id)
        # Read before the answer reads anything of the user's: if they are forgotten (here or in
        # another worker) before the list is written, it is dropped unwritten (online/tracking.py).
        forgets = self.engine.forgets_seen()
        return online.serve(surface, user_id, assignment, answer(assignment.overrides), forgets)

    def online_stats(self, experiment: str | None = None, since: str | None = None) -> dict[str, Any]:
        """Online measures per surface x variant x day (see shoprec/online/stats.py)."""
        return self.engine.online.stats(self.store.count(), experiment, since)

    # ------------------------------------------------------------------ recommend
    def similar(self, item_id: str, k: int = 10, modality: str = "joint", flt: ItemFilter | None = None,
                mmr: float | None = None, overrides: Overrides | None = None) -> list[Recommendation]:
        """``overrides``: an A/B variant's settings; an explicit ``mmr`` wins over its mmr."""
        if mmr is None and overrides is not None:
            mmr = overrides.mmr
        return self.engine.similar(item_id, k=k, modality=modality, flt=flt, mmr=mmr)

    def complementary(self, item_ids: Sequence[str], k: int = 10, flt: ItemFilter | None = None) -> list[Recommendation]:
        return self.engine.complementary(list(item_ids), k=k, flt=flt)

    def trending(self, k: int = 10, flt: ItemFilter | None = None) -> list[Recommendation]:
        """What an anonymous visitor sees: popular now, then the newest items when popularity is thin."""
        from shoprec.recommend.filters import narrowed  # light, but only trending needs it

        out = self.engine.trending(k=k, flt=flt)
        if len(out) < k:
            rest = narrowed(flt, exclude=[r.id for r in out])
            out += self.engine.feed.new_arrivals(k - len(out), rest) if rest is not None else []
        return out

    def recommend(self, user_id: str, k: int = 10, context_item: str | None = None, exclude_purchased: bool = False,
                  flt: ItemFilter | None = None, overrides: Overrides | None = None) -> list[Recommendation]:
        o = overrides or Overrides()
        return self.engine.recommend_user(user_id, k=k, context_item=context_item,
                                          exclude_purchased=exclude_purchased, flt=flt, mmr=o.mmr, ranker=o.ranker,
                                          candidates=o.candidates)

    def ingest_events(self, events: Iterable[Any]):
        return self.engine.ingest(events)

    def ingest_events_file(self, path: Path):
        return self.engine.ingest_file(path)

    def forget_user(self, user_id: str) -> int:
        """Number of the user's events removed (0: nothing known about them)."""
        return self.engine.forget_user(user_id)

    def history(self, user_id: str):
        return self.engine.history(user_id)

    def stats(self) -> dict[str, Any]:
        stats = {"items": self.store.count()}
        stats.update(self.engine.stats())
        return stats

