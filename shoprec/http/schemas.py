"""JSON shapes of the API's answers (request bodies are the catalog and event formats)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Response
from pydantic import BaseModel, Field, field_validator

from shoprec.bounds import printable
from shoprec.catalog import Product
from shoprec.recommend.events import Event
from shoprec.results import Served, image_url

#: Catalog fields returned by GET /items/{id}; indexer bookkeeping (hashes, server paths) stays in.
PUBLIC_ITEM_FIELDS = tuple(Product.model_fields)


class Results(Served):
    """Ranked products as served; every one carries id, score, title, category, price, image_url,
    reason and position. Events that name the ``rec_id`` (impression, click, cart, purchase) are
    credited to this answer; ``experiment``/``variant`` say which A/B variant served it."""

    @classmethod
    def response(cls, served: Served) -> Response:
        """The answer as JSON, validated and serialised once, on the worker thread that computed
        it. Returned as a model, FastAPI validates it again on another worker thread (one more
        thread hand-off per request) before serialising it on the event loop."""
        return Response(cls.model_validate(served, from_attributes=True).model_dump_json(),
                        media_type="application/json")


class FieldError(BaseModel):
    """One input problem: which field, where it was sent, and what is wrong with it."""

    field: str | None = Field(description="The field (dotted path for nested ones; 'body' for the whole body).")
    location: str | None = Field(description="Where the field was sent: path, query, header, body.")
    message: str


class ErrorBody(BaseModel):
    """Every error answer (4xx, and a 5xx should one happen): a sentence for people, fields for programs."""

    detail: str
    errors: list[FieldError] = Field(description="Each problem with its field; empty when no field is at fault.")


class BatchError(BaseModel):
    """One rejected entry of a batch: its 0-based position in the posted array and the field."""

    index: int
    id: str | None = Field(None, description="The entry's item id (or the event's item_id), if readable.")
    field: str | None = None
    message: str

    @field_validator("id", "field", "message", mode="before")
    @classmethod
    def _printable(cls, v: object) -> object:
        # Echoed input must never break the answer: a lone surrogate cannot be encoded as
        # UTF-8, and a megabyte id has no place in an error report.
        return printable(v, 1000) if isinstance(v, str) else v


class ItemsReport(BaseModel):
    indexed: int = Field(description="Items encoded and written now (new or changed).")
    unchanged: int = Field(description="Items identical to what is stored (skipped).")
    rejected: list[BatchError] = Field(description="Entries not indexed, with position and field.")
    image_errors: list[BatchError] = Field(description="Items indexed without their photo, and why.")


class EventsReport(BaseModel):
    ingested: int
    duplicates: int = Field(0, description="Events skipped because their event_id was already ingested "
                                           "(or repeated in this batch): counted once, not an error.")
    errors: list[BatchError]
    attributed: int = Field(0, description="Clicks, carts and purchases credited to a served list (rec_id).")


#: An item id as a body sends it: the same bounds as in a path. A constrained ``str`` also makes
#: pydantic refuse a lone surrogate (JSON can spell ``\ud800``; no id can contain one).
ItemRef = Annotated[str, Field(min_length=1, max_length=256)]


class CartRequest(BaseModel):
    item_ids: list[ItemRef] = Field(min_length=1, max_length=100, description="Items in the cart.")


class HistoryEntry(BaseModel):
    item_id: str
    type: str
    ts: datetime
    session_id: str | None = None
    price: float | None = None
    quantity: int | None = None
    title: str | None = Field(None, description="The item's title, None if it left the catalog.")
    image_url: str | None = None

    @classmethod
    def of(cls, event: Event, payload: dict[str, Any] | None) -> HistoryEntry:
        payload = payload or {}
        return cls(item_id=event.item_id, type=event.type, ts=event.ts, session_id=event.session_id,
                   price=event.price, quantity=event.quantity, title=payload.get("title"),
                   image_url=image_url(event.item_id, payload))


class History(BaseModel):
    user_id: str
    events: list[HistoryEntry] = Field(description="Newest first.")


class Forgotten(BaseModel):
    user_id: str
    events_removed: int


class Deleted(BaseModel):
    id: str
    deleted: bool


class Health(BaseModel):
    status: str
    items: int | None = None
    detail: str | None = None
    space: str | None = Field(None, description="Vector space the feed uses.")
    space_reason: str | None = None
    ranker: str | None = Field(None, description="'blend' or 'lightgbm@VERSION'.")
    ranker_reason: str | None = None
    database: str | None = Field(None, description="Where behaviour state lives: 'sqlite' or 'postgres' "
                                 "(its address is not shown: /health is open).")
    warm: bool | None = Field(None, description="Whether the start-up warm-up (feed state and neighbour cache) "
                              "has finished; requests are served either way, sooner once it has.")


class UsersReport(BaseModel):
    stored: int
    errors: list[BatchError]


def public_item(item_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A stored payload as the catalog format (plus image_url), without indexer bookkeeping."""
    item: dict[str, Any] = {"id": item_id}
    for name in PUBLIC_ITEM_FIELDS:
        if name != "id" and name in payload:
            item[name] = payload[name]
    item["image_url"] = image_url(item_id, payload)
    return item
