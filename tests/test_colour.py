"""Colour in visual similarity: the descriptors, the stored vector on both backends, the fused
query, the look vector, old stores without the vectors or with the older descriptor, and the
eval block's same-colour share."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from qdrant_client import QdrantClient

from shoprec.encoders.colour import DESCRIPTORS, SIDE, ColourDescriptor, _small_rgb, describe, for_dim, to_lab
from shoprec.evaluation.report import render_markdown
from shoprec.evaluation.similar import similar_quality
from shoprec.indexing.edge import EdgeStore
from shoprec.indexing.server import ServerStore
from shoprec.indexing.store import ItemFilter, ItemPoint, VectorStore
from shoprec.recommend import reasons, visual

BACKGROUND = (244, 244, 242)  # the light grey of a product photo's studio background


def product_photo(colour: tuple[int, int, int], size: tuple[int, int] = (224, 336), share: float = 0.3) -> Image.Image:
    """A garment-shaped block of ``colour`` on a plain light background, covering ``share`` of it."""
    image = Image.new("RGB", size, BACKGROUND)
    w, h = size
    side = (share ** 0.5)
    box = (round(w * (1 - side) / 2), round(h * (1 - side) / 2), round(w * (1 + side) / 2), round(h * (1 + side) / 2))
    ImageDraw.Draw(image).rectangle(box, fill=colour)
    return image


RED, DARK_RED, BLUE, WHITE = (200, 30, 35), (150, 20, 30), (30, 60, 190), (255, 255, 255)
OFF_WHITE, GREY = (236, 230, 214), (150, 150, 150)
DIM = ColourDescriptor().dim


# --- the descriptor ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DESCRIPTORS))
def test_descriptor_sees_the_product_not_the_background(name: str) -> None:
    red, red2 = describe(product_photo(RED), name), describe(product_photo(DARK_RED, share=0.2), name)
    blue = describe(product_photo(BLUE), name)
    assert red.shape == (DESCRIPTORS[name].dim,) and abs(float(np.linalg.norm(red)) - 1.0) < 1e-5
    # 70% of each photo is the same background, yet red is far from blue and near another red
    assert float(red @ blue) < 0.2
    assert float(red @ red2) > 0.6
    assert float(red @ red2) > float(red @ blue) + 0.5
    # a bare background is not "like" a red product either
    assert float(red @ describe(Image.new("RGB", (224, 336), BACKGROUND), name)) < 0.2


@pytest.mark.parametrize("name", sorted(DESCRIPTORS))
def test_a_white_product_on_a_light_background_is_white_not_empty(name: str) -> None:
    white = describe(product_photo(WHITE, share=0.4), name)
    assert np.isfinite(white).all() and abs(float(np.linalg.norm(white)) - 1.0) < 1e-5
    assert float(white @ describe(product_photo(RED), name)) < 0.2


def test_v2_tells_off_white_from_white_and_grey() -> None:
    """v1 counts chroma below 6 as grey, so cream and white share its neutral bins; v2 sees the
    cream's chroma (~9) as colour, and gives white, grey and black a finer lightness scale."""
    def sim(a: tuple[int, int, int], b: tuple[int, int, int], name: str) -> float:
        return float(describe(product_photo(a, share=0.4), name) @ describe(product_photo(b, share=0.4), name))

    assert sim(OFF_WHITE, WHITE, "lch-hist-v2") < sim(OFF_WHITE, WHITE, "lch-hist-v1") - 0.3
    assert sim(GREY, WHITE, "lch-hist-v2") < 0.2
    assert sim(OFF_WHITE, OFF_WHITE, "lch-hist-v2") > 0.99


def test_each_descriptor_is_named_by_its_size() -> None:
    assert for_dim(DESCRIPTORS["lch-hist-v1"].dim).name == "lch-hist-v1"
    assert for_dim(DIM).name == "lch-hist-v2" == ColourDescriptor().name
    with pytest.raises(ValueError, match="17 floats.*re-index"):
        for_dim(17)
    with pytest.raises(ValueError, match="unknown colour descriptor 'hsv'"):
        ColourDescriptor("hsv")


