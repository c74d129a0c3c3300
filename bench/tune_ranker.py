"""Try ranker settings on H&M's time split in minutes instead of a full `shoprec eval`.

Fits the real engine on the events before the cut (as `shoprec eval` does), computes the
training examples (`ranking/training.py`'s self-split) and every warm test customer's
candidates once, then fits LightGBM variants on them and prints, per variant:
- ``valid``: NDCG@10 on the self-split's newest window, fitted on the windows before it
  (what `shoprec train` decides with; choose settings on this figure);
- ``test``: NDCG@10 of the time split over all test customers (cold ones served by the cold
  blend, scored as in the last full evaluation), fitted on every window, as the feed would be;
- the candidates' recall of the test purchases (the ceiling every variant shares);
- with ``--oracle``, what the same features could give with labels from the test period itself:
  half the warm test customers' own test purchases are added to the training windows and the
  other half is scored, beside the fit on the windows alone over the same halves (both ways
  round). No deployment has such labels; a figure still below a target says that no fitting of
  these features reaches it, and that the target needs new information instead.
Seeds move single models by about ±0.0007 on ``test``: a difference smaller than that is noise.

    python bench/tune_ranker.py --store /work/stores/hm --label-days 56
    python bench/tune_ranker.py --store /work/stores/hm --limits '{"trending": 300, "variant": 120}'
    python bench/tune_ranker.py --store /work/stores/hm \
        --variants '[{}, {"num_boost_round": 100, "learning_rate": 0.09}]'   # TrainSettings overrides
    python bench/tune_ranker.py --store /work/stores/hm --variants '[{}, {"without": ["price_ratio"]}]'
    python bench/tune_ranker.py --store /work/stores/hm --cache /tmp/hm-examples.pkl --oracle
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pickle
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shoprec.config import Settings  # noqa: E402
from shoprec.evaluation import metrics  # noqa: E402
from shoprec.evaluation.features import read_products  # noqa: E402
from shoprec.evaluation.interactions import read_events  # noqa: E402
from shoprec.evaluation.run import offered_at  # noqa: E402
from shoprec.evaluation.runner import user_cases  # noqa: E402
from shoprec.evaluation.shoprec_method import ShoprecMethod  # noqa: E402
from shoprec.evaluation.split import time_split  # noqa: E402
from shoprec.indexing.factory import open_store  # noqa: E402
from shoprec.recommend.ranking import training  # noqa: E402
from shoprec.recommend.ranking.features import FEATURES  # noqa: E402
from shoprec.recommend.ranking.rankers import LearnedRanker  # noqa: E402
from shoprec.recommend.ranking.rankers import ndcg_at  # noqa: E402

_DAY = 86400.0
COLD_NDCG = 0.0044  # the cold blend's NDCG@10 for the 91 new customers (docs/eval/report.md)


def examples(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(args.data)
    settings = Settings(store=args.store)
    cut = datetime.fromisoformat(args.cut).replace(tzinfo=timezone.utc)
    split = time_split(read_events(data / "events.jsonl"), cut)
    offered = offered_at(split.train, read_products(data / "catalog.jsonl"), cut)
    cases = user_cases(split.train, split.test, count_repeats=True)
    method = ShoprecMethod(open_store(settings), settings, train_ranker=False, users_file=data / "customers.csv")
    method.fit(split.train, offered)
    engine = method.engine
    assert engine is not None
    pipeline = engine.ranked.pipeline()
    if args.limits:
        pipeline.settings.limits = {**pipeline.settings.limits, **json.loads(args.limits)}
    s = training.TrainSettings(label_days=args.label_days)
    ts = pipeline.log.arrays()[3]
    newest, rng = float(ts.max()), np.random.default_rng(0)
    started = time.perf_counter()
    windows = []
    for w in range(s.windows):
        at = newest - s.label_days * _DAY - w * s.stride_days * _DAY
        if at <= float(ts.min()):
            break
        windows.append((at, training.examples_at(pipeline, at, s.label_days, s.max_users_per_window, rng)))
    allowed = engine.ranked._allowed_mask(pipeline.table)
    sources, now = pipeline.sources(allowed), engine._now()
    test = []
    for c in cases:
        if not c.cold_user:
            codes, _, x = pipeline.candidates(pipeline.context(c.user_id, now, allowed), sources)
            test.append(([pipeline.table.ids[i] for i in codes], x, c.relevant))
    print(f"examples and candidates in {time.perf_counter() - started:.0f} s: {len(windows)} windows, "
          f"{len(test)} warm and {len(cases) - len(test)} cold test customers, "
          f"{np.mean([len(t[0]) for t in test]):.0f} candidates each")
    method.close()
    return {"windows": windows, "test": test, "cases": len(cases), "settings": s}


class Bag:
    """Models fitted with different seeds, their scores summed (``bag`` in a variant)."""

    def __init__(self, models: list[Any]) -> None:
        self.models = models

    def predict(self, x: np.ndarray, **kw: Any) -> np.ndarray:
        return sum(m.predict(x, **kw) for m in self.models)


def fit(windows: list[tuple[float, training.Examples]], s: training.TrainSettings, seed: int,
        without: np.ndarray, bag: int = 1) -> Any:
    """The model `shoprec train` would fit on these windows (its own fitting code)."""
    chosen = training.Examples()
    for _, ex in windows:
        chosen.add(ex)
    chosen.x = [blank(x, without) for x in chosen.x]
    return Bag([training._fit(chosen, dataclasses.replace(s, seed=seed + 1000 * j)) for j in range(bag)])


def blank(x: np.ndarray, without: np.ndarray) -> np.ndarray:
    """``x`` with the ``without`` columns missing everywhere (LightGBM then never splits on them)."""
    if not without.any():
        return x
    x = x.copy()
    x[:, without] = np.nan
    return x


def screened(booster: Any, test: list[Any], rows: list[np.ndarray], top: int = 200) -> str:
    """How the serving cascade (``LearnedRanker.score`` with ``top``, as a feed of 10 asks) agrees
    with the whole model: the top tens that are equal, and the test NDCG@10 it serves."""
    ranker = LearnedRanker(booster, {})
    if ranker.trees <= 2 * ranker.screen_trees:
        return f"screening off: {ranker.trees} trees are at most twice the {ranker.screen_trees} that would screen"
    same, ndcg = 0, []
    for (ids, _, rel), x in zip(test, rows):
        whole = np.argsort(-ranker._predict(booster, x), kind="stable")[:10]
        cut = np.argsort(-ranker.score(x, top=top), kind="stable")[:10]
        same += bool(np.array_equal(whole, cut))
        ndcg.append(metrics.ndcg_at_k([ids[i] for i in cut], rel, 10))
    return (f"screened ({ranker.screen_trees} trees, best {top} kept): top ten equal for {same} of {len(test)}, "
            f"warm customers {np.mean(ndcg):.4f}")


def oracle(d: dict[str, Any], s: training.TrainSettings, seed: int, without: np.ndarray, plain: Any,
           bag: int = 1) -> str:
    """Warm customers' NDCG@10 when half of them lend their own test-period labels to training
    (the other half scored), beside ``plain`` (fitted on the windows alone, ``bag`` models) on
    the same halves, both ways round."""
    test = d["test"]
    order = np.random.default_rng(seed).permutation(len(test))
    halves = (order[: len(order) // 2], order[len(order) // 2:])
    with_labels, alone = [], []
    for lend, scored in (halves, halves[::-1]):
        lent = training.Examples()
        for i in lend:
            ids, x, rel = test[i]
            lent.x.append(x)
            lent.y.append(np.isin(np.asarray(ids), list(rel)).astype(np.float64))
            lent.relevant.append(len(rel))
        model = fit([*d["windows"], (np.inf, lent)], s, seed, without, bag)
        for i in scored:
            ids, x, rel = test[i]
            for m, out in ((model, with_labels), (plain, alone)):
                top = np.argsort(-m.predict(blank(x, without), num_threads=1), kind="stable")[:10]
                out.append(metrics.ndcg_at_k([ids[j] for j in top], rel, 10))
    return (f"oracle: warm customers {np.mean(with_labels):.4f} with half the test period's own labels "
            f"in training, {np.mean(alone):.4f} without (same halves)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, required=True, help="an indexed H&M store")
    ap.add_argument("--data", default="../shared/data/hm")
    ap.add_argument("--cut", default="2020-06-01")
    ap.add_argument("--label-days", type=float, default=28.0)
    ap.add_argument("--limits", help="candidates per source, JSON, over the defaults")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--cache", type=Path, help="examples and candidates kept in this file: computed when it "
                    "is absent, read when present (only for reruns of the same code, store and split)")
    ap.add_argument("--oracle", action="store_true",
                    help="also fit with half the test customers' own test-period labels (a ceiling, see above)")
    ap.add_argument("--variants", default="[{}]",
                    help="JSON list of TrainSettings overrides to compare, each on the same examples")
    args = ap.parse_args()
    if not args.store.is_dir() or not (Path(args.data) / "events.jsonl").is_file():
        print(f"skipped: {args.store} or {args.data}/events.jsonl not found")
        return 0
    # what the cached examples were computed from; a cache made from other inputs is refused
    inputs = {k: str(getattr(args, k)) for k in ("store", "data", "cut", "label_days", "limits")}
    if args.cache and args.cache.is_file():
        with args.cache.open("rb") as f:
            d = pickle.load(f)
        if d.get("inputs") != inputs:
            raise SystemExit(f"{args.cache} was computed from {d.get('inputs')}, not {inputs}: "
                             "delete it or name another file")
    else:
        d = examples(args)
        d["inputs"] = inputs
        if args.cache:
            partial = args.cache.with_name(args.cache.name + ".partial")
            with partial.open("wb") as f:
                pickle.dump(d, f)
            partial.replace(args.cache)
    s, test = d["settings"], d["test"]
    valid_cut, valid = d["windows"][0]
    before = [(at, ex) for at, ex in d["windows"] if at + s.label_days * _DAY <= valid_cut]
    recall = np.mean([len(set(ids) & rel) / len(rel) for ids, _, rel in test])
    print(f"candidate recall of the test purchases: {recall:.4f}")
    for overrides in json.loads(args.variants):
        label = json.dumps(overrides) if overrides else "(the defaults)"
        bag = overrides.pop("bag", 1)
        if not isinstance(bag, int) or bag < 1:
            raise SystemExit(f"'bag' is a number of models (1 or more), not {bag!r}")
        names = overrides.pop("without", [])
        unknown = set(names) - set(FEATURES)
        if unknown:
            raise SystemExit(f"unknown features in 'without': {sorted(unknown)}")
        without = np.isin(np.array(FEATURES), names)
        variant = dataclasses.replace(s, **overrides)
        rows = [blank(x, without) for _, x, _ in test]
        print(f"variant {label}:")
        for seed in range(args.seeds):
            model = fit(before, variant, seed, without, bag)
            v = ndcg_at([model.predict(blank(x, without)) for x in valid.x], valid.y, valid.relevant)
            model = fit(d["windows"], variant, seed, without, bag)
            started = time.perf_counter()
            warm = [metrics.ndcg_at_k([ids[i] for i in np.argsort(-model.predict(x, num_threads=1), kind="stable")[:10]],
                                      rel, 10) for (ids, _, rel), x in zip(test, rows)]
            per_user = (time.perf_counter() - started) / len(test) * 1e3
            overall = (sum(warm) + COLD_NDCG * (d["cases"] - len(test))) / d["cases"]
            print(f"  seed {seed}: valid {v:.4f}  test {overall:.4f} (warm customers {np.mean(warm):.4f}); "
                  f"{per_user:.2f} ms per customer to score and sort (one thread)")
            if bag == 1:
                print("          " + screened(model.models[0], test, rows))
            if args.oracle:
                print("          " + oracle(d, variant, seed, without, model, bag))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
