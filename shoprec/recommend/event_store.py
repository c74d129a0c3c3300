"""Durable home of behaviour events and the incremental state derived from them (SQLite).

Why SQLite: one file next to the embedded store, transactions, and WAL mode lets a threaded
HTTP server read while one writer appends. ``synchronous=FULL`` means an ingest call that
returned has its events on disk even if the machine loses power right after.

Tables:
  events    every accepted event (the source of truth; everything else can be recomputed);
            ``event_id`` (the sender's, optional) is unique, so a re-sent event is stored once
  items     per item: category snapshot and time-decayed popularity (log2, see popularity.py)
  meta      schema version and the event clock (newest event time seen)
  ingested_prefixes  sha256 of events files' first N lines already ingested (see ledger.py),
            written in the same transaction as those lines' events
  idempotency        first answers of HTTP writes by Idempotency-Key (see http/idempotency.py)
  recs      every ranked answer served: rec_id, surface, experiment/variant, user, items in order
  impressions        items of served lists that were shown (``impression`` events: never behaviour)
  attributions       clicks, carts and purchases credited to a served list (see online/attribution.py)
  experiments        A/B experiments: variants, traffic shares, state, promoted winner

Co-occurrence and user-kNN live in memory as sparse matrices built from ``events``
(see cf.py): at this scale that is cheaper and exact, and forgetting a user is a rebuild.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import storage
from ..bounds import STORED
from .events import Event

SCHEMA_VERSION = 3
#: Versions this code upgrades in place (1 -> 2: events.event_id; 2 -> 3: events.rec_id and the
#: online-measurement tables, which CREATE ... IF NOT EXISTS adds).
_UPGRADES_FROM = (1, 2)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    type TEXT NOT NULL,
    ts REAL NOT NULL,
    session_id TEXT,
    basket TEXT NOT NULL,
    price REAL,
    quantity INTEGER,
    event_id TEXT,
    rec_id TEXT
);
CREATE INDEX IF NOT EXISTS events_user ON events(user_id, ts);
CREATE INDEX IF NOT EXISTS events_item ON events(item_id);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    category TEXT,
    pop REAL
);
CREATE INDEX IF NOT EXISTS items_pop ON items(pop);
CREATE INDEX IF NOT EXISTS items_category_pop ON items(category, pop);
-- Per-user preference vectors of an earlier feed; nothing reads them now (and a forgotten
-- user must leave no row behind), so files that still have the table lose it.
DROP TABLE IF EXISTS profiles;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ingested_prefixes (
    sha256 TEXT PRIMARY KEY,
    lines INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS idempotency_at ON idempotency(at);
CREATE TABLE IF NOT EXISTS recs (
    rec_id TEXT PRIMARY KEY,
    user_id TEXT,
    surface TEXT NOT NULL,
    experiment TEXT,
    variant TEXT,
    served_at REAL NOT NULL,
    items TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS recs_user ON recs(user_id);
CREATE TABLE IF NOT EXISTS impressions (
    id INTEGER PRIMARY KEY,
    rec_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    ts REAL NOT NULL,
    event_id TEXT
);
CREATE INDEX IF NOT EXISTS impressions_rec ON impressions(rec_id);
CREATE INDEX IF NOT EXISTS impressions_user ON impressions(user_id);
CREATE UNIQUE INDEX IF NOT EXISTS impressions_event_id ON impressions(event_id) WHERE event_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS attributions (
    id INTEGER PRIMARY KEY,
    rec_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    type TEXT NOT NULL,
    ts REAL NOT NULL,
    position INTEGER NOT NULL,
    price REAL,
    quantity INTEGER,
    basket TEXT NOT NULL,
    direct INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attributions_rec ON attributions(rec_id);
CREATE INDEX IF NOT EXISTS attributions_user_item ON attributions(user_id, item_id, ts);
CREATE TABLE IF NOT EXISTS experiments (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at REAL NOT NULL,
    stopped_at REAL,
    winner TEXT
);
"""

#: After the upgrade (the column must exist first on files of schema 1).
_EVENT_ID_INDEX = ("CREATE UNIQUE INDEX IF NOT EXISTS events_event_id ON events(event_id)"
                   " WHERE event_id IS NOT NULL")

#: SQLite caps bound parameters per statement; stay well under the oldest default (999).
_CHUNK = 500


def chunks(seq: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start:start + size]


def _row_to_event(row: sqlite3.Row) -> Event:
    # Trusted (STORED): the row passed the bounds in force when it was accepted.
    return Event.model_validate({
        "user_id": row["user_id"], "item_id": row["item_id"], "type": row["type"],
        "ts": datetime.fromtimestamp(row["ts"], tz=timezone.utc), "session_id": row["session_id"],
        "price": row["price"], "quantity": row["quantity"], "event_id": row["event_id"],
        "rec_id": row["rec_id"],
    }, context=STORED)


