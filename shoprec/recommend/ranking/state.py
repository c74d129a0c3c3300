"""What the ranking pipeline knows, held in memory as numpy arrays.

Two tables, one item numbering:

- ``ItemTable``: the catalog facts a ranker uses — category, a coarser group (H&M's
  department), the product a colour variant belongs to, price, creation time and the unit
  vector of the serving space. Loaded once from the store; items that turn up later (indexed
  after the load, or first seen in an event) are appended.
- ``EventLog``: every event as parallel arrays (user, item, type weight, time, basket),
  appended on ingest, so per-user histories and windowed popularity are array slices rather
  than SQL. The SQLite event table stays the source of truth; this is rebuilt from it.

Why not SQL per request: a feed needs, for ~300 candidates, popularity over three windows,
last-sold times, category affinities and similarities to the user's items. As arrays that is a
few gathers; as queries it was most of the request time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..events import EVENT_TYPES
from ..popularity import DEFAULT_MAX_UNITS, counted_units
from . import _arrays

_DAY = 86400.0
BASKET_TYPES = frozenset({"cart", "purchase"})
#: Event types as the log stores them: one byte per event, the index into EVENT_TYPES.
_TYPE_CODES = {t: i for i, t in enumerate(EVENT_TYPES)}


class Codes:
    """Strings <-> dense integer codes (categories, groups, products, users)."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.pos: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def code(self, key: str | None) -> int:
        if key is None or key == "":
            return -1
        c = self.pos.get(key)
        if c is None:
            c = self.pos[key] = len(self.keys)
            self.keys.append(key)
        return c


@dataclass
class ItemFacts:
    """One item's catalog facts as the ranker sees them."""

    category: str | None = None
    group: str | None = None
    product: str | None = None
    price: float | None = None
    created: float | None = None
    vector: np.ndarray | None = None


class ItemTable:
    """Catalog facts and serving-space vectors, aligned by item code."""

    def __init__(self, dim: int | None = None) -> None:
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        self.categories = Codes()
        self.groups = Codes()
        self.products = Codes()
        self._category = _arrays.Growing(np.int32)
        self._group = _arrays.Growing(np.int32)
        self._product = _arrays.Growing(np.int32)
        self._price = _arrays.Growing(np.float64)
        self._created = _arrays.Growing(np.float64)
        self._vectors: list[np.ndarray | None] = []
        self._matrix: np.ndarray | None = None
        self.dim = dim
        self._variants: dict[int, list[int]] = {}
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, item_id: str, facts: ItemFacts) -> int:
        """Add or update an item; returns its code."""
        with self._lock:
            i = self.pos.get(item_id)
            vec = None
            if facts.vector is not None:
                v = np.asarray(facts.vector, dtype=np.float32)
                n = float(np.linalg.norm(v))
                if n > 0 and (self.dim is None or len(v) == self.dim):
                    self.dim = len(v)
                    vec = v / n
            product = self.products.code(facts.product or f"#item:{item_id}")
            row = (self.categories.code(facts.category), self.groups.code(facts.group or facts.category), product,
                   np.nan if facts.price is None else float(facts.price),
                   np.nan if facts.created is None else float(facts.created))
            if i is None:
                # arrays first, the id last: a reader that finds the id finds its facts
                i = len(self.ids)
                for arr, value in zip((self._category, self._group, self._product, self._price, self._created), row):
                    arr.append(value)
                self._vectors.append(vec)
                self.ids.append(item_id)
                self.pos[item_id] = i
            else:
                old_product = int(self._product.view()[i])
                if old_product != product and i in self._variants.get(old_product, []):
                    self._variants[old_product].remove(i)
                for arr, value in zip((self._category, self._group, self._product, self._price, self._created), row):
                    arr.set(i, value)
                if vec is not None:
                    self._vectors[i] = vec
            members = self._variants.setdefault(product, [])
            if i not in members:
                members.append(i)
            self._matrix = None
            return i

    def ensure(self, item_id: str) -> int:
        """The code of ``item_id``, adding it with unknown facts if the table lacks it."""
        i = self.pos.get(item_id)
        return i if i is not None else self.add(item_id, ItemFacts())

    def codes(self, item_ids: Iterable[str]) -> np.ndarray:
        return np.fromiter((self.ensure(i) for i in item_ids), dtype=np.int64)

    @property
    def category(self) -> np.ndarray:
        return self._category.view()

    @property
    def group(self) -> np.ndarray:
        return self._group.view()

    @property
    def product(self) -> np.ndarray:
        return self._product.view()

    @property
    def price(self) -> np.ndarray:
        return self._price.view()

    @property
    def created(self) -> np.ndarray:
        return self._created.view()

    def matrix(self) -> np.ndarray:
        """Unit vectors, one row per item (zeros where an item has none)."""
        with self._lock:
            if self._matrix is None or len(self._matrix) != len(self.ids):
                dim = self.dim or 1
                m = np.zeros((len(self.ids), dim), dtype=np.float32)
                for i, v in enumerate(self._vectors):
                    if v is not None and len(v) == dim:
                        m[i] = v
                self._matrix = m
            return self._matrix

    def has_vector(self) -> np.ndarray:
        return np.array([v is not None for v in self._vectors], dtype=bool)

    def variants(self, code: int) -> list[int]:
        """Other colours of the same product (the item itself excluded)."""
        members = self._variants.get(int(self._product.view()[code]), [])
        return [m for m in members if m != code]


