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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from .. import storage
from .store import SPARSE_VECTOR, check_dense_dims, dims_mismatch
from .store_base import FilterBuilder, StoreBase

_INDEXES: dict[str, qe.PayloadSchemaType] = {
    "category": qe.PayloadSchemaType.Keyword,
    "price": qe.PayloadSchemaType.Float,
    "in_stock": qe.PayloadSchemaType.Integer,
    "item_id": qe.PayloadSchemaType.Keyword,
}


class _EdgeFilters(FilterBuilder):
    """store_base.FilterBuilder's conditions as qdrant_edge classes."""

    def match_any(self, key: str, values: list[str]) -> Any:
        return qe.FieldCondition(key, match=qe.MatchAny(values))

    def float_range(self, key: str, gte: float | None, lte: float | None) -> Any:
        return qe.FieldCondition(key, range=qe.RangeFloat(gte=gte, lte=lte))

    def match_value(self, key: str, value: int) -> Any:
        return qe.FieldCondition(key, match=qe.MatchValue(value))

    def has_ids(self, ids: set[str]) -> Any:
        return qe.HasIdCondition(ids)

    def combine(self, must: list[Any] | None, must_not: list[Any] | None) -> qe.Filter:
        return qe.Filter(must=must, must_not=must_not)


class EdgeStore(StoreBase):
    """VectorStore on an in-process Qdrant Edge shard (see module docstring for its quirks)."""

    write_chunk = 1000
    filters = _EdgeFilters()

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

    # --- primitives for StoreBase ----------------------------------------------------------

    def _ready_dims(self) -> dict[str, int]:
        self._ready()
        return self._dims or {}

    def _known_dims(self) -> dict[str, int]:
        return self._dims or {}

    def _sparse(self, indices: list[int], values: list[float]) -> qe.SparseVector:
        return qe.SparseVector(indices, values)

    def _point(self, pid: str, vectors: dict[str, Any], payload: dict[str, Any]) -> qe.Point:
        return qe.Point(pid, vectors, payload)

    @contextmanager
    def _writing(self, action: str) -> Iterator[dict[str, int]]:
        """Holds the write lock, checks disk space first, yields the dims; flushes the shard on success."""
        with self._write:
            shard = self._ready()
            storage.ensure_space(self.path, self.min_free_mb, action)
            try:
                yield self._dims or {}
                shard.flush()
            except Exception as err:  # Edge raises a bare Exception; OS faults become StoreErrors
                raise storage.translate(err, self.path, action) from err

    def _upsert_chunk(self, points: list[qe.Point]) -> None:
        self._ready().update(qe.UpdateOperation.upsert_points(points))

    def _update_vectors_chunk(self, updates: list[tuple[str, dict[str, list[float]]]]) -> None:
        self._ready().update(qe.UpdateOperation.update_vectors([qe.PointVectors(pid, v) for pid, v in updates]))

    def _set_payload(self, ids: list[str], payload: dict[str, Any]) -> None:
        self._ready().update(qe.UpdateOperation.set_payload(ids, payload))

    def _delete(self, ids: list[str]) -> None:
        self._ready().update(qe.UpdateOperation.delete_points(ids))

    def _retrieve(self, ids: list[str], names: list[str]) -> list[Any]:
        return self._ready().retrieve(ids, with_payload=True, with_vector=names or False)

    def _params(self) -> qe.SearchParams | None:
        return qe.SearchParams(hnsw_ef=int(self.hnsw_ef)) if self.hnsw_ef else None

    def _dense_query(self, name: str, vector: list[float], negatives: list[list[float]]) -> dict[str, Any]:
        if negatives:
            rec = qe.RecommendQuery(positives=[vector], negatives=negatives)
            return {"query": qe.Query.RecommendBestScore(rec, using=name), "params": self._params()}
        return {"query": qe.Query.Nearest(vector, using=name), "params": self._params()}

    def _sparse_query(self, vector: qe.SparseVector) -> dict[str, Any]:
        return {"query": qe.Query.Nearest(vector, using=SPARSE_VECTOR)}

    def _prefetch(self, name: str, vector: list[float], limit: int, flt: Any, inner: list[Any] | None) -> Any:
        # hnsw_ef matters where HNSW is searched: the lead (the others rescore its candidates)
        return qe.Prefetch(limit=limit, query=qe.Query.Nearest(vector, using=name), filter=flt,
                           prefetches=inner, params=None if inner else self._params())

    def _formula_query(self, prefetches: list[Any], terms: list[tuple[float, str]],
                       defaults: dict[str, float]) -> dict[str, Any]:
        E = qe.Expression
        total = E.Sum([E.Mult([E.Constant(w), E.Variable(var)]) for w, var in terms])
        return {"prefetches": prefetches, "query": qe.Formula(total, defaults=defaults)}

    @staticmethod
    def _payload_selector(want: list[str] | None) -> Any:
        return True if want is None else qe.PayloadSelector.Include(want)

    def _query(self, request: dict[str, Any], limit: int, flt: Any, want: list[str] | None,
               names: list[str]) -> list[Any]:
        return self._ready().query(qe.QueryRequest(limit=limit, filter=flt, with_payload=self._payload_selector(want),
                                                   with_vector=names or False, **request))

    def _query_batch(self, name: str, vectors: list[list[float]], limit: int,
                     want: list[str] | None) -> list[list[Any]]:
        selector, params = self._payload_selector(want), self._params()
        requests = [qe.QueryRequest(limit=limit, params=params, with_payload=selector, with_vector=False,
                                    query=qe.Query.Nearest(v, using=name)) for v in vectors]
        return self._ready().query_batch(qe.QueryBatchRequest(requests))

    def _scroll_page(self, offset: Any, flt: Any, want: list[str] | None, names: list[str]) -> tuple[list[Any], Any]:
        return self._ready().scroll(qe.ScrollRequest(offset=offset, limit=self.scroll_batch, filter=flt,
                                                     with_payload=self._payload_selector(want),
                                                     with_vector=names or False))

    def _count(self, flt: Any) -> int:
        return int(self._ready().count(qe.CountRequest(exact=True, filter=flt)))

    # --- reads ----------------------------------------------------------------------------

    def dense_dims(self) -> dict[str, int] | None:
        return dict(self._dims) if self._dims is not None else None

    def points_count(self) -> int:
        return int(self._ready().info().points_count)  # ~10 us; an exact count() takes ~1 ms at 17k
