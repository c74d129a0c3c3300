"""One evaluation run end to end: index (or reuse) the catalogue, split, fit, score, report.

Both ``shoprec eval`` and ``python -m shoprec.evaluation`` call ``run_evaluation``; the
commands only parse options.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from shoprec.config import Settings
from shoprec.evaluation.features import STAND_IN_LABEL, read_products, stand_in_item_features
from shoprec.evaluation.interactions import read_events
from shoprec.evaluation.registry import build_methods
from shoprec.evaluation.report import write_report
from shoprec.evaluation.runner import evaluate
from shoprec.evaluation.shoprec_method import ShoprecMethod, ShoprecNCFRerank
from shoprec.evaluation.similar import similar_quality
from shoprec.evaluation.split import leave_last_split, time_split

DEFAULT_BASELINES = ("popularity", "recent-popularity", "item-knn", "als", "lightfm", "content-knn", "ncf")


@dataclass(frozen=True)
class EvalOptions:
    catalog: Path
    events: Path
    out: Path
    split: str = "time:2020-06-01"          # "time:DATE" or "leave-last"
    ks: Sequence[int] = (10, 20, 50)
    baselines: Sequence[str] = DEFAULT_BASELINES
    features: str = "shoprec"               # "shoprec" (stored text vectors), "stand-in", "none"
    seed: int = 0
    progress: bool = True
    similar_sample: int = 500
    ncf_rerank: bool = True


def _split(events, spec: str):
    if spec == "leave-last":
        return leave_last_split(events)
    kind, _, date = spec.partition(":")
    if kind != "time" or not date:
        raise ValueError(f"--split must be 'time:YYYY-MM-DD' or 'leave-last', not {spec!r}")
    return time_split(events, datetime.fromisoformat(date).replace(tzinfo=timezone.utc))


def stored_features(service, item_ids: Sequence[str], vector: str = "text") -> np.ndarray:
    """Rows of the stored ``vector`` aligned with ``item_ids``: baselines see shoprec's content."""
    by_id = {h.item_id: h.vectors[vector] for h in service.store.scroll(fields=["item_id"], with_vectors=[vector])
             if vector in h.vectors}
    dim = len(next(iter(by_id.values())))
    return np.stack([by_id.get(i, np.zeros(dim, np.float32)) for i in item_ids]).astype(np.float32)


def run_evaluation(options: EvalOptions, settings: Settings) -> tuple[Path, dict[str, Any]]:
    from shoprec.service import Shoprec

    started = time.perf_counter()
    chosen = _split(read_events(options.events), options.split)  # bad options fail before indexing
    service = Shoprec(settings)
    index_report = service.index_catalog(options.catalog, progress=options.progress)
    products = read_products(options.catalog)
    catalog_ids = [p.id for p in products]

    if options.features == "shoprec":
        item_features, feature_note = stored_features(service, catalog_ids), "shoprec's stored text vectors"
    elif options.features == "stand-in":
        item_features, feature_note = stand_in_item_features(products, seed=options.seed), STAND_IN_LABEL
    else:
        item_features, feature_note = None, "none"

    methods, unavailable = build_methods(list(options.baselines), seed=options.seed,
                                         have_features=item_features is not None)
    # The defaults, and the content-first setting they were chosen over on a validation split
    # (bench/tune_feed.py): the trade between warm best sellers and never-bought items stays visible.
    content_first = settings.model_copy(update={"blend_popularity": 0.1, "trending_candidates": 0})
    ours = {"shoprec": ShoprecMethod(service.store, settings),
            "shoprec content-first": ShoprecMethod(service.store, content_first)}
    if options.ncf_rerank:
        ours["shoprec+ncf-rerank"] = ShoprecNCFRerank(service.store, settings, seed=options.seed)
    methods = {**ours, **methods}
    results = evaluate(methods, chosen.train, chosen.test, catalog_ids, ks=options.ks,
                       item_features=item_features, progress=options.progress, unavailable=unavailable)
    for method in ours.values():
        method.close()
    results["similar_items"] = similar_quality(service.store, sample=options.similar_sample, seed=options.seed)
    elapsed = time.perf_counter() - started
    results["run"] = {"split": chosen.name, "seed": options.seed, "features": options.features,
                      "seconds_total": round(elapsed, 1), "indexed_now": index_report.indexed}
    notes = [
        f"Catalogue `{options.catalog}`, events `{options.events}`; split: {chosen.name}; seed {options.seed}.",
        f"Content features given to baselines: {feature_note}.",
        "shoprec = the real RecommendEngine over the indexed store (user vectors + CF rerank, trending cold start).",
        f"Total run time {elapsed:.1f} s.",
    ]
    report = write_report(results, options.out, title=f"Evaluation: {options.catalog.parent.name}, {chosen.name}",
                          notes=notes)
    service.close()
    return report, results
