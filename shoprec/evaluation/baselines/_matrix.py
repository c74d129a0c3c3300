"""What the matrix baselines share: id <-> row indexing, the user x item matrix, top-k.

Kept in one place so every baseline excludes, masks and breaks ties the same way; a
difference in numbers between baselines is then a difference in models, not in plumbing.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from shoprec.evaluation.interactions import Interaction
from shoprec.evaluation.method import ItemFeatures, Scored


@dataclass(frozen=True)
class InteractionMatrix:
    """Binary users x catalogue-items matrix of training purchases.

    Columns are the whole catalogue in ``item_ids`` order, so cold items have a column (all
    zeros) and content features line up with columns.
    """

    user_ids: tuple[str, ...]
    user_row: dict[str, int]
    item_ids: tuple[str, ...]
    item_col: dict[str, int]
    matrix: sp.csr_matrix  # float32, 1.0 where the user bought the item

    @property
    def warm_items(self) -> np.ndarray:
        """Boolean mask of items bought at least once in training."""
        return np.asarray(self.matrix.getnnz(axis=0) > 0)

    def seen_cols(self, user_id: str) -> np.ndarray:
        row = self.user_row.get(user_id)
        if row is None:
            return np.empty(0, dtype=np.int64)
        return self.matrix.indices[self.matrix.indptr[row]:self.matrix.indptr[row + 1]]


def build_matrix(train: Sequence[Interaction], item_ids: Sequence[str]) -> InteractionMatrix:
    """Index training users (first-seen order) against the catalogue.

    A training item missing from the catalogue raises: silently dropping purchases would
    change what every method learns without anyone noticing.
    """
    item_col = {item: col for col, item in enumerate(item_ids)}
    if len(item_col) != len(item_ids):
        raise ValueError("item_ids contains duplicates")
    user_row: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    missing: set[str] = set()
    for e in train:
        col = item_col.get(e.item_id)
        if col is None:
            missing.add(e.item_id)
            continue
        rows.append(user_row.setdefault(e.user_id, len(user_row)))
        cols.append(col)
    if missing:
        raise ValueError(f"{len(missing)} training item(s) not in item_ids, e.g. {sorted(missing)[0]!r}")
    data = np.ones(len(rows), dtype=np.float32)
    matrix = sp.csr_matrix((data, (rows, cols)), shape=(len(user_row), len(item_col)), dtype=np.float32)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0  # bought twice is still bought: binary relevance, as the metrics use
    return InteractionMatrix(
        user_ids=tuple(user_row),
        user_row=user_row,
        item_ids=tuple(item_ids),
        item_col=item_col,
        matrix=matrix,
    )


def top_k(
    scores: np.ndarray,
    item_ids: Sequence[str],
    k: int,
    exclude_cols: Collection[int] | np.ndarray = (),
) -> Scored:
    """The k best finite scores as (id, score), ties broken by catalogue order.

    ``-inf`` marks items a method cannot score (cold items for pure CF); they are never
    returned, so a list may be shorter than k rather than padded with guesses.
    """
    if k < 1:
        return []
    work = np.asarray(scores, dtype=np.float64).copy()
    exclude = np.asarray(list(exclude_cols) if not isinstance(exclude_cols, np.ndarray) else exclude_cols,
                         dtype=np.int64)
    if exclude.size:
        work[exclude] = -np.inf
    finite = np.flatnonzero(np.isfinite(work))
    if finite.size == 0:
        return []
    n = min(k, finite.size)
    # Partition first (cheap on a large catalogue), then a stable sort of the candidates by
    # (-score, column) so ties at equal scores always come out in catalogue order.
    cand = finite
    if finite.size > n:
        kth = np.partition(-work[finite], n - 1)[n - 1]
        cand = finite[-work[finite] <= kth]
    order = np.lexsort((cand, -work[cand]))[:n]
    chosen = cand[order]
    return [(item_ids[c], float(work[c])) for c in chosen]


def exclude_cols(item_col: dict[str, int], exclude: Collection[str]) -> np.ndarray:
    return np.fromiter((item_col[i] for i in exclude if i in item_col), dtype=np.int64)


def dense_features(item_features: ItemFeatures, n_items: int) -> np.ndarray:
    """Features as a float32 array with one row per catalogue item (sparse densified)."""
    feats = item_features.toarray() if sp.issparse(item_features) else np.asarray(item_features)
    feats = np.asarray(feats, dtype=np.float32)
    if feats.ndim != 2 or feats.shape[0] != n_items:
        raise ValueError(f"item_features must have one row per item ({n_items}), got shape {feats.shape}")
    return feats


def l2_normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), so dot products are cosines."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
