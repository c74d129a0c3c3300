"""Measure shoprec's encoders on a real catalog: text and image throughput, joint-space quality.

Samples ``--n`` products that have an image, encodes ``Product.text_for_embedding()`` with the
text encoder and the photos with the image encoder, trains the catalog-aligned joint space with
10% of pairs held out, and prints items/s plus held-out text->image Recall@k against chance.

    python bench/bench_encoders.py --catalog /work/shared/data/hm/catalog.jsonl --n 2000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from PIL import Image

# Runnable as a plain script from a checkout, without installing shoprec first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shoprec.catalog import CatalogRow, Product, read_catalog
from shoprec.encoders import build_image_encoder, build_text_encoder
from shoprec.encoders.joint import CatalogAlignedSpace
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
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    products = sample_products(args.catalog, args.n, args.seed)
    if len(products) < 20:
        print(f"only {len(products)} products with images in {args.catalog}", file=sys.stderr)
        return 1
    print(f"{len(products)} products from {args.catalog} on {available_cores()} cores")

    started = time.perf_counter()
    text_encoder = build_text_encoder(args.text_encoder)
    image_encoder = build_image_encoder(args.image_encoder)
    if args.fit:
        image_encoder.fit = args.fit
    print(f"load encoders: {time.perf_counter() - started:.1f} s")

    texts = [p.text_for_embedding() for p in products]
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
    started = time.perf_counter()
    image_vecs = image_encoder.encode(images, batch_size=args.batch_size)
    image_s = time.perf_counter() - started
    print(f"image {image_encoder.name}: {len(images) / image_s:.1f} images/s ({image_vecs.shape}); "
          f"JPEG decode {len(images) / decode_s:.0f} images/s")

    space = CatalogAlignedSpace(text_encoder.name, image_encoder.name, hidden=args.hidden or None)
    metrics = space.fit(text_vecs, image_vecs, epochs=args.epochs, seed=args.seed, holdout=0.1)
    held = metrics["heldout"]
    print(f"joint catalog-aligned: trained on {metrics['n_train']} pairs in {metrics['seconds']:.1f} s, "
          f"loss {metrics['first_loss']:.3f} -> {metrics['final_loss']:.3f}")
    print(f"held-out text->image ({held['n']} pairs): Recall@1 {held['recall@1']:.3f}  "
          f"Recall@5 {held['recall@5']:.3f}  Recall@10 {held['recall@10']:.3f}  "
          f"(chance@10 {held['chance@10']:.3f}, {held['recall@10'] / held['chance@10']:.1f}x)")
    print(json.dumps({"texts_per_s": round(len(texts) / text_s, 1), "images_per_s": round(len(images) / image_s, 1),
                      "heldout": held}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
