"""Candidates -> features -> ranker for one user at one moment.

Used by the feed (``now`` = the engine's clock) and by training (``now`` = a past cut, with
history, popularity and co-purchase all cut there too), so what the ranker learns from is
computed by exactly the code that serves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import overload

import numpy as np

from . import features
from .candidates import (DEFAULT_LIMITS, CandidateSource, Neighbours, UserContext, default_sources, exact_neighbours,
                         generate)
from .copurchase import CoPurchase
from .rankers import Ranker
from .state import EventLog, ItemTable, UserHistory, Windows

#: Source names in the order a reason is chosen when several proposed an item.
REASON_ORDER = ("rebuy", "variant", "co_bought", "shoppers", "similar", "group_trending", "segment", "new",
                "trending")


@dataclass
class Ranked:
    code: int
    score: float
    sources: dict[str, float]  # source name -> its score, for the sources that proposed the item
    features: dict[str, float] = field(default_factory=dict)

    @property
    def reason_source(self) -> str:
        for name in REASON_ORDER:
            if self.sources.get(name, 0.0) > 0:
                if name == "similar" and self.sources[name] < 0.5 and self.sources.get("group_trending", 0) > 0:
                    continue
                return name
        return "trending"


class Ranking(Sequence[Ranked]):
    """The best ``len(order)`` candidates, best first; a ``Ranked`` is made when read. A feed
    ranks a few hundred so that filters can page through them, and usually reads ten."""

    def __init__(self, order: np.ndarray, codes: np.ndarray, scores: np.ndarray,
                 by_source: Mapping[str, np.ndarray], x: np.ndarray | None) -> None:
        self._rows = order
        self._codes = codes[order]
        self._scores = scores[order]
        self._by_source = by_source
        self._x = x

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, i: int) -> Ranked: ...

    @overload
    def __getitem__(self, i: slice) -> list[Ranked]: ...

    def __getitem__(self, i: int | slice) -> Ranked | list[Ranked]:
        if isinstance(i, slice):
            return self._make(range(*i.indices(len(self))))
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self._make([i % len(self)])[0]

    def _make(self, positions: Sequence[int]) -> list[Ranked]:
        """One ``Ranked`` per position, the source scores gathered for all of them at once."""
        at = np.asarray(positions, dtype=np.int64)
        rows = self._rows[at]
        names = list(self._by_source)
        scores = np.stack([self._by_source[n][rows] for n in names], axis=1).tolist() if names else [[]] * len(at)
        x = self._x[rows].tolist() if self._x is not None else None
        return [Ranked(code, score, {n: v for n, v in zip(names, per_source) if v > 0},
                       dict(zip(features.FEATURES, x[j])) if x is not None else {})
                for j, (code, score, per_source) in enumerate(zip(self._codes[at].tolist(),
                                                                  self._scores[at].tolist(), scores))]


@dataclass
class PipelineSettings:
    half_life_days: float = 30.0
    new_arrival_days: float = 14.0
    basket_weight: float = 1.0
    user_weight: float = 0.3
    cf_neighbours: int = 30
    session_timeout_s: float = 1800.0
    limits: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))


class RankingPipeline:
    def __init__(self, table: ItemTable, log: EventLog, settings: PipelineSettings | None = None,
                 neighbours: Neighbours | None = None,
                 segment_items: Callable[[str, float], np.ndarray | None] | None = None) -> None:
        self.table = table
        self.log = log
        self.settings = settings or PipelineSettings()
        self.neighbours = neighbours
        self.segment_items = segment_items
        self._copurchase: tuple[tuple[int, int, float], CoPurchase] | None = None

    def copurchase(self, before: float = np.inf) -> CoPurchase:
        key = (self.log.version, len(self.table), before)
        cached = self._copurchase
        if cached is not None and cached[0] == key:
            return cached[1]
        s = self.settings
        built = CoPurchase(self.log, len(self.table), before, s.basket_weight, s.user_weight)
        self._copurchase = (key, built)
        return built

    def windows(self, now: float, cut: float | None = None) -> Windows:
        """Popularity as seen at ``now`` (events up to it), or strictly before ``cut``."""
        if cut is not None:
            return self.log.windows(cut, len(self.table), self.table, exact=True)
        return self.log.windows(np.nextafter(now, np.inf), len(self.table), self.table)

    def context(self, user_id: str, now: float, allowed: np.ndarray | None = None,
                cut: float | None = None, context_item: int | None = None) -> UserContext:
        """``cut``: only events strictly before it are known (training); default: all events.
        ``context_item`` (the product page the user is on) becomes their newest anchor."""
        full = self.log.history(user_id, before=cut)
        moment = now if cut is None else cut
        ctx = self._context(user_id, full, moment, now, allowed, cut)
        if context_item is not None:
            ctx.recent = [context_item] + [c for c in ctx.recent if c != context_item][:9]
        return ctx

    def _context(self, user_id: str, full: UserHistory, moment: float, now: float, allowed: np.ndarray | None,
                 cut: float | None) -> UserContext:
        positive = full.positive()
        session: list[int] = []
        if len(positive.ts) and moment - positive.ts[-1] <= self.settings.session_timeout_s:
            same = positive.baskets == positive.baskets[-1]
            session = list(dict.fromkeys(positive.items[same][::-1].tolist()))
        return UserContext(
            user_code=self.log.users.pos.get(user_id), session=session,
            user_id=user_id, now=moment, history=positive, disliked=full.disliked(), table=self.table,
            windows=self.windows(now, cut),
            half_life_days=self.settings.half_life_days, allowed=allowed,
            segment_items=self.segment_items(user_id, moment) if self.segment_items else None,
        )

    def sources(self, allowed: np.ndarray | None = None, cut: float | None = None,
                neighbours: Neighbours | None = None) -> list[CandidateSource]:
        co = self.copurchase(np.inf if cut is None else cut)
        return default_sources(neighbours or self.neighbours or exact_neighbours(self.table, allowed),
                               co.scores, co.shoppers_like, self.settings.new_arrival_days,
                               self.settings.cf_neighbours)

    def candidates(self, ctx: UserContext, sources: Sequence[CandidateSource],
                   limits: Mapping[str, int] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
        codes, by_source = generate(sources, ctx, limits or self.settings.limits)
        return codes, by_source, features.build(ctx, codes, by_source)

    def rank(self, user_id: str, now: float, k: int, ranker: Ranker, allowed: np.ndarray | None = None,
             exclude: set[int] | None = None, explain: bool = False, context_item: int | None = None,
             cut: float | None = None, limits: Mapping[str, int] | None = None) -> Sequence[Ranked]:
        """``cut``: rank as of that moment (history, popularity and co-purchase before it).
        ``limits``: candidates per source [default: the settings']."""
        ctx = self.context(user_id, now, allowed, cut=cut, context_item=context_item)
        codes, by_source, x = self.candidates(ctx, self.sources(allowed, cut=cut), limits)
        if exclude:
            keep = ~np.isin(codes, list(exclude))
            codes, x = codes[keep], x[keep]
            by_source = {n: s[keep] for n, s in by_source.items()}
        if len(codes) == 0:
            return ()
        # rows the dislike rule sinks do not count toward the rows the ranker must order exactly
        scores = sink_disliked(ranker.score(x, top=k + int(disliked_rows(x).sum())), x)
        order = np.argsort(-scores, kind="stable")[:k]
        return Ranking(order, codes, scores, by_source, x if explain else None)


def sink_disliked(scores: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Negative feedback for every ranker: a candidate closer to something the user disliked
    than to anything they liked goes below every other candidate (order kept among them). A
    shop's training data may hold no dislikes at all, so this is a rule, not a learned weight."""
    sink = disliked_rows(x)
    if not sink.any():
        return scores
    return np.where(sink, scores - (float(scores.max() - scores.min()) + 1.0), scores)


def disliked_rows(x: np.ndarray) -> np.ndarray:
    """Candidates closer to something the user disliked than to anything they liked."""
    disliked = x[:, features.FEATURES.index("sim_disliked")]
    liked = np.nan_to_num(x[:, features.FEATURES.index("sim_max")], nan=-1.0)
    return np.isfinite(disliked) & (disliked > liked)
