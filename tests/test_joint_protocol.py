"""The joint space is polymorphic: both kinds answer the ``JointSpace`` protocol, the saved
card tells the same story as the built space, the embedder trains from the store it is given,
and no module outside encoders/joint.py asks which class of space it holds."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shoprec.config import Settings
from shoprec.encoders.base import l2_normalise
from shoprec.encoders.colour import ColourDescriptor
from shoprec.encoders.joint import (PRETRAINED_METRICS, CatalogAlignedSpace, ClipSpace, JointSpace, build_joint,
                                    saved_space)
from shoprec.indexing.embedder import ProductEmbedder
from shoprec.indexing.store import JOINT_VERSION_FIELD, Hit

PACKAGE = Path(__file__).resolve().parents[1] / "shoprec"
SPACE_CLASSES = {"CatalogAlignedSpace", "ClipSpace", "JointSpace"}


def pairs(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(n, 16)).astype(np.float32)
    return text, text @ rng.normal(size=(16, 24)).astype(np.float32) + rng.normal(size=(n, 24)).astype(np.float32)


def test_no_module_outside_joint_asks_which_space_it_holds() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "encoders" / "joint.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                continue
            named = {n.id for arg in node.args[1:] for n in ast.walk(arg) if isinstance(n, ast.Name)}
            if (node.func.id == "isinstance" and named & SPACE_CLASSES) or node.func.id == "joint_kind":
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


def test_the_catalog_aligned_space_answers_the_protocol(tmp_path) -> None:
    text, image = pairs()
    space = CatalogAlignedSpace("t", "i")
    assert isinstance(space, JointSpace) and space.trainable
    assert space.version is None and space.needs_training(1)
    fitted = space.fit_catalog(text, image, tmp_path)
    assert fitted.version == fitted.fingerprint is not None and fitted.is_fitted
    trained_on = fitted.metrics["n_train"] + fitted.metrics["n_heldout"]
    assert not fitted.needs_training(trained_on) and fitted.needs_training(int(trained_on * 1.25) + 1)
    # the same pairs again: the saved heads are reused, so stored vectors stay current
    assert space.fit_catalog(text, image, tmp_path).version == fitted.version

    has_image = np.array([True, False, True])
    joint = fitted.item_vectors(text[:3], image[:3], has_image)
    expected = fitted.project_text(text[:3])
    expected[has_image] += fitted.project_image(image[:3][has_image])
    np.testing.assert_allclose(joint, l2_normalise(expected), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(joint, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(fitted.query_text("ignored", text[0]), fitted.project_text(text[:1])[0], atol=1e-6)
    np.testing.assert_allclose(fitted.query_image(None, image[1]), fitted.project_image(image[1:2])[0], atol=1e-6)


def test_the_saved_card_tells_what_build_joint_would_give(tmp_path) -> None:
    settings = Settings(store=tmp_path, text_encoder="t", image_encoder="i")
    folder = tmp_path / "joint-space"
    card = saved_space(settings, folder)
    assert card.version is None and card.needs_training(1)  # nothing saved: training is due

    text, image = pairs()
    CatalogAlignedSpace("t", "i").fit_catalog(text, image, folder)
    built, card = build_joint(settings, folder), saved_space(settings, folder)
    assert card.version == built.version and card.metrics == built.metrics
    for size in (10, 60, 75, 200):
        assert card.needs_training(size) == built.needs_training(size)
    other = saved_space(Settings(store=tmp_path, text_encoder="minilm", image_encoder="i"), folder)
    assert other.version is None and not build_joint(Settings(store=tmp_path, text_encoder="minilm",
                                                              image_encoder="i"), folder).is_fitted
    (folder / "space.json").write_text("{not json")
    assert saved_space(settings, folder) is None  # unreadable: the caller assumes work is due

    clip = saved_space(Settings(store=tmp_path, joint_encoder="open_clip:ViT-B-32:/models/clip.pt"), folder)
    assert clip.version == "open_clip:ViT-B-32:/models/clip.pt" and clip.metrics == PRETRAINED_METRICS
    assert not clip.needs_training(10**12)


class _Tower:
    """A stand-in CLIP tower: a fixed 4-d vector per input, so sums can be checked by hand."""

    dim = 4

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def encode(self, items, batch_size: int = 32) -> np.ndarray:
        return np.array([[self.offset + i, 1.0, 0.0, 0.0] for i in range(len(items))], np.float32)


def test_a_clip_space_answers_the_protocol_through_its_own_towers(tmp_path) -> None:
    space = object.__new__(ClipSpace)  # no open_clip: the towers are stand-ins
    space.name, space._text, space._image, space.dim = "open_clip:A:/c.pt", _Tower(0.0), _Tower(10.0), 4
    space.metrics = dict(PRETRAINED_METRICS)
    assert isinstance(space, JointSpace) and not space.trainable
    assert space.version == "open_clip:A:/c.pt" and not space.needs_training(10**9)
    assert space.fit_catalog(np.zeros((2, 3)), np.zeros((2, 3)), tmp_path) is space
    photo = Image.new("RGB", (4, 4))
    joint = space.item_vectors(np.zeros((3, 7)), np.zeros((3, 5)), np.array([True, False, True]),
                               texts=["a", "b", "c"], images=[photo, None, photo])
    # rows 0 and 2 add the image tower's vectors for the 1st and 2nd photo (10, 1) and (11, 1)
    expected = np.array([[10, 2, 0, 0], [1, 1, 0, 0], [13, 2, 0, 0]], np.float32)
    np.testing.assert_allclose(joint, l2_normalise(expected), atol=1e-6)
    with pytest.raises(ValueError, match="cannot be made from stored text/image vectors"):
        space.item_vectors(np.zeros((1, 7)), np.zeros((1, 5)), np.array([True]))
    np.testing.assert_allclose(space.query_text("a", np.zeros(7)), [0, 1, 0, 0])
    np.testing.assert_allclose(space.query_image(photo, np.zeros(5)), [10, 1, 0, 0])


class _Store:
    """The two calls the embedder's joint phase makes of a vector store."""

    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits

    def scroll(self, flt=None, fields=None, with_vectors=False):
        return iter(self.hits)

    def count(self, flt=None) -> int:
        return len(self.hits)


