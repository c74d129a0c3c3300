"""How good are "similar items"? Category, colour and same-product agreement on a stored index.

Honest proxies a shop can compute from its own catalog:
- the share of top-K neighbours in the query item's category (product type);
- the share in the query item's colour (the catalog attribute ``colour``, e.g. H&M's colour
  group): photos look alike to a shopper first by colour, which CNN features ignore;
- Recall@K of the item's other colour variants (same ``attributes.product_code``), the closest
  thing to ground truth for "the same product" that catalog data offers.
Shares are reported beside the chance level (a random item's share). With a ``ColourMix`` the
modalities are measured as ``similar`` serves them (colour mixed in, recommend/visual.py) and
also without colour (``image (no colour)``...), on the same store and query sample; where image
similarity is served by the look vector, the CNN image vector alone is measured too
(``image (CNN vector)``).

``photo_search_quality`` checks search by photo: each sampled product's own photo, cropped,
resized and re-encoded as JPEG, must find the product (and its colour) in the top results.
"""

from __future__ import annotations

import io
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from shoprec.indexing.store import VectorStore
from shoprec.recommend import visual

COLOUR_ATTRIBUTE = "colour"
PLAIN = " (no colour)"
CNN = " (CNN vector)"


def _attribute(payload: dict[str, Any], name: str) -> Any:
    attrs = payload.get("attributes")
    return attrs.get(name) if isinstance(attrs, dict) else None


def _chance(queries: Sequence[str], label: dict[str, Any], n_items: int) -> float:
    sizes = Counter(v for v in label.values() if v is not None)
    labelled = [q for q in queries if label[q] is not None]
    if not labelled:
        return 0.0
    return sum(sizes[label[q]] - 1 for q in labelled) / len(labelled) / max(1, n_items - 1)


def similar_quality(store: VectorStore, modalities: Sequence[str] = ("text", "image", "joint"), k: int = 10,
                    sample: int = 500, seed: int = 0, mix: visual.ColourMix | None = None,
                    colour_attribute: str = COLOUR_ATTRIBUTE) -> dict[str, Any]:
    """Per modality: same-category and same-colour share of the top ``k`` and variant recall.
    Without ``mix`` every modality is a plain search on its vector; with it, modalities that take
    colour are measured as served and again without colour (key ``"<modality> (no colour)"``),
    and ``colour`` alone is added where the store has it."""
    items = {h.item_id: h.payload for h in store.scroll(fields=["item_id", "category", "attributes"])}
    ids = sorted(items)
    category = {i: items[i].get("category") for i in ids}
    colour = {i: _attribute(items[i], colour_attribute) for i in ids}
    code = {i: _attribute(items[i], "product_code") for i in ids}
    variants: dict[str, list[str]] = defaultdict(list)
    for item_id, product in code.items():
        if product:
            variants[product].append(item_id)
    rng = random.Random(seed)
    queries = rng.sample(ids, min(sample, len(ids)))
    out: dict[str, Any] = {"k": k, "queries": len(queries), "items": len(ids),
                           "same_category_chance": round(_chance(queries, category, len(ids)), 4),
                           "same_colour_chance": round(_chance(queries, colour, len(ids)), 4),
                           "colour_attribute": colour_attribute}
    # (label, modality, mix, whether the look vector serves "image")
    runs: list[tuple[str, str, visual.ColourMix, bool]] = []
    plain = visual.ColourMix(image=0.0, joint=0.0)
    dims = store.dense_dims() or {}
    has_colour = visual.COLOUR in dims
    for modality in modalities:
        if mix is not None and mix.weight(modality) > 0 and has_colour:
            runs += [(modality, modality, mix, True), (modality + PLAIN, modality, plain, True)]
        else:
            runs.append((modality, modality, plain, True))
        if modality == "image" and visual.LOOK in dims:
            runs.append((modality + CNN, modality, plain, False))
    if mix is not None and has_colour and visual.COLOUR not in modalities:
        runs.append((visual.COLOUR, visual.COLOUR, plain, True))
    vectors = {q: hits[0].vectors for q in queries if (hits := store.retrieve([q], with_vectors=True))}
    for label, modality, how, look in runs:
        same_category, same_colour, recalls = [], [], []
        for query in queries:
            if modality not in vectors.get(query, {}):
                continue
            given = vectors[query] if look else {n: v for n, v in vectors[query].items() if n != visual.LOOK}
            found = [h.item_id for h in visual.search(store, modality, given, k + 1, how, fields=["item_id"])
                     if h.item_id != query][:k]
            if not found:
                continue
            same_category.append(sum(category[f] == category[query] for f in found) / len(found))
            if colour[query] is not None:
                same_colour.append(sum(colour[f] == colour[query] for f in found) / len(found))
            others = [v for v in variants.get(code[query] or "", []) if v != query]
            if others:
                recalls.append(len(set(found) & set(others)) / min(len(others), k))
        out[label] = {
            "same_category_at_k": round(sum(same_category) / max(1, len(same_category)), 4),
            "same_colour_at_k": round(sum(same_colour) / max(1, len(same_colour)), 4) if same_colour else None,
            "variant_recall_at_k": round(sum(recalls) / max(1, len(recalls)), 4),
            "queries": len(same_category),
            "queries_with_colour": len(same_colour),
            "queries_with_variants": len(recalls),
        }
        if how.weight(modality) > 0:
            out[label]["colour_weight"] = how.weight(modality)
    return out


def recrop(data: bytes, crop: float = 0.08, scale: float = 0.8, quality: int = 80) -> bytes:
    """A shopper's copy of a product photo: ``crop`` of each side cut, resized by ``scale``,
    re-encoded as JPEG (so the query is never the indexed file byte for byte)."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    w, h = rgb.size
    box = (round(w * crop), round(h * crop), w - round(w * crop), h - round(h * crop))
    small = rgb.crop(box).resize((max(1, round((box[2] - box[0]) * scale)), max(1, round((box[3] - box[1]) * scale))),
                                 Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def photo_search_quality(service: Any, k: int = 5, sample: int = 500, seed: int = 0,
                         colour_attribute: str = COLOUR_ATTRIBUTE) -> dict[str, Any]:
    """Search by each sampled product's own (re-cropped) photo through ``service.search``: the
    share of queries that find the product in the top ``k``, and the share of the top ``k`` in
    its colour."""
    items = {h.item_id: h.payload for h in service.store.scroll(fields=["item_id", "image_path", "attributes"])}
    with_photo = sorted(i for i, p in items.items() if p.get("image_path") and Path(p["image_path"]).is_file())
    queries = random.Random(seed).sample(with_photo, min(sample, len(with_photo)))
    found, same_colour = [], []
    for query in queries:
        photo = recrop(Path(items[query]["image_path"]).read_bytes())
        hits = [r.id for r in service.search(image=photo, k=k)]
        found.append(query in hits)
        wanted = _attribute(items[query], colour_attribute)
        if wanted is not None and hits:
            same_colour.append(sum(_attribute(items.get(h, {}), colour_attribute) == wanted for h in hits) / len(hits))
    return {"k": k, "queries": len(queries),
            "product_found_at_k": round(sum(found) / max(1, len(found)), 4),
            "same_colour_at_k": round(sum(same_colour) / max(1, len(same_colour)), 4) if same_colour else None,
            "colour_weight": service.settings.colour_weight_image}
