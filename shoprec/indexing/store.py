"""The storage contract every backend meets.

Shaped like qdrant-client's facade: one small interface, two implementations
(``EdgeStore`` in-process, ``ServerStore`` over qdrant-client), and one contract test suite
(tests/test_store_contract.py) run against both.

Item ids are the shop's strings; Qdrant wants ints or UUIDs, so backends key points by
``point_id(item_id)`` (a UUID5) and keep the shop's id in the payload field ``item_id``.
"""

from __future__ import annotations

import uuid
from functools import lru_cache
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..vectors import SparseVec  # re-exported: stores and callers name it from here too

#: Dense vectors each product point may carry. A missing one (e.g. no image) is simply absent;
#: ``colour`` (encoders/colour.py) and ``look`` (encoders/look.py) are also absent from every
#: point of a store created before them or with them switched off.
DENSE_VECTORS = ("text", "image", "joint", "colour", "look")
#: Name of the sparse lexical (jieba / BM25-style) vector.
SPARSE_VECTOR = "lexical"
#: Payload field naming the joint space an item's joint vector came from.
JOINT_VERSION_FIELD = "joint_version"

#: ``True`` for every dense vector, ``False`` for none, or the names wanted (cheaper: a 1280-d
#: image vector costs more to ship than the whole payload).
WithVectors = bool | Sequence[str]

_NAMESPACE = uuid.UUID("6f1c3c8e-2b0e-4d8e-9a57-5b0c1d6a7e11")


@lru_cache(maxsize=1 << 18)
def point_id(item_id: str) -> str:
    """Stable Qdrant point id for a shop item id (memoised: uuid5 hashing was ~8% of a feed)."""
    return str(uuid.uuid5(_NAMESPACE, item_id))


@dataclass
class ItemPoint:
    """One product as stored: named vectors plus its catalog fields as payload."""

    item_id: str
    vectors: dict[str, np.ndarray]
    payload: dict[str, Any]
    sparse: SparseVec | None = None


@dataclass
class Hit:
    item_id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class ItemFilter:
    """Business filters shared by every query. ``None`` means "no constraint"."""

    categories: Sequence[str] | None = None
    min_price: float | None = None
    max_price: float | None = None
    in_stock: bool | None = None
    exclude_ids: Iterable[str] = ()

    def __post_init__(self) -> None:
        self.exclude_ids = tuple(self.exclude_ids)  # a generator would be used up by the first reader

    def is_empty(self) -> bool:
        return (
            not self.categories
            and self.min_price is None
            and self.max_price is None
            and self.in_stock is None
            and not self.exclude_ids
        )


class VectorStore(Protocol):
    """What shoprec needs from Qdrant. ``in_stock`` is stored as 0/1 (Edge never matches booleans) and read back as a boolean."""

    def ensure_collection(self, dense_dims: dict[str, int]) -> None:
        """Create the collection (named dense vectors + sparse ``lexical``, payload indexes on
        category, price, in_stock) if absent; fail clearly if it exists with other dims."""

    def upsert(self, points: Sequence[ItemPoint]) -> None: ...

    def delete(self, item_ids: Sequence[str]) -> None: ...

    def update_vectors(self, updates: Sequence[tuple[str, dict[str, np.ndarray]]]) -> None:
        """Replace some named dense vectors of existing items, keeping the others and the payload
        (how the joint space is refreshed without re-encoding or re-sending the sparse vector)."""

    def set_payload(self, item_ids: Sequence[str], payload: dict[str, Any]) -> None:
        """Merge ``payload`` into the payload of existing items."""

    def retrieve(self, item_ids: Sequence[str], with_vectors: WithVectors = False) -> list[Hit]:
        """Found items in the order asked (missing ids are skipped); score is 0."""

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
        """Nearest items by cosine; with ``negatives`` it is a Qdrant recommend query
        (best-score strategy) that pushes away from them. ``fields`` restricts the payload
        shipped back (``["item_id"]`` when only ids and scores are needed)."""

    def search_weighted(self, parts: Sequence[tuple[str, np.ndarray, float]], k: int, candidates: int,
                        flt: ItemFilter | None = None, with_vectors: WithVectors = False,
                        fields: Sequence[str] | None = None) -> list[Hit]:
        """Nearest items by ``sum(weight * cosine)`` over several named vectors, in one Qdrant
        query: the first part's ``candidates`` nearest are prefetched, every other part rescores
        exactly those (a nested prefetch), and a formula adds the weighted scores. Equivalent to a
        search on the weighted concatenation of unit vectors, restricted to the lead's candidates."""

    def dense_dims(self) -> dict[str, int] | None:
        """The dense vector dims the collection was created with; None before it exists."""

    def search_many(self, vector_name: str, vectors: Sequence[np.ndarray], k: int,
                    fields: Sequence[str] | None = None) -> list[list[Hit]]:
        """Several nearest-neighbour queries planned as one batch (the feed asks one per recent
        history item); results in the order of ``vectors``."""

    def search_sparse(self, vector: SparseVec, k: int, flt: ItemFilter | None = None) -> list[Hit]: ...

    def scroll(self, flt: ItemFilter | None = None, fields: Sequence[str] | None = None,
               with_vectors: WithVectors = False) -> Iterator[Hit]:
        """Every item (payload restricted to ``fields`` if given), in batches under the hood."""

    def count(self, flt: ItemFilter | None = None) -> int: ...

    def points_count(self) -> int:
        """How many items are stored, as cheaply as the backend can tell (serving caches compare
        it on every request to notice items another writer added or removed)."""
        ...

    def optimize(self) -> None:
        """Build indexes now (HNSW on Edge); a no-op where the server does it itself."""

    def close(self) -> None: ...


