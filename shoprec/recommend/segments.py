"""User attributes from registration (age, gender, region, ...) and the segments they define.

A new user with no history still told the shop something when they signed up; shoppers of the
same segment (same age band, same region, ...) are the best guess of what they will buy. The
segment key is built from ``settings.segment_attributes`` (ages in ten-year bands); segment
popularity is a candidate source and a feature of the ranker, and what a new user with
attributes sees first.

Attributes live in the events database (table ``user_attributes``): they are personal data,
so ``forget`` removes them with the events.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shoprec.bounds import InputBounds, check_text, surrogate_at
from shoprec.config import get_settings
from shoprec.rows import NOT_UNICODE, read_rows

from .event_store import USERS, EventStore
from .ranking.state import EventLog, ItemTable

_DAY = 86400.0
#: Longest attribute value kept (a free-text field must not become a key of unbounded size).
MAX_VALUE_CHARS = 200
MAX_ATTRIBUTES = 50


@dataclass(frozen=True)
class UserRow:
    line: int
    user_id: str
    attributes: dict[str, str]


@dataclass(frozen=True)
class UserError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


MAX_KEY_CHARS = 64


def _valid_text(text: str) -> bool:
    return not any(0xD800 <= ord(ch) <= 0xDFFF or ch == "\x00" for ch in text)


def _named(key: str) -> str:
    """An attribute name fit to quote in an error (printable, short, never a lone surrogate)."""
    return ascii(key[:MAX_KEY_CHARS]) if not key.isprintable() or not _valid_text(key) else key[:MAX_KEY_CHARS]


def parse_user(raw: Any, line: int, bounds: InputBounds | None = None) -> UserRow | UserError:
    """One user record: ``user_id`` (or ``customer_id``, at most ``bounds.id_chars``, default: the
    environment's ``SHOPREC_MAX_ID_CHARS``) plus scalar attributes."""
    if not isinstance(raw, Mapping):
        return UserError(line, "expected an object with user_id and attributes")
    uid = raw.get("user_id", raw.get("customer_id"))
    if not isinstance(uid, (str, int)) or isinstance(uid, bool) or str(uid).strip() == "":
        return UserError(line, "user_id: missing or empty")
    uid = str(uid).strip()
    if surrogate_at(uid) is not None:  # the same wording as the ids of events and catalog rows
        return UserError(line, f"user_id: {NOT_UNICODE}")
    try:
        check_text(uid, (bounds or InputBounds.of(get_settings())).id_chars, "MAX_ID_CHARS")
    except ValueError as err:
        return UserError(line, f"user_id: {err}")
    if "\x00" in uid:
        return UserError(line, "user_id: contains a NUL character")
    attrs: dict[str, str] = {}
    for key, value in raw.items():
        if key in ("user_id", "customer_id") or value is None or value == "":
            continue
        name = str(key)
        if len(name) > MAX_KEY_CHARS or not _valid_text(name) or not name.isprintable():
            return UserError(line, f"{_named(name)}: attribute names are printable text of at most "
                                   f"{MAX_KEY_CHARS} characters")
        if isinstance(value, (dict, list)):
            return UserError(line, f"{name}: attributes must be scalars, got {type(value).__name__}")
        if isinstance(value, float) and not np.isfinite(value):
            return UserError(line, f"{name}: not a finite number")
        text = str(value)
        if len(text) > MAX_VALUE_CHARS or not _valid_text(text):
            return UserError(line, f"{name}: longer than {MAX_VALUE_CHARS} characters or not valid text")
        attrs[name] = text
    if len(attrs) > MAX_ATTRIBUTES:
        return UserError(line, f"more than {MAX_ATTRIBUTES} attributes")
    return UserRow(line, uid, attrs)


def read_users(path: Path, bounds: InputBounds | None = None) -> Iterator[UserRow | UserError]:
    """Users from JSONL or CSV/TSV, in file order; bad lines come back as ``UserError`` with their
    line number (see shoprec/rows.py)."""
    return read_rows(path, lambda raw, line: parse_user(raw, line, bounds),
                     lambda line, reason, _id: UserError(line, reason), name="users file")


def age_band(value: str) -> str | None:
    try:
        age = float(value)
    except ValueError:
        return None
    if not np.isfinite(age) or age < 0 or age > 130:
        return None
    return f"{int(age // 10) * 10}s"


class Segments:
    def __init__(self, events: EventStore, attributes: Sequence[str], window_days: float = 90.0) -> None:
        self.events = events
        self.attributes = [a for a in attributes if a]
        self.window_s = window_days * _DAY
        self._keys: dict[str, str | None] | None = None
        self._cache: dict[tuple[Any, ...], np.ndarray] = {}
        self._lock = threading.RLock()

    def upsert(self, rows: Sequence[UserRow]) -> int:
        with self.events.transaction() as conn:
            conn.executemany("INSERT INTO user_attributes (user_id, attributes) VALUES (?, ?)"
                             " ON CONFLICT (user_id) DO UPDATE SET attributes = excluded.attributes",
                             [(r.user_id, json.dumps(r.attributes, ensure_ascii=False)) for r in rows])
            self.events.bump(conn, USERS)  # other workers re-read the attributes
        self.reload()
        return len(rows)

    def reload(self) -> None:
        """Attributes changed (here or, seen by a follower, in another worker): read them again."""
        with self._lock:
            self._keys, self._cache = None, {}

    def clear_cache(self) -> None:
        """Cached segment best sellers are item codes of one item table: drop them on reload."""
        with self._lock:
            self._cache = {}

    def forget(self, conn: Any, user_id: str) -> None:
        conn.execute("DELETE FROM user_attributes WHERE user_id = ?", (user_id,))
        self.reload()

    def attributes_of(self, user_id: str) -> dict[str, str] | None:
        row = self.events.conn().execute("SELECT attributes FROM user_attributes WHERE user_id = ?",
                                         (user_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def key(self, attrs: Mapping[str, str]) -> str | None:
        parts = []
        for name in self.attributes:
            value = attrs.get(name)
            if value is not None and name == "age":
                value = age_band(value)
            if value is not None:
                parts.append(f"{name}={value}")
        return "|".join(parts) or None

    def _all_keys(self) -> dict[str, str | None]:
        with self._lock:
            if self._keys is None:
                self._keys = {uid: self.key(json.loads(a)) for uid, a in
                              self.events.conn().execute("SELECT user_id, attributes FROM user_attributes")}
            return self._keys

    def count(self) -> int:
        return len(self._all_keys())

    def top_items(self, user_id: str, log: EventLog, table: ItemTable, now: float, limit: int = 100
                  ) -> np.ndarray | None:
        """Item codes best sold (event weight, last ``window_days``) to the user's segment."""
        keys = self._all_keys()
        mine = keys.get(user_id)
        if mine is None:
            return None
        cache_key = (mine, float(now), id(log), log.version, len(table))
        with self._lock:
            if cache_key in self._cache:
                return self._cache[cache_key]
        members = np.array([log.users.pos[u] for u, k in keys.items() if k == mine and u in log.users.pos],
                           dtype=np.int64)
        user, item, weight, ts = log.arrays()
        sel = np.isin(user, members) & (weight > 0) & (ts < now) & (ts >= now - self.window_s)
        counts = np.bincount(item[sel], weights=weight[sel], minlength=len(table))
        order = np.argsort(-counts, kind="stable")[:limit]
        top = order[counts[order] > 0].astype(np.int64)
        with self._lock:
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[cache_key] = top
        return top