@dataclass
class UserHistory:
    """One user's events, oldest first, as item codes / weights / times / basket codes."""

    items: np.ndarray
    weights: np.ndarray
    ts: np.ndarray
    bought: np.ndarray  # cart or purchase
    prices: np.ndarray
    baskets: np.ndarray
    types: np.ndarray  # index into EVENT_TYPES, -1 if another type

    @property
    def empty(self) -> bool:
        return len(self.items) == 0

    def positive(self) -> "UserHistory":
        keep = self.weights > 0
        return UserHistory(self.items[keep], self.weights[keep], self.ts[keep], self.bought[keep], self.prices[keep],
                           self.baskets[keep], self.types[keep])

    def kinds(self, code: int) -> set[str]:
        """The types of the events in this history on one item (the feed passes its positive
        history: what the user viewed, clicked, carted or bought, as of the moment ranked)."""
        return {EVENT_TYPES[t] for t in self.types[self.items == code].tolist() if t >= 0}

    def disliked(self) -> set[int]:
        return set(self.items[self.weights < 0].tolist())


@dataclass
class Windows:
    """Item popularity at one moment, over several windows (event-weight sums)."""

    now: float
    all_time: np.ndarray
    decayed: np.ndarray
    last_7d: np.ndarray
    last_30d: np.ndarray
    last_sold: np.ndarray  # epoch of the newest positive event, nan if none
    first_seen: np.ndarray  # epoch of the oldest event, nan if none
    group_pop_30d: dict[int, np.ndarray] = field(default_factory=dict)  # group code -> item codes by pop
    best: dict[str, np.ndarray] = field(default_factory=dict)  # window name -> best item codes, best first
    derived: dict[Any, Any] = field(default_factory=dict)  # what sources compute once per snapshot


