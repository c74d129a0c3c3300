"""Where behaviour state lives: one small interface (``base.Database``), an embedded backend
(SQLite, the default: one file beside the store) and a server backend (PostgreSQL, for several
service workers on several hosts) — the same shape as the vector store's Edge/server pair.

Modules that own a table write their SQL once, in the subset both dialects share (``?``
placeholders, ``INSERT ... ON CONFLICT``); only the DDL (schema.py) and a few statements the
backends hide (locking, notification, long scans) differ.
"""

from __future__ import annotations

from pathlib import Path

from .base import Conn, Database, redact

__all__ = ["Conn", "Database", "open_database", "redact", "is_server_url"]


def is_server_url(location: str | Path | None) -> bool:
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def open_database(location: str | Path, min_free_mb: float = 64.0, pool_size: int = 8) -> Database:
    """A PostgreSQL URL opens the server backend (psycopg is imported only then); anything
    else is the SQLite file's path."""
    if is_server_url(location):
        from .postgres import PostgresDatabase

        return PostgresDatabase(str(location), pool_size=pool_size)
    from .sqlite import SqliteDatabase

    return SqliteDatabase(Path(location), min_free_mb=min_free_mb)
