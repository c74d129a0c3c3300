"""Purchase events as the evaluation reads them.

The evaluation needs only who bought what, when, and in which basket; keeping that in one
small immutable record lets splits and methods share it without copying the raw JSON around.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from shoprec.recommend.events import basket_key
from shoprec.rows import read_rows


@dataclass(frozen=True, slots=True)
class Interaction:
    """One event line of ``events.jsonl``.

    ``session_id`` is the basket (as ``shoprec.recommend.events.basket_key`` names it): items
    sharing it were bought together, which is what the bought-together evaluation holds out.
    """

    user_id: str
    item_id: str
    ts: datetime
    session_id: str
    type: str = "purchase"
    price: float | None = None


def parse_ts(value: str) -> datetime:
    """ISO 8601 to an aware UTC datetime (a date alone means midnight UTC).

    Aware datetimes keep split dates and event times comparable whatever the source wrote.
    """
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def read_events(path: Path, types: Iterable[str] = ("purchase",)) -> list[Interaction]:
    """Events of the given types from a JSONL or CSV/TSV events file (read as the service reads
    it, shoprec/rows.py), in file order; ``session_id`` is the service's basket key
    (``basket_key``), so the evaluation holds out the baskets the service learns from.

    A malformed line raises with its line number: an evaluation that silently drops rows
    would report numbers for data nobody chose.
    """
    wanted = frozenset(types)

    def parse(raw: Any, number: int) -> Interaction | None:
        try:
            event_type = str(raw.get("type", "purchase"))
            if event_type not in wanted:
                return None
            user_id = str(raw["user_id"])
            ts = parse_ts(str(raw["ts"]))
            price = raw.get("price")
            return Interaction(
                user_id=user_id,
                item_id=str(raw["item_id"]),
                ts=ts,
                session_id=basket_key(user_id, raw.get("session_id") or None, ts),
                type=event_type,
                price=None if price is None else float(price),
            )
        except (AttributeError, KeyError, ValueError, TypeError) as err:
            raise ValueError(f"{path}: line {number}: bad event ({err!r})") from err

    def fail(number: int, reason: str, _item: str | None) -> None:
        raise ValueError(f"{path}: line {number}: {reason}")

    rows = read_rows(Path(path), parse, fail, name="events file")
    return [row for row in rows if row is not None]


def users_of(interactions: Iterable[Interaction]) -> set[str]:
    return {e.user_id for e in interactions}


def items_of(interactions: Iterable[Interaction]) -> set[str]:
    return {e.item_id for e in interactions}


def items_by_user(interactions: Iterable[Interaction]) -> dict[str, set[str]]:
    """Distinct items per user: the seen-set a recommender excludes and the relevant set a
    metric scores against."""
    out: dict[str, set[str]] = {}
    for e in interactions:
        out.setdefault(e.user_id, set()).add(e.item_id)
    return out


def sorted_by_time(interactions: Sequence[Interaction]) -> list[Interaction]:
    """Stable by time so equal timestamps keep file order (reproducible splits)."""
    return sorted(interactions, key=lambda e: e.ts)
