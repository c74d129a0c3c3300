"""Server backend: the same contract over qdrant-client, for a Qdrant server or cluster.

Also runs on qdrant-client's local mode (``QdrantClient(":memory:")`` or a path), which is
brute force, ignores payload indexes and allows one process per path: good for tests, not for
production. Points and payloads follow store.py's conventions exactly like EdgeStore, so a
catalog indexed by either backend reads the same.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from qdrant_client import QdrantClient, models

from .store import SPARSE_VECTOR, check_dense_dims, dims_mismatch
from .store_base import FilterBuilder, StoreBase

_INDEXES: dict[str, models.PayloadSchemaType] = {
    "category": models.PayloadSchemaType.KEYWORD,
    "price": models.PayloadSchemaType.FLOAT,
    "in_stock": models.PayloadSchemaType.INTEGER,
    "item_id": models.PayloadSchemaType.KEYWORD,
}


class _ServerFilters(FilterBuilder):
    """store_base.FilterBuilder's conditions as qdrant-client models."""

    def match_any(self, key: str, values: list[str]) -> Any:
        return models.FieldCondition(key=key, match=models.MatchAny(any=values))

    def float_range(self, key: str, gte: float | None, lte: float | None) -> Any:
        return models.FieldCondition(key=key, range=models.Range(gte=gte, lte=lte))

    def match_value(self, key: str, value: int) -> Any:
        return models.FieldCondition(key=key, match=models.MatchValue(value=value))

    def has_ids(self, ids: set[str]) -> Any:
        return models.HasIdCondition(has_id=sorted(ids))

    def combine(self, must: list[Any] | None, must_not: list[Any] | None) -> models.Filter:
        return models.Filter(must=must, must_not=must_not)


