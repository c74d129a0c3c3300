"""Every ranked answer served, kept so later events can name it by ``rec_id``.

A served list is (rec_id, user, surface, experiment, variant, items in order). Writing it on the
request path would cost each answer a synchronous SQLite commit (fsync), so answers only append
to a buffer and a background thread writes the buffer about once a second; an ingest, a forget,
the stats and shutdown write it first (inside their own transaction), so no event ever refers
to a list that is not on disk. A crash can lose the last second of served lists: events naming
them are then refused as naming an unknown rec_id, never credited to the wrong list.

A forget (in this worker or any other sharing the database) must leave no list of its user behind,
yet a list computed just before it may still sit in a buffer, or still be computing. Each list
carries the forget generation its worker had seen when the answer began (``forgets_seen``); the
write reads the current generation under the write lock, and a list of a named user computed
under an older one is dropped unwritten. Who was forgotten is not recorded anywhere (that would
be a row of theirs), so the lists of other shoppers served in that second are dropped too: like
a crash, it loses about a second of served lists, never a forgotten user's.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..db import Conn
from ..storage import StoreError
from .experiments import Assignment

if TYPE_CHECKING:  # the recommend package imports this one: no import cycle at run time
    from ..recommend.event_store import EventStore

#: SQLite caps bound parameters per statement; stay well under the oldest default (999).
_CHUNK = 500

log = logging.getLogger("shoprec.online")


class RecIds:
    """Unguessable rec_ids (128 random bits, hex) from the OS's random source, read 256 at a time.

    ``uuid4()`` reads ``os.urandom`` once per id, and that call lets go of the GIL: on a busy
    server each served list then waited for another thread's turn to get it back (6 % of a feed
    thread's samples in a py-spy profile of first visits). A forked child starts on fresh bytes,
    so no two processes hand out the same id.
    """

    _BATCH = 256
    _SIZE = 16

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # a new lock too: a fork while another thread held the old one leaves it held in the child
        self._lock = threading.Lock()
        self._buffer = b""
        self._next = 0

    def __call__(self) -> str:
        with self._lock:
            if self._next >= len(self._buffer):
                self._buffer = os.urandom(self._BATCH * self._SIZE)
                self._next = 0
            start = self._next
            self._next += self._SIZE
            return self._buffer[start:start + self._SIZE].hex()


new_rec_id = RecIds()


@dataclass(frozen=True)
class ServedList:
    rec_id: str
    user_id: str | None
    surface: str
    experiment: str | None
    variant: str
    served_at: float
    items: tuple[str, ...]

    def position(self, item_id: str) -> int | None:
        """1-based position of ``item_id`` in the list (None: it was not in it)."""
        try:
            return self.items.index(item_id) + 1
        except ValueError:
            return None


class Tracker:
    def __init__(self, events: "EventStore", flush_every_s: float = 1.0) -> None:
        self.events = events
        self.flush_every_s = flush_every_s
        #: rec_id -> (list, the forget generation its answer was computed under)
        self._pending: dict[str, tuple[ServedList, int]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, surface: str, user_id: str | None, assignment: Assignment,
               item_ids: Sequence[str], forgets_seen: int) -> ServedList:
        """Buffer a served list. ``forgets_seen``: the forget generation read before the answer
        was computed (``RecommendEngine.forgets_seen``), so a forget after that drops it."""
        served = ServedList(new_rec_id(), user_id, surface, assignment.experiment, assignment.variant,
                            time.time(), tuple(item_ids))
        with self._lock:
            self._pending[served.rec_id] = (served, forgets_seen)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="shoprec-served-lists", daemon=True)
                self._thread.start()
        return served

    def _run(self) -> None:
        failing = False  # said once per fault, not once a second
        while not self._stop.wait(self.flush_every_s):
            try:
                self.flush()
                failing = False
            except StoreError as err:  # a full disk, a database away: keep serving, say why lists wait
                if not failing:
                    log.warning("served lists not recorded yet (kept to retry): %s", err)
                failing = True
            except Exception:  # noqa: BLE001 - the thread must outlive one bad write
                log.exception("served lists not recorded")

    def flush(self, conn: Conn | None = None) -> None:
        """Write pending lists. With ``conn`` (a caller's open transaction) they are written
        there but stay pending, so a rollback of that transaction loses none; without, they
        are written in a transaction of their own and leave the buffer once it committed."""
        if conn is not None:
            self._write(conn)
            return
        with self._lock:
            if not self._pending:
                return
        with self.events.transaction() as own:
            written = self._write(own)
        with self._lock:
            for rec_id in written:
                self._pending.pop(rec_id, None)

    def _write(self, conn: Conn) -> list[str]:
        """Insert the pending lists not computed before a forget committed; the rec_ids of all
        pending lists (written or dropped)."""
        # The generation and the buffer are read inside the transaction: no forget (which holds
        # the write lock while it deletes a user's lists) can commit between this check and the insert.
        forgets = self.events.forgets(conn)
        with self._lock:
            batch = list(self._pending.values())
        keep = [s for s, seen in batch if s.user_id is None or seen >= forgets]
        if len(keep) < len(batch):
            log.info("%d served lists not recorded: computed before a forget", len(batch) - len(keep))
        conn.executemany("INSERT INTO recs VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                         [(s.rec_id, s.user_id, s.surface, s.experiment, s.variant, s.served_at,
                           json.dumps(s.items)) for s in keep])
        return [s.rec_id for s, _ in batch]

    def forget(self, user_id: str) -> None:
        """Drop a user's lists not written yet (the caller deletes the written ones)."""
        with self._lock:
            self._pending = {k: p for k, p in self._pending.items() if p[0].user_id != user_id}

    def lookup(self, conn: Conn, rec_ids: Iterable[str]) -> dict[str, ServedList]:
        """The served lists of these ids that exist (pending or written)."""
        ids = list(dict.fromkeys(rec_ids))
        with self._lock:
            out = {i: self._pending[i][0] for i in ids if i in self._pending}
        rest = [i for i in ids if i not in out]
        for start in range(0, len(rest), _CHUNK):
            part = rest[start:start + _CHUNK]
            marks = ",".join("?" * len(part))
            for r in conn.execute(f"SELECT rec_id, user_id, surface, experiment, variant, served_at, items"
                                  f" FROM recs WHERE rec_id IN ({marks})", part):
                out[r[0]] = ServedList(r[0], r[1], r[2], r[3], r[4], r[5], tuple(json.loads(r[6])))
        return out

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()
