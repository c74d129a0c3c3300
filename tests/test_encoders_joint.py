"""The joint text-image space: contrastive heads learn real structure, persist exactly, and
the settings pick the right kind of space."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from shoprec.config import Settings
from shoprec.encoders import UnknownEncoderError, build_text_encoder
from shoprec.encoders.joint import CatalogAlignedSpace, JointSpace, build_joint, joint_kind, recall_at_k


def paired(n: int = 1000, noise: float = 2.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Text vectors and image vectors that are a noisy linear map of them (other dims)."""
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(n, 64)).astype(np.float32)
    mapping = rng.normal(size=(64, 96)).astype(np.float32) / 8
    image = text @ mapping + noise * rng.normal(size=(n, 96)).astype(np.float32)
    return text, image


@pytest.fixture(scope="module")
def fitted() -> tuple[CatalogAlignedSpace, dict]:
    text, image = paired()
    space = CatalogAlignedSpace("text-enc", "image-enc")
    return space, space.fit(text, image, epochs=20, seed=0)


def test_fit_reaches_heldout_recall_far_above_chance(fitted) -> None:
    space, metrics = fitted
    held = metrics["heldout"]
    assert metrics["n_train"] == 900 and metrics["n_heldout"] == held["n"] == 100
    assert held["chance@10"] == pytest.approx(0.1)
    assert held["recall@10"] >= 0.8  # 8x chance on pairs the heads never saw
    assert metrics["final_loss"] < metrics["first_loss"]
    assert space.is_fitted and isinstance(space, JointSpace)


def test_unpaired_data_stays_near_chance() -> None:
    text, _ = paired()
    unrelated = np.random.default_rng(9).normal(size=(1000, 96)).astype(np.float32)
    held = CatalogAlignedSpace().fit(text, unrelated, epochs=20)["heldout"]
    assert held["recall@10"] < 0.25  # the metric is not flattered by memorised training pairs


def test_projections_are_unit_rows_of_the_joint_dim(fitted) -> None:
    space, _ = fitted
    text, image = paired(n=5, seed=3)
    for projected in (space.project_text(text), space.project_image(image)):
        assert projected.shape == (5, 256) and projected.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(projected, axis=1), 1.0, atol=1e-5)
    assert space.project_text(np.zeros((0, 64), np.float32)).shape == (0, 256)
    with pytest.raises(ValueError, match="expected shape"):
        space.project_image(text)  # 64-d text vectors into the 96-d image head


def test_fit_is_seeded_and_leaves_global_rng_alone() -> None:
    import torch

    text, image = paired(n=200)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a, b = CatalogAlignedSpace(), CatalogAlignedSpace()
    a.fit(text, image, epochs=3, seed=7)
    assert torch.equal(torch.rand(1), expected_next)
    b.fit(text, image, epochs=3, seed=7)
    np.testing.assert_array_equal(a.project_text(text), b.project_text(text))
    assert a.fingerprint == b.fingerprint


def test_save_load_round_trip_gives_identical_projections(fitted, tmp_path) -> None:
    space, _ = fitted
    space.save(tmp_path / "joint")
    meta = json.loads((tmp_path / "joint" / "space.json").read_text())
    assert meta["text_encoder"] == "text-enc" and meta["image_dim"] == 96 and meta["fingerprint"]
    loaded = CatalogAlignedSpace.load(tmp_path / "joint")
    text, image = paired(n=20, seed=5)
    # the linear heads load as numpy arrays (heads.npz): same projections as torch's to float precision
    np.testing.assert_allclose(loaded.project_text(text), space.project_text(text), atol=1e-6)
    np.testing.assert_allclose(loaded.project_image(image), space.project_image(image), atol=1e-6)
    assert loaded.fingerprint == space.fingerprint and loaded.metrics == space.metrics


def test_hidden_layer_heads_load_as_numpy_with_torchs_projections(tmp_path) -> None:
    """The look space (encoders/look.py) uses a hidden layer: its heads.npz must give the same
    projections as the torch modules (exact GELU, dropout off), so photo queries need no torch."""
    text, image = paired(n=300)
    space = CatalogAlignedSpace("text-enc", "image-enc", dim=16, hidden=32)
    space.fit(text, image, epochs=2, seed=0)
    space.save(tmp_path / "look")
    with np.load(tmp_path / "look" / "heads.npz") as heads:
        assert heads["image_head.0.weight"].shape == (32, 96) and heads["image_head.3.weight"].shape == (16, 32)
    loaded = CatalogAlignedSpace.load(tmp_path / "look")
    assert type(loaded._image_head).__name__ == "_MlpHead"
    text, image = paired(n=20, seed=5)
    np.testing.assert_allclose(loaded.project_image(image), space.project_image(image), atol=1e-5)
    np.testing.assert_allclose(loaded.project_text(text), space.project_text(text), atol=1e-5)