def test_descriptor_ignores_size_and_leaves_the_image_alone() -> None:
    small, large = product_photo(BLUE, (224, 336)), product_photo(BLUE, (900, 1350))
    before = large.tobytes()
    assert float(describe(small) @ describe(large)) > 0.95
    assert large.tobytes() == before and large.size == (900, 1350)
    batch = ColourDescriptor().encode([small, large])
    assert batch.shape == (2, DIM) and batch.dtype == np.float32
    assert ColourDescriptor().encode([]).shape == (0, DIM)
    with pytest.raises(TypeError):
        ColourDescriptor().encode(small)


def test_lab_lookup_matches_the_cie_formula() -> None:
    """to_lab linearises sRGB through a 256-entry table: it must give what the formula gives,
    including the known anchors (white L=100, black L=0, sRGB red's published Lab)."""
    rng = np.random.default_rng(0)
    rgb = np.vstack([rng.integers(0, 256, size=(2000, 3)), np.repeat(np.arange(256)[:, None], 3, axis=1)]).astype(np.uint8)
    c = rgb.astype(np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = linear @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    expected = np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=-1)
    assert np.abs(to_lab(rgb) - expected).max() < 1e-3
    white, black, red = to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]], np.uint8))
    assert abs(white[0] - 100) < 0.01 and np.abs(white[1:]).max() < 0.01 and np.abs(black).max() < 0.01
    assert np.allclose(red, [53.24, 80.09, 67.20], atol=0.05)


def test_descriptor_reads_a_small_box_averaged_copy() -> None:
    """Whatever the photo's size, the descriptor reads at most SIDE px along the longer side,
    each the mean of a block: a fine stripe pattern averages to its mix, not to one stripe."""
    stripes = Image.new("RGB", (640, 960), RED)
    draw = ImageDraw.Draw(stripes)
    for x in range(0, 640, 2):
        draw.line([(x, 0), (x, 959)], fill=BLUE)
    small = _small_rgb(stripes)
    assert max(small.shape[:2]) <= SIDE
    assert np.allclose(small.reshape(-1, 3).mean(axis=0), np.mean([RED, BLUE], axis=0), atol=2)


# --- stored vector and fused query, both backends -------------------------------------------
DIMS = {"image": 4, "colour": DIM}
COLOURS = {"red": describe(product_photo(RED)), "blue": describe(product_photo(BLUE))}


def _unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, np.float32)
    return a / np.linalg.norm(a)


# Shapes: "anchor" and "twin-blue" share a shape (cosine 0.99), "red-cousin" is a bit off (0.9).
SHAPES = {"anchor": _unit([1, 0, 0, 0]), "twin-blue": _unit([1, 0.14, 0, 0]), "red-cousin": _unit([1, 0.48, 0, 0]),
          "far-red": _unit([0, 0, 1, 0])}
PAINT = {"anchor": "red", "twin-blue": "blue", "red-cousin": "red", "far-red": "red"}


@pytest.fixture(params=["edge", "server"])
def colour_store(request, tmp_path: Path) -> Iterator[VectorStore]:
    store: VectorStore = EdgeStore(tmp_path / "s") if request.param == "edge" else ServerStore(QdrantClient(":memory:"))
    store.ensure_collection(DIMS)
    store.upsert([ItemPoint(i, {"image": SHAPES[i], "colour": COLOURS[PAINT[i]]}, {"category": "dress"})
                  for i in SHAPES])
    yield store
    store.close()


