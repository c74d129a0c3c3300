"""Collaborative signals from behaviour: user-kNN and item/category co-occurrence.

Three sparse matrices share one item index:
  interactions  users x items, summed positive event weights     -> user-kNN
  baskets       baskets x items, 1 if carted/bought in the basket -> "bought together"
  buyers        users x items, 1 if the user ever carted/bought   -> "bought by the same people"

Co-occurrence is never stored as pairs: the count of baskets holding both a and b is
column a of ``B.T @ B``, computed for the few items asked about from the baskets that hold them.
That keeps ingest O(1) per event (append a triple; it is folded into the CSR matrices on the
next read, so an event changes the very next answer) and makes forgetting a user exact: drop
their rows, i.e. rebuild from the events that remain.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .events import BASKET_TYPES


class KeyIndex:
    """Strings <-> dense row/column numbers, growing as new keys arrive."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self.keys: list[str] = list(keys)
        self.pos: dict[str, int] = {k: i for i, k in enumerate(self.keys)}

    def __len__(self) -> int:
        return len(self.keys)

    def get(self, key: str) -> int | None:
        return self.pos.get(key)

    def add(self, key: str) -> int:
        i = self.pos.get(key)
        if i is None:
            i = self.pos[key] = len(self.keys)
            self.keys.append(key)
        return i


class GrowingMatrix:
    """rows x items sparse matrix keyed by strings; appends are folded in on the next read."""

    def __init__(self, items: KeyIndex, binary: bool, rows: KeyIndex | None = None,
                 matrix: sp.csr_array | None = None) -> None:
        self.items = items
        self.rows = rows or KeyIndex()
        self.binary = binary
        self._csr = matrix if matrix is not None else sp.csr_array((len(self.rows), len(items)), dtype=np.float32)
        self._csc: sp.csc_array | None = None
        self._pending: tuple[list[int], list[int], list[float]] = ([], [], [])
        self.version = 0

    def add(self, row: str, col: int, value: float) -> None:
        r, c, v = self._pending
        r.append(self.rows.add(row))
        c.append(col)
        v.append(value)

    def csr(self) -> sp.csr_array:
        shape = (len(self.rows), len(self.items))
        r, c, v = self._pending
        if not r and self._csr.shape == shape:
            return self._csr
        base = self._csr.copy()
        base.resize(shape)
        delta = sp.coo_array((np.asarray(v, dtype=np.float32), (np.asarray(r), np.asarray(c))), shape=shape)
        merged = sp.csr_array(base + delta.tocsr())
        if self.binary:
            merged.data = np.minimum(merged.data, 1.0).astype(np.float32)
        self._csr, self._csc = merged, None
        self._pending = ([], [], [])
        self.version += 1
        return merged

    def csc(self) -> sp.csc_array:
        m = self.csr()
        if self._csc is None:
            self._csc = m.tocsc()
        return self._csc

    def rows_with(self, col: int) -> np.ndarray:
        """Rows that have item ``col``."""
        m = self.csc()
        return m.indices[m.indptr[col]:m.indptr[col + 1]]


def _build(rows: Sequence[str], cols: np.ndarray, values: np.ndarray, items: KeyIndex,
           binary: bool) -> GrowingMatrix:
    """A matrix from parallel arrays in one vectorised pass (loading thousands of events)."""
    if len(rows) == 0:
        return GrowingMatrix(items, binary)
    keys, inverse = np.unique(np.asarray(rows, dtype=object), return_inverse=True)
    m = sp.coo_array((values.astype(np.float32), (inverse, cols)), shape=(len(keys), len(items))).tocsr()
    m.sum_duplicates()
    if binary:
        m.data = np.minimum(m.data, 1.0).astype(np.float32)
    return GrowingMatrix(items, binary, KeyIndex(keys.tolist()), sp.csr_array(m))


@dataclass(frozen=True)
class CoBought:
    item_id: str
    score: float
    because_of: str  # the query item that contributes most


