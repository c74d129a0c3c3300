"""Business filters (``ItemFilter``) combined and checked in Python.

The store applies filters inside the ANN query; results that come from behaviour
(co-purchases, trending) are fetched by id, so the same rules are checked here — with the
store's semantics: a price bound excludes items without a price, an item without ``in_stock`` never matches it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..indexing.store import ItemFilter


def narrowed(flt: ItemFilter | None, exclude: Iterable[str] = (),
             categories: Sequence[str] | None = None) -> ItemFilter | None:
    """``flt`` with more ids excluded and, if given, restricted to ``categories`` (intersected
    with its own). None when the intersection is empty: nothing can match."""
    base = flt or ItemFilter()
    cats = list(base.categories) if base.categories else None
    if categories is not None:
        cats = [c for c in categories if cats is None or c in cats]
        if not cats:
            return None
    return ItemFilter(
        categories=cats,
        min_price=base.min_price,
        max_price=base.max_price,
        in_stock=base.in_stock,
        exclude_ids=list(dict.fromkeys([*base.exclude_ids, *exclude])),
    )


def matcher(flt: ItemFilter | None) -> Callable[[str, dict[str, Any]], bool]:
    """A predicate ``(item_id, payload) -> bool`` for ``flt`` (ids set up once, checked often)."""
    if flt is None:
        return lambda item_id, payload: True
    excluded = set(flt.exclude_ids)
    categories = set(flt.categories) if flt.categories else None

    def ok(item_id: str, payload: dict[str, Any]) -> bool:
        if item_id in excluded:
            return False
        if categories is not None and payload.get("category") not in categories:
            return False
        price = payload.get("price")
        if flt.min_price is not None and (price is None or price < flt.min_price):
            return False
        if flt.max_price is not None and (price is None or price > flt.max_price):
            return False
        if flt.in_stock is not None:
            stock = payload.get("in_stock")
            if stock is None or bool(stock) != flt.in_stock:
                return False
        return True

    return ok
