"""Catalog -> points in the store, batched, resumable and idempotent.

Two phases, each safe to interrupt:
1. rows whose content hash changed are encoded (text, image, lexical) and upserted batch by
   batch with their hash, so a re-run skips everything already done;
2. the joint space (and the look space, encoders/look.py) is trained or reused, and every
   point whose ``joint_version`` differs from the current spaces gets its joint (and look)
   vector — a projection of stored vectors, never a re-encode.
Images for the next batch are decoded, and resized into the image encoder's input array, on
worker threads while the current batch encodes, so the encoder's thread only runs the network.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from shoprec.bounds import InputBounds
from shoprec.catalog import CatalogRow, Product, RowError, read_catalog
from shoprec.config import Settings
from shoprec.images import (ImageError, ImageLimits, image_content_fingerprint, image_fingerprint, is_remote, load_image,
                            resolve_local)
from shoprec.indexing.embedder import ProductEmbedder
from shoprec.indexing import seen_hashes, serving_space
from shoprec.indexing.report import IndexReport
from shoprec.indexing.store import JOINT_VERSION_FIELD, VectorStore
from shoprec.progress import progress as progress_of
from shoprec.safe_fetch import Budget

#: Payload fields the indexer owns (besides the catalog fields).
HASH_FIELD = "content_hash"
#: The row's hash with the photo's bytes in place of its size and mtime (``image_content_fingerprint``).
CONTENT_FIELD = "content_digest"
#: Where the web page reads a photo from (written by the embedder for items with a photo vector).
IMAGE_PATH_FIELD = "image_path"


@dataclass
class _Loaded:
    image: Image.Image
    pixels: np.ndarray | None  # the image encoder's input, when it can prepare one ahead
    colour: np.ndarray | None = None  # the photo's colour descriptor (stores with a colour vector)


@dataclass
class _Pending:
    line: int
    product: Product
    content_hash: str
    content_digest: str
    image: Future[_Loaded] | None


def _load_and_prepare(ref: str, base_dir: Path, limits: ImageLimits, budget: Budget | None,
                      prepare: Callable[[Image.Image], np.ndarray] | None,
                      colour: Callable[[Image.Image], np.ndarray] | None) -> _Loaded:
    """Runs on a worker thread: decode, then resize/pad/normalise the encoder's input and take the
    colour descriptor, all from the one decode (PIL and numpy release the GIL)."""
    image = load_image(ref, base_dir, limits, budget)
    return _Loaded(image, prepare(image) if prepare is not None else None,
                   colour(image) if colour is not None else None)


class Indexer:
    def __init__(self, store: VectorStore, embedder: ProductEmbedder, settings: Settings) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.limits = ImageLimits(
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            max_side=settings.max_image_side,
            max_aspect=settings.max_image_aspect,
            allow_remote=settings.allow_remote_images,
            allow_private_hosts=settings.allow_private_image_hosts,
            timeout_s=settings.remote_image_timeout_s,
            deadline_s=settings.remote_image_deadline_s,
            max_redirects=settings.remote_image_max_redirects,
        )

    # ------------------------------------------------------------------ public API
    def index_catalog(self, path: Path, delete_missing: bool = False, progress: bool = True) -> IndexReport:
        """Index a catalog file. Rows are compared with the stored content hashes first; when
        nothing changed and the joint space is current, no encoder (nor torch) is loaded at all."""
        started = time.perf_counter()
        report = IndexReport()
        rows = self._unique_rows(read_catalog(path, InputBounds.of(self.settings)), report)
        base_dir = Path(path).resolve().parent
        todo = self._changed_rows(rows, base_dir, report)
        nothing_changed = (not todo and self.embedder.has_lexical_state()
                     and self.embedder.joint_is_current(self.store))
        if not nothing_changed:
            self.embedder.ensure_collection(self.store)
            self.embedder.fit_lexical([row.product for row in rows])
            self._encode_rows(todo, base_dir, report, progress)
        if delete_missing:
            seen = {row.product.id for row in rows}
            stale = [hit.item_id for hit in self.store.scroll(fields=["item_id"]) if hit.item_id not in seen]
            self.store.delete(stale)
            report.deleted = len(stale)
        if not nothing_changed:
            self._refresh_joint(report, progress, train=True)
        self.store.optimize()
        # The choice is a function of the stored items and the joint space: an untouched store
        # keeps the one saved by the run that built it.
        choice = serving_space.load(Path(self.settings.store)) if nothing_changed and not report.deleted else None
        if choice is None:
            metrics = self.embedder.saved_joint_metrics() if nothing_changed else self.embedder.joint_metrics()
            choice = serving_space.choose(self.store, metrics)
            serving_space.save(Path(self.settings.store), choice)
        report.serving_space = {"vector": choice.vector, "reason": choice.reason}
        report.seconds = time.perf_counter() - started
        return report

    def upsert_products(self, products: Sequence[Product], base_dir: Path) -> IndexReport:
        """Index a batch at once (HTTP upserts): new items are searchable when this returns.

        Remote photos of the batch share one fetch budget, so slow URLs cannot hold the request.
        """
        started = time.perf_counter()
        report = IndexReport()
        self.embedder.ensure_collection(self.store)
        rows = [CatalogRow(i + 1, p) for i, p in enumerate(products)]
        budget = Budget(self.settings.remote_image_batch_budget_s)
        self._upsert_rows(rows, base_dir, report, progress=False, budget=budget)
        self._refresh_joint(report, progress=False, train=False)
        report.seconds = time.perf_counter() - started
        return report

    def delete(self, item_ids: Sequence[str]) -> int:
        found = self.store.retrieve(list(item_ids))
        self.store.delete([hit.item_id for hit in found])
        return len(found)

    # ------------------------------------------------------------------ phase 1
    @staticmethod
    def _unique_rows(rows: Iterable[CatalogRow | RowError], report: IndexReport) -> list[CatalogRow]:
        first_line: dict[str, int] = {}
        unique: list[CatalogRow] = []
        for row in rows:
            if isinstance(row, RowError):
                report.row_errors.append(row)
                continue
            item_id = row.product.id
            if item_id in first_line:
                report.row_errors.append(
                    RowError(row.line, item_id, f"duplicate id, first seen on line {first_line[item_id]}")
                )
                continue
            first_line[item_id] = row.line
            unique.append(row)
        return unique

    def _upsert_rows(self, rows: list[CatalogRow], base_dir: Path, report: IndexReport, progress: bool,
                     budget: Budget | None = None) -> None:
        self._encode_rows(self._changed_rows(rows, base_dir, report), base_dir, report, progress, budget)

    def _changed_rows(self, rows: list[CatalogRow], base_dir: Path,
                      report: IndexReport) -> list[tuple[CatalogRow, str, str]]:
        """Rows whose content differs from the stored one, with their new hashes; the others are
        counted as unchanged. The cheap hash (the photo's size and mtime) decides first; where it
        differs, the photo's bytes do. An item whose bytes are the same is left as it is stored
        (its new cheap hash is remembered beside the store, seen_hashes.py), unless its photo moved
        to another folder: then the served path follows it. A store without a collection yet has
        no hashes to match."""
        try:
            self.store.count()
        except RuntimeError:
            known: dict[str, dict[str, Any]] = {}
        else:
            known = {hit.item_id: hit.payload
                     for hit in self.store.scroll(fields=["item_id", HASH_FIELD, CONTENT_FIELD, IMAGE_PATH_FIELD])}
        store_dir = Path(self.settings.store)
        seen = seen_hashes.load(store_dir) if known else {}
        confirmed = dict(seen)
        todo: list[tuple[CatalogRow, str, str]] = []
        for row in rows:
            item_id = row.product.id
            stored = known.get(item_id, {})
            digest = row.product.content_hash(image_fingerprint(row.product.image, base_dir))
            if stored.get(HASH_FIELD) == digest or seen_hashes.vouches(seen, item_id, stored.get(HASH_FIELD), digest):
                report.unchanged += 1
                continue
            content = row.product.content_hash(
                image_content_fingerprint(row.product.image, base_dir, self.limits.max_bytes))
            if stored and stored.get(CONTENT_FIELD) == content:
                served, local = stored.get(IMAGE_PATH_FIELD), _local_path(row.product.image, base_dir)
                moved = bool(served) and served != local  # the same bytes in another folder: serve them there
                if moved or stored.get(HASH_FIELD) is None:  # (or no stored hash to vouch for)
                    refresh: dict[str, Any] = {HASH_FIELD: digest}
                    if moved:
                        refresh[IMAGE_PATH_FIELD] = local
                    self.store.set_payload([item_id], refresh)
                    confirmed.pop(item_id, None)
                else:
                    confirmed[item_id] = (stored[HASH_FIELD], digest)
                report.unchanged += 1
            else:
                todo.append((row, digest, content))
        if confirmed != seen:
            seen_hashes.save(store_dir, confirmed, {i: p.get(HASH_FIELD) for i, p in known.items()})
        return todo

    def _encode_rows(self, todo: list[tuple[CatalogRow, str, str]], base_dir: Path, report: IndexReport,
                     progress: bool, budget: Budget | None = None) -> None:
        batch_size = max(1, self.settings.batch_size)
        with ThreadPoolExecutor(max_workers=max(1, self.settings.image_workers)) as pool, \
                progress_of("encoding", len(todo), enabled=progress and bool(todo)) as bar:
            batches = self._prefetching_batches(todo, batch_size, base_dir, pool, budget)
            for batch in batches:
                self._encode_and_upsert(batch, base_dir, report)
                bar.advance(len(batch))

    def _prefetching_batches(self, todo: list[tuple[CatalogRow, str, str]], batch_size: int, base_dir: Path,
                             pool: ThreadPoolExecutor, budget: Budget | None = None) -> Iterator[list[_Pending]]:
        """Submit the next batch's image loads before yielding the current one."""

        prepare: list[Callable[[Image.Image], np.ndarray] | None] = []

        def submit(chunk: list[tuple[CatalogRow, str, str]]) -> list[_Pending]:
            if not prepare and any(row.product.image for row, _, _ in chunk):
                # encoders that can make their input array ahead (timm) get it from the workers
                prepare.append(getattr(self.embedder.image_encoder, "prepare", None))
            return [
                _Pending(row.line, row.product, digest, content,
                         pool.submit(_load_and_prepare, row.product.image, base_dir, self.limits, budget,
                                     prepare[0], self.embedder.colour.describe if self.embedder.stores_colour else None)
                         if row.product.image else None)
                for row, digest, content in chunk
            ]

        chunks = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
        ahead = submit(chunks[0]) if chunks else []
        for index in range(len(chunks)):
            current = ahead
            ahead = submit(chunks[index + 1]) if index + 1 < len(chunks) else []
            yield current

    def _encode_and_upsert(self, batch: list[_Pending], base_dir: Path, report: IndexReport) -> None:
        images: list[Image.Image | None] = []
        colours: list[np.ndarray | None] = []
        pixels: list[np.ndarray | None] = []
        for pending in batch:
            loaded = None
            if pending.image is not None:
                try:
                    loaded = pending.image.result()
                except ImageError as err:
                    report.image_errors.append(RowError(pending.line, pending.product.id, str(err)))
                except Exception as err:  # noqa: BLE001 - a single bad image must not stop the catalog
                    report.image_errors.append(RowError(pending.line, pending.product.id, f"image failed: {err}"))
            images.append(loaded.image if loaded else None)
            colours.append(loaded.colour if loaded else None)
            pixels.append(loaded.pixels if loaded else None)
        products = [p.product for p in batch]
        paths = [_local_path(p.product.image, base_dir) for p in batch]
        points = self.embedder.embed(products, images, paths, colours, pixels)
        for point, pending in zip(points, batch):
            point.payload[HASH_FIELD] = pending.content_hash
            point.payload[CONTENT_FIELD] = pending.content_digest
        self.store.upsert(points)
        report.indexed += len(points)

    # ------------------------------------------------------------------ phase 2
    def _refresh_joint(self, report: IndexReport, progress: bool, train: bool) -> None:
        """Give every point a joint (and look) vector from the current spaces (no re-encoding)."""
        if train and self.embedder.joint_needs_training(self.store):
            report.joint_metrics = self.embedder.train_joint(self.store)
        version = self.embedder.joint_version
        if version is None:
            return
        stale = [hit.item_id for hit in self.store.scroll(fields=["item_id", JOINT_VERSION_FIELD])
                 if hit.payload.get(JOINT_VERSION_FIELD) != version]
        for start in range(0, len(stale), 512):
            chunk = self.store.retrieve(stale[start:start + 512], with_vectors=self.embedder.derived_from)
            derived = self.embedder.derived_vectors(chunk)
            self.store.update_vectors([(hit.item_id, vectors) for hit, vectors in zip(chunk, derived)])
            self.store.set_payload([hit.item_id for hit in chunk], {JOINT_VERSION_FIELD: version})
        report.joint_updated = len(stale)


def _local_path(ref: str | None, base_dir: Path) -> str | None:
    """Absolute path of a local photo, kept in the payload so the web page can serve it."""
    if not ref or is_remote(ref):
        return None
    try:
        return str(resolve_local(ref, base_dir))
    except ImageError:
        return None
