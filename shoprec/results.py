"""The one result type every recommender, the CLI and the HTTP API hand out."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pydantic import BaseModel


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
