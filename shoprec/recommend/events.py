"""The behaviour-event format (shoprec's public contract) and a reader that never loses good lines.

An event is a JSONL object or CSV record with ``user_id``, ``item_id``, ``type`` (one of
``view``, ``click``, ``cart``, ``purchase``, ``dislike``), ``ts`` (ISO 8601; a naive time is
taken as UTC) and optional ``session_id``, ``price``, ``quantity``. Each bad line becomes an
``EventError`` naming its line and reason; every other line is yielded as an ``EventRow``.
Whether the item exists is checked later, against the store, when the event is ingested.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

EventType = Literal["view", "click", "cart", "purchase", "dislike"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
#: Event types that put items in a basket: the evidence for "bought together".
BASKET_TYPES = ("cart", "purchase")


class Event(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, frozen=True)

    user_id: str = Field(min_length=1, max_length=256)
    item_id: str = Field(min_length=1, max_length=256)
    type: EventType
    ts: datetime
    session_id: str | None = Field(None, max_length=256)
    price: float | None = Field(None, ge=0)
    quantity: int | None = Field(None, ge=1)

    @field_validator("user_id", "item_id", "session_id", mode="before")
    @classmethod
    def _ids_from_numbers(cls, v: Any) -> Any:
        # Numeric ids in JSON are still ids (customer numbers); booleans are not.
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        return v

    @field_validator("type", mode="before")
    @classmethod
    def _type_lowercase(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("ts", mode="before")
    @classmethod
    def _iso_8601_only(cls, v: Any) -> Any:
        # pydantic would also take unix numbers; the format says ISO 8601, and a number in a
        # log is more often a bug (ms vs s) than a timestamp we should silently guess at.
        if isinstance(v, datetime):
            return v
        if not isinstance(v, str):
            raise ValueError(f"expected an ISO 8601 timestamp, got {type(v).__name__}")
        try:
            return datetime.fromisoformat(v.strip())
        except ValueError:
            raise ValueError(f"not an ISO 8601 timestamp: {v!r}") from None

    @field_validator("ts")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v

    @property
    def epoch(self) -> float:
        return self.ts.timestamp()

    def basket(self) -> str:
        """Key of the basket/session this event belongs to.

        Baskets are per user. Without a session id, one user's events on one UTC day form a
        basket — how transaction logs (e.g. H&M's same-customer same-day) define it.
        """
        if self.session_id:
            return f"{self.user_id}\x1f{self.session_id}"
        return f"{self.user_id}\x1f@{self.ts.astimezone(timezone.utc).date().isoformat()}"


@dataclass(frozen=True)
class EventRow:
    line: int
    event: Event


@dataclass(frozen=True)
class EventError:
    line: int
    reason: str
    item_id: str | None = None

    def __str__(self) -> str:
        who = f" (item {self.item_id})" if self.item_id else ""
        return f"line {self.line}{who}: {self.reason}"


@dataclass
class IngestReport:
    ingested: int = 0
    errors: list[EventError] = field(default_factory=list)


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "event"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "missing":
            msg = "missing"
        parts.append(f"field '{loc}': {msg}")
    return "; ".join(parts)


def parse_event(raw: Any, line: int) -> EventRow | EventError:
    if not isinstance(raw, dict):
        return EventError(line, f"expected an object, got {type(raw).__name__}")
    item = raw.get("item_id")
    item_id = str(item) if isinstance(item, (str, int)) and not isinstance(item, bool) else None
    try:
        return EventRow(line, Event.model_validate(raw))
    except ValidationError as err:
        return EventError(line, _describe(err), item_id)


def _decode_lines(path: Path) -> Iterator[tuple[int, str | None, str]]:
    """(line number, text or None if not UTF-8, reason) — bad bytes cost one line, not the file."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield number, None, f"invalid UTF-8 at byte {err.start}"
                continue
            yield number, text.lstrip("\ufeff") if number == 1 else text, ""


def _read_jsonl(path: Path) -> Iterator[EventRow | EventError]:
    for number, text, why in _decode_lines(path):
        if text is None:
            yield EventError(number, why)
            continue
        if not text.strip():
            continue
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            yield EventError(number, f"invalid JSON: {err.msg} at column {err.colno}")
            continue
        yield parse_event(raw, number)


def _read_csv(path: Path) -> Iterator[EventRow | EventError]:
    good_lines: list[str] = []
    line_numbers: list[int] = []
    for number, text, why in _decode_lines(path):
        if text is None:
            yield EventError(number, why)
        else:
            good_lines.append(text)
            line_numbers.append(number)
    if not good_lines:
        return
    reader = csv.DictReader(io.StringIO("".join(good_lines)))
    for record in reader:
        # line_num counts physical lines read so far; map back to the file's numbering.
        number = line_numbers[min(reader.line_num, len(line_numbers)) - 1]
        if None in record:
            yield EventError(number, "row has more fields than the header")
            continue
        yield parse_event({k: v for k, v in record.items() if v not in (None, "")}, number)


def read_events(path: Path) -> Iterator[EventRow | EventError]:
    """Events of a JSONL (``.jsonl``/``.ndjson``/``.json``) or CSV file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"events file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _read_jsonl(path)
    if suffix == ".csv":
        return _read_csv(path)
    raise ValueError(f"unsupported events format {suffix!r} for {path}: use .jsonl or .csv")
