"""Candidate generators: each proposes items for one user from one kind of evidence.

One small interface (``CandidateSource.generate(ctx, limit) -> Proposal``: item codes and
their scores, best first, as arrays), one class per source, every result tagged by the
source's ``name`` so the ranker sees where a candidate came from and the reason can say why it
was shown. Sources:

- ``rebuy``: the user's own items, weighted by recency (shops with repeat buying learn this);
- ``variant``: other colours of products the user bought or liked (``product_code``);
- ``similar``: nearest neighbours of each recent history item in the serving space, the max
  over items (a mean vector of a varied history points at nothing in particular);
- ``co_bought``: items bought in the same baskets / by the same shoppers as the user's items;
- ``shoppers``: what the most similar shoppers (user-kNN over behaviour) went for;
- ``trending``: best sellers of the last week, decayed and all-time;
- ``group_trending``: best sellers of the last 30 days in the user's favourite groups
  (department, or category where the catalog has none);
- ``segment``: best sellers among shoppers of the user's segment (registration attributes);
- ``new``: recently created / first-seen items near the user's taste (cold items have no
  behaviour, so only content can surface them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np

from .state import ItemTable, UserHistory, Windows, history_weights, per_item, recent_distinct

_DAY = 86400.0

#: vectors (m, d) -> for each row, (item codes, cosines) of its nearest items, best first.
Neighbours = Callable[[np.ndarray, int], list[tuple[np.ndarray, np.ndarray]]]
#: item codes -> (item codes, scores) co-bought with them.
CoBought = Callable[[Sequence[int], int], tuple[np.ndarray, np.ndarray]]
#: user code -> (item codes, votes) of similar shoppers.
ShoppersLike = Callable[[int, int, int], tuple[np.ndarray, np.ndarray]]


@dataclass
class UserContext:
    """Everything a source or the feature builder may read about one request."""

    user_id: str
    now: float
    history: UserHistory            # positive events, oldest first
    disliked: set[int]
    table: ItemTable
    windows: Windows
    half_life_days: float = 30.0
    allowed: np.ndarray | None = None   # bool mask over item codes: the catalogue as offered
    segment_items: np.ndarray | None = None  # item codes best sold in the user's segment
    user_code: int | None = None
    session: list[int] = field(default_factory=list)  # items of the live session (empty if none)
    recent: list[int] = field(default_factory=list)
    own: dict[int, float] = field(default_factory=dict)  # item code -> decayed weight

    def __post_init__(self) -> None:
        if not self.recent:
            self.recent = recent_distinct(self.history, 10)
        if not self.own and not self.history.empty:
            self.own = per_item(self.history.items, history_weights(self.history, self.now, self.half_life_days))

    def ok(self, codes: np.ndarray) -> np.ndarray:
        """Mask of codes that may be offered (inside the allowed catalogue, not disliked)."""
        keep = np.ones(len(codes), dtype=bool)
        if self.allowed is not None:
            inside = codes < len(self.allowed)
            keep &= inside
            keep[inside] &= self.allowed[codes[inside]]
        if self.disliked:
            keep &= ~np.isin(codes, list(self.disliked))
        return keep


class Proposal(NamedTuple):
    """One source's candidates: item codes (distinct) and their scores (> 0), best first."""

    codes: np.ndarray
    scores: np.ndarray

    def as_dict(self) -> dict[int, float]:
        return dict(zip(self.codes.tolist(), self.scores.tolist()))


NOTHING = Proposal(np.zeros(0, np.int64), np.zeros(0))


class CandidateSource(Protocol):
    name: str

    def generate(self, ctx: UserContext, limit: int) -> Proposal: ...