def test_a_saved_linear_space_projects_without_importing_torch(fitted, tmp_path) -> None:
    space, _ = fitted
    space.save(tmp_path / "joint")
    (tmp_path / "joint" / "heads.npz").unlink()  # saved by an older shoprec: torch loads it once...
    CatalogAlignedSpace.load(tmp_path / "joint")
    assert (tmp_path / "joint" / "heads.npz").is_file()  # ...and leaves the numpy copy behind
    text, _ = paired(n=3, seed=1)
    np.save(tmp_path / "text.npy", text)
    code = (
        "import sys, numpy as np\n"
        "from shoprec.encoders.joint import CatalogAlignedSpace\n"
        f"space = CatalogAlignedSpace.load({str(tmp_path / 'joint')!r})\n"
        f"out = space.project_text(np.load({str(tmp_path / 'text.npy')!r}))\n"
        "assert out.shape == (3, space.dim), out.shape\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_load_or_fit_reuses_heads_until_the_data_change(tmp_path) -> None:
    text, image = paired(n=300)
    first, trained = CatalogAlignedSpace.load_or_fit(tmp_path, text, image, "t", "i", epochs=2)
    assert trained
    again, trained = CatalogAlignedSpace.load_or_fit(tmp_path, text, image, "t", "i", epochs=2)
    assert not trained and again.fingerprint == first.fingerprint
    image[0] += 1.0
    _, trained = CatalogAlignedSpace.load_or_fit(tmp_path, text, image, "t", "i", epochs=2)
    assert trained


def test_unfitted_space_and_bad_input_are_clear_errors(tmp_path) -> None:
    space = CatalogAlignedSpace()
    assert not space.is_fitted
    with pytest.raises(RuntimeError, match="not fitted"):
        space.project_text(np.ones((1, 4), np.float32))
    with pytest.raises(RuntimeError, match="not fitted"):
        space.save(tmp_path)
    with pytest.raises(ValueError, match="pairs must align"):
        space.fit(np.ones((5, 4), np.float32), np.ones((4, 4), np.float32))
    with pytest.raises(FileNotFoundError):
        CatalogAlignedSpace.load(tmp_path)


def test_recall_at_k_counts_ties_against_the_true_pair() -> None:
    eye = np.eye(20, dtype=np.float32)
    assert recall_at_k(eye, eye)["recall@1"] == 1.0
    constant = np.ones((20, 4), np.float32) / 2
    assert recall_at_k(constant, constant)["recall@10"] == 0.0


def test_encode_texts_goes_through_the_named_text_encoder() -> None:
    titles = [f"商品 {i} 号 red dress size {i}" for i in range(30)]
    use = build_text_encoder("use-multilingual")
    text = use.encode(titles)
    image = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)
    space = CatalogAlignedSpace("use-multilingual", "efficientnet-lite0")
    space.fit(text, image, epochs=1, holdout=0.0)
    np.testing.assert_allclose(space.encode_texts(titles[:3]), space.project_text(text[:3]), atol=1e-5)


def test_settings_pick_the_kind_of_joint_space(tmp_path) -> None:
    assert joint_kind("catalog-aligned") == "catalog-aligned"
    assert joint_kind("open_clip:ViT-B-32:/models/clip.pt") == "clip"
    with pytest.raises(UnknownEncoderError, match="catalog-aligned, open_clip:ARCH:CHECKPOINT"):
        joint_kind("clip-please")
    settings = Settings(store=tmp_path, text_encoder="t", image_encoder="i")
    fresh = build_joint(settings, tmp_path / "joint")
    assert isinstance(fresh, CatalogAlignedSpace) and not fresh.is_fitted

    text, image = paired(n=100)
    trained = CatalogAlignedSpace("t", "i")
    trained.fit(text, image, epochs=1)
    trained.save(tmp_path / "joint")
    assert build_joint(settings, tmp_path / "joint").is_fitted
    # Heads trained on other encoders do not fit these vectors: start afresh.
    other = Settings(store=tmp_path, text_encoder="minilm", image_encoder="i")
    assert not build_joint(other, tmp_path / "joint").is_fitted


def test_clip_settings_give_a_clip_space(tmp_path) -> None:
    import open_clip
    import torch

    tiny = {  # a random 32-d CLIP: plumbing only
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }
    config = tmp_path / "shoprec-tiny-clip.json"
    config.write_text(json.dumps(tiny))
    open_clip.add_model_config(config)
    checkpoint = tmp_path / "tiny.pt"
    torch.save(open_clip.create_model("shoprec-tiny-clip", pretrained=None).state_dict(), checkpoint)
    space = build_joint(Settings(store=tmp_path, joint_encoder=f"open_clip:shoprec-tiny-clip:{checkpoint}"))
    assert space.kind == "clip" and space.is_fitted and space.dim == 32
    assert space.encode_texts(["a red dress"]).shape == (1, 32)
