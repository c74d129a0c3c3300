"""Durable home of behaviour events and the incremental state derived from them.

The database is SQLite (one file beside the store, the default) or PostgreSQL (shared by several
service workers): ``shoprec.db`` holds both backends and the schema (its docstring lists the
tables). This module is the events' part of it: insert, dedupe, history, forget, the clock, the
ingest ledger, and what workers watch to follow each other (the highest ``events.id``, the
generation counters in ``meta``).

Co-occurrence and user-kNN live in memory as sparse matrices built from ``events``
(see cf.py): at this scale that is cheaper and exact, and forgetting a user is a rebuild.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..bounds import STORED
from ..db import Database, open_database
from ..db.schema import SCHEMA_VERSION
from .events import Event

__all__ = ["EventStore", "SCHEMA_VERSION", "chunks"]

#: Bound parameters per statement: SQLite caps them; stay well under the oldest default (999).
_CHUNK = 500
#: Generation counters in ``meta`` that other workers watch (see RecommendEngine.refresh).
FORGET = "forget_generation"
USERS = "users_generation"
_EVENT_COLUMNS = "user_id, item_id, type, ts, session_id, price, quantity, event_id, rec_id"


def chunks(seq: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start:start + size]


def _row_to_event(row: Any) -> Event:
    # Trusted (STORED): the row passed the bounds in force when it was accepted.
    return Event.model_validate({
        "user_id": row["user_id"], "item_id": row["item_id"], "type": row["type"],
        "ts": datetime.fromtimestamp(row["ts"], tz=timezone.utc), "session_id": row["session_id"],
        "price": row["price"], "quantity": row["quantity"], "event_id": row["event_id"],
        "rec_id": row["rec_id"],
    }, context=STORED)


class EventStore:
    """The events of one database (``shoprec.db``): a SQLite path (the default) or a PostgreSQL URL."""

    def __init__(self, where: Path | str | Database, min_free_mb: float = 64.0, pool_size: int = 8) -> None:
        self.db = where if isinstance(where, Database) else open_database(where, min_free_mb, pool_size)
        #: The SQLite file (None on PostgreSQL); ``location`` names either, password redacted.
        self.path = self.db.path
        self.location = self.db.location

    # --- connections -----------------------------------------------------------------------
    def conn(self) -> Any:
        """For reads (this thread's open transaction's connection while there is one)."""
        return self.db.conn()

    def transaction(self) -> Any:
        """One writer at a time, across processes; commit on success, roll back on error."""
        return self.db.transaction()

    def close(self) -> None:
        self.db.close()

    # --- events ----------------------------------------------------------------------------
    @staticmethod
    def insert_events(conn: Any, events: Iterable[Event]) -> None:
        conn.executemany(
            "INSERT INTO events (user_id, item_id, type, ts, session_id, basket, price, quantity, event_id, rec_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(e.user_id, e.item_id, e.type, e.epoch, e.session_id, e.basket(), e.price, e.quantity, e.event_id,
              e.rec_id) for e in events],
        )

    @staticmethod
    def new_events(conn: Any, events: Sequence[Event]) -> tuple[list[Event], int]:
        """The events whose ``event_id`` is neither stored nor earlier in ``events`` (events
        without one are always new), and how many were dropped as repeats. Call inside the
        write transaction that inserts them, so no other writer slips in between."""
        ids = list({e.event_id for e in events if e.event_id is not None})
        seen: set[str] = set()
        for part in chunks(ids):
            marks = ",".join("?" * len(part))
            for table in ("events", "impressions"):  # one id space: an impression is an event too
                seen.update(r[0] for r in conn.execute(
                    f"SELECT event_id FROM {table} WHERE event_id IN ({marks})", part))
        fresh: list[Event] = []
        for e in events:
            if e.event_id is not None:
                if e.event_id in seen:
                    continue
                seen.add(e.event_id)
            fresh.append(e)
        return fresh, len(events) - len(fresh)

    # --- ingested files (ledger.py) --------------------------------------------------------
    def ingested_prefixes(self) -> dict[int, set[str]]:
        """Line count -> sha256 of every events-file prefix ingested so far."""
        out: dict[int, set[str]] = {}
        for sha, lines in self.conn().execute("SELECT sha256, lines FROM ingested_prefixes"):
            out.setdefault(int(lines), set()).add(sha)
        return out

    @staticmethod
    def has_prefix(conn: Any, sha256: str) -> bool:
        return conn.execute("SELECT 1 FROM ingested_prefixes WHERE sha256 = ?", (sha256,)).fetchone() is not None

    @staticmethod
    def record_prefix(conn: Any, sha256: str, lines: int) -> None:
        conn.execute("INSERT INTO ingested_prefixes VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                     (sha256, lines, time.time()))

    def history(self, user_id: str, limit: int | None = None) -> list[Event]:
        """A user's events, newest first."""
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE user_id = ? ORDER BY ts DESC, id DESC"
        params: tuple[Any, ...] = (user_id,)
        if limit is not None:
            sql += " LIMIT ?"
            params += (int(limit),)
        return [_row_to_event(r) for r in self.conn().execute(sql, params)]

    def user_items(self, user_id: str) -> list[tuple[str, str, float]]:
        """(item_id, type, newest ts) for each item and event type of a user, newest first."""
        rows = self.conn().execute(
            "SELECT item_id, type, MAX(ts) AS ts FROM events WHERE user_id = ?"
            " GROUP BY item_id, type ORDER BY ts DESC",
            (user_id,),
        )
        return [(r["item_id"], r["type"], r["ts"]) for r in rows]

    @staticmethod
    def delete_user(conn: Any, user_id: str) -> list[str]:
        """Delete a user's events, the lists served to them and every impression and attribution
        of theirs; the items their events touched (to recount)."""
        items = [r[0] for r in conn.execute("SELECT DISTINCT item_id FROM events WHERE user_id = ?", (user_id,))]
        for table in ("events", "impressions", "attributions", "recs"):
            conn.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
        return items

    def scan(self, columns: str = "user_id, item_id, type, basket, ts, quantity",
             upto: int | None = None) -> Iterator[Any]:
        """Events in insertion order (those with ``id <= upto`` when given) — what in-memory
        models are rebuilt from."""
        if upto is None:
            return self.db.scan(f"SELECT {columns} FROM events ORDER BY id")
        return self.db.scan(f"SELECT {columns} FROM events WHERE id <= ? ORDER BY id", (upto,))

    # --- following other writers (RecommendEngine.refresh) ----------------------------------
    def last_id(self, conn: Any = None) -> int:
        """The highest ``events.id`` committed (0: none); ids grow in commit order."""
        return int((conn or self.conn()).execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])

    def since(self, conn: Any, after: int) -> list[tuple[int, Event]]:
        """(id, event) of the events committed after ``after``, in id order."""
        rows = conn.execute(f"SELECT id, {_EVENT_COLUMNS} FROM events WHERE id > ? ORDER BY id", (after,))
        return [(int(r["id"]), _row_to_event(r)) for r in rows]

    def generations(self, conn: Any = None) -> dict[str, int]:
        """The generation counters (0 where never bumped)."""
        rows = (conn or self.conn()).execute("SELECT key, value FROM meta WHERE key IN (?, ?)", (FORGET, USERS))
        found = {r[0]: int(r[1]) for r in rows}
        return {FORGET: found.get(FORGET, 0), USERS: found.get(USERS, 0)}

    def forgets(self, conn: Any) -> int:
        """The forget generation ``conn`` sees (served lists computed under an older one are not
        written: see online/tracking.py)."""
        return self.generations(conn)[FORGET]

    def bump(self, conn: Any, key: str) -> int:
        """Inside a write transaction: add one to a generation counter and wake the followers;
        the new value."""
        value = self.generations(conn)[key] + 1
        conn.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                     (key, str(value)))
        self.db.notify(conn, key)
        return value

    def item_categories(self) -> dict[str, str | None]:
        return {r[0]: r[1] for r in self.conn().execute("SELECT item_id, category FROM items")}

    # --- meta ------------------------------------------------------------------------------
    def clock(self) -> float | None:
        """Newest event time seen (epoch seconds): the engine's "now"."""
        row = self.conn().execute("SELECT value FROM meta WHERE key = 'clock'").fetchone()
        return float(row[0]) if row else None

    @staticmethod
    def advance_clock(conn: Any, ts: float) -> None:
        """Inside the write transaction (one writer at a time: the read-then-write is safe)."""
        row = conn.execute("SELECT value FROM meta WHERE key = 'clock'").fetchone()
        newest = max(float(ts), float(row[0])) if row else float(ts)
        conn.execute("INSERT INTO meta VALUES ('clock', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                     (repr(newest),))

    @staticmethod
    def reset_clock(conn: Any) -> None:
        """Clock = newest remaining event (after a forget), so no trace of it is left."""
        newest = conn.execute("SELECT MAX(ts) FROM events").fetchone()[0]
        if newest is None:
            conn.execute("DELETE FROM meta WHERE key = 'clock'")
        else:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'clock'", (repr(float(newest)),))

    def checkpoint(self) -> None:
        """Make deleted rows leave the disk's logs too (SQLite's WAL)."""
        self.db.checkpoint()

    def counts(self) -> dict[str, Any]:
        conn = self.conn()
        by_type = {r[0]: r[1] for r in conn.execute("SELECT type, COUNT(*) FROM events GROUP BY type")}
        users = conn.execute("SELECT COUNT(DISTINCT user_id) FROM events").fetchone()[0]
        items = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        return {
            "events": sum(by_type.values()),
            "events_by_type": by_type,
            "users": users,
            "items_with_events": items,
        }