def _top(codes: np.ndarray, scores: np.ndarray, ctx: UserContext, limit: int) -> Proposal:
    keep = ctx.ok(codes) & (scores > 0)
    codes, scores = codes[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")[:limit]
    return Proposal(codes[order].astype(np.int64), scores[order].astype(np.float64))


def _best_per_code(codes: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct code once, with the highest of its values, in order of first appearance
    (what filling a dict with ``max`` gives: ties later cut by score keep that order)."""
    if not len(codes):
        return codes.astype(np.int64), values.astype(np.float64)
    order = np.argsort(codes, kind="stable")
    ordered = codes[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    maxima = np.maximum.reduceat(values[order], starts)
    appearance = np.argsort(order[starts], kind="stable")
    return ordered[starts][appearance].astype(np.int64), maxima[appearance].astype(np.float64)


def _first_ok(codes: np.ndarray, ctx: UserContext, n: int) -> np.ndarray:
    """The first ``n`` of a ranked list that may be offered, checking a growing head of the
    list rather than all of it (best-seller lists run as long as the catalogue)."""
    size = 2 * n + 16
    while True:
        head = codes[:size]
        kept = head[ctx.ok(head)]
        if len(kept) >= n or size >= len(codes):
            return kept[:n]
        size *= 4


def _in_order(scores: dict[int, float]) -> Proposal:
    """A dict's items as a proposal, in the dict's order."""
    return Proposal(np.fromiter(scores, dtype=np.int64, count=len(scores)),
                    np.fromiter(scores.values(), dtype=np.float64, count=len(scores)))


def _from_dict(scores: dict[int, float], ctx: UserContext, limit: int) -> Proposal:
    return _top(*_in_order(scores), ctx, limit) if scores else NOTHING


class Rebuy:
    name = "rebuy"

    def generate(self, ctx: UserContext, limit: int) -> Proposal:
        return _from_dict(ctx.own, ctx, limit)


class Variants:
    name = "variant"

    def generate(self, ctx: UserContext, limit: int) -> Proposal:
        scores: dict[int, float] = {}  # a user's few items: plain dicts beat numpy's per-call cost here
        for item, w in ctx.own.items():
            for v in ctx.table.variants(item):
                if v not in ctx.own:
                    scores[v] = max(scores.get(v, 0.0), w)
        return _from_dict(scores, ctx, limit)


#: Neighbours asked per recent item (the feed's warm-up fills its cache with this many).
SIMILAR_PER_ITEM = 50


class Similar:
    """Per-history-item ANN; a candidate's score is the best cosine to a recent item, scaled
    down slightly with how far back that item is (the last items carry most intent)."""

    name = "similar"

    def __init__(self, neighbours: Neighbours, per_item: int = SIMILAR_PER_ITEM, recency: float = 0.97) -> None:
        self.neighbours = neighbours
        self.per_item = per_item
        self.recency = recency

    def generate(self, ctx: UserContext, limit: int) -> Proposal:
        anchors = [c for c in ctx.recent if c < len(ctx.table)]
        if not anchors:
            return NOTHING
        vecs = ctx.table.matrix()[anchors]
        has = np.einsum("ij,ij->i", vecs, vecs) > 0
        if not has.any():
            return NOTHING
        anchors = [a for a, h in zip(anchors, has) if h]
        found = self.neighbours(vecs[has], self.per_item)
        if not found:
            return NOTHING
        codes = np.concatenate([c for c, _ in found]).astype(np.int64)
        # scores are kept above 0 (a source's 0 means "not proposed"); a far neighbour in a tiny
        # catalog still counts as one
        values = np.maximum(np.concatenate([s * self.recency ** rank for rank, (_, s) in enumerate(found)]), 1e-6)
        keep = ~np.isin(codes, anchors, kind="table")  # the user's own items are the rebuy source's business
        if not keep.any():
            return NOTHING
        return _top(*_best_per_code(codes[keep], values[keep]), ctx, limit)


class CoBoughtSource:
    name = "co_bought"

    def __init__(self, co_bought: CoBought) -> None:
        self.co_bought = co_bought

    def generate(self, ctx: UserContext, limit: int) -> Proposal:
        if not ctx.recent:
            return NOTHING
        codes, scores = self.co_bought(ctx.recent[:20], 2 * limit)
        return _top(np.asarray(codes, dtype=np.int64), np.asarray(scores, dtype=np.float64), ctx, limit)


class Shoppers:
    name = "shoppers"

    def __init__(self, shoppers_like: ShoppersLike, neighbours: int = 30) -> None:
        self.shoppers_like = shoppers_like
        self.neighbours = neighbours

    def generate(self, ctx: UserContext, limit: int) -> Proposal:
        if ctx.user_code is None:
            return NOTHING
        codes, votes = self.shoppers_like(ctx.user_code, self.neighbours, 2 * limit)
        return _top(codes, votes, ctx, limit)


class Trending:
    name = "trending"

    def generate(self, ctx: UserContext, limit: int) -> Proposal:
        w = ctx.windows
        codes, scores = [], []
        for name in ("last_7d", "decayed", "all_time"):
            pop = getattr(w, name)
            best = w.best.get(name)
            if best is None or not len(best):
                continue
            top = _first_ok(best, ctx, max(1, limit // 3))
            codes.append(top)
            scores.append(pop[top] / pop[best[0]])
        if not codes:
            return NOTHING
        # in order of proposal (last week's best sellers first), as the feed has always merged them
        return Proposal(*_best_per_code(np.concatenate(codes), np.concatenate(scores)))


class GroupTrending:
    """Best sellers of the user's favourite groups, shared out by how much of the user's
    (decayed) weight each group holds."""

    name = "group_trending"

    def __init__(self, groups: int = 3) -> None:
        self.groups = groups

    def generate(self, ctx: UserContext, limit: int) -> Proposal:
        if not ctx.own:
            return NOTHING
        by_group: dict[int, float] = {}
        group = ctx.table.group
        for item, w in ctx.own.items():
            g = int(group[item])
            if g >= 0:
                by_group[g] = by_group.get(g, 0.0) + w
        total = sum(by_group.values()) or 1.0
        out: dict[int, float] = {}
        for g, w in sorted(by_group.items(), key=lambda x: -x[1])[: self.groups]:
            share = w / total
            best = ctx.windows.group_pop_30d.get(g)
            if best is None or not len(best):
                continue
            for rank, c in enumerate(_first_ok(best, ctx, max(5, int(round(limit * share)))).tolist()):
                out[c] = max(out.get(c, 0.0), share / (1.0 + rank))
        # in order of proposal (the favourite group first), as the feed has always merged them
        return _in_order(out)


class Segment:
    name = "segment"

    def generate(self, ctx: UserContext, limit: int) -> Proposal:
        if ctx.segment_items is None or not len(ctx.segment_items):
            return NOTHING
        codes = _first_ok(ctx.segment_items, ctx, limit).astype(np.int64)
        return Proposal(codes, 1.0 / (1.0 + np.arange(len(codes), dtype=np.float64)))


class NewArrivals:
    """Items created (or first seen) within ``days``, ranked by cosine to the user's recent
    items; with no history, by creation time."""

    name = "new"

    def __init__(self, days: float = 14.0) -> None:
        self.days = days

    def generate(self, ctx: UserContext, limit: int) -> Proposal:
        fresh, since, m, vectors = self._fresh(ctx)
        keep = ctx.ok(fresh)
        if not keep.any():
            return NOTHING
        anchors = [c for c in ctx.recent[:5] if c < len(m)]
        if anchors:
            scores = (vectors[keep] @ m[anchors].T).max(axis=1)
        else:
            scores = 1.0 / (1.0 + (ctx.now - since[fresh[keep]]) / _DAY)
        return _top(fresh[keep], scores.astype(np.float64), ctx, limit)

    def _fresh(self, ctx: UserContext) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(fresh item codes, "since" per item, the table's matrix, their vectors in it), kept
        with the popularity snapshot they came from; the vectors also with the matrix (an item
        re-indexed with a new text replaces it). Gathering them per feed cost more than the
        product with the anchors."""
        n, m = len(ctx.table), ctx.table.matrix()
        key = ("new", self.days, n)
        cached = ctx.windows.derived.get(key)
        if cached is None:
            created = ctx.table.created[:n]
            first = np.concatenate([ctx.windows.first_seen, np.full(max(0, n - len(ctx.windows.first_seen)), np.nan)])
            since = np.where(np.isnan(created), first[:n], created)
            fresh = np.flatnonzero((since >= ctx.now - self.days * _DAY) & (since <= ctx.now))
            cached = (fresh, since, None, None)
        if cached[2] is not m:
            cached = ctx.windows.derived[key] = (*cached[:2], m, m[cached[0]])
        return cached


def default_sources(neighbours: Neighbours, co_bought: CoBought, shoppers_like: ShoppersLike,
                    new_arrival_days: float, cf_neighbours: int = 30) -> list[CandidateSource]:
    return [Rebuy(), Variants(), Similar(neighbours), CoBoughtSource(co_bought), Shoppers(shoppers_like, cf_neighbours),
            Trending(), GroupTrending(), Segment(), NewArrivals(new_arrival_days)]


#: How many candidates each source may propose (about 500 per user in all on H&M; wider pools
#: raised candidate recall from 265 to 350 of 1,422 reachable test purchases).
DEFAULT_LIMITS: Mapping[str, int] = {
    "rebuy": 60, "variant": 60, "similar": 300, "co_bought": 60, "shoppers": 60, "trending": 90,
    "group_trending": 90, "segment": 30, "new": 30,
}


def exact_neighbours(table: ItemTable, allowed: np.ndarray | None = None) -> Neighbours:
    """Brute-force cosine search over the table's vectors: training, tests and small shops."""

    def search(vectors: np.ndarray, limit: int) -> list[tuple[np.ndarray, np.ndarray]]:
        m = table.matrix()
        sims = vectors.astype(np.float32) @ m.T
        if allowed is not None:
            mask = np.zeros(len(m), dtype=bool)
            mask[: min(len(allowed), len(m))] = allowed[: len(m)]
            sims[:, ~mask] = -np.inf
        out = []
        for row in sims:
            k = min(limit, len(row))
            top = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
            top = top[np.argsort(-row[top], kind="stable")]
            top = top[np.isfinite(row[top])]
            out.append((top.astype(np.int64), row[top].astype(np.float64)))
        return out

    return search


def generate(sources: Sequence[CandidateSource], ctx: UserContext,
             limits: Mapping[str, int] = DEFAULT_LIMITS) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """All sources' candidates merged: (item codes, {source name: score per candidate, 0 if the
    source did not propose it})."""
    proposed = {s.name: s.generate(ctx, limits.get(s.name, 50)) for s in sources}
    every = np.concatenate([np.zeros(0, np.int64), *(p.codes for p in proposed.values())])
    # one row per distinct item, in order of first proposal (sources in order, each best first)
    unique, first, inverse = np.unique(every, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    row = np.empty(len(unique), dtype=np.int64)
    row[order] = np.arange(len(unique))
    codes = unique[order]
    scores, start = {}, 0
    for name, p in proposed.items():
        column = np.zeros(len(codes), dtype=np.float64)
        column[row[inverse[start:start + len(p.codes)]]] = p.scores
        start += len(p.codes)
        scores[name] = column
    return codes, scores
