"""Measure shoprec's encoders on a real catalog: text and image throughput, joint-space quality.

Samples ``--n`` products that have an image, encodes ``Product.text_for_embedding()`` with the
text encoder and the photos with the image encoder on both runtimes (torch and ONNX Runtime, in
the same run, alternating ``--repeats`` times so a busy machine slows both alike), prints
images/s, the onnx/torch ratio and the parity cosine of the two runtimes' vectors, then trains
the catalog-aligned joint space on each runtime's vectors with 10% of pairs held out and prints
held-out text->image Recall@k against chance.

    python bench/bench_encoders.py --catalog /work/shared/data/hm/catalog.jsonl --n 2000
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

# Runnable as a plain script from a checkout, without installing shoprec first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shoprec.catalog import CatalogRow, Product, read_catalog
from shoprec.encoders import build_image_encoder, build_text_encoder
from shoprec.encoders.joint import CatalogAlignedSpace
from shoprec.encoders.onnx_backend import row_cosines
from shoprec.encoders.threads import available_cores


def sample_products(catalog: Path, n: int, seed: int) -> list[Product]:
    """``n`` products with an existing image file, drawn at random (seeded) from the catalog."""
    rows = [r.product for r in read_catalog(catalog) if isinstance(r, CatalogRow) and r.product.image]
    rows = [p for p in rows if (catalog.parent / p.image).is_file()]
    random.Random(seed).shuffle(rows)
    return rows[:n]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=Path, default=Path("/work/shared/data/hm/catalog.jsonl"))
    parser.add_argument("--n", type=int, default=2000, help="products to sample")
    parser.add_argument("--text-encoder", default="use-multilingual")
    parser.add_argument("--image-encoder", default="efficientnet-lite0")
    parser.add_argument("--fit", choices=("pad", "crop"), default=None,
                        help="override how images are squared (default: the encoder's config)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=0, help="head hidden width; 0 = linear heads")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per runtime (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    products = sample_products(args.catalog, args.n, args.seed)
    if len(products) < 20:
        print(f"only {len(products)} products with images in {args.catalog}", file=sys.stderr)
        return 1
    print(f"{len(products)} products from {args.catalog} on {available_cores()} cores")

    started = time.perf_counter()
    text_encoder = build_text_encoder(args.text_encoder)
    print(f"load text encoder: {time.perf_counter() - started:.1f} s")
    image_encoders = {}
    for backend in ("torch", "onnx"):
        started = time.perf_counter()
        encoder = build_image_encoder(args.image_encoder, backend=backend)
        if args.fit:
            encoder.fit = args.fit
        image_encoders[backend] = encoder
        print(f"load image encoder ({backend}): {time.perf_counter() - started:.1f} s, runs on "
              f"{getattr(encoder, 'backend', 'its own runtime')}; load parity {getattr(encoder, 'parity', None)}")

    texts = [p.text_for_embedding() for p in products]
    text_encoder.encode(texts[:8])  # warm-up: first call pays one-off costs
    started = time.perf_counter()
    text_vecs = text_encoder.encode(texts, batch_size=args.batch_size)
    text_s = time.perf_counter() - started
    print(f"text  {text_encoder.name}: {len(texts) / text_s:.1f} texts/s ({text_vecs.shape})")

    started = time.perf_counter()
    images = []
    for p in products:
        with Image.open(args.catalog.parent / p.image) as im:
            images.append(im.convert("RGB"))
    decode_s = time.perf_counter() - started
    prepare = getattr(image_encoders["torch"], "prepare", None)
    pixels, prepare_s = None, None
    if prepare is not None:
        started = time.perf_counter()
        pixels = np.stack([prepare(im) for im in images])
        prepare_s = time.perf_counter() - started
    print(f"JPEG decode {len(images) / decode_s:.0f} images/s; resize/pad/normalise "
          + (f"{len(images) / prepare_s:.0f} images/s" if prepare_s else "n/a (encoder has no prepare)"))

    # Alternate the runtimes so load from other processes falls on both; report the median.
    rates: dict[str, dict[str, list[float]]] = {b: {"encode": [], "forward": []} for b in image_encoders}
    vectors: dict[str, np.ndarray] = {}
    for backend, encoder in image_encoders.items():
        encoder.encode(images[:8], batch_size=8)  # warm-up
    for _ in range(args.repeats):
        for backend, encoder in image_encoders.items():
            started = time.perf_counter()
            vectors[backend] = encoder.encode(images, batch_size=args.batch_size)
            rates[backend]["encode"].append(len(images) / (time.perf_counter() - started))
            if pixels is not None:
                started = time.perf_counter()
                for i in range(0, len(pixels), args.batch_size):
                    encoder.forward(pixels[i:i + args.batch_size])
                rates[backend]["forward"].append(len(images) / (time.perf_counter() - started))
    median = {b: {k: statistics.median(v) if v else float("nan") for k, v in r.items()} for b, r in rates.items()}
    for backend in image_encoders:
        runs = ", ".join(f"{r:.1f}" for r in rates[backend]["encode"])
        print(f"image {args.image_encoder} [{backend:>5}]: {median[backend]['encode']:.1f} images/s from decoded "
              f"photos (runs: {runs}); bare forward {median[backend]['forward']:.1f} images/s")
    ratio = median["onnx"]["encode"] / median["torch"]["encode"]
    forward_ratio = median["onnx"]["forward"] / median["torch"]["forward"]
    cosines = row_cosines(vectors["torch"], vectors["onnx"])
    print(f"onnx / torch: {ratio:.2f}x images/s (bare forward {forward_ratio:.2f}x); "
          f"parity cosine over {len(cosines)} photos: min {cosines.min():.9f}, max {cosines.max():.9f}")

    results = {}
    for backend in image_encoders:
        space = CatalogAlignedSpace(text_encoder.name, args.image_encoder, hidden=args.hidden or None)
        metrics = space.fit(text_vecs, vectors[backend], epochs=args.epochs, seed=args.seed, holdout=0.1)
        held = metrics["heldout"]
        results[backend] = held
        print(f"joint catalog-aligned [{backend:>5}]: trained on {metrics['n_train']} pairs in "
              f"{metrics['seconds']:.1f} s, loss {metrics['first_loss']:.3f} -> {metrics['final_loss']:.3f}; "
              f"held-out text->image ({held['n']} pairs): Recall@1 {held['recall@1']:.3f}  "
              f"Recall@5 {held['recall@5']:.3f}  Recall@10 {held['recall@10']:.3f}  "
              f"(chance@10 {held['chance@10']:.3f}, {held['recall@10'] / held['chance@10']:.1f}x)")
    print(json.dumps({"cores": available_cores(), "texts_per_s": round(len(texts) / text_s, 1),
                      "images_per_s": {b: round(m["encode"], 1) for b, m in median.items()},
                      "forward_images_per_s": {b: round(m["forward"], 1) for b, m in median.items()},
                      "onnx_over_torch": round(ratio, 2), "onnx_over_torch_forward": round(forward_ratio, 2),
                      "parity_cosine": {"min": float(cosines.min()), "max": float(cosines.max())},
                      "heldout": results}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