class ServerStore(StoreBase):
    """VectorStore on a Qdrant collection reached through ``client``."""

    filters = _ServerFilters()

    def __init__(self, client: QdrantClient, collection: str = "products",
                 shard_number: int = 1, replication_factor: int = 1) -> None:
        self.client = client
        self.collection = collection
        self.shard_number = shard_number
        self.replication_factor = replication_factor
        self._dims: dict[str, int] | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def _existing_dims(self) -> dict[str, int] | None:
        """Dense dims of the collection on the server, None if it does not exist."""
        if not self.client.collection_exists(self.collection):
            return None
        params = self.client.get_collection(self.collection).config.params
        vectors = params.vectors
        if not isinstance(vectors, dict):  # an unnamed-vector collection is not ours
            size = getattr(vectors, "size", None)
            return {"": int(size)} if size is not None else {}
        return {name: int(v.size) for name, v in vectors.items()}

    def ensure_collection(self, dense_dims: dict[str, int]) -> None:
        """Create the collection (cosine dense vectors, IDF sparse, payload indexes) once;
        later calls only check the dims."""
        want = check_dense_dims(dense_dims)
        have = self._dims if self._dims is not None else self._existing_dims()
        if have is not None:
            if have != want:
                raise dims_mismatch(self.collection, have, want)
            self._dims = have
            return
        self.client.create_collection(
            self.collection,
            vectors_config={n: models.VectorParams(size=d, distance=models.Distance.COSINE) for n, d in want.items()},
            sparse_vectors_config={SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            shard_number=self.shard_number,
            replication_factor=self.replication_factor,
        )
        with warnings.catch_warnings():
            # local mode warns that payload indexes do nothing there; servers use them
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            for field_name, schema in _INDEXES.items():
                self.client.create_payload_index(self.collection, field_name, schema, wait=True)
        self._dims = want

    def _ready_dims(self) -> dict[str, int]:
        if self._dims is None:
            self._dims = self._existing_dims()
            if self._dims is None:
                raise RuntimeError(f"collection '{self.collection}' does not exist: call ensure_collection first")
        return self._dims

    def optimize(self) -> None:
        """No-op: the server's optimizers build HNSW in the background (local mode has none)."""

    def close(self) -> None:
        self.client.close()

    # --- primitives for StoreBase ----------------------------------------------------------

    def _known_dims(self) -> dict[str, int]:
        return self._ready_dims()

    @contextmanager
    def _writing(self, action: str) -> Iterator[dict[str, int]]:
        """Writes need the collection; each request waits until the server applied it."""
        yield self._ready_dims()

    def _sparse(self, indices: list[int], values: list[float]) -> models.SparseVector:
        return models.SparseVector(indices=indices, values=values)

    def _point(self, pid: str, vectors: dict[str, Any], payload: dict[str, Any]) -> models.PointStruct:
        return models.PointStruct(id=pid, vector=vectors, payload=payload)

    def _upsert_chunk(self, points: list[models.PointStruct]) -> None:
        self.client.upsert(self.collection, points=points, wait=True)

    def _update_vectors_chunk(self, updates: list[tuple[str, dict[str, list[float]]]]) -> None:
        points = [models.PointVectors(id=pid, vector=v) for pid, v in updates]
        self.client.update_vectors(self.collection, points=points, wait=True)

    def _set_payload(self, ids: list[str], payload: dict[str, Any]) -> None:
        self.client.set_payload(self.collection, payload=payload, points=ids, wait=True)

    def _delete(self, ids: list[str]) -> None:
        self.client.delete(self.collection, points_selector=models.PointIdsList(points=ids), wait=True)

    def _retrieve(self, ids: list[str], names: list[str]) -> list[Any]:
        return self.client.retrieve(self.collection, ids, with_payload=True, with_vectors=names or False)

    def _dense_query(self, name: str, vector: list[float], negatives: list[list[float]]) -> dict[str, Any]:
        if not negatives:
            return {"query": vector, "using": name}
        rec = models.RecommendInput(positive=[vector], negative=negatives, strategy=models.RecommendStrategy.BEST_SCORE)
        return {"query": models.RecommendQuery(recommend=rec), "using": name}

    def _sparse_query(self, vector: models.SparseVector) -> dict[str, Any]:
        return {"query": vector, "using": SPARSE_VECTOR}

    def _prefetch(self, name: str, vector: list[float], limit: int, flt: Any, inner: list[Any] | None) -> Any:
        return models.Prefetch(query=vector, using=name, filter=flt, prefetch=inner, limit=limit)

    def _formula_query(self, prefetches: list[Any], terms: list[tuple[float, str]],
                       defaults: dict[str, float]) -> dict[str, Any]:
        total = models.SumExpression(sum=[models.MultExpression(mult=[w, var]) for w, var in terms])
        return {"prefetch": prefetches, "query": models.FormulaQuery(formula=total, defaults=defaults)}

    def _query(self, request: dict[str, Any], limit: int, flt: Any, want: list[str] | None,
               names: list[str]) -> list[Any]:
        payload: Any = True if want is None else want
        return self.client.query_points(self.collection, query_filter=flt, limit=limit, with_payload=payload,
                                        with_vectors=names or False, **request).points

    def _query_batch(self, name: str, vectors: list[list[float]], limit: int,
                     want: list[str] | None) -> list[list[Any]]:
        payload: Any = True if want is None else want
        requests = [models.QueryRequest(query=v, using=name, limit=limit, with_payload=payload) for v in vectors]
        return [res.points for res in self.client.query_batch_points(self.collection, requests=requests)]

    def _scroll_page(self, offset: Any, flt: Any, want: list[str] | None, names: list[str]) -> tuple[list[Any], Any]:
        return self.client.scroll(self.collection, scroll_filter=flt, limit=self.scroll_batch, offset=offset,
                                  with_payload=True if want is None else want, with_vectors=names or False)

    def _count(self, flt: Any) -> int:
        return int(self.client.count(self.collection, count_filter=flt, exact=True).count)

    # --- reads ----------------------------------------------------------------------------

    def dense_dims(self) -> dict[str, int] | None:
        have = self._dims if self._dims is not None else self._existing_dims()
        return dict(have) if have is not None else None

    def points_count(self) -> int:
        self._ready_dims()
        return int(self.client.count(self.collection, exact=False).count)
