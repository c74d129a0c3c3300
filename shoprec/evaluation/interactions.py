"""Purchase events as the evaluation reads them.

The evaluation needs only who bought what, when, and in which basket; keeping that in one
small immutable record lets splits and methods share it without copying the raw JSON around.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Interaction:
    """One event line of ``events.jsonl``.

    ``session_id`` is the basket: items sharing it were bought together, which is what the
    bought-together evaluation holds out.
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
    """Events of the given types from a JSONL file, in file order.

    A malformed line raises with its line number: an evaluation that silently drops rows
    would report numbers for data nobody chose.
    """
    wanted = frozenset(types)
    out: list[Interaction] = []
    with Path(path).open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                event_type = str(raw.get("type", "purchase"))
                if event_type not in wanted:
                    continue
                user_id = str(raw["user_id"])
                ts = parse_ts(str(raw["ts"]))
                session = raw.get("session_id") or f"{user_id}-{ts.date().isoformat()}"
                price = raw.get("price")
                out.append(Interaction(
                    user_id=user_id,
                    item_id=str(raw["item_id"]),
                    ts=ts,
                    session_id=str(session),
                    type=event_type,
                    price=None if price is None else float(price),
                ))
            except (KeyError, ValueError, TypeError) as err:
                raise ValueError(f"{path}: line {number}: bad event ({err!r})") from err
    return out


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
