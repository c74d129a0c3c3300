"""Which served list an event is credited to.

Rules (exact, so tests can construct every case):

- An event naming a ``rec_id`` must name a list this server served, an item that list held and,
  when the list was served to a user, that user; otherwise the event is refused with the reason
  (a client bug made visible, never a silent miscount).
- ``impression``: item ``item_id`` of list ``rec_id`` was shown. Stored in ``impressions``,
  never as behaviour (it is not interest: no feed, popularity, co-purchase or ranker sees it).
- ``click``, ``cart``, ``purchase`` naming a ``rec_id``: credited to that list (``direct``).
- ``cart`` or ``purchase`` without a ``rec_id``: credited to the list of the same user's latest
  credited click or cart of the same item at most ``window`` seconds earlier (event time), if
  any. Events are credited in time order within a batch; a click that arrives after the purchase
  it led to (a later batch) is not credited retroactively.

Credits are written in the ingest's transaction, so they are exactly as durable as the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..db import Conn
from .tracking import ServedList

if TYPE_CHECKING:
    from ..recommend.events import Event

CREDITED = ("click", "cart", "purchase")


def problem(event: "Event", served: ServedList | None) -> tuple[str, str] | None:
    """Why an event naming a rec_id cannot be credited, as (field, reason); None: it can."""
    if served is None:
        return "rec_id", f"unknown rec_id {event.rec_id!r} (not a list this server served)"
    if served.position(event.item_id) is None:
        return "item_id", f"item {event.item_id!r} was not in list {event.rec_id!r}"
    if served.user_id is not None and served.user_id != event.user_id:
        return "rec_id", f"list {event.rec_id!r} was served to another user"
    return None


def record(conn: Conn, events: Sequence["Event"], served: dict[str, ServedList],
           window_s: float) -> int:
    """Store impressions and credits of accepted events (inside the ingest's transaction).
    Returns how many events were credited to a list."""
    credited = 0
    for e in sorted(events, key=lambda e: e.epoch):
        if e.type == "impression":
            s = served[e.rec_id]  # type: ignore[index]
            conn.execute("INSERT INTO impressions (rec_id, user_id, item_id, position, ts, event_id)"
                         " VALUES (?, ?, ?, ?, ?, ?)", (e.rec_id, e.user_id, e.item_id, s.position(e.item_id),
                                                        e.epoch, e.event_id))
            continue
        if e.type not in CREDITED:
            continue
        if e.rec_id is not None:
            rec_id, position, direct = e.rec_id, served[e.rec_id].position(e.item_id), 1
        elif e.type in ("cart", "purchase"):
            row = conn.execute(
                "SELECT rec_id, position FROM attributions WHERE user_id = ? AND item_id = ?"
                " AND type IN ('click', 'cart') AND ts <= ? AND ts >= ? ORDER BY ts DESC, id DESC LIMIT 1",
                (e.user_id, e.item_id, e.epoch, e.epoch - window_s)).fetchone()
            if row is None:
                continue
            rec_id, position, direct = row[0], row[1], 0
        else:
            continue
        conn.execute("INSERT INTO attributions (rec_id, user_id, item_id, type, ts, position, price, quantity,"
                     " basket, direct) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (rec_id, e.user_id, e.item_id, e.type, e.epoch, position, e.price, e.quantity, e.basket(),
                      direct))
        credited += 1
    return credited
