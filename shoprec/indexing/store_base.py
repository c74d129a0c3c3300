"""What EdgeStore and ServerStore share: the VectorStore contract written once over a few
backend primitives.

The two backends speak the same Qdrant query language through different model classes
(``qdrant_edge`` vs ``qdrant_client.models``), so this base owns the logic (argument checks,
filter construction, the weighted-mix plan, chunked writes, the scroll loop, record -> Hit)
and each backend only builds its own objects and sends them. Backend-only concerns stay in the
backend modules: Edge's WAL lock, disk-space checks and metadata file; the server's collection
creation, shards and replicas.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from .store import (
    SPARSE_VECTOR,
    Hit,
    ItemFilter,
    ItemPoint,
    SparseVec,
    WithVectors,
    check_point_vectors,
    check_weighted_parts,
    dense_vectors,
    fetch_fields,
    point_id,
    read_payload,
    restrict_payload,
    stored_payload,
    vector_names,
)


def _floats(vector: np.ndarray) -> list[float]:
    return np.asarray(vector, dtype=np.float32).ravel().tolist()


def _unknown_vector(name: str, dims: dict[str, int]) -> ValueError:
    return ValueError(f"unknown dense vector '{name}' (have {sorted(dims)})")


class FilterBuilder(ABC):
    """ItemFilter -> a backend's Filter: the conditions are decided here, the classes there."""

    def build(self, flt: ItemFilter | None) -> Any | None:
        """The backend Filter; None when nothing constrains (cheaper than an empty filter)."""
        if flt is None:
            return None
        must: list[Any] = []
        if flt.categories:
            must.append(self.match_any("category", list(flt.categories)))
        if flt.min_price is not None or flt.max_price is not None:
            must.append(self.float_range(
                "price",
                None if flt.min_price is None else float(flt.min_price),
                None if flt.max_price is None else float(flt.max_price)))
        if flt.in_stock is not None:
            must.append(self.match_value("in_stock", 1 if flt.in_stock else 0))
        excluded = {point_id(i) for i in flt.exclude_ids}
        must_not = [self.has_ids(excluded)] if excluded else None
        if not must and not must_not:
            return None
        return self.combine(must or None, must_not)

    @abstractmethod
    def match_any(self, key: str, values: list[str]) -> Any: ...

    @abstractmethod
    def float_range(self, key: str, gte: float | None, lte: float | None) -> Any: ...

    @abstractmethod
    def match_value(self, key: str, value: int) -> Any: ...

    @abstractmethod
    def has_ids(self, ids: set[str]) -> Any: ...

    @abstractmethod
    def combine(self, must: list[Any] | None, must_not: list[Any] | None) -> Any: ...


