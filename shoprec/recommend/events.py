"""The behaviour-event format (shoprec's public contract) and a reader that never loses good lines.

An event is a JSONL object or CSV record with ``user_id``, ``item_id``, ``type`` (one of
``view``, ``click``, ``cart``, ``purchase``, ``dislike``, ``impression``), ``ts`` (ISO 8601; a
naive time is taken as UTC) and optional ``session_id``, ``price``, ``quantity``, ``event_id``
(the sender's id of the event: a repeat is skipped, so a retried or re-sent event counts once)
and ``rec_id`` (the recommendation list the event came from, as every ranked answer names it).
An ``impression`` says item ``item_id`` of list ``rec_id`` was shown: it needs the ``rec_id``,
and it is never interest (it feeds online measurement only, see shoprec/online/). Ids
and quantities are bounded (``InputBounds``) and must be valid Unicode. Each bad line becomes an
``EventError`` naming its line and reason; every other line is yielded as an ``EventRow``.
Whether the item exists is checked later, against the store, when the event is ingested.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from shoprec.bounds import InputBounds, bounds_of, check_text, printable
from shoprec.rows import describe, read_rows, readable_id

EventType = Literal["view", "click", "cart", "purchase", "dislike", "impression"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
#: Event types that only measure recommendations: never stored as behaviour, never interest.
TRACKING_TYPES = ("impression",)
#: Event types that put items in a basket: the evidence for "bought together".
BASKET_TYPES = ("cart", "purchase")


def basket_key(user_id: str, session_id: str | None, ts: datetime) -> str:
    """Key of the basket an event belongs to; the evaluation (shoprec/evaluation/interactions.py)
    groups baskets by the same key, so it measures the baskets the service learns from.

    Baskets are per user. Without a session id, one user's events on one UTC day form a
    basket — how transaction logs (e.g. H&M's same-customer same-day) define it.
    """
    if session_id:
        return f"{user_id}\x1f{session_id}"
    return f"{user_id}\x1f@{ts.astimezone(timezone.utc).date().isoformat()}"


class Event(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, frozen=True)

    user_id: str = Field(min_length=1)
    item_id: str = Field(min_length=1)
    type: EventType
    ts: datetime
    session_id: str | None = None
    price: float | None = Field(None, ge=0, allow_inf_nan=False)
    quantity: int | None = Field(None, ge=1)
    event_id: str | None = Field(None, min_length=1)
    rec_id: str | None = Field(None, min_length=1, description="The recommendation list (rec_id of a ranked "
                               "answer) this event came from; required for an impression.", validate_default=True)

    @field_validator("user_id", "item_id", "session_id", "event_id", "rec_id", mode="before")
    @classmethod
    def _ids_from_numbers(cls, v: Any) -> Any:
        # Numeric ids in JSON are still ids (customer numbers); booleans are not.
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        return v

    @field_validator("user_id", "item_id", "session_id", "event_id", "rec_id")
    @classmethod
    def _bounded_ids(cls, v: str | None, info: ValidationInfo) -> str | None:
        bounds = bounds_of(info)
        if v is None or bounds is None:
            return v
        return check_text(v, bounds.id_chars, "MAX_ID_CHARS")

    @field_validator("quantity")
    @classmethod
    def _bounded_quantity(cls, v: int | None, info: ValidationInfo) -> int | None:
        bounds = bounds_of(info)
        if v is not None and bounds is not None and v > bounds.max_quantity:
            shown = str(v) if v < 10 ** 15 else "a number over 10^15"
            raise ValueError(f"{shown} is over the limit of {bounds.max_quantity} "
                             "(SHOPREC_MAX_QUANTITY raises it)")
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
            raise ValueError(f"not an ISO 8601 timestamp: {printable(v, 40)!r}") from None

    @field_validator("ts")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v

    @field_validator("rec_id")
    @classmethod
    def _impression_names_its_list(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None and info.data.get("type") == "impression":
            raise ValueError("an impression needs the rec_id of the list that was shown")
        return v

    @property
    def epoch(self) -> float:
        return self.ts.timestamp()

    def basket(self) -> str:
        """Key of the basket/session this event belongs to (see ``basket_key``)."""
        return basket_key(self.user_id, self.session_id, self.ts)


@dataclass(frozen=True)
class EventRow:
    line: int
    event: Event


@dataclass(frozen=True)
class EventError:
    line: int
    reason: str
    item_id: str | None = None
    field: str | None = None  # the event field the reason is about, where one is

    def __str__(self) -> str:
        who = f" (item {self.item_id})" if self.item_id else ""
        return f"line {self.line}{who}: {self.reason}"


@dataclass
class IngestReport:
    ingested: int = 0
    errors: list[EventError] = field(default_factory=list)
    #: Events skipped because their ``event_id`` was already in the log (or earlier in the batch).
    duplicates: int = 0
    #: File lines skipped because this file's content up to there was ingested before.
    skipped_lines: int = 0
    #: Clicks, carts and purchases credited to a served list (see shoprec/online/attribution.py).
    attributed: int = 0


def parse_event(raw: Any, line: int, bounds: InputBounds | None = None) -> EventRow | EventError:
    if not isinstance(raw, dict):
        return EventError(line, f"expected an object, got {type(raw).__name__}")
    try:
        return EventRow(line, Event.model_validate(raw, context=bounds.context() if bounds else None))
    except ValidationError as err:
        return EventError(line, describe(err, "event"), readable_id(raw, "item_id"))


def read_events(path: Path, bounds: InputBounds | None = None, skip_lines: int = 0) -> Iterator[EventRow | EventError]:
    """Events of a JSONL (``.jsonl``/``.ndjson``/``.json``) or CSV/TSV file, in line order, each
    checked against ``bounds`` (default: the environment's settings). The first ``skip_lines``
    lines are not read as events (a CSV header still is); see shoprec/rows.py."""
    return read_rows(path, lambda raw, line: parse_event(raw, line, bounds),
                     lambda line, reason, item_id: EventError(line, reason, item_id),
                     name="events file", id_key="item_id", skip_lines=skip_lines)
