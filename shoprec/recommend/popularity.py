"""Trending: time-decayed item popularity, overall or per category.

Each item keeps ``pop = log2(sum_e w_e * 2 ** ((t_e - EPOCH) / half_life))``. Decaying every
item by the same factor never changes their order, so this one number, written once per event,
ranks items at any "now" (an index on it serves trending straight from the database), and the
decayed mass at time ``now`` is ``2 ** (pop - (now - EPOCH) / half_life)``. Logs keep it
finite for any span of years.

A quantity counts as at most ``max_units`` units (``counted_units``): trending counts buyers,
and one order of 10^4 (or a typo) must not make an item #1 for every new visitor. The ranker's
popularity windows (ranking/state.py) count units the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import NamedTuple

import numpy as np

from ..db import Conn
from .event_store import EventStore, chunks

EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp()
_DAY = 86400.0
#: Default of ``Settings.popularity_max_units``.
DEFAULT_MAX_UNITS = 3


class Sold(NamedTuple):
    """What popularity needs of one event: its item (and the item's category, which feeds
    category trending and co-occurrence), what happened, when, and how many units."""

    item_id: str
    category: str | None
    type: str
    ts: float
    quantity: int | None


def counted_units(quantity: int | None, max_units: int = DEFAULT_MAX_UNITS) -> int:
    """Units one event adds to popularity: its quantity (1 when absent), at most ``max_units``."""
    return max(1, min(int(quantity or 1), max_units))


def _group_logsum(keys: np.ndarray, logs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log2-sum-exp2 of ``logs`` per distinct key."""
    order = np.argsort(keys, kind="stable")
    keys, logs = keys[order], logs[order]
    uniq, starts = np.unique(keys, return_index=True)
    return uniq, np.logaddexp2.reduceat(logs, starts)


class Popularity:
    def __init__(self, events: EventStore, weights: dict[str, float], half_life_days: float,
                 max_units: int = DEFAULT_MAX_UNITS) -> None:
        if half_life_days <= 0:
            raise ValueError("trending half-life must be positive")
        self.events = events
        self.weights = weights
        self.half_life_s = half_life_days * _DAY
        self.max_units = max_units

    def _log_mass(self, weights: np.ndarray, ts: np.ndarray) -> np.ndarray:
        return np.log2(weights) + (ts - EPOCH) / self.half_life_s

    def add(self, conn: Conn, rows: Sequence[Sold]) -> None:
        """Fold events into popularity; inside a write transaction.

        Every item gets a row (its category feeds category co-occurrence); only positive event
        types add mass — a dislike is not popularity.
        """
        if not rows:
            return
        categories = {item: cat for item, cat, *_ in rows}
        conn.executemany(
            "INSERT INTO items (item_id, category, pop) VALUES (?, ?, NULL)"
            " ON CONFLICT(item_id) DO UPDATE SET category = excluded.category",
            list(categories.items()),
        )
        pos = [(item, self.weights[t] * counted_units(q, self.max_units), ts)
               for item, _, t, ts, q in rows if self.weights[t] > 0]
        if not pos:
            return
        items = np.array([p[0] for p in pos], dtype=object)
        logs = self._log_mass(np.array([p[1] for p in pos], dtype=np.float64),
                              np.array([p[2] for p in pos], dtype=np.float64))
        uniq, sums = _group_logsum(items, logs)
        old = self._stored(conn, list(uniq))
        merged = np.logaddexp2(sums, np.array([old.get(i, -np.inf) for i in uniq]))
        conn.executemany("UPDATE items SET pop = ? WHERE item_id = ?",
                         [(float(v), i) for i, v in zip(uniq, merged)])

    @staticmethod
    def _stored(conn: Conn, item_ids: Sequence[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for part in chunks(item_ids):
            marks = ",".join("?" * len(part))
            for item, pop in conn.execute(f"SELECT item_id, pop FROM items WHERE item_id IN ({marks})", part):
                if pop is not None:
                    out[item] = pop
        return out

    def recount(self, conn: Conn, item_ids: Sequence[str]) -> None:
        """Recompute popularity of these items from the events that remain (after a forget)."""
        for part in chunks(list(item_ids)):
            marks = ",".join("?" * len(part))
            rows = conn.execute(
                f"SELECT item_id, type, ts, quantity FROM events WHERE item_id IN ({marks})", part).fetchall()
            live = {r[0] for r in rows}
            gone = [i for i in part if i not in live]
            conn.executemany("DELETE FROM items WHERE item_id = ?", [(i,) for i in gone])
            conn.executemany("UPDATE items SET pop = NULL WHERE item_id = ?", [(i,) for i in live])
            pos = [(i, self.weights[t] * counted_units(q, self.max_units), ts)
                   for i, t, ts, q in rows if self.weights[t] > 0]
            if not pos:
                continue
            uniq, sums = _group_logsum(
                np.array([p[0] for p in pos], dtype=object),
                self._log_mass(np.array([p[1] for p in pos]), np.array([p[2] for p in pos])),
            )
            conn.executemany("UPDATE items SET pop = ? WHERE item_id = ?",
                             [(float(v), i) for i, v in zip(uniq, sums)])

    def top(self, limit: int, offset: int = 0, categories: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """Most popular (item_id, pop) now, optionally within categories."""
        if categories:
            marks = ",".join("?" * len(categories))
            sql = (f"SELECT item_id, pop FROM items WHERE pop IS NOT NULL AND category IN ({marks})"
                   " ORDER BY pop DESC LIMIT ? OFFSET ?")
            params: tuple = (*categories, limit, offset)
        else:
            sql = "SELECT item_id, pop FROM items WHERE pop IS NOT NULL ORDER BY pop DESC LIMIT ? OFFSET ?"
            params = (limit, offset)
        return [(r[0], r[1]) for r in self.events.conn().execute(sql, params)]

    def log_scores(self, item_ids: Sequence[str]) -> np.ndarray:
        """pop per item (−inf where it has no positive events)."""
        found = self._stored(self.events.conn(), item_ids)
        return np.array([found.get(i, -np.inf) for i in item_ids], dtype=np.float64)

    def decayed(self, log_scores: np.ndarray, now: float) -> np.ndarray:
        """Decayed event mass at ``now`` (0 where no events)."""
        return np.exp2(log_scores - (now - EPOCH) / self.half_life_s)