class Behaviour:
    """Collaborative state for one event log; thread-safe."""

    def __init__(self, weights: dict[str, float], basket_weight: float, user_weight: float) -> None:
        self.weights = weights
        self.basket_weight = basket_weight
        self.user_weight = user_weight
        self.items = KeyIndex()
        self.categories = KeyIndex()
        self._item_category: list[int] = []  # category code per item column, -1 unknown
        self.groups = KeyIndex()  # product groups: colour variants share one (product_code)
        self._item_group: list[int] = []
        self.interactions = GrowingMatrix(self.items, binary=False)
        self.baskets = GrowingMatrix(self.items, binary=True)
        self.buyers = GrowingMatrix(self.items, binary=True)
        self._lock = threading.RLock()
        self._knn_cache: tuple[int, sp.csr_array, sp.csc_array] | None = None

    # --- building ----------------------------------------------------------------------------
    def _item(self, item_id: str, category: str | None, product: str | None = None) -> int:
        col = self.items.add(item_id)
        code = self.categories.add(category) if category else -1
        group = self.groups.add(product or f"#item:{item_id}")  # no product code: its own group
        if col == len(self._item_category):
            self._item_category.append(code)
            self._item_group.append(group)
        else:
            if code >= 0:
                self._item_category[col] = code  # newest snapshot of the catalog wins
            if product:
                self._item_group[col] = group
        return col

    def add(self, user_id: str, item_id: str, type_: str, basket: str, category: str | None,
            product: str | None = None) -> None:
        with self._lock:
            col = self._item(item_id, category, product)
            w = self.weights[type_]
            if w > 0:
                self.interactions.add(user_id, col, w)
            if type_ in BASKET_TYPES:
                self.baskets.add(basket, col, 1.0)
                self.buyers.add(user_id, col, 1.0)

    @classmethod
    def load(cls, rows: Iterable[tuple[str, str, str, str]], categories: dict[str, str | None],
             weights: dict[str, float], basket_weight: float, user_weight: float,
             products: dict[str, str] | None = None) -> "Behaviour":
        """Build from (user_id, item_id, type, basket) rows in one vectorised pass."""
        model = cls(weights, basket_weight, user_weight)
        users, items, types, baskets = [], [], [], []
        for u, i, t, b in rows:
            users.append(u)
            items.append(i)
            types.append(t)
            baskets.append(b)
        for item in dict.fromkeys(items):
            model._item(item, categories.get(item), (products or {}).get(item))
        cols = np.fromiter((model.items.pos[i] for i in items), dtype=np.int64, count=len(items))
        w = np.array([weights[t] for t in types], dtype=np.float32)
        users_a = np.asarray(users, dtype=object)
        pos = w > 0
        bought = np.isin(np.asarray(types, dtype=object), BASKET_TYPES)
        model.interactions = _build(users_a[pos], cols[pos], w[pos], model.items, binary=False)
        ones = np.ones(int(bought.sum()), dtype=np.float32)
        model.baskets = _build(np.asarray(baskets, dtype=object)[bought], cols[bought], ones, model.items, True)
        model.buyers = _build(users_a[bought], cols[bought], ones, model.items, True)
        return model

    # --- user-kNN ----------------------------------------------------------------------------
    def _normalised(self) -> tuple[sp.csr_array, sp.csc_array]:
        """Interactions with unit rows (cosine), cached until the matrix changes."""
        m = self.interactions.csr()
        if self._knn_cache is None or self._knn_cache[0] != self.interactions.version:
            norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1))).ravel()
            inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
            unit = sp.csr_array(sp.diags_array(inv.astype(np.float32)) @ m)
            self._knn_cache = (self.interactions.version, unit, unit.tocsc())
        return self._knn_cache[1], self._knn_cache[2]

    def user_knn(self, user_id: str, item_ids: Sequence[str], neighbours: int) -> np.ndarray:
        """Score of each of ``item_ids`` for a user: similarity-weighted votes of the user's
        ``neighbours`` most similar users (cosine over interaction rows). 0 where unknown."""
        out = np.zeros(len(item_ids), dtype=np.float64)
        with self._lock:
            unit, unit_csc = self._normalised()
            u = self.interactions.rows.get(user_id)
            if u is None or neighbours <= 0:
                return out
            start, end = unit.indptr[u], unit.indptr[u + 1]
            cols, vals = unit.indices[start:end], unit.data[start:end]
            if len(cols) == 0:
                return out
            sims = np.asarray(unit_csc[:, cols] @ vals).ravel()
            sims[u] = 0.0
            n = min(neighbours, int((sims > 0).sum()))
            if n == 0:
                return out
            top = np.argpartition(-sims, n - 1)[:n]
            votes = np.asarray(unit[top].T @ sims[top]).ravel()
            idx = [self.items.get(i) for i in item_ids]
        known = np.array([i is not None for i in idx], dtype=bool)
        if known.any():
            out[known] = votes[[i for i in idx if i is not None]]
        return out

    # --- co-occurrence ----------------------------------------------------------------------
    def _co_counts(self, col: int) -> np.ndarray:
        """Weighted co-occurrence of item ``col`` with every item (basket and same-buyer)."""
        total = np.zeros(len(self.items), dtype=np.float64)
        for matrix, weight in ((self.baskets, self.basket_weight), (self.buyers, self.user_weight)):
            if weight == 0:
                continue
            rows = matrix.rows_with(col)
            if len(rows):
                total += weight * np.asarray(matrix.csr()[rows].sum(axis=0)).ravel()
        total[col] = 0.0
        return total

    def co_bought(self, item_ids: Sequence[str], limit: int) -> list[CoBought]:
        """Items most often carted/bought with any of ``item_ids`` (query items excluded)."""
        with self._lock:
            cols = [c for c in (self.items.get(i) for i in item_ids) if c is not None]
            if not cols or len(self.items) == 0:
                return []
            per_query = np.vstack([self._co_counts(c) for c in cols])
            keys = self.items.keys
        total = per_query.sum(axis=0)
        total[cols] = 0.0
        n = min(limit, int((total > 0).sum()))
        if n == 0:
            return []
        top = np.argpartition(-total, n - 1)[:n]
        top = top[np.argsort(-total[top], kind="stable")]
        best = per_query[:, top].argmax(axis=0)
        return [CoBought(keys[c], float(total[c]), keys[cols[b]]) for c, b in zip(top, best)]

    def category_affinity(self, categories: Iterable[str]) -> dict[str, float]:
        """Categories bought with these: sum over baskets (and buyers) of (#items of the query
        categories) x (#items of the category). The query categories themselves count too,
        minus pairs within one product (an item with itself, or two colours of it): on H&M a
        fifth of basket pairs are two different products of one type (two tops), and the
        baskets should say so, not a rule."""
        with self._lock:
            codes = [c for c in (self.categories.get(x) for x in set(categories)) if c is not None]
            n_items, n_cats = len(self.items), len(self.categories)
            if not codes or n_items == 0:
                return {}
            item_cat = np.asarray(self._item_category, dtype=np.int64)
            in_query = np.isin(item_cat, codes).astype(np.float32)
            known = np.flatnonzero(item_cat >= 0)
            onehot = sp.csr_array((np.ones(len(known), dtype=np.float32), (known, item_cat[known])),
                                  shape=(n_items, n_cats))
            group = np.asarray(self._item_group, dtype=np.int64)
            qcols = np.flatnonzero(in_query)
            n_groups = len(self.groups)
            in_group = sp.csr_array((np.ones(len(qcols), dtype=np.float32), (qcols, group[qcols])),
                                    shape=(n_items, n_groups))
            group_onehot = np.zeros((n_groups, n_cats))
            group_onehot[group[qcols], item_cat[qcols]] = 1.0  # a product's variants share its category
            scores = np.zeros(n_cats, dtype=np.float64)
            for matrix, weight in ((self.baskets, self.basket_weight), (self.buyers, self.user_weight)):
                m = matrix.csr()
                if weight == 0 or m.shape[0] == 0:
                    continue
                per_row = np.asarray(m @ in_query).ravel()
                rows = np.flatnonzero(per_row)
                if len(rows):
                    scores += weight * np.asarray((m[rows] @ onehot).T @ per_row[rows]).ravel()
                    # pairs inside one product group are no evidence: per basket and group, remove
                    # (mass of the group's query items)^2, which is exactly their pairs with each other
                    per_group = sp.csr_array(m[rows] @ in_group)
                    scores -= weight * (np.asarray(per_group.multiply(per_group).sum(axis=0)).ravel() @ group_onehot)
            names = self.categories.keys
        return {names[c]: float(scores[c]) for c in np.flatnonzero(scores > 1e-6)}  # float residue of self pairs

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "cf_users": len(self.interactions.rows),
                "cf_items": len(self.items),
                "baskets": len(self.baskets.rows),
                "basket_links": int(self.baskets.csr().nnz),
            }
