"""The short "why" shown beside each recommendation, and the payload facts it is built from.

Kept apart from the ranking code so the wording is in one place (UI, CLI and API show it).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

_VERBS = {"view": "viewed", "click": "clicked", "cart": "added to your cart", "purchase": "bought"}
#: Which of a user's events on an item to quote: the strongest.
_STRENGTH = {"view": 0, "click": 1, "cart": 2, "purchase": 3}


def title(payload: dict[str, Any], item_id: str = "") -> str:
    return str(payload.get("title") or payload.get("item_id") or item_id)


def product_code(payload: dict[str, Any]) -> str | None:
    """Same code = same product in another colour (H&M's first 7 digits of the article id)."""
    attrs = payload.get("attributes")
    code = attrs.get("product_code") if isinstance(attrs, dict) else None
    return str(code) if code else None


def created(payload: dict[str, Any]) -> float | None:
    """``created_at`` as epoch seconds (naive = UTC), None if absent or unreadable."""
    raw = payload.get("created_at")
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(str(raw))
    except ValueError:
        return None
    return (when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when).timestamp()


def is_new(payload: dict[str, Any], now: float, days: float) -> bool:
    when = created(payload)
    return when is not None and now - when <= days * 86400.0


def strongest(types: set[str]) -> str:
    return max(types, key=lambda t: _STRENGTH.get(t, -1))


def similar_to(anchor_title: str, modality: str = "joint") -> str:
    return f"looks like {anchor_title}" if modality == "image" else f"similar to {anchor_title}"


def same_colour(anchor_title: str, modality: str = "joint") -> str:
    """A similar item whose photo has the anchor's colours (colour helped pick it)."""
    if modality == "colour":
        return f"same colour as {anchor_title}"
    return f"{similar_to(anchor_title, modality)}, same colour"


def similar_to_yours(anchor_title: str, event_type: str) -> str:
    return f"similar to {anchor_title} you {_VERBS.get(event_type, 'viewed')}"


def yours(event_type: str) -> str:
    return f"you {_VERBS.get(event_type, 'viewed')} this"


def bought_with(anchor_title: str) -> str:
    return f"often bought with {anchor_title}"


def goes_with(category: str, anchor_title: str) -> str:
    return f"{category} to go with {anchor_title}"


def trending(payload: dict[str, Any]) -> str:
    category = payload.get("category")
    return f"trending in {category}" if category else "trending now"


NEW_ARRIVAL = "new arrival"
IN_CATALOG = "from the catalog"
SHOPPERS_LIKE_YOU = "popular with shoppers like you"


def another_colour(anchor_title: str) -> str:
    return f"another colour of {anchor_title} you bought"


def popular_in(group: str | None) -> str:
    return f"popular in {group} this week" if group else "popular this week"


BUY_AGAIN = "buy again"