class EventStore:
    """SQLite file of events; one connection per thread, one writer at a time."""

    def __init__(self, path: Path, min_free_mb: float = 64.0) -> None:
        self.path = Path(path)
        self.min_free_mb = min_free_mb
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._write_lock = threading.RLock()
        try:
            with self._write_lock:
                self.conn().executescript(_SCHEMA)
            with self.transaction() as conn:
                found = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
                if found is None:
                    conn.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                elif int(found[0]) in _UPGRADES_FROM:
                    self._upgrade(conn)
                elif int(found[0]) != SCHEMA_VERSION:
                    raise RuntimeError(
                        f"{self.path} has events schema {found[0]}, this shoprec reads {SCHEMA_VERSION}")
                conn.execute(_EVENT_ID_INDEX)
        except sqlite3.OperationalError as err:
            self.close()
            raise storage.translate(err, self.path, "open the events database") from err
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _upgrade(conn: sqlite3.Connection) -> None:
        """Schema 1 -> 2: events gain the optional event_id; 2 -> 3: the optional rec_id (existing
        rows have neither; the online tables were created empty by the schema script)."""
        columns = {r[1] for r in conn.execute("PRAGMA table_info(events)")}
        if "rec_id" not in columns:
            conn.execute("ALTER TABLE events ADD COLUMN rec_id TEXT")
        if "event_id" not in columns:
            conn.execute("ALTER TABLE events ADD COLUMN event_id TEXT")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))

    # --- connections -----------------------------------------------------------------------
    def conn(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; writes go through ``transaction``)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # check_same_thread=False only so close() may close every thread's connection;
            # each connection is still used by the one thread that opened it.
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            # Forgotten users' rows are overwritten on disk, not just unlinked.
            conn.execute("PRAGMA secure_delete=ON")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One writer at a time (in this process); commit on success, roll back on error."""
        with self._write_lock:
            conn = self.conn()
            if conn.in_transaction:  # nested use by the same thread: join the outer one
                yield conn
                return
            if 0 < self.min_free_mb and storage.free_bytes(self.path) < self.min_free_mb * 1024 * 1024:
                raise storage.StoreFull(
                    f"not enough disk space to record events: under {self.min_free_mb:g} MiB free on the disk "
                    f"of {self.path} (SHOPREC_MIN_FREE_MB). Free some space and retry.")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    # SQLite rolls back by itself on SQLITE_FULL: a second ROLLBACK would fail and
                    # hide the real error behind "no transaction is active".
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as err:
                raise storage.translate(err, self.path, "record events") from err

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    # --- events ----------------------------------------------------------------------------
    @staticmethod
    def insert_events(conn: sqlite3.Connection, events: Iterable[Event]) -> None:
        conn.executemany(
            "INSERT INTO events (user_id, item_id, type, ts, session_id, basket, price, quantity, event_id, rec_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(e.user_id, e.item_id, e.type, e.epoch, e.session_id, e.basket(), e.price, e.quantity, e.event_id,
              e.rec_id) for e in events],
        )

    @staticmethod
    def new_events(conn: sqlite3.Connection, events: Sequence[Event]) -> tuple[list[Event], int]:
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
    def has_prefix(conn: sqlite3.Connection, sha256: str) -> bool:
        return conn.execute("SELECT 1 FROM ingested_prefixes WHERE sha256 = ?", (sha256,)).fetchone() is not None

    @staticmethod
    def record_prefix(conn: sqlite3.Connection, sha256: str, lines: int) -> None:
        conn.execute("INSERT OR IGNORE INTO ingested_prefixes VALUES (?, ?, ?)", (sha256, lines, time.time()))

    def history(self, user_id: str, limit: int | None = None) -> list[Event]:
        """A user's events, newest first."""
        sql = "SELECT * FROM events WHERE user_id = ? ORDER BY ts DESC, id DESC"
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
    def delete_user(conn: sqlite3.Connection, user_id: str) -> list[str]:
        """Delete a user's events, the lists served to them and every impression and attribution
        of theirs; the items their events touched (to recount)."""
        items = [r[0] for r in conn.execute("SELECT DISTINCT item_id FROM events WHERE user_id = ?", (user_id,))]
        for table in ("events", "impressions", "attributions", "recs"):
            conn.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
        return items

    def scan(self, columns: str = "user_id, item_id, type, basket, ts, quantity") -> Iterator[sqlite3.Row]:
        """All events in insertion order — what in-memory models are rebuilt from."""
        # A dedicated connection: a long read must not hold this thread's connection mid-read
        # while the same thread writes.
        conn = sqlite3.connect(self.path, timeout=30.0)
        conn.row_factory = sqlite3.Row
        try:
            yield from conn.execute(f"SELECT {columns} FROM events ORDER BY id")
        finally:
            conn.close()

    def item_categories(self) -> dict[str, str | None]:
        return {r[0]: r[1] for r in self.conn().execute("SELECT item_id, category FROM items")}

    # --- meta ------------------------------------------------------------------------------
    def clock(self) -> float | None:
        """Newest event time seen (epoch seconds): the engine's "now"."""
        row = self.conn().execute("SELECT value FROM meta WHERE key = 'clock'").fetchone()
        return float(row[0]) if row else None

    @staticmethod
    def advance_clock(conn: sqlite3.Connection, ts: float) -> None:
        conn.execute(
            "INSERT INTO meta VALUES ('clock', ?) ON CONFLICT(key) DO UPDATE"
            " SET value = CAST(MAX(CAST(value AS REAL), CAST(excluded.value AS REAL)) AS TEXT)",
            (repr(float(ts)),),
        )

    @staticmethod
    def reset_clock(conn: sqlite3.Connection) -> None:
        """Clock = newest remaining event (after a forget), so no trace of it is left."""
        newest = conn.execute("SELECT MAX(ts) FROM events").fetchone()[0]
        if newest is None:
            conn.execute("DELETE FROM meta WHERE key = 'clock'")
        else:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'clock'", (repr(float(newest)),))

    def checkpoint(self) -> None:
        """Fold the WAL into the main file and truncate it (deleted rows leave the WAL too)."""
        with self._write_lock:
            self.conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")

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
