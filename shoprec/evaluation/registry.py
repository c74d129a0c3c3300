"""Named method configs resolved by one factory, so a run is described by a list of names.

Each entry says whether it needs content features; ``build_methods`` returns what could be
built and, for the rest, why not (a missing optional package, no features) so the report
can list them rather than silently shrink the comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shoprec.evaluation.baselines import ALS, ContentKNN, ItemKNN, LightFMHybrid, Popularity, RandomItems
from shoprec.evaluation.method import Method
from shoprec.evaluation.ncf import NCF


@dataclass(frozen=True)
class MethodConfig:
    factory: Callable[[int], Method]  # seed -> unfitted method
    needs_features: bool = False
    description: str = ""


METHODS: dict[str, MethodConfig] = {
    "popularity": MethodConfig(lambda seed: Popularity(), description="distinct buyers, all training time"),
    "recent-popularity": MethodConfig(lambda seed: Popularity(days=30), description="distinct buyers, last 30 days of training"),
    "popularity-7d": MethodConfig(lambda seed: Popularity(days=7), description="distinct buyers, last 7 days of training"),
    "random": MethodConfig(lambda seed: RandomItems(seed=seed), description="random items on offer (stable per user)"),
    "item-knn": MethodConfig(lambda seed: ItemKNN(neighbours=100), description="cosine over buyer vectors, 100 neighbours"),
    "als": MethodConfig(lambda seed: ALS(seed=seed), description="implicit ALS, 32 factors, alpha 10, 15 iterations"),
    "lightfm": MethodConfig(lambda seed: LightFMHybrid(seed=seed), description="LightFM WARP, id + content item features"),
    "content-knn": MethodConfig(lambda seed: ContentKNN(), needs_features=True,
                                description="mean of purchased items' content vectors, cosine"),
    "ncf": MethodConfig(lambda seed: NCF(seed=seed), description="NCF MLP, BCE on 4 sampled negatives, 5 epochs (+ content tower when features are given)"),
}


def build_methods(names: Sequence[str], seed: int = 0, have_features: bool = False) -> tuple[dict[str, Method], dict[str, str]]:
    """(methods by name, reasons for the ones that could not be built)."""
    methods: dict[str, Method] = {}
    unavailable: dict[str, str] = {}
    for name in names:
        config = METHODS.get(name)
        if config is None:
            raise KeyError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
        if config.needs_features and not have_features:
            unavailable[name] = "needs item content features and none were given"
            continue
        try:
            methods[name] = config.factory(seed)
        except ImportError as err:
            unavailable[name] = str(err)
    return methods, unavailable
