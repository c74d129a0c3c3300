"""The one result type every recommender, the CLI and the HTTP API hand out."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, Field


def image_url(item_id: str, payload: dict[str, Any]) -> str | None:
    """Where the web page and API clients fetch a product's photo (served by GET /images/{id}).

    The id is one percent-encoded path segment: ids are the shop's and may hold ``?``, ``#``,
    ``/``, spaces or any script, which would otherwise cut the URL short or change its path.
    """
    return f"/images/{quote(item_id, safe='')}" if payload.get("image") else None


class Recommendation(BaseModel):
    id: str
    score: float
    title: str
    category: str | None = None
    price: float | None = None
    image_url: str | None = None
    reason: str = ""
    position: int | None = Field(None, description="1-based place in the answer (set when it is served).")

    @classmethod
    def from_payload(cls, item_id: str, score: float, payload: dict[str, Any], reason: str = "") -> "Recommendation":
        return cls(
            id=item_id,
            score=float(score),
            title=payload.get("title", item_id),
            category=payload.get("category"),
            price=payload.get("price"),
            image_url=image_url(item_id, payload),
            reason=reason,
        )


class Served(BaseModel):
    """A ranked answer as served: its ``rec_id`` (events name it to be credited to this list),
    where it was shown, the A/B experiment and variant it belongs to, and the items in order."""

    rec_id: str = Field(description="Send it back as rec_id of impression/click/cart/purchase events.")
    surface: str = Field(description="feed, similar, complementary, cart, search or trending.")
    experiment: str | None = Field(None, description="The running A/B experiment the answer is part of.")
    variant: str = Field("default", description="The experiment's variant that served it ('default' outside one).")
    results: list[Recommendation]
