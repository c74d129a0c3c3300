"""Complementary items ("complete the look"): what goes with a set of items.

Co-purchases answer first. Items with little history (new or rarely bought) fall back to
content: baskets teach which categories go with which (dresses -> shoes), and the store is
searched within those categories for what is closest to the query items — the query items' own
category included when baskets hold two different products of it. Neither path returns a query
item or the same product in another colour (same ``attributes.product_code``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..indexing.store import Hit, ItemFilter, VectorStore
from ..results import Recommendation
from . import reasons
from .cf import Behaviour
from .filters import matcher, narrowed
from .rerank import unit

#: Most complementary categories searched by content when co-purchases run short.
MAX_CATEGORIES = 10


def complementary(store: VectorStore, behaviour: Behaviour, vector: str, query: Sequence[Hit], k: int,
                  flt: ItemFilter | None) -> list[Recommendation]:
    """``query``: the items asked about, retrieved with vectors. Scores: co-purchases in
    (0.5, 1], content matches in [0, 0.5], so one list sorts by score."""
    ids = [h.item_id for h in query]
    codes = {c for c in (reasons.product_code(h.payload) for h in query) if c}
    base = narrowed(flt, exclude=ids)
    ok = matcher(base)

    def allowed(h: Hit) -> bool:
        return ok(h.item_id, h.payload) and reasons.product_code(h.payload) not in codes

    by_id = {h.item_id: h for h in query}
    out: list[Recommendation] = []
    co = behaviour.co_bought(ids, limit=max(5 * k, 50))
    if co:
        found = {h.item_id: h for h in store.retrieve([c.item_id for c in co])}
        best = co[0].score
        for c in co:
            h = found.get(c.item_id)
            if h is not None and allowed(h):
                why = reasons.bought_with(reasons.title(by_id[c.because_of].payload, c.because_of))
                out.append(Recommendation.from_payload(h.item_id, 0.5 + 0.5 * c.score / best, h.payload, why))
                if len(out) == k:
                    return out
    out += _by_content(store, behaviour, vector, query, k - len(out), base, allowed, [r.id for r in out])
    return out


def _by_content(store: VectorStore, behaviour: Behaviour, vector: str, query: Sequence[Hit], k: int,
                base: ItemFilter | None, allowed: Callable[[Hit], bool], exclude: list[str]) -> list[Recommendation]:
    own = {h.payload.get("category") for h in query} - {None}
    affinity = behaviour.category_affinity(own)
    anchors = [h for h in query if unit(h.vectors.get(vector)) is not None]
    if not affinity or not anchors or k <= 0:
        return []
    anchor_mat = np.vstack([unit(h.vectors[vector]) for h in anchors])
    q = unit(anchor_mat.mean(axis=0))
    if q is None:
        return []
    top = sorted(affinity.items(), key=lambda kv: -kv[1])[:MAX_CATEGORIES]
    strongest = top[0][1]
    scored: list[tuple[float, Hit, str]] = []
    for category, weight in top:
        f = narrowed(base, exclude=exclude, categories=[category])
        if f is None:
            continue
        for h in store.search(vector, q, k, f, with_vectors=[vector]):
            if allowed(h):
                # sqrt tempers the category prior so a close match in a less frequent pairing can win
                scored.append((0.5 * np.sqrt(weight / strongest) * max(h.score, 0.0), h, category))
    scored.sort(key=lambda s: -s[0])
    out: list[Recommendation] = []
    seen: set[str] = set()
    for score, h, category in scored:
        if h.item_id in seen:
            continue
        seen.add(h.item_id)
        v = h.vectors.get(vector)
        anchor = anchors[int(np.argmax(anchor_mat @ v))] if v is not None else anchors[0]
        why = reasons.goes_with(category, reasons.title(anchor.payload, anchor.item_id))
        out.append(Recommendation.from_payload(h.item_id, score, h.payload, why))
        if len(out) == k:
            break
    return out