# --- conventions shared by the backends -------------------------------------------------------
# Kept here, beside the contract, so EdgeStore and ServerStore write and read identical points.


def stored_payload(point: ItemPoint) -> dict[str, Any]:
    """The payload as written: the shop id under ``item_id`` (point ids are UUIDs), ``in_stock``
    as int 0/1 (Edge never matches booleans) and ``price`` as float (it has a float index)."""
    payload = dict(point.payload)
    payload["item_id"] = point.item_id
    if "in_stock" in payload and payload["in_stock"] is not None:
        payload["in_stock"] = int(bool(payload["in_stock"]))
    price = payload.get("price")
    if isinstance(price, (int, float)) and not isinstance(price, bool):
        payload["price"] = float(price)
    return payload


def read_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """A stored payload as the rest of shoprec sees it: ``in_stock`` a boolean again, so the 0/1
    storage quirk never leaves the store."""
    if isinstance(payload.get("in_stock"), int) and not isinstance(payload["in_stock"], bool):
        payload = {**payload, "in_stock": bool(payload["in_stock"])}
    return payload


def check_dense_dims(dense_dims: dict[str, int]) -> dict[str, int]:
    """Validate the dims ``ensure_collection`` was given; returns a plain copy."""
    if not dense_dims:
        raise ValueError("dense_dims is empty: give at least one named dense vector")
    out: dict[str, int] = {}
    for name, dim in dense_dims.items():
        if name == SPARSE_VECTOR:
            raise ValueError(f"'{SPARSE_VECTOR}' is the sparse vector's name, not a dense one")
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise ValueError(f"dense vector '{name}' needs a positive integer dim, got {dim!r}")
        out[str(name)] = int(dim)
    return out


def dims_mismatch(collection: str, have: dict[str, int], want: dict[str, int]) -> ValueError:
    """One wording for "this collection was built for other vectors", whichever backend."""
    return ValueError(
        f"collection '{collection}' exists with dense vector dims {dict(sorted(have.items()))} "
        f"but {dict(sorted(want.items()))} were asked for; re-index into a new collection or store "
        "folder (the encoders changed?)"
    )


def check_point_vectors(point: ItemPoint, dims: dict[str, int]) -> dict[str, list[float]]:
    """Dense vectors of ``point`` as float lists, refusing unknown names or wrong sizes early
    (with the item id) instead of failing deep inside Qdrant."""
    out: dict[str, list[float]] = {}
    for name, vec in point.vectors.items():
        if vec is None:
            continue
        if name not in dims:
            raise ValueError(f"item {point.item_id!r}: unknown dense vector '{name}' (have {sorted(dims)})")
        arr = np.asarray(vec, dtype=np.float32).ravel()
        if arr.shape[0] != dims[name]:
            raise ValueError(f"item {point.item_id!r}: vector '{name}' has dim {arr.shape[0]}, expected {dims[name]}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"item {point.item_id!r}: vector '{name}' has NaN or inf")
        out[name] = arr.tolist()
    return out


def check_weighted_parts(parts: Sequence[tuple[str, np.ndarray, float]], dims: dict[str, int]) -> list[tuple[str, list[float], float]]:
    """Validate ``search_weighted``'s parts: known names, right sizes, finite weights."""
    if not parts:
        raise ValueError("search_weighted needs at least one (vector name, vector, weight)")
    out = []
    for name, vector, weight in parts:
        if name not in dims:
            raise ValueError(f"unknown dense vector '{name}' (have {sorted(dims)})")
        arr = np.asarray(vector, dtype=np.float32).ravel()
        if arr.shape[0] != dims[name]:
            raise ValueError(f"query vector '{name}' has dim {arr.shape[0]}, expected {dims[name]}")
        if not np.isfinite(weight):
            raise ValueError(f"weight of '{name}' must be finite, got {weight!r}")
        out.append((name, arr.tolist(), float(weight)))
    return out


def dense_vectors(raw: Any, names: Iterable[str]) -> dict[str, np.ndarray]:
    """The dense vectors of a returned record as float32 arrays (the sparse one is dropped)."""
    if not isinstance(raw, dict):
        return {}
    return {n: np.asarray(raw[n], dtype=np.float32) for n in names if raw.get(n) is not None}


def restrict_payload(payload: dict[str, Any] | None, fields: Sequence[str] | None) -> dict[str, Any]:
    """``payload`` cut to ``fields`` (all of it when ``fields`` is None)."""
    payload = dict(payload or {})
    if fields is None:
        return payload
    return {f: payload[f] for f in fields if f in payload}


def fetch_fields(fields: Sequence[str] | None) -> list[str] | None:
    """Payload keys to ask the backend for: ``fields`` plus ``item_id``, which every Hit needs."""
    if fields is None:
        return None
    return list(dict.fromkeys([*fields, "item_id"]))


def vector_names(with_vectors: WithVectors, dims: Iterable[str]) -> list[str]:
    """The dense vector names a read should return, validated against the collection's."""
    have = sorted(dims)
    if with_vectors is True:
        return have
    if not with_vectors:
        return []
    unknown = set(with_vectors) - set(have)
    if unknown:
        raise ValueError(f"unknown dense vector(s) {sorted(unknown)} (have {have})")
    return sorted(set(with_vectors))
