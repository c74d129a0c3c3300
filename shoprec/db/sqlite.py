"""The embedded backend: one SQLite file beside the store (the default).

Why SQLite: one file next to the embedded store, transactions, and WAL mode lets a threaded
HTTP server read while one writer appends. ``synchronous=FULL`` means an ingest call that
returned has its events on disk even if the machine loses power right after.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import storage
from . import schema
from .base import Database


class SqliteDatabase(Database):
    """SQLite file; one connection per thread, one writer at a time."""

    dialect = "sqlite"

    def __init__(self, path: Path, min_free_mb: float = 64.0) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.min_free_mb = min_free_mb
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._write_lock = threading.RLock()
        try:
            with self._write_lock:
                self.conn().executescript(";\n".join(schema.statements("sqlite")))
            with self.transaction() as conn:
                schema.settle_version(conn, self.location, self._upgrade)
        except sqlite3.OperationalError as err:
            self.close()
            raise storage.translate(err, self.path, "open the events database") from err
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _upgrade(conn: Any) -> None:
        """Schema 1 -> 2: events gain the optional event_id; 2 -> 3: the optional rec_id (existing
        rows have neither; the online tables were created empty by the schema script)."""
        columns = {r[1] for r in conn.execute("PRAGMA table_info(events)")}
        if "rec_id" not in columns:
            conn.execute("ALTER TABLE events ADD COLUMN rec_id TEXT")
        if "event_id" not in columns:
            conn.execute("ALTER TABLE events ADD COLUMN event_id TEXT")

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
        """One writer at a time (BEGIN IMMEDIATE: across processes too); commit on success,
        roll back on error."""
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

    def scan(self, sql: str, params: tuple[Any, ...] = ()) -> Iterator[sqlite3.Row]:
        # A dedicated connection: a long read must not hold this thread's connection mid-read
        # while the same thread writes.
        conn = sqlite3.connect(self.path, timeout=30.0)
        conn.row_factory = sqlite3.Row
        try:
            yield from conn.execute(sql, params)
        finally:
            conn.close()

    def checkpoint(self) -> None:
        """Fold the WAL into the main file and truncate it (deleted rows leave the WAL too)."""
        with self._write_lock:
            self.conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