def test_colour_vector_is_stored_and_read_back(colour_store: VectorStore) -> None:
    assert colour_store.dense_dims() == DIMS
    hit = colour_store.retrieve(["twin-blue"], with_vectors=["colour"])[0]
    assert set(hit.vectors) == {"colour"}
    np.testing.assert_allclose(hit.vectors["colour"], COLOURS["blue"], atol=1e-6)


def test_colour_decides_the_order_where_shapes_are_close(colour_store: VectorStore) -> None:
    anchor = {"image": SHAPES["anchor"], "colour": COLOURS["red"]}
    flt = ItemFilter(exclude_ids=["anchor"])
    plain = visual.search(colour_store, "image", anchor, 3, visual.ColourMix(image=0.0), flt)
    assert [h.item_id for h in plain][:2] == ["twin-blue", "red-cousin"]
    mixed = visual.search(colour_store, "image", anchor, 3, visual.ColourMix(image=0.3, candidates=3), flt)
    assert [h.item_id for h in mixed][:2] == ["red-cousin", "twin-blue"]
    # the score is exactly (1-w) cos(image) + w cos(colour)
    expected = 0.7 * float(SHAPES["anchor"] @ SHAPES["red-cousin"]) + 0.3 * float(COLOURS["red"] @ COLOURS["red"])
    assert mixed[0].score == pytest.approx(expected, abs=1e-4)
    # far-red has the colour but not the shape: outside the 2 image candidates, it never appears
    narrow = visual.search(colour_store, "image", anchor, 2, visual.ColourMix(image=0.9, candidates=2), flt)
    assert "far-red" not in [h.item_id for h in narrow]


def test_weighted_search_refuses_unknown_vectors(colour_store: VectorStore) -> None:
    with pytest.raises(ValueError, match="unknown dense vector 'joint'"):
        colour_store.search_weighted([("joint", np.ones(4), 1.0)], 3, 10)
    with pytest.raises(ValueError, match="dim"):
        colour_store.search_weighted([("image", np.ones(3), 1.0)], 3, 10)


def test_reason_says_same_colour_only_when_colours_match() -> None:
    mix = visual.ColourMix()
    red_hit = visual.Hit("x", 1.0, vectors={"colour": COLOURS["red"]})
    blue_hit = visual.Hit("y", 1.0, vectors={"colour": COLOURS["blue"]})
    assert visual.same_colour(COLOURS["red"], red_hit, mix)
    assert not visual.same_colour(COLOURS["red"], blue_hit, mix)
    assert not visual.same_colour(None, red_hit, mix)
    assert reasons.same_colour("Red dress", "image") == "looks like Red dress, same colour"
    assert reasons.same_colour("Red dress", "colour") == "same colour as Red dress"


# --- stores created before the colour vector -------------------------------------------------
def test_a_store_without_the_colour_vector_keeps_working(tmp_path: Path, caplog) -> None:
    """Edge cannot add a named vector to a shard: such a store is indexed and searched without
    colour, and the user is told once to re-index."""
    from shoprec.config import Settings
    from shoprec.indexing.embedder import ProductEmbedder

    old_dims = {"text": 4, "image": 4, "joint": 4}
    store = EdgeStore(tmp_path / "old")
    store.ensure_collection(old_dims)
    embedder = ProductEmbedder(Settings(store=tmp_path / "old"))
    embedder.dims = lambda: {**old_dims, "colour": DIM}  # type: ignore[method-assign] # no encoders needed
    assert embedder.stores_colour is True  # the setting's default, until the store says otherwise
    with caplog.at_level(logging.WARNING, logger="shoprec.encoders"):
        embedder.ensure_collection(store)
        embedder.ensure_collection(store)
    assert embedder.stores_colour is False and embedder.stores_look is False
    notes = [r.getMessage() for r in caplog.records if "colour" in r.getMessage()]
    assert len(notes) == 1 and "re-index" in notes[0] and "look" in notes[0]
    store.upsert([ItemPoint(i, {"text": SHAPES[i], "image": SHAPES[i], "joint": SHAPES[i]}, {}) for i in SHAPES])
    query = {"image": SHAPES["anchor"], "colour": COLOURS["red"]}  # a photo query brings colour; the store has none
    store_dims = store.dense_dims() or {}
    mix = visual.ColourMix(image=0.5)
    hits = visual.search(store, "image", {k: v for k, v in query.items() if k in store_dims}, 2, mix)
    assert [h.item_id for h in hits] == ["anchor", "twin-blue"]
    store.close()


