"""The interface both behaviour-state backends implement (sqlite.py, postgres.py)."""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

#: A connection of either backend, as ``Database.conn()`` / ``transaction()`` hand it out:
#: ``execute(sql, params)`` and ``executemany`` with ``?`` placeholders; rows index by position
#: and by column name.
Conn = Any

#: Channel of PostgreSQL notifications that new events (or a forget) were committed.
EVENTS_CHANNEL = "shoprec_events"


def redact(url: str) -> str:
    """``url`` without its password (for /health, stats, logs and error messages): everything
    between the user and the last ``@``, so an unescaped ``@`` in a password hides the rest too."""
    return re.sub(r"(://[^:/@]+):.*@", r"\1:***@", url)


def scrub(message: str, url: str) -> str:
    """The first line of a driver's error ``message`` about ``url``, with the URL and its password
    redacted (libpq quotes the part of a URL it cannot parse, which may be the password)."""
    line = (message.strip().splitlines() or ["no answer"])[0].replace(url, redact(url))
    found = re.search(r"://[^:/@]+:(.*)@", url)
    if found and found.group(1):
        for secret in {found.group(1), unquote(found.group(1))}:
            line = line.replace(secret, "***")
    return line


class Database(ABC):
    """A transactional SQL database for events and the state derived from them.

    ``conn()`` is for reads (and is the open transaction's connection when this thread is in one);
    ``transaction()`` is the only way to write: one writer at a time across every process that
    shares the database, committed on success and rolled back on error. Both hand out objects
    with ``execute(sql, params)`` / ``executemany`` taking ``?`` placeholders, whose rows index by
    position and by column name (``sqlite3.Row``'s contract).
    """

    dialect: Literal["sqlite", "postgres"]
    #: Where it is, fit to show (a URL's password is redacted).
    location: str
    #: The SQLite file (None on a server).
    path: Path | None = None

    @abstractmethod
    def conn(self) -> Any: ...

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Any]: ...

    @abstractmethod
    def scan(self, sql: str, params: tuple[Any, ...] = ()) -> Iterator[Any]:
        """Rows of a long read on a connection of its own (a model rebuild reads every event)."""

    @abstractmethod
    def close(self) -> None: ...

    def checkpoint(self) -> None:
        """Make deleted rows leave the disk's logs too, where the backend can (SQLite's WAL)."""

    def notify(self, conn: Any, payload: str) -> None:
        """Inside a write transaction: wake other processes' followers once it commits."""

    def listen(self, on_wake: Callable[[], None], every_s: float, stop: threading.Event) -> threading.Thread | None:
        """Call ``on_wake`` in a background thread when another process commits events (and at
        least every ``every_s``); None where the backend cannot notify (SQLite: readers poll)."""
        return None
