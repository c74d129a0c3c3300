"""Embedded backend: one Qdrant Edge shard in-process, no server to run.

Layout under ``path``: ``<collection>/`` is the EdgeShard (segments + WAL) and
``<collection>.json`` beside it records the dense dims, so reopening with other encoders fails
with a clear message instead of a Rust config error.

Edge facts this module relies on (qdrant-edge-py 0.9.0, checked in tests/test_store_contract.py):
- queries take raw vectors only (no "recommend by point id"), so negatives are passed as vectors;
- ``MatchValue(True)`` never matches a stored boolean, hence ``in_stock`` is stored as 0/1;
- a search on a named vector skips points that lack it (items without an image);
- until ``optimize()`` queries scan the appendable segment; it builds HNSW once a segment is
  over the indexing threshold (default ~10 MB of vectors, so small catalogs stay brute force);
- the shard holds a lock on its WAL: one EdgeStore per folder per process;
- reads are safe from many threads; writes are serialised here so upsert+flush stay atomic.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from .. import storage

from .store import (
    WithVectors,
    check_weighted_parts,
    vector_names,
    SPARSE_VECTOR,
    Hit,
    ItemFilter,
    ItemPoint,
    SparseVec,
    check_dense_dims,
    check_point_vectors,
    dense_vectors,
    dims_mismatch,
    fetch_fields,
    point_id,
    restrict_payload,
    stored_payload,
)

_INDEXES: dict[str, qe.PayloadSchemaType] = {
    "category": qe.PayloadSchemaType.Keyword,
    "price": qe.PayloadSchemaType.Float,
    "in_stock": qe.PayloadSchemaType.Integer,
    "item_id": qe.PayloadSchemaType.Keyword,
}
_UPSERT_CHUNK = 1000


def edge_filter(flt: ItemFilter | None) -> qe.Filter | None:
    """ItemFilter -> Edge Filter; None when nothing constrains (cheaper than an empty filter)."""
    if flt is None:
        return None
    must: list[Any] = []
    if flt.categories:
        must.append(qe.FieldCondition("category", match=qe.MatchAny(list(flt.categories))))
    if flt.min_price is not None or flt.max_price is not None:
        must.append(qe.FieldCondition("price", range=qe.RangeFloat(
            gte=None if flt.min_price is None else float(flt.min_price),
            lte=None if flt.max_price is None else float(flt.max_price))))
    if flt.in_stock is not None:
        must.append(qe.FieldCondition("in_stock", match=qe.MatchValue(1 if flt.in_stock else 0)))
    excluded = {point_id(i) for i in flt.exclude_ids}
    must_not = [qe.HasIdCondition(excluded)] if excluded else None
    if not must and not must_not:
        return None
    return qe.Filter(must=must or None, must_not=must_not)


class EdgeStore:
    """VectorStore on an in-process Qdrant Edge shard (see module docstring for its quirks)."""

    scroll_batch: int = 256

    def __init__(self, path: Path, collection: str = "products", *,
                 indexing_threshold_kb: int | None = None, hnsw_ef: int | None = None,
                 min_free_mb: float = 64.0) -> None:
        """Open ``path/collection`` if it was created before; otherwise wait for
        ``ensure_collection``. ``indexing_threshold_kb`` (used only when the shard is created)
        lowers the segment size above which ``optimize()`` builds HNSW. ``hnsw_ef`` (None: Edge's
        default) trades HNSW query time for recall; it is read per query. ``min_free_mb`` is the
        free disk space kept beyond the shard's reserved file length (shoprec/storage.py says why
        a full disk must be refused up front: Edge would die of SIGBUS)."""
        self.hnsw_ef = hnsw_ef
        self.min_free_mb = min_free_mb
        self.path = Path(path)
        self.collection = collection
        self._dir = self.path / collection
        self._meta = self.path / f"{collection}.json"
        self._indexing_threshold_kb = indexing_threshold_kb
        self._write = threading.RLock()
        self._shard: qe.EdgeShard | None = None
        self._dims: dict[str, int] | None = None
        if self._meta.exists():
            self._dims = self._read_meta()
            if not self._has_segments():
                raise RuntimeError(f"{self._meta} exists but the shard folder {self._dir} is missing or empty")
            storage.ensure_writable(self.path)
            storage.ensure_space(self.path, self.min_free_mb, "open the store")
            self._shard = self._open(None)

    # --- lifecycle ------------------------------------------------------------------------

    def _read_meta(self) -> dict[str, int]:
        try:
            meta = json.loads(self._meta.read_text(encoding="utf-8"))
            return {str(k): int(v) for k, v in meta["dense_dims"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise RuntimeError(f"cannot read store metadata {self._meta}: {err}") from err

    def _write_meta(self, dims: dict[str, int]) -> None:
        tmp = self._meta.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"dense_dims": dims, "sparse": [SPARSE_VECTOR]}, indent=1), encoding="utf-8")
        os.replace(tmp, self._meta)

    def _open(self, config: qe.EdgeConfig | None) -> qe.EdgeShard:
        """Load the shard, turning Edge's WAL-lock error into one that says what happened."""
        try:
            return qe.EdgeShard.load(str(self._dir), config)
        except Exception as err:  # Edge raises a bare Exception
            if "WouldBlock" in str(err):
                raise storage.StoreUnavailable(
                    f"the store {self.path} is in use by another shoprec process (a running `shoprec serve`?) "
                    "or is already open in this one: stop that process, or send the query to the running "
                    "server with --url http://HOST:PORT (or SHOPREC_URL)") from err
            if config is not None and "incompatible" in str(err):
                raise ValueError(f"existing shard {self._dir} does not match dims {dict((n, v.size) for n, v in config.vectors.items())}: {err}"
                                 ) from err
            raise storage.translate(err, self.path, "open the store") from err

    def _has_segments(self) -> bool:
        return self._dir.is_dir() and any(self._dir.iterdir())

    def _config(self, dims: dict[str, int]) -> qe.EdgeConfig:
        optimizers = None
        if self._indexing_threshold_kb is not None:
            optimizers = qe.EdgeOptimizersConfig(indexing_threshold=self._indexing_threshold_kb)
        return qe.EdgeConfig(
            vectors={n: qe.EdgeVectorParams(size=d, distance=qe.Distance.Cosine) for n, d in dims.items()},
            sparse_vectors={SPARSE_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            optimizers=optimizers,
        )

    def ensure_collection(self, dense_dims: dict[str, int]) -> None:
        """Create the shard and its payload indexes once; later calls only check the dims."""
        want = check_dense_dims(dense_dims)
        with self._write:
            if self._dims is not None:
                if self._dims != want:
                    raise dims_mismatch(self.collection, self._dims, want)
                return
            self.path.mkdir(parents=True, exist_ok=True)
            storage.ensure_writable(self.path)
            storage.ensure_space(self.path, self.min_free_mb, "create the store")
            if self._has_segments():
                # Created earlier but the metadata write never happened (crash): Edge itself
                # checks the config against the segments.
                shard = self._open(self._config(want))
            else:
                shard = qe.EdgeShard.create(str(self._dir), self._config(want))
            for field_name, schema in _INDEXES.items():
                shard.update(qe.UpdateOperation.create_field_index(field_name, schema))
            shard.flush()
            self._write_meta(want)
            self._shard, self._dims = shard, want

    def _ready(self) -> qe.EdgeShard:
        if self._shard is None:
            raise RuntimeError(f"store {self._dir} has no collection yet (or is closed): call ensure_collection first")
        return self._shard

    def optimize(self) -> None:
        with self._write:
            self._ready().optimize()
            self._ready().flush()

    def close(self) -> None:
        """Flush and release the shard (and its WAL lock); further calls raise."""
        with self._write:
            if self._shard is not None:
                self._shard.flush()
                self._shard.close()
                self._shard = None

    # --- writes ---------------------------------------------------------------------------

    def _to_point(self, p: ItemPoint, dims: dict[str, int]) -> qe.Point:
        vector: dict[str, Any] = dict(check_point_vectors(p, dims))
        if p.sparse is not None and p.sparse.indices:
            vector[SPARSE_VECTOR] = qe.SparseVector([int(i) for i in p.sparse.indices],
                                                    [float(v) for v in p.sparse.values])
        return qe.Point(point_id(p.item_id), vector, stored_payload(p))

    @contextmanager
    def _writing(self, action: str) -> Iterator[qe.EdgeShard]:
        """The shard under the write lock, after the disk-space check; flushed on success."""
        with self._write:
            shard = self._ready()
            storage.ensure_space(self.path, self.min_free_mb, action)
            try:
                yield shard
                shard.flush()
            except Exception as err:  # Edge raises a bare Exception; OS faults become StoreErrors
                raise storage.translate(err, self.path, action) from err

    def upsert(self, points: Sequence[ItemPoint]) -> None:
        """Insert or wholly replace points (vectors a point lacks are gone afterwards)."""
        if not points:
            return
        with self._writing("write items") as shard:
            dims = self._dims or {}
            for start in range(0, len(points), _UPSERT_CHUNK):
                chunk = [self._to_point(p, dims) for p in points[start:start + _UPSERT_CHUNK]]
                shard.update(qe.UpdateOperation.upsert_points(chunk))

    def update_vectors(self, updates: Sequence[tuple[str, dict[str, np.ndarray]]]) -> None:
        if not updates:
            return
        with self._writing("write vectors") as shard:
            dims = self._dims or {}
            ops = [qe.PointVectors(point_id(item_id), check_point_vectors(ItemPoint(item_id, vectors, {}), dims))
                   for item_id, vectors in updates]
            shard.update(qe.UpdateOperation.update_vectors(ops))

    def set_payload(self, item_ids: Sequence[str], payload: dict[str, Any]) -> None:
        if not item_ids:
            return
        with self._writing("write payloads") as shard:
            shard.update(qe.UpdateOperation.set_payload([point_id(i) for i in item_ids], payload))

    def delete(self, item_ids: Sequence[str]) -> None:
        if not item_ids:
            return
        with self._writing("delete items") as shard:
            shard.update(qe.UpdateOperation.delete_points([point_id(i) for i in item_ids]))

    # --- reads ----------------------------------------------------------------------------

    def _hit(self, rec: Any, vector_names: Sequence[str] = (), fields: Sequence[str] | None = None) -> Hit:
        payload = rec.payload or {}
        item_id = str(payload.get("item_id", rec.id))
        score = float(getattr(rec, "score", 0.0) or 0.0)  # Records (retrieve/scroll) have none
        return Hit(item_id, score, restrict_payload(payload, fields), dense_vectors(rec.vector, vector_names))

    def _vector_names(self, with_vectors: WithVectors) -> list[str]:
        return vector_names(with_vectors, self._dims or {})

    def retrieve(self, item_ids: Sequence[str], with_vectors: WithVectors = False) -> list[Hit]:
        if not item_ids:
            return []
        names = self._vector_names(with_vectors)
        recs = self._ready().retrieve([point_id(i) for i in item_ids], with_payload=True,
                                      with_vector=names or False)
        by_id = {str(r.id): r for r in recs}
        return [self._hit(by_id[pid], names) for pid in map(point_id, item_ids) if pid in by_id]

    def search(
        self,
        vector_name: str,
        vector: np.ndarray,
        k: int,
        flt: ItemFilter | None = None,
        negatives: Sequence[np.ndarray] = (),
        with_vectors: WithVectors = False,
        fields: Sequence[str] | None = None,
    ) -> list[Hit]:
        shard = self._ready()
        dims = self._dims or {}
        if vector_name not in dims:
            raise ValueError(f"unknown dense vector '{vector_name}' (have {sorted(dims)})")
        if k <= 0:
            return []
        q = np.asarray(vector, dtype=np.float32).ravel().tolist()
        if negatives:
            negs = [np.asarray(n, dtype=np.float32).ravel().tolist() for n in negatives]
            query = qe.Query.RecommendBestScore(qe.RecommendQuery(positives=[q], negatives=negs), using=vector_name)
        else:
            query = qe.Query.Nearest(q, using=vector_name)
        names = self._vector_names(with_vectors)
        want = fetch_fields(fields)
        params = qe.SearchParams(hnsw_ef=int(self.hnsw_ef)) if self.hnsw_ef else None
        res = shard.query(qe.QueryRequest(limit=int(k), query=query, filter=edge_filter(flt), params=params,
                                          with_payload=True if want is None else qe.PayloadSelector.Include(want), with_vector=names or False))
        return [self._hit(r, names, fields) for r in res]

    def search_weighted(self, parts: Sequence[tuple[str, np.ndarray, float]], k: int, candidates: int,
                        flt: ItemFilter | None = None, with_vectors: WithVectors = False,
                        fields: Sequence[str] | None = None) -> list[Hit]:
        shard = self._ready()
        checked = check_weighted_parts(parts, self._dims or {})
        if k <= 0:
            return []
        params = qe.SearchParams(hnsw_ef=int(self.hnsw_ef)) if self.hnsw_ef else None
        limit = max(int(candidates), int(k))
        edge_flt = edge_filter(flt)
        lead_name, lead_vector, _ = checked[0]

        def lead() -> qe.Prefetch:
            return qe.Prefetch(limit=limit, query=qe.Query.Nearest(lead_vector, using=lead_name),
                               filter=edge_flt, params=params)

        prefetches = [lead()] + [qe.Prefetch(limit=limit, prefetches=[lead()], query=qe.Query.Nearest(v, using=n))
                                 for n, v, _ in checked[1:]]
        E = qe.Expression
        formula = qe.Formula(E.Sum([E.Mult([E.Constant(w), E.Variable(f"$score[{i}]")])
                                    for i, (_, _, w) in enumerate(checked)]),
                             defaults={f"$score[{i}]": 0.0 for i in range(len(checked))})
        names = self._vector_names(with_vectors)
        want = fetch_fields(fields)
        res = shard.query(qe.QueryRequest(limit=int(k), prefetches=prefetches, query=formula,
                                          with_payload=True if want is None else qe.PayloadSelector.Include(want),
                                          with_vector=names or False))
        return [self._hit(r, names, fields) for r in res]

    def dense_dims(self) -> dict[str, int] | None:
        return dict(self._dims) if self._dims is not None else None

    def search_many(self, vector_name: str, vectors: Sequence[np.ndarray], k: int,
                    fields: Sequence[str] | None = None) -> list[list[Hit]]:
        shard = self._ready()
        if vector_name not in (self._dims or {}):
            raise ValueError(f"unknown dense vector '{vector_name}' (have {sorted(self._dims or {})})")
        if k <= 0 or len(vectors) == 0:
            return [[] for _ in vectors]
        want = fetch_fields(fields)
        with_payload: Any = True if want is None else qe.PayloadSelector.Include(want)
        params = qe.SearchParams(hnsw_ef=int(self.hnsw_ef)) if self.hnsw_ef else None
        requests = [qe.QueryRequest(limit=int(k), params=params, with_payload=with_payload, with_vector=False,
                                    query=qe.Query.Nearest(np.asarray(v, dtype=np.float32).ravel().tolist(),
                                                           using=vector_name))
                    for v in vectors]
        batch = shard.query_batch(qe.QueryBatchRequest(requests))
        if fields is not None and not fields:  # ids and scores only: skip the general conversion
            return [[Hit(str(r.payload.get("item_id", r.id)), float(r.score)) for r in res] for res in batch]
        return [[self._hit(r, (), fields) for r in res] for res in batch]

    def search_sparse(self, vector: SparseVec, k: int, flt: ItemFilter | None = None) -> list[Hit]:
        """BM25-style: stored TF weights times the IDF Edge keeps per term (Modifier.Idf)."""
        shard = self._ready()
        if k <= 0 or not vector.indices:
            return []
        sv = qe.SparseVector([int(i) for i in vector.indices], [float(v) for v in vector.values])
        res = shard.query(qe.QueryRequest(limit=int(k), query=qe.Query.Nearest(sv, using=SPARSE_VECTOR),
                                                  filter=edge_filter(flt), with_payload=True))
        return [self._hit(r) for r in res]

    def scroll(self, flt: ItemFilter | None = None, fields: Sequence[str] | None = None,
               with_vectors: WithVectors = False) -> Iterator[Hit]:
        names = self._vector_names(with_vectors)
        want = fetch_fields(fields)
        with_payload: Any = True if want is None else qe.PayloadSelector.Include(want)
        edge_flt = edge_filter(flt)
        offset: Any = None
        while True:
            recs, offset = self._ready().scroll(qe.ScrollRequest(
                offset=offset, limit=self.scroll_batch, filter=edge_flt,
                with_payload=with_payload, with_vector=names or False))
            for r in recs:
                yield self._hit(r, names, fields)
            if offset is None or not recs:
                return

    def count(self, flt: ItemFilter | None = None) -> int:
        return int(self._ready().count(qe.CountRequest(exact=True, filter=edge_filter(flt))))

    def points_count(self) -> int:
        return int(self._ready().info().points_count)  # ~10 us; an exact count() takes ~1 ms at 17k
