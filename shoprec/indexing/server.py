"""Server backend: the same contract over qdrant-client, for a Qdrant server or cluster.

Also runs on qdrant-client's local mode (``QdrantClient(":memory:")`` or a path), which is
brute force, ignores payload indexes and allows one process per path: good for tests, not for
production. Points and payloads follow store.py's conventions exactly like EdgeStore, so a
catalog indexed by either backend reads the same.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

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

_INDEXES: dict[str, models.PayloadSchemaType] = {
    "category": models.PayloadSchemaType.KEYWORD,
    "price": models.PayloadSchemaType.FLOAT,
    "in_stock": models.PayloadSchemaType.INTEGER,
    "item_id": models.PayloadSchemaType.KEYWORD,
}
_UPSERT_CHUNK = 256


def server_filter(flt: ItemFilter | None) -> models.Filter | None:
    """ItemFilter -> qdrant-client Filter, mirroring edge.edge_filter condition for condition."""
    if flt is None:
        return None
    must: list[models.Condition] = []
    if flt.categories:
        must.append(models.FieldCondition(key="category", match=models.MatchAny(any=list(flt.categories))))
    if flt.min_price is not None or flt.max_price is not None:
        must.append(models.FieldCondition(key="price", range=models.Range(
            gte=None if flt.min_price is None else float(flt.min_price),
            lte=None if flt.max_price is None else float(flt.max_price))))
    if flt.in_stock is not None:
        must.append(models.FieldCondition(key="in_stock", match=models.MatchValue(value=1 if flt.in_stock else 0)))
    excluded = sorted({point_id(i) for i in flt.exclude_ids})
    must_not: list[models.Condition] = [models.HasIdCondition(has_id=excluded)] if excluded else []
    if not must and not must_not:
        return None
    return models.Filter(must=must or None, must_not=must_not or None)


class ServerStore:
    """VectorStore on a Qdrant collection reached through ``client``."""

    scroll_batch: int = 256

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

    def _ready(self) -> dict[str, int]:
        if self._dims is None:
            self._dims = self._existing_dims()
            if self._dims is None:
                raise RuntimeError(f"collection '{self.collection}' does not exist: call ensure_collection first")
        return self._dims

    def optimize(self) -> None:
        """No-op: the server's optimizers build HNSW in the background (local mode has none)."""

    def close(self) -> None:
        self.client.close()

    # --- writes ---------------------------------------------------------------------------

    def _to_point(self, p: ItemPoint, dims: dict[str, int]) -> models.PointStruct:
        vector: dict[str, Any] = dict(check_point_vectors(p, dims))
        if p.sparse is not None and p.sparse.indices:
            vector[SPARSE_VECTOR] = models.SparseVector(indices=[int(i) for i in p.sparse.indices],
                                                        values=[float(v) for v in p.sparse.values])
        return models.PointStruct(id=point_id(p.item_id), vector=vector, payload=stored_payload(p))

    def upsert(self, points: Sequence[ItemPoint]) -> None:
        """Insert or wholly replace points; waits until the server has applied them."""
        if not points:
            return
        dims = self._ready()
        for start in range(0, len(points), _UPSERT_CHUNK):
            chunk = [self._to_point(p, dims) for p in points[start:start + _UPSERT_CHUNK]]
            self.client.upsert(self.collection, points=chunk, wait=True)

    def update_vectors(self, updates: Sequence[tuple[str, dict[str, np.ndarray]]]) -> None:
        if not updates:
            return
        dims = self._ready()
        points = [models.PointVectors(id=point_id(item_id),
                                      vector=check_point_vectors(ItemPoint(item_id, vectors, {}), dims))
                  for item_id, vectors in updates]
        for start in range(0, len(points), _UPSERT_CHUNK):
            self.client.update_vectors(self.collection, points=points[start:start + _UPSERT_CHUNK], wait=True)

    def set_payload(self, item_ids: Sequence[str], payload: dict[str, Any]) -> None:
        if not item_ids:
            return
        self._ready()
        self.client.set_payload(self.collection, payload=payload, points=[point_id(i) for i in item_ids], wait=True)

    def delete(self, item_ids: Sequence[str]) -> None:
        if not item_ids:
            return
        self._ready()
        self.client.delete(self.collection, points_selector=models.PointIdsList(
            points=[point_id(i) for i in item_ids]), wait=True)

    # --- reads ----------------------------------------------------------------------------

    @staticmethod
    def _hit(rec: Any, vector_names: Sequence[str] = (), fields: Sequence[str] | None = None) -> Hit:
        payload = rec.payload or {}
        item_id = str(payload.get("item_id", rec.id))
        score = float(getattr(rec, "score", 0.0) or 0.0)  # Records (retrieve/scroll) have none
        return Hit(item_id, score, restrict_payload(payload, fields), dense_vectors(rec.vector, vector_names))

    def _vector_names(self, with_vectors: WithVectors) -> list[str]:
        return vector_names(with_vectors, self._ready())

    def retrieve(self, item_ids: Sequence[str], with_vectors: WithVectors = False) -> list[Hit]:
        if not item_ids:
            return []
        names = self._vector_names(with_vectors)
        recs = self.client.retrieve(self.collection, [point_id(i) for i in item_ids],
                                    with_payload=True, with_vectors=names or False)
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
        dims = self._ready()
        if vector_name not in dims:
            raise ValueError(f"unknown dense vector '{vector_name}' (have {sorted(dims)})")
        if k <= 0:
            return []
        q = np.asarray(vector, dtype=np.float32).ravel().tolist()
        query: Any = q
        if negatives:
            negs = [np.asarray(n, dtype=np.float32).ravel().tolist() for n in negatives]
            query = models.RecommendQuery(recommend=models.RecommendInput(
                positive=[q], negative=negs, strategy=models.RecommendStrategy.BEST_SCORE))
        names = self._vector_names(with_vectors)
        want = fetch_fields(fields)
        res = self.client.query_points(self.collection, query=query, using=vector_name,
                                       query_filter=server_filter(flt), limit=int(k),
                                       with_payload=True if want is None else want, with_vectors=names or False)
        return [self._hit(r, names, fields) for r in res.points]

    def search_weighted(self, parts: Sequence[tuple[str, np.ndarray, float]], k: int, candidates: int,
                        flt: ItemFilter | None = None, with_vectors: WithVectors = False,
                        fields: Sequence[str] | None = None) -> list[Hit]:
        checked = check_weighted_parts(parts, self._ready())
        if k <= 0:
            return []
        limit = max(int(candidates), int(k))
        srv_flt = server_filter(flt)
        lead_name, lead_vector, _ = checked[0]

        def lead() -> models.Prefetch:
            return models.Prefetch(query=lead_vector, using=lead_name, filter=srv_flt, limit=limit)

        prefetch = [lead()] + [models.Prefetch(prefetch=[lead()], query=v, using=n, limit=limit)
                               for n, v, _ in checked[1:]]
        formula = models.FormulaQuery(
            formula=models.SumExpression(sum=[models.MultExpression(mult=[w, f"$score[{i}]"])
                                              for i, (_, _, w) in enumerate(checked)]),
            defaults={f"$score[{i}]": 0.0 for i in range(len(checked))})
        names = self._vector_names(with_vectors)
        want = fetch_fields(fields)
        res = self.client.query_points(self.collection, prefetch=prefetch, query=formula, limit=int(k),
                                       with_payload=True if want is None else want, with_vectors=names or False)
        return [self._hit(r, names, fields) for r in res.points]

    def dense_dims(self) -> dict[str, int] | None:
        have = self._dims if self._dims is not None else self._existing_dims()
        return dict(have) if have is not None else None

    def search_many(self, vector_name: str, vectors: Sequence[np.ndarray], k: int,
                    fields: Sequence[str] | None = None) -> list[list[Hit]]:
        dims = self._ready()
        if vector_name not in dims:
            raise ValueError(f"unknown dense vector '{vector_name}' (have {sorted(dims)})")
        if k <= 0 or len(vectors) == 0:
            return [[] for _ in vectors]
        want = fetch_fields(fields)
        requests = [models.QueryRequest(query=np.asarray(v, dtype=np.float32).ravel().tolist(), using=vector_name,
                                        limit=int(k), with_payload=True if want is None else want)
                    for v in vectors]
        results = self.client.query_batch_points(self.collection, requests=requests)
        return [[self._hit(r, (), fields) for r in res.points] for res in results]

    def search_sparse(self, vector: SparseVec, k: int, flt: ItemFilter | None = None) -> list[Hit]:
        """BM25-style: stored TF weights times the IDF Qdrant keeps per term (Modifier.IDF)."""
        self._ready()
        if k <= 0 or not vector.indices:
            return []
        sv = models.SparseVector(indices=[int(i) for i in vector.indices], values=[float(v) for v in vector.values])
        res = self.client.query_points(self.collection, query=sv, using=SPARSE_VECTOR,
                                       query_filter=server_filter(flt), limit=int(k), with_payload=True)
        return [self._hit(r) for r in res.points]

    def scroll(self, flt: ItemFilter | None = None, fields: Sequence[str] | None = None,
               with_vectors: WithVectors = False) -> Iterator[Hit]:
        names = self._vector_names(with_vectors)
        want = fetch_fields(fields)
        srv_flt = server_filter(flt)
        offset: Any = None
        while True:
            recs, offset = self.client.scroll(self.collection, scroll_filter=srv_flt, limit=self.scroll_batch,
                                              offset=offset, with_payload=True if want is None else want,
                                              with_vectors=names or False)
            for r in recs:
                yield self._hit(r, names, fields)
            if offset is None or not recs:
                return

    def count(self, flt: ItemFilter | None = None) -> int:
        self._ready()
        return int(self.client.count(self.collection, count_filter=server_filter(flt), exact=True).count)

    def points_count(self) -> int:
        self._ready()
        return int(self.client.count(self.collection, exact=False).count)