class _FixedImageEncoder:
    """Stands in for the CNN: every photo gets the anchor's shape, so the ranking is the store's."""

    dim = 4

    def encode(self, images, batch_size: int = 32) -> np.ndarray:
        return np.stack([SHAPES["anchor"] for _ in images])


def test_photo_search_in_a_store_without_colour(tmp_path: Path) -> None:
    """A store made with ``index_colour`` off (or before colour existed) has no colour vector to
    mix in: a photo query is ranked by the CNN vector alone instead of failing on 'colour'."""
    from shoprec.config import Settings
    from shoprec.service import Shoprec

    store = EdgeStore(tmp_path / "plain")
    store.ensure_collection({"text": 4, "image": 4, "joint": 4})
    store.upsert([ItemPoint(i, {"text": SHAPES[i], "image": SHAPES[i], "joint": SHAPES[i]}, {"item_id": i})
                  for i in SHAPES])
    service = Shoprec(Settings(store=tmp_path / "plain"), store=store)  # index_colour on: the store decides
    service.embedder.image_encoder = _FixedImageEncoder()
    found = service.search(image=product_photo(RED), k=2)
    assert [r.id for r in found] == ["anchor", "twin-blue"]
    assert service.embedder.query_colour(product_photo(RED)) is None
    service.close()


def test_a_new_store_gets_the_colour_vector(tmp_path: Path) -> None:
    from shoprec.config import Settings
    from shoprec.indexing.embedder import ProductEmbedder

    store = EdgeStore(tmp_path / "new")
    embedder = ProductEmbedder(Settings(store=tmp_path / "new"))
    embedder.dims = lambda: {"text": 4, "image": 4, "joint": 4, "colour": DIM}  # type: ignore[method-assign]
    embedder.ensure_collection(store)
    assert embedder.stores_colour is True and store.dense_dims() == {"text": 4, "image": 4, "joint": 4, "colour": DIM}
    store.close()


def test_a_store_with_the_v1_descriptor_keeps_it_for_indexing_and_queries(tmp_path: Path) -> None:
    """A store indexed before v2 has 125-float colour vectors: new points and photo queries get
    v1 descriptors too (comparable with the stored ones), and no look vector."""
    from shoprec.config import Settings
    from shoprec.indexing.embedder import ProductEmbedder

    old_dims = {"text": 4, "image": 4, "joint": 4, "colour": DESCRIPTORS["lch-hist-v1"].dim}
    store = EdgeStore(tmp_path / "v1")
    store.ensure_collection(old_dims)
    embedder = ProductEmbedder(Settings(store=tmp_path / "v1"))
    embedder.dims = lambda: {"text": 4, "image": 4, "joint": 4, "colour": DIM, "look": 256}  # type: ignore[method-assign]
    assert embedder.colour.name == "lch-hist-v2"  # the setting, until the store says otherwise
    embedder.ensure_collection(store)
    assert store.dense_dims() == old_dims
    assert embedder.colour.name == "lch-hist-v1" and embedder.stores_colour and not embedder.stores_look
    photo = product_photo(RED)
    np.testing.assert_allclose(embedder.query_colour(photo), describe(photo, "lch-hist-v1"))
    assert embedder.query_look(np.ones(4, np.float32), embedder.query_colour(photo)) is None
    store.close()


