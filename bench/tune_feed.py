"""Choose the feed's defaults on a validation split, never on the test period.

Events before ``--test-start`` are split again at ``--val-start``: fit on what is before it,
score next purchases in between. Prints Recall@10 / NDCG@10 of shoprec for each setting beside
popularity measured on the same split, so defaults are picked without looking at the test data.

    python bench/tune_feed.py --store /tmp/hm-store
"""

from __future__ import annotations

import argparse
import itertools
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shoprec.config import Settings  # noqa: E402
from shoprec.evaluation.baselines import Popularity  # noqa: E402
from shoprec.evaluation.interactions import read_events  # noqa: E402
from shoprec.evaluation.runner import evaluate  # noqa: E402
from shoprec.evaluation.shoprec_method import ShoprecMethod  # noqa: E402
from shoprec.evaluation.split import time_split  # noqa: E402
from shoprec.indexing.factory import open_store  # noqa: E402

HM = Path(__file__).resolve().parents[2] / "shared" / "data" / "hm"


def utc(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=timezone.utc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="store with the catalog indexed")
    parser.add_argument("--events", type=Path, default=HM / "events.jsonl")
    parser.add_argument("--test-start", default="2020-06-01")
    parser.add_argument("--val-start", default="2020-03-01")
    parser.add_argument("--vectors", default="joint,text")
    parser.add_argument("--popularity", default="0.1,1.0")
    parser.add_argument("--trending", default="0", help="trending candidates added to the ANN pool")
    args = parser.parse_args()
    before_test = [i for i in read_events(args.events) if i.ts < utc(args.test_start)]
    split = time_split(before_test, utc(args.val_start))
    settings = Settings(store=args.store)
    store = open_store(settings)
    catalog = [h.item_id for h in store.scroll(fields=["item_id"])]
    methods = {"popularity": Popularity()}
    grid = itertools.product(args.vectors.split(","), map(float, args.popularity.split(",")),
                             map(int, args.trending.split(",")))
    for vector, pop, trending in grid:
        tuned = settings.model_copy(update={"profile_vector": vector, "blend_popularity": pop,
                                            "trending_candidates": trending})
        methods[f"shoprec {vector} pop={pop} trending={trending}"] = ShoprecMethod(store, tuned)
    results = evaluate(methods, split.train, split.test, catalog, ks=(10,), progress=False)
    print(f"validation: train < {args.val_start} <= test < {args.test_start}; "
          f"{results['data']['test_users_evaluated']} users")
    print(f"{'method':<42}{'recall@10':>10}{'ndcg@10':>10}{'warm r@10':>10}{'cold r@10':>10}")
    for name, res in results["methods"].items():
        nxt = res["next_purchase"]
        cold = nxt["cold_items"]["recall@10"] if nxt["cold_items"] else float("nan")
        print(f"{name:<42}{nxt['all']['recall@10']:>10.4f}{nxt['all']['ndcg@10']:>10.4f}"
              f"{nxt['warm_items']['recall@10']:>10.4f}{cold:>10.4f}")
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
