"""Indexing throughput against the bare encoders, and the cost of a no-op re-index.

Writes a ``--n``-item slice of a real catalog (default: the H&M sample) next to its images,
then in the same run measures:
1. the bare forward pass: text encoder + image encoder over the same items, photos already
   decoded in memory (resize/pad/normalise included, as in ``encode``), and the model-only pass
   (the image encoder on ready input arrays: the floor, since indexing resizes on worker threads);
2. ``shoprec index`` into a fresh embedded store (decode, encode, lexical, upsert, joint
   training, HNSW build);
3. the same command again (nothing changed: hashes only);
4. ``shoprec index`` into a fresh store with the colour descriptor but no look vector
   (``index_look=False``), and without the colour descriptor (``index_colour=False``, which also
   drops the look vector and its space's training), so their cost is read from the same run.
One untimed index run first pays the one-off costs (jieba's dictionary, torch's import for the
joint head), then each step is repeated ``--repeats`` times, the three index variants in a
rotating order (no variant always runs first or last), and the median is printed with items/s
and the ratios indexing/forward and re-index/first-index. The image encoder runs on the configured
backend (SHOPREC_IMAGE_BACKEND; the first line says which).

    python bench/bench_index.py --n 1000
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from shoprec.catalog import CatalogRow, read_catalog  # noqa: E402
from shoprec.config import Settings  # noqa: E402
from shoprec.encoders import build_image_encoder, build_text_encoder  # noqa: E402
from shoprec.service import Shoprec  # noqa: E402

#: The H&M sample in ``shared/data/hm`` beside the checkout (or beside a worktree's parent).
HM = next((p / "shared" / "data" / "hm" / "catalog.jsonl" for p in Path(__file__).resolve().parents
           if (p / "shared" / "data" / "hm" / "catalog.jsonl").is_file()),
          Path(__file__).resolve().parents[2] / "shared" / "data" / "hm" / "catalog.jsonl")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=Path, default=HM)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each step (median printed)")
    args = parser.parse_args()
    if not args.catalog.is_file():
        print(f"catalog not found: {args.catalog} (the H&M sample lives in ../shared/data/hm)", file=sys.stderr)
        return 2
    rows = [r.product for r in read_catalog(args.catalog) if isinstance(r, CatalogRow)]
    random.Random(args.seed).shuffle(rows)
    products = rows[: args.n]
    base = args.catalog.resolve().parent
    settings = Settings()

    with tempfile.TemporaryDirectory(prefix="shoprec-bench-") as tmp:
        catalog = Path(tmp) / "catalog.jsonl"
        with catalog.open("w", encoding="utf-8") as fh:
            for p in products:
                data = p.model_dump(mode="json", exclude_none=True)
                if p.image:
                    data["image"] = str(base / p.image)  # absolute: the slice lives elsewhere
                fh.write(json.dumps(data, ensure_ascii=False) + "\n")

        text_encoder = build_text_encoder(settings.text_encoder)
        image_encoder = build_image_encoder(settings.image_encoder)
        images = [Image.open(base / p.image).convert("RGB") for p in products if p.image]
        texts = [p.text_for_embedding() for p in products]
        text_encoder.encode(texts[:8])  # warm-up: first call pays one-off costs
        image_encoder.encode(images[:8])
        prepare = getattr(image_encoder, "prepare", None)
        pixels = [prepare(im) for im in images] if prepare else None
        times: dict[str, list[float]] = {"forward": [], "model": [], "first": [], "again": [], "colour_only": [],
                                         "no_colour": []}
        variants = {"first": {}, "colour_only": {"index_look": False}, "no_colour": {"index_colour": False}}
        Shoprec(Settings(store=Path(tmp) / "store-warm-up")).index_catalog(catalog, progress=False)
        first = again = None
        for run in range(args.repeats):
            started = time.perf_counter()
            text_encoder.encode(texts, batch_size=settings.batch_size)
            image_encoder.encode(images, batch_size=settings.batch_size)
            times["forward"].append(time.perf_counter() - started)
            if pixels is not None:
                started = time.perf_counter()
                text_encoder.encode(texts, batch_size=settings.batch_size)
                image_encoder.encode(pixels, batch_size=settings.batch_size)
                times["model"].append(time.perf_counter() - started)
            names = list(variants)
            for name in names[run % len(names):] + names[: run % len(names)]:
                # the encoders are cached per process: indexing reuses the ones the forward pass loaded
                service = Shoprec(Settings(store=Path(tmp) / f"store-{name}-{run}", **variants[name]))
                started = time.perf_counter()
                report = service.index_catalog(catalog, progress=False)
                times[name].append(time.perf_counter() - started)
                if name == "first":
                    first = report
                    started = time.perf_counter()
                    again = service.index_catalog(catalog, progress=False)
                    times["again"].append(time.perf_counter() - started)
                service.close()

    median = {k: statistics.median(v) for k, v in times.items() if v}
    forward_s, first_s, again_s = median["forward"], median["first"], median["again"]
    n = len(products)
    print(f"items: {n} ({len(images)} with a photo); image encoder {image_encoder.name} on "
          f"{getattr(image_encoder, 'backend', 'its own runtime')}; median of {args.repeats} run(s)")
    print(f"{'run':<40}{'seconds':>10}{'items/s':>10}")
    print(f"{'bare forward pass (text+image)':<40}{forward_s:>10.1f}{n / forward_s:>10.1f}")
    if "model" in median:
        print(f"{'model-only (text+image, ready arrays)':<40}{median['model']:>10.1f}{n / median['model']:>10.1f}")
    print(f"{'shoprec index (first run)':<40}{first_s:>10.1f}{n / first_s:>10.1f}")
    print(f"{'shoprec index (re-run, no change)':<40}{again_s:>10.2f}{n / again_s:>10.0f}")
    colour_s, plain_s = median["colour_only"], median["no_colour"]
    print(f"{'shoprec index, colour but no look':<40}{colour_s:>10.1f}{n / colour_s:>10.1f}")
    print(f"{'shoprec index without colour / look':<40}{plain_s:>10.1f}{n / plain_s:>10.1f}")
    print(f"indexing / forward throughput: {forward_s / first_s:.2f}  (1.00 = no overhead beyond the encoders)")
    if "model" in median:
        print(f"indexing / model-only:         {median['model'] / first_s:.2f}")
    print(f"colour + look cost:            {first_s / plain_s - 1:+.1%} of indexing time (with / without)")
    print(f"colour alone cost:             {colour_s / plain_s - 1:+.1%} (index_look=false / without)")
    print(f"re-index / first index time:   {again_s / first_s:.4f}  (re-encoded {again.indexed}, unchanged {again.unchanged})")
    print(f"first run: {first.summary()}; joint space: {first.joint_metrics.get('heldout', {})}")
    print("all runs (s): " + json.dumps({k: [round(x, 2) for x in v] for k, v in times.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