@pytest.mark.parametrize("backend", ["edge", "server"])
def test_image_similarity_ranks_by_look_where_the_store_has_it(backend: str, tmp_path: Path) -> None:
    """The CNN vectors call twin-blue the anchor's twin; the look vectors (which see colour) call
    red-cousin closer. "image" follows look when the query carries one, the CNN vector otherwise;
    the same on both backends."""
    looks = {"anchor": _unit([1, 0, 0, 0]), "twin-blue": _unit([0.2, 1, 0, 0]), "red-cousin": _unit([1, 0.3, 0, 0]),
             "far-red": _unit([0, 0, 1, 0])}
    store: VectorStore = EdgeStore(tmp_path / "look") if backend == "edge" else ServerStore(QdrantClient(":memory:"))
    store.ensure_collection({"image": 4, "look": 4, "colour": DIM})
    store.upsert([ItemPoint(i, {"image": SHAPES[i], "look": looks[i], "colour": COLOURS[PAINT[i]]}, {}) for i in SHAPES])
    flt = ItemFilter(exclude_ids=["anchor"])
    query = {"image": SHAPES["anchor"], "look": looks["anchor"], "colour": COLOURS["red"]}
    off = visual.ColourMix(image=0.0)
    assert [h.item_id for h in visual.search(store, "image", query, 2, off, flt)] == ["red-cousin", "twin-blue"]
    cnn_only = {n: v for n, v in query.items() if n != "look"}
    assert [h.item_id for h in visual.search(store, "image", cnn_only, 2, off, flt)] == ["twin-blue", "red-cousin"]
    mixed = visual.search(store, "image", query, 1, visual.ColourMix(image=0.1), flt)
    expected = 0.9 * float(looks["anchor"] @ looks["red-cousin"]) + 0.1 * float(COLOURS["red"] @ COLOURS["red"])
    assert mixed[0].item_id == "red-cousin" and mixed[0].score == pytest.approx(expected, abs=1e-4)
    store.close()


# --- the eval block ---------------------------------------------------------------------------
def test_similar_quality_measures_look_and_the_cnn_vector_apart(tmp_path: Path) -> None:
    """Where "image" is served by look, the eval reports the CNN vector alone beside it: here the
    look vectors group by colour and the CNN vectors by kind."""
    store = EdgeStore(tmp_path / "eval-look")
    store.ensure_collection({"image": 4, "look": 4, "colour": DIM})
    points = []
    for n in range(8):
        kind, paint = ("dress" if n < 4 else "shirt"), ("red" if n % 2 == 0 else "blue")
        shape = _unit([1, 0.05 * n, 0, 0]) if kind == "dress" else _unit([0, 0.05 * n, 1, 0])
        seen = _unit([1, 0.05 * n, 0, 0]) if paint == "red" else _unit([0, 0.05 * n, 1, 0])
        points.append(ItemPoint(f"i{n}", {"image": shape, "look": seen, "colour": COLOURS[paint]},
                                {"category": kind, "attributes": {"colour": paint.title()}}))
    store.upsert(points)
    out = similar_quality(store, modalities=("image",), k=1, sample=8, mix=visual.ColourMix(image=0.0))
    assert out["image"]["same_colour_at_k"] == 1.0
    assert out["image (CNN vector)"]["same_category_at_k"] == 1.0
    assert out["image (CNN vector)"]["same_colour_at_k"] < 1.0
    store.close()
    markdown = render_markdown({"ks": [1], "data": {}, "methods": {}, "similar_items": out}, "t", [], {})
    assert "| image (CNN vector) | 1.0000 |" in markdown