def test_train_joint_fits_on_the_pairs_of_the_store_it_is_given(tmp_path) -> None:
    text, image = pairs()
    hits = [Hit(f"i{n}", 0.0, {}, {"text": text[n], "image": image[n]}) for n in range(len(text))]
    hits.append(Hit("no-photo", 0.0, {}, {"text": text[0]}))
    embedder = ProductEmbedder(Settings(store=tmp_path, text_encoder="t", image_encoder="i"))
    embedder.stores_look = False  # as bind() decides for a store without look vectors
    store = _Store(hits)
    assert embedder.joint_version is None and embedder.joint_needs_training(store)
    metrics = embedder.train_joint(store)
    assert metrics["n_train"] + metrics["n_heldout"] == 60  # the photo pairs, not the text-only item
    assert embedder.joint_version is not None and not embedder.joint_needs_training(store)
    assert embedder.saved_joint_metrics() == embedder.joint_metrics() == metrics
    assert not embedder.joint_is_current(store)  # no stored point carries the new version yet
    for hit in hits:
        hit.payload[JOINT_VERSION_FIELD] = embedder.joint_version
    assert embedder.joint_is_current(store)
    fresh = ProductEmbedder(Settings(store=tmp_path / "other", text_encoder="t", image_encoder="i"))
    assert fresh.train_joint(_Store(hits[:1])) == {} and fresh.joint_version is None  # one pair: nothing to contrast


def test_train_joint_fits_the_look_space_too_where_the_store_has_look_vectors(tmp_path) -> None:
    """Look heads are trained beside the joint ones, on (text, CNN + colour) pairs; the version
    stored points carry then names both spaces, so new look heads make the points stale."""
    text, image = pairs()
    colour = np.abs(np.random.default_rng(3).normal(size=(len(text), ColourDescriptor().dim))).astype(np.float32)
    hits = [Hit(f"i{n}", 0.0, {}, {"text": text[n], "image": image[n], "colour": colour[n]}) for n in range(len(text))]
    embedder = ProductEmbedder(Settings(store=tmp_path, text_encoder="t", image_encoder="i"))
    embedder.image_encoder = type("E", (), {"dim": image.shape[1]})()  # no encoder needed
    store = _Store(hits)
    assert embedder.stores_look and embedder.joint_needs_training(store)
    embedder.train_joint(store)
    assert embedder.look.is_fitted and not embedder.joint_needs_training(store)
    assert embedder.joint_version == f"{embedder.joint.version}+look:{embedder.look.version}"
    derived = embedder.derived_vectors(hits[:3])
    assert all(set(d) == {"joint", "look"} and d["look"].shape == (256,) for d in derived)
    for hit in hits:
        hit.payload[JOINT_VERSION_FIELD] = embedder.joint_version
    assert embedder.joint_is_current(store)
    (tmp_path / "look-space" / "space.json").unlink()  # look heads gone: the phase has work again
    assert not embedder.joint_is_current(store)
