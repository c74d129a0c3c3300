"""The server backend: PostgreSQL, shared by any number of ``shoprec serve`` workers on any hosts.

psycopg 3 with a connection pool. Writers are serialised across every process by a
transaction-scoped advisory lock, the way SQLite's BEGIN IMMEDIATE serialises them on one
machine: that keeps ``events.id`` in commit order (a follower reading ``id > last seen`` never
skips a row that commits later with a smaller id) and makes the read-modify-write of popularity
safe. A committed write sends NOTIFY so followers wake at once instead of at their next poll.

Connection failures become ``StoreUnavailable`` (503) with the URL's password redacted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from .. import storage
from . import schema
from .base import EVENTS_CHANNEL, Database, redact, scrub

log = logging.getLogger("shoprec.db")

#: Key of the advisory lock every writer takes (any constant shared by all workers).
_WRITE_LOCK_KEY = 0x5EC0_0001
#: Longest wait for a pooled connection while the server is known to be away.
_AWAY_WAIT_S = 1.0


class Row(tuple):
    """A result row indexable by position and by column name (like ``sqlite3.Row``)."""

    _index: dict[str, int]

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)


def _rows(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    names = [c.name for c in cursor.description or ()]
    cls = type("Row", (Row,), {"_index": {n: i for i, n in enumerate(names)}})
    return lambda values: cls(values)


@lru_cache(maxsize=512)
def _sql(text: str) -> str:
    """``?`` placeholders (the dialect shared with SQLite) as psycopg's ``%s``."""
    return text.replace("%", "%%").replace("?", "%s")


class _Result(list):
    """A read's rows, already fetched (the connection went back to the pool)."""

    def fetchone(self) -> Any:
        return self[0] if self else None

    def fetchall(self) -> list[Any]:
        return list(self)


class Connection:
    """A pooled connection inside a transaction, with the ``?`` dialect."""

    def __init__(self, raw: psycopg.Connection) -> None:
        self.raw = raw
        self.in_transaction = True

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.raw.execute(_sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        cur = self.raw.cursor()
        rows = list(rows)
        if rows:
            cur.executemany(_sql(sql), rows)
        return cur


class _Reader:
    """Reads outside a transaction: each statement borrows a pooled connection."""

    in_transaction = False

    def __init__(self, db: "PostgresDatabase") -> None:
        self._db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Result:
        with self._db._connection("read events from") as raw:
            cur = raw.execute(_sql(sql), tuple(params))
            return _Result(cur.fetchall() if cur.description else [])


class PostgresDatabase(Database):
    dialect = "postgres"

    def __init__(self, url: str, pool_size: int = 8, timeout_s: float = 10.0) -> None:
        self.url = url
        self.location = redact(url)
        self._local = threading.local()
        self._write_lock = threading.RLock()  # threads of this process queue here, not in the pool
        # check: a connection broken by a server restart is replaced before use, not failed on
        self._pool = ConnectionPool(url, min_size=1, max_size=max(2, pool_size), timeout=timeout_s, open=False,
                                    kwargs={"autocommit": True, "row_factory": _rows},
                                    check=ConnectionPool.check_connection, name="shoprec")
        self._away = False  # the last use failed to reach the server (see _connection)
        try:
            with self._errors("connect to"):
                # one direct connection first: a wrong URL or a server that is down fails now, with
                # the server's reason, instead of after the pool's retries
                try:
                    psycopg.connect(url, connect_timeout=max(1, int(timeout_s))).close()
                except psycopg.ProgrammingError as err:  # libpq could not parse the URL
                    raise storage.StoreUnavailable(
                        f"SHOPREC_DATABASE_URL is not a valid PostgreSQL URL ({scrub(str(err), url)}): expected "
                        "postgresql://USER:PASSWORD@HOST:5432/DB, special characters percent-encoded") from None
                self._pool.open(wait=True, timeout=timeout_s)
            with self.transaction() as conn:
                for stmt in schema.statements("postgres"):
                    conn.execute(stmt)
                schema.settle_version(conn, self.location, None)
        except BaseException:
            self.close()
            raise

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """psycopg's connection faults as the storage errors the CLI and HTTP API explain."""
        try:
            yield
        except pg_errors.DiskFull as err:
            raise storage.StoreFull(f"the PostgreSQL server {self.location} is out of disk space: could not "
                                    f"{action}. Free some space and retry.") from err
        except (psycopg.OperationalError, PoolTimeout) as err:
            raise storage.StoreUnavailable(f"could not {action} PostgreSQL at {self.location}: "
                                           f"{scrub(str(err), self.url)} (SHOPREC_DATABASE_URL)") from err

    @contextmanager
    def _connection(self, action: str) -> Iterator[psycopg.Connection]:
        """A pooled connection, its faults as storage errors. While the server is known to be away
        a request waits at most _AWAY_WAIT_S for one, not the pool's full timeout: requests answer
        503 at once instead of each holding a thread for seconds."""
        try:
            with self._errors(action), self._pool.connection(timeout=_AWAY_WAIT_S if self._away else None) as raw:
                self._away = False
                yield raw
        except storage.StoreUnavailable:
            self._away = True
            raise

    def conn(self) -> Connection | _Reader:
        """The open transaction's connection on this thread, else a pooled reader."""
        current = getattr(self._local, "conn", None)
        return current if current is not None else _Reader(self)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self._write_lock:
            current = getattr(self._local, "conn", None)
            if current is not None:  # nested use by the same thread: join the outer one
                yield current
                return
            with self._connection("record events in") as raw:
                with raw.transaction():
                    raw.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK_KEY,))
                    conn = self._local.conn = Connection(raw)
                    try:
                        yield conn
                    finally:
                        self._local.conn = None

    def scan(self, sql: str, params: tuple[Any, ...] = ()) -> Iterator[Any]:
        """A server-side cursor: a rebuild streams every event without holding them all twice."""
        with self._connection("read events from") as raw, raw.transaction():
            with raw.cursor(name="shoprec_scan") as cur:
                cur.itersize = 20_000
                cur.execute(_sql(sql), params)
                yield from cur

    def notify(self, conn: Any, payload: str) -> None:
        conn.execute("SELECT pg_notify(?, ?)", (EVENTS_CHANNEL, payload))

    def listen(self, on_wake: Callable[[], None], every_s: float, stop: threading.Event) -> threading.Thread:
        def wake() -> None:
            try:
                on_wake()
            except Exception:  # noqa: BLE001 - the follower must outlive one bad refresh
                log.exception("refresh after a notification failed")

        def run() -> None:
            lost = False  # said once per outage: a restarting server must not flood the log
            while not stop.is_set():
                try:
                    with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as raw:
                        raw.execute(f"LISTEN {EVENTS_CHANNEL}")
                        if lost:
                            log.info("event notifications from %s are back", self.location)
                            lost = False
                        while not stop.is_set():
                            wake()  # first: what was committed while no one listened
                            # wakes on the first notification, or after every_s (the polling floor)
                            for _ in raw.notifies(timeout=every_s, stop_after=1):
                                pass
                except psycopg.Error as err:
                    self._away = True  # requests need not wait the pool's full timeout to learn it
                    if not lost:
                        log.warning("event notifications from %s lost (%s); polling every %gs until they are back",
                                    self.location, scrub(str(err), self.url), every_s)
                        lost = True
                        continue  # reconnect at once: most losses are one dropped connection
                    if not stop.wait(every_s):
                        wake()  # the polling floor while the server is away

        thread = threading.Thread(target=run, name="shoprec-events-listener", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self._pool.close()
