"""``Idempotency-Key`` on POST /events and POST /items: a retry gets the first answer.

A client that lost the answer to a write (timeout, dropped connection, a 5xx from a proxy)
cannot know whether it was applied; retrying with the same key is safe. The first answer's
status and body are stored in the events database under (route, key) with a hash of the
request body; a retry with the same body gets that answer again (header
``Idempotent-Replayed: true``) and nothing is applied twice, a reuse of the key with another
body is refused (422), and keys expire after ``idempotency_ttl_hours`` (at most
``idempotency_max_keys`` are kept).

Events are exactly-once: the key's answer is committed in the same transaction as the events
(see ``RecommendEngine.write_transaction``), so a crash leaves both or neither. Item upserts
write the vector store, outside that transaction; they are idempotent by content (an unchanged
item is skipped), and concurrent requests with one key are serialised in this process.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import weakref
from typing import Annotated, Any

from fastapi import Header
from fastapi.responses import Response

from shoprec.config import Settings
from shoprec.db import Conn
from shoprec.http.errors import ApiError

IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", pattern=r"^[\x21-\x7e]{1,255}$",
    description="Any unique string (a UUID) of 1-255 visible ASCII characters. A retry with the same key "
                "and body gets the first answer (same status and body, header `Idempotent-Replayed: true`) "
                "and changes nothing; the same key with another body is refused (422). Keys are kept "
                "`SHOPREC_IDEMPOTENCY_TTL_HOURS` (24 h).")]

REPLAYED_HEADER = "Idempotent-Replayed"


def encode_json(body: Any) -> bytes:
    """UTF-8 JSON that cannot fail on text: a lone surrogate that slipped through is escaped."""
    try:
        return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(body, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(encode_json(body), status_code=status, media_type="application/json", headers=headers)


def request_sha256(payload: Any) -> str:
    """Hash of a parsed JSON body, independent of key order and whitespace."""
    text = json.dumps(payload, ensure_ascii=True, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


_key_locks: weakref.WeakValueDictionary[tuple[str, str], threading.Lock] = weakref.WeakValueDictionary()
_key_locks_guard = threading.Lock()


def key_lock(scope: str, key: str) -> threading.Lock:
    """One lock per (route, key) in this process, alive while someone holds a reference."""
    with _key_locks_guard:
        lock = _key_locks.get((scope, key))
        if lock is None:
            lock = threading.Lock()
            _key_locks[(scope, key)] = lock
        return lock


class Idempotency:
    """Stored first answers by (scope, key); every method runs on a connection the caller holds
    in a write transaction (``EventStore.transaction``)."""

    def __init__(self, settings: Settings) -> None:
        self.ttl_s = settings.idempotency_ttl_hours * 3600.0
        self.max_keys = settings.idempotency_max_keys

    def replay(self, conn: Conn, scope: str, key: str, digest: str) -> Response | None:
        """The first answer under this key, or None if the key is new (or expired)."""
        row = conn.execute("SELECT request_sha256, status, body FROM idempotency WHERE scope = ? AND key = ?"
                           " AND at >= ?", (scope, key, time.time() - self.ttl_s)).fetchone()
        if row is None:
            return None
        if row[0] != digest:
            raise ApiError(422, f"Idempotency-Key {key!r} was already used for a different {scope} request; "
                                "use a new key for a new request", field="Idempotency-Key", location="header")
        return Response(row[2].encode("utf-8"), status_code=int(row[1]), media_type="application/json",
                        headers={REPLAYED_HEADER: "true"})

    def save(self, conn: Conn, scope: str, key: str, digest: str, status: int, body: Any) -> None:
        now = time.time()
        conn.execute("INSERT INTO idempotency VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope, key) DO UPDATE SET"
                     " request_sha256 = excluded.request_sha256, status = excluded.status, body = excluded.body,"
                     " at = excluded.at",
                     (scope, key, digest, status, encode_json(body).decode("utf-8"), now))
        conn.execute("DELETE FROM idempotency WHERE at < ?", (now - self.ttl_s,))
        over = conn.execute("SELECT COUNT(*) FROM idempotency").fetchone()[0] - self.max_keys
        if over > 0:
            conn.execute("DELETE FROM idempotency WHERE (scope, key) IN"
                         " (SELECT scope, key FROM idempotency ORDER BY at LIMIT ?)",
                         (over,))
