"""How good are "similar items"? Category agreement and same-product recall on a stored index.

Two honest proxies a shop can compute from its own catalog:
- the share of top-K neighbours in the query item's category (product type);
- Recall@K of the item's other colour variants (same ``attributes.product_code``), the closest
  thing to ground truth for "the same product" that catalog data offers.
Both are reported beside the chance level (a random item's category share / K over catalog size).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from shoprec.indexing.store import VectorStore


def similar_quality(store: VectorStore, modalities: Sequence[str] = ("text", "image", "joint"), k: int = 10,
                    sample: int = 500, seed: int = 0) -> dict[str, Any]:
    items = {h.item_id: h.payload for h in store.scroll(fields=["item_id", "category", "attributes"])}
    ids = sorted(items)
    category = {i: items[i].get("category") for i in ids}
    code = {i: (items[i].get("attributes") or {}).get("product_code") for i in ids}
    variants: dict[str, list[str]] = defaultdict(list)
    for item_id, product in code.items():
        if product:
            variants[product].append(item_id)
    rng = random.Random(seed)
    queries = rng.sample(ids, min(sample, len(ids)))
    category_sizes = Counter(category.values())
    chance = sum(category_sizes[category[q]] - 1 for q in queries) / max(1, len(queries)) / max(1, len(ids) - 1)
    out: dict[str, Any] = {"k": k, "queries": len(queries), "items": len(ids),
                           "same_category_chance": round(chance, 4)}
    for modality in modalities:
        same_category, recalls = [], []
        for query in queries:
            hits = store.retrieve([query], with_vectors=True)
            if not hits or modality not in hits[0].vectors:
                continue
            found = [h.item_id for h in store.search(modality, hits[0].vectors[modality], k + 1)
                     if h.item_id != query][:k]
            if not found:
                continue
            same_category.append(sum(category[f] == category[query] for f in found) / len(found))
            others = [v for v in variants.get(code[query] or "", []) if v != query]
            if others:
                recalls.append(len(set(found) & set(others)) / min(len(others), k))
        out[modality] = {
            "same_category_at_k": round(sum(same_category) / max(1, len(same_category)), 4),
            "variant_recall_at_k": round(sum(recalls) / max(1, len(recalls)), 4),
            "queries": len(same_category),
            "queries_with_variants": len(recalls),
        }
    return out