class EventLog:
    """All events as parallel arrays; per-user slices; popularity windows cached per hour."""

    def __init__(self, weights: Mapping[str, float], trending_half_life_days: float = 7.0,
                 max_units: int = DEFAULT_MAX_UNITS) -> None:
        self.weights = dict(weights)
        self.max_units = max_units  # units per event, as trending counts them (popularity.py)
        self.half_life_s = trending_half_life_days * _DAY
        self.users = Codes()
        self._user = _arrays.Growing(np.int64)
        self._item = _arrays.Growing(np.int64)
        self._weight = _arrays.Growing(np.float64)
        self._ts = _arrays.Growing(np.float64)
        self._bought = _arrays.Growing(np.bool_)
        self._type = _arrays.Growing(np.int8)
        self._price = _arrays.Growing(np.float64)
        self.baskets = Codes()
        self._basket = _arrays.Growing(np.int64)
        self._by_user: dict[int, list[int]] = {}
        self._version = 0
        self._windows: tuple[tuple[float, int, int], Windows] | None = None
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._user)

    def add(self, user_id: str, item: int, type_: str, ts: float, basket: str, quantity: int | None = None,
            price: float | None = None) -> None:
        with self._lock:
            self._version += 1
            self._basket.append(self.baskets.code(basket))
            u = self.users.code(user_id)
            self._by_user.setdefault(u, []).append(len(self._user))
            self._user.append(u)
            self._item.append(item)
            self._weight.append(self.weights.get(type_, 0.0) * counted_units(quantity, self.max_units))
            self._ts.append(ts)
            self._bought.append(type_ in BASKET_TYPES)
            self._type.append(_TYPE_CODES.get(type_, -1))
            self._price.append(np.nan if price is None else float(price))

    def history(self, user_id: str, before: float | None = None) -> UserHistory:
        """The user's events oldest first, optionally only those strictly before ``before``."""
        with self._lock:
            rows = np.asarray(self._by_user.get(self.users.pos.get(user_id, -1), []), dtype=np.int64)
            ts = self._ts.view()[rows]
            order = np.argsort(ts, kind="stable")
            rows = rows[order]
            if before is not None:
                rows = rows[self._ts.view()[rows] < before]
            return UserHistory(self._item.view()[rows], self._weight.view()[rows], self._ts.view()[rows],
                               self._bought.view()[rows], self._price.view()[rows], self._basket.view()[rows],
                               self._type.view()[rows])

    def known_users(self) -> list[str]:
        return [self.users.keys[u] for u in self._by_user]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(user, item, weight, ts) of every event: copies of one length, taken under the lock
        (ingest appends the parallel arrays one at a time)."""
        with self._lock:
            n = len(self._user)
            return (self._user.view()[:n].copy(), self._item.view()[:n].copy(), self._weight.view()[:n].copy(),
                    self._ts.view()[:n].copy())

    def basket_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(basket, user, item, ts) of every cart/purchase event (copies, under the lock)."""
        with self._lock:
            n = len(self._user)
            bought = self._bought.view()[:n]
            return (self._basket.view()[:n][bought], self._user.view()[:n][bought], self._item.view()[:n][bought],
                    self._ts.view()[:n][bought])

    @property
    def version(self) -> int:
        """Changes with every added or forgotten event (caches key on it)."""
        return self._version

    def windows(self, now: float, n_items: int, table: "ItemTable", exact: bool = False) -> Windows:
        """Popularity of every item as of ``now`` (events at or after ``now`` are ignored).

        Serving caches it per hour of ``now`` and log version: an hour's rounding is invisible
        to a feed. ``exact`` (a cut in training or "as of" a past visit) keys on ``now`` itself,
        so nothing after the cut can come back from the cache.
        """
        key = (float(now) if exact else np.floor(now / 3600.0), exact, self._version, n_items)
        with self._lock:
            if self._windows is not None and self._windows[0] == key:
                return self._windows[1]
            _, item, weight, ts = self.arrays()
            past = (ts < now) & (item < n_items)
            pos = past & (weight > 0)
            it, w, t = item[pos], weight[pos], ts[pos]

            def total(mask: np.ndarray | None = None) -> np.ndarray:
                sel = slice(None) if mask is None else mask
                return np.bincount(it[sel], weights=w[sel], minlength=n_items)[:n_items]

            decay = np.exp2(-(now - t) / self.half_life_s)
            last_sold = np.full(n_items, np.nan)
            if len(it):
                tmp = np.full(n_items, -np.inf)
                np.maximum.at(tmp, it, t)
                last_sold = np.where(np.isfinite(tmp), tmp, np.nan)
            first_seen = np.full(n_items, np.inf)
            np.minimum.at(first_seen, item[past], ts[past])
            first_seen[~np.isfinite(first_seen)] = np.nan
            win = Windows(
                now=now, all_time=total(),
                decayed=np.bincount(it, weights=w * decay, minlength=n_items)[:n_items],
                last_7d=total(t >= now - 7 * _DAY), last_30d=total(t >= now - 30 * _DAY),
                last_sold=last_sold, first_seen=first_seen,
            )
            groups = table.group[:n_items]
            recent = win.last_30d + 0.1 * win.decayed  # ties broken by longer-run popularity
            order = np.argsort(-recent, kind="stable")
            order = order[recent[order] > 0]
            by_group: dict[int, list[int]] = {}
            for i in order[:20000].tolist():
                lst = by_group.setdefault(int(groups[i]), [])
                if len(lst) < 200:
                    lst.append(i)
            win.group_pop_30d = {g: np.asarray(v, dtype=np.int64) for g, v in by_group.items()}
            for name in ("last_7d", "decayed", "all_time"):
                pop = getattr(win, name)
                top = np.argsort(-pop, kind="stable")[:2000]
                win.best[name] = top[pop[top] > 0].astype(np.int64)
            self._windows = (key, win)
            return win

    def drop_user(self, user_id: str) -> None:
        """Forget a user: their events stop counting (rows are zero-weighted, not moved)."""
        with self._lock:
            u = self.users.pos.get(user_id)
            if u is None:
                return
            for r in self._by_user.pop(u, []):
                self._weight.set(r, 0.0)
                self._bought.set(r, False)
            self._version += 1
            self._windows = None


def facts_from_payload(payload: Mapping[str, Any], vector: Any, group_attribute: str) -> ItemFacts:
    """An item's ranking facts from its stored payload (see catalog.Product)."""
    from ..reasons import created, product_code

    attrs = payload.get("attributes") if isinstance(payload.get("attributes"), dict) else {}
    group = attrs.get(group_attribute) if group_attribute else None
    price = payload.get("price")
    return ItemFacts(
        category=payload.get("category") or None,
        group=str(group) if group else None,
        product=product_code(dict(payload)),
        price=float(price) if isinstance(price, (int, float)) and np.isfinite(price) else None,
        created=created(dict(payload)),
        vector=None if vector is None else np.asarray(vector, dtype=np.float32),
    )


def history_weights(h: UserHistory, now: float, half_life_days: float) -> np.ndarray:
    """Recency-decayed event weights of a (positive) history."""
    return h.weights * np.exp2(-(now - h.ts) / (half_life_days * _DAY))


def per_item(codes: np.ndarray, values: np.ndarray) -> dict[int, float]:
    """Sum of ``values`` per item code."""
    out: dict[int, float] = {}
    for c, v in zip(codes.tolist(), values.tolist()):
        out[c] = out.get(c, 0.0) + v
    return out


def recent_distinct(h: UserHistory, limit: int) -> list[int]:
    """The user's most recent distinct items, newest first."""
    seen: dict[int, None] = {}
    for c in h.items[::-1].tolist():
        if c not in seen:
            seen[c] = None
            if len(seen) == limit:
                break
    return list(seen)


def as_list(x: Sequence[int] | np.ndarray) -> list[int]:
    return [int(v) for v in x]