def test_similar_quality_reports_same_colour_share_by_hand(tmp_path: Path) -> None:
    """Six dresses and six shirts, red or blue. The image vector knows only the kind; colour
    mixed in must lift the same-colour share of the top 2 from what the shape gives to 1."""
    store = EdgeStore(tmp_path / "eval")
    store.ensure_collection(DIMS)
    points = []
    for n in range(12):
        kind = "dress" if n < 6 else "shirt"
        paint = "red" if n % 2 == 0 else "blue"
        shape = _unit([1, 0.05 * (n % 6), 0, 0]) if kind == "dress" else _unit([0, 0.05 * (n % 6), 1, 0])
        points.append(ItemPoint(f"i{n:02d}", {"image": shape, "colour": COLOURS[paint]},
                                {"category": kind, "attributes": {"colour": paint.title()}}))
    store.upsert(points)
    plain = similar_quality(store, modalities=("image",), k=2, sample=12)
    assert plain["image"]["same_category_at_k"] == 1.0
    assert plain["image"]["same_colour_at_k"] < 0.75  # neighbours by shape alternate colours
    assert plain["same_colour_chance"] == pytest.approx(5 / 11, abs=1e-4)
    mixed = similar_quality(store, modalities=("image",), k=2, sample=12, mix=visual.ColourMix(image=0.3))
    assert mixed["image"]["same_colour_at_k"] == 1.0 and mixed["image"]["same_category_at_k"] == 1.0
    assert mixed["image (no colour)"]["same_colour_at_k"] == plain["image"]["same_colour_at_k"]
    assert mixed["colour"]["same_colour_at_k"] == 1.0 and mixed["image"]["colour_weight"] == 0.3
    assert "image (CNN vector)" not in mixed  # no look vectors in this store: "image" is the CNN vector
    store.close()
    markdown = render_markdown({"ks": [2], "data": {}, "methods": {}, "similar_items": mixed}, "t", [], {})
    assert "| same category | same colour |" in markdown
    assert "| image (colour weight 0.3) | 1.0000 | 1.0000 |" in markdown


def test_index_colour_off_gives_a_store_without_it(tmp_path: Path) -> None:
    from shoprec.config import Settings
    from shoprec.indexing.embedder import ProductEmbedder

    store = EdgeStore(tmp_path / "off")
    embedder = ProductEmbedder(Settings(store=tmp_path / "off", index_colour=False))
    base = {"text": 4, "image": 4, "joint": 4}
    embedder.text_encoder = embedder.image_encoder = type("E", (), {"dim": 4})()  # no encoders needed
    embedder.joint = type("J", (), {"dim": 4})()
    assert embedder.dims() == base
    embedder.ensure_collection(store)
    assert store.dense_dims() == base and embedder.stores_colour is False
    store.close()


def test_indexed_shop_compares_by_colour_end_to_end(indexed_demo) -> None:
    """The real indexer stores a colour and a look vector per photo; similar and photo search use them."""
    service = indexed_demo
    assert service.store.dense_dims() == {"text": 512, "image": 1280, "joint": 256, "colour": DIM, "look": 256}
    with_photo = [h for h in service.store.scroll(with_vectors=["image", "colour", "look"]) if "image" in h.vectors]
    assert with_photo and all({"colour", "look"} <= set(h.vectors) for h in with_photo)
    # the stored look is the look space's projection of the stored CNN and colour vectors
    embedder = service.embedder
    first = with_photo[0].vectors
    np.testing.assert_allclose(embedder.query_look(first["image"], first["colour"]), first["look"], atol=1e-5)
    anchor = with_photo[0]
    by_colour = service.similar(anchor.item_id, k=3, modality="colour")
    assert by_colour and all(r.id != anchor.item_id for r in by_colour)
    best = service.store.retrieve([by_colour[0].id], with_vectors=["colour"])[0].vectors["colour"]
    assert by_colour[0].score == pytest.approx(float(anchor.vectors["colour"] @ best), abs=1e-4)
    image_like = service.similar(anchor.item_id, k=3, modality="image")
    assert len(image_like) == 3
    assert all(r.reason.startswith("looks like") for r in image_like)
    photo = Path(anchor.payload["image_path"]).read_bytes()
    assert anchor.item_id in [r.id for r in service.search(image=photo, k=3)]