class StoreBase(ABC):
    """The shared half of a VectorStore. Subclasses implement the ``_``-prefixed primitives
    below, plus ensure_collection, dense_dims, points_count, optimize and close."""

    scroll_batch: int = 256
    #: points per write request
    write_chunk: int = 256
    collection: str
    filters: FilterBuilder

    # --- primitives -----------------------------------------------------------------------

    @abstractmethod
    def _ready_dims(self) -> dict[str, int]:
        """The collection's dense dims, raising if there is no collection (yet, or any more)."""

    @abstractmethod
    def _known_dims(self) -> dict[str, int]:
        """The dims ``with_vectors`` is checked against."""

    @abstractmethod
    def _writing(self, action: str) -> AbstractContextManager[dict[str, int]]:
        """Context for one write (``action`` names it in errors); yields the dense dims."""

    @abstractmethod
    def _sparse(self, indices: list[int], values: list[float]) -> Any:
        """The backend's SparseVector."""

    @abstractmethod
    def _point(self, pid: str, vectors: dict[str, Any], payload: dict[str, Any]) -> Any:
        """The backend's point (its vectors already checked and converted)."""

    @abstractmethod
    def _upsert_chunk(self, points: list[Any]) -> None: ...

    @abstractmethod
    def _update_vectors_chunk(self, updates: list[tuple[str, dict[str, list[float]]]]) -> None: ...

    @abstractmethod
    def _set_payload(self, ids: list[str], payload: dict[str, Any]) -> None: ...

    @abstractmethod
    def _delete(self, ids: list[str]) -> None: ...

    @abstractmethod
    def _retrieve(self, ids: list[str], names: list[str]) -> list[Any]: ...

    @abstractmethod
    def _dense_query(self, name: str, vector: list[float], negatives: list[list[float]]) -> dict[str, Any]:
        """Keyword arguments for ``_query`` (query and what it runs on) for a dense search."""

    @abstractmethod
    def _sparse_query(self, vector: Any) -> dict[str, Any]:
        """``_query`` arguments for a search on the sparse vector (``vector`` from ``_sparse``)."""

    @abstractmethod
    def _prefetch(self, name: str, vector: list[float], limit: int, flt: Any, inner: list[Any] | None) -> Any:
        """One nearest-neighbour prefetch; ``inner`` (rescoring its candidates) or ``flt`` (the lead)."""

    @abstractmethod
    def _formula_query(self, prefetches: list[Any], terms: list[tuple[float, str]],
                       defaults: dict[str, float]) -> dict[str, Any]:
        """``_query`` arguments for sum(weight * variable) over ``prefetches``."""

    @abstractmethod
    def _query(self, request: dict[str, Any], limit: int, flt: Any, want: list[str] | None,
               names: list[str]) -> list[Any]: ...

    @abstractmethod
    def _query_batch(self, name: str, vectors: list[list[float]], limit: int,
                     want: list[str] | None) -> list[list[Any]]: ...

    @abstractmethod
    def _scroll_page(self, offset: Any, flt: Any, want: list[str] | None,
                     names: list[str]) -> tuple[list[Any], Any]: ...

    @abstractmethod
    def _count(self, flt: Any) -> int: ...

    # --- writes ---------------------------------------------------------------------------

    def _native_sparse(self, sv: SparseVec) -> Any:
        return self._sparse([int(i) for i in sv.indices], [float(v) for v in sv.values])

    def _to_point(self, p: ItemPoint, dims: dict[str, int]) -> Any:
        """Checks ``p``'s vectors and writes its payload by store.py's conventions."""
        vector: dict[str, Any] = dict(check_point_vectors(p, dims))
        if p.sparse is not None and p.sparse.indices:
            vector[SPARSE_VECTOR] = self._native_sparse(p.sparse)
        return self._point(point_id(p.item_id), vector, stored_payload(p))

    def upsert(self, points: Sequence[ItemPoint]) -> None:
        """Insert or wholly replace points (vectors a point lacks are gone afterwards)."""
        if not points:
            return
        with self._writing("write items") as dims:
            for start in range(0, len(points), self.write_chunk):
                self._upsert_chunk([self._to_point(p, dims) for p in points[start:start + self.write_chunk]])

    def update_vectors(self, updates: Sequence[tuple[str, dict[str, np.ndarray]]]) -> None:
        if not updates:
            return
        with self._writing("write vectors") as dims:
            checked = [(point_id(item_id), check_point_vectors(ItemPoint(item_id, vectors, {}), dims))
                       for item_id, vectors in updates]
            for start in range(0, len(checked), self.write_chunk):
                self._update_vectors_chunk(checked[start:start + self.write_chunk])

    def set_payload(self, item_ids: Sequence[str], payload: dict[str, Any]) -> None:
        if not item_ids:
            return
        with self._writing("write payloads"):
            self._set_payload([point_id(i) for i in item_ids], payload)

    def delete(self, item_ids: Sequence[str]) -> None:
        if not item_ids:
            return
        with self._writing("delete items"):
            self._delete([point_id(i) for i in item_ids])

    # --- reads ----------------------------------------------------------------------------

    @staticmethod
    def _hit(rec: Any, vector_names: Sequence[str] = (), fields: Sequence[str] | None = None) -> Hit:
        payload = rec.payload or {}
        item_id = str(payload.get("item_id", rec.id))
        score = float(getattr(rec, "score", 0.0) or 0.0)  # Records (retrieve/scroll) have none
        return Hit(item_id, score, read_payload(restrict_payload(payload, fields)),
                   dense_vectors(rec.vector, vector_names))

    def _vector_names(self, with_vectors: WithVectors) -> list[str]:
        return vector_names(with_vectors, self._known_dims())

    def retrieve(self, item_ids: Sequence[str], with_vectors: WithVectors = False) -> list[Hit]:
        if not item_ids:
            return []
        names = self._vector_names(with_vectors)
        recs = self._retrieve([point_id(i) for i in item_ids], names)
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
        dims = self._ready_dims()
        if vector_name not in dims:
            raise _unknown_vector(vector_name, dims)
        if k <= 0:
            return []
        request = self._dense_query(vector_name, _floats(vector), [_floats(n) for n in negatives])
        names = self._vector_names(with_vectors)
        res = self._query(request, int(k), self.filters.build(flt), fetch_fields(fields), names)
        return [self._hit(r, names, fields) for r in res]

    def search_weighted(self, parts: Sequence[tuple[str, np.ndarray, float]], k: int, candidates: int,
                        flt: ItemFilter | None = None, with_vectors: WithVectors = False,
                        fields: Sequence[str] | None = None) -> list[Hit]:
        checked = check_weighted_parts(parts, self._ready_dims())
        if k <= 0:
            return []
        limit = max(int(candidates), int(k))
        native_flt = self.filters.build(flt)
        lead_name, lead_vector, _ = checked[0]

        def lead() -> Any:
            return self._prefetch(lead_name, lead_vector, limit, native_flt, None)

        prefetches = [lead()] + [self._prefetch(n, v, limit, None, [lead()]) for n, v, _ in checked[1:]]
        variables = [f"$score[{i}]" for i in range(len(checked))]
        request = self._formula_query(prefetches, [(w, var) for (_, _, w), var in zip(checked, variables)],
                                      {var: 0.0 for var in variables})
        names = self._vector_names(with_vectors)
        res = self._query(request, int(k), None, fetch_fields(fields), names)
        return [self._hit(r, names, fields) for r in res]

    def search_many(self, vector_name: str, vectors: Sequence[np.ndarray], k: int,
                    fields: Sequence[str] | None = None) -> list[list[Hit]]:
        dims = self._ready_dims()
        if vector_name not in dims:
            raise _unknown_vector(vector_name, dims)
        if k <= 0 or len(vectors) == 0:
            return [[] for _ in vectors]
        batch = self._query_batch(vector_name, [_floats(v) for v in vectors], int(k), fetch_fields(fields))
        if fields is not None and not fields:  # ids and scores only: skip the general conversion
            return [[Hit(str(r.payload.get("item_id", r.id)), float(r.score)) for r in res] for res in batch]
        return [[self._hit(r, (), fields) for r in res] for res in batch]

    def search_sparse(self, vector: SparseVec, k: int, flt: ItemFilter | None = None) -> list[Hit]:
        """BM25-style: stored TF weights times the IDF the backend keeps per term (IDF modifier)."""
        self._ready_dims()
        if k <= 0 or not vector.indices:
            return []
        res = self._query(self._sparse_query(self._native_sparse(vector)), int(k), self.filters.build(flt), None, [])
        return [self._hit(r) for r in res]

    def scroll(self, flt: ItemFilter | None = None, fields: Sequence[str] | None = None,
               with_vectors: WithVectors = False) -> Iterator[Hit]:
        names = self._vector_names(with_vectors)
        want = fetch_fields(fields)
        native_flt = self.filters.build(flt)
        offset: Any = None
        while True:
            recs, offset = self._scroll_page(offset, native_flt, want, names)
            for r in recs:
                yield self._hit(r, names, fields)
            if offset is None or not recs:
                return

    def count(self, flt: ItemFilter | None = None) -> int:
        self._ready_dims()
        return int(self._count(self.filters.build(flt)))
