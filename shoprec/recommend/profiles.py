"""Per-user preference vectors in the item space (``settings.profile_vector``).

long-term  = sum over positive events of weight * 2 ** (-(now - t) / half_life) * item vector
short-term = sum of weight * item vector over the user's latest session

Both are kept as running sums with a reference time, so an event costs one vector add and a
rescale, and the next query sees it. Decaying a whole sum to "now" only scales it; queries use
directions (cosine), so each part is normalised and they are mixed by ``session_weight``.
Dislikes are not summed (the opposite of a vector means little in embedding space); they are
kept as events and handed to the store as recommend-query negatives.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .event_store import EventStore
from .rerank import unit

_DAY = 86400.0

#: (user_id, item vector, event weight, epoch seconds, basket/session key)
Update = tuple[str, np.ndarray, float, float, str]


@dataclass
class Profile:
    long: np.ndarray | None = None
    long_ref: float = 0.0
    session: str | None = None
    session_vec: np.ndarray | None = None
    session_ref: float = 0.0

    def add(self, vector: np.ndarray, weight: float, ts: float, session: str, half_life_s: float) -> None:
        """Fold one positive event in (events may arrive out of time order)."""
        v = weight * np.asarray(vector, dtype=np.float64)
        if self.long is None or self.long.shape != v.shape:
            self.long, self.long_ref = v, ts
        elif ts >= self.long_ref:
            self.long = self.long * 2.0 ** (-(ts - self.long_ref) / half_life_s) + v
            self.long_ref = ts
        else:
            self.long = self.long + v * 2.0 ** (-(self.long_ref - ts) / half_life_s)

        if session == self.session and self.session_vec is not None and self.session_vec.shape == v.shape:
            self.session_vec = self.session_vec + v
            self.session_ref = max(self.session_ref, ts)
        elif self.session is None or ts >= self.session_ref:
            self.session, self.session_vec, self.session_ref = session, v, ts
        # else: a late event of an older session; it is in the long-term sum already.

    def query_vector(self, now: float, session_weight: float, session_timeout_s: float) -> np.ndarray | None:
        """Unit vector to search with, or None when there is no positive signal."""
        long = unit(self.long)
        if long is None:
            return None
        short = unit(self.session_vec) if now - self.session_ref <= session_timeout_s else None
        if short is None or session_weight <= 0:
            return long
        return unit((1.0 - session_weight) * long + session_weight * short)


def _blob(v: np.ndarray | None) -> bytes | None:
    return None if v is None else np.asarray(v, dtype=np.float64).tobytes()


def _unblob(b: bytes | None) -> np.ndarray | None:
    return None if b is None else np.frombuffer(b, dtype=np.float64).copy()


class ProfileBook:
    """Profiles as rows of the ``profiles`` table (one per user, for one named vector)."""

    def __init__(self, events: EventStore, vector_name: str, half_life_days: float) -> None:
        if half_life_days <= 0:
            raise ValueError("half_life_days must be positive")
        self.events = events
        self.vector_name = vector_name
        self.half_life_s = half_life_days * _DAY

    def get(self, user_id: str, conn: sqlite3.Connection | None = None) -> Profile | None:
        row = (conn or self.events.conn()).execute(
            "SELECT * FROM profiles WHERE user_id = ?", (user_id,)).fetchone()
        if row is None or row["vector_name"] != self.vector_name:
            return None  # profiles in another vector space are rebuilt by the next event
        return Profile(
            long=_unblob(row["long_vec"]), long_ref=row["long_ref"] or 0.0, session=row["session"],
            session_vec=_unblob(row["session_vec"]), session_ref=row["session_ref"] or 0.0,
        )

    def apply(
        self,
        conn: sqlite3.Connection,
        updates: Sequence[Update],
        replay: Callable[[str], Sequence[Update]] | None = None,
    ) -> None:
        """Fold (user_id, item vector, weight, ts, session) updates in; inside a write transaction,
        before the batch's events are inserted.

        A user whose stored profile is missing or in another space/dimension (the catalog was
        re-encoded, ``profile_vector`` changed) is first rebuilt from ``replay(user)`` — their
        earlier events — so history is never silently dropped.
        """
        touched: dict[str, Profile] = {}
        for user, vector, weight, ts, session in updates:
            prof = touched.get(user)
            if prof is None:
                prof = self.get(user, conn)
                if prof is None or (prof.long is not None and prof.long.shape != np.shape(vector)):
                    prof = Profile()
                    for _, v, w, t, s in (replay(user) if replay else ()):
                        prof.add(v, w, t, s, self.half_life_s)
                touched[user] = prof
            prof.add(vector, weight, ts, session, self.half_life_s)
        conn.executemany(
            "INSERT OR REPLACE INTO profiles (user_id, vector_name, long_vec, long_ref, session,"
            " session_vec, session_ref) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(u, self.vector_name, _blob(p.long), p.long_ref, p.session, _blob(p.session_vec), p.session_ref)
             for u, p in touched.items()],
        )
