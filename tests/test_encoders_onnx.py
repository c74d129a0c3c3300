"""The image encoder on ONNX Runtime: parity with torch, the export cache, and every fallback.

One real export per session (a few seconds) lands in a temporary cache folder; tests that need
a cache of their own copy that file rather than exporting again.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shoprec.config import Settings
from shoprec.encoders import EncoderUnavailable, build_image_encoder, onnx_backend, registry
from shoprec.encoders.image import TimmImageEncoder
from shoprec.encoders.onnx_backend import row_cosines

HM_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hm"
NAME = "efficientnet-lite0"


def build(backend: str, cache: Path) -> TimmImageEncoder:
    """A fresh encoder (not the process-wide cached one), so each test sees its own load."""
    encoder = registry._build_image(NAME, backend, str(cache))
    assert isinstance(encoder, TimmImageEncoder)
    return encoder


def photos(n: int = 6) -> list[Image.Image]:
    """Real H&M product photos when the sample is here, else varied synthetic pictures."""
    paths = sorted((HM_DIR / "images").glob("*/*.jpg"))[:n] if HM_DIR.is_dir() else []
    if paths:
        return [Image.open(p).convert("RGB") for p in paths]
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="session")
def exported(onnx_cache) -> tuple[TimmImageEncoder, Path]:
    """The encoder on ONNX Runtime, exported once into the session's cache folder."""
    before = onnx_backend.EXPORTS["count"]
    encoder = build("onnx", onnx_cache)
    files = list(onnx_cache.glob("*.onnx"))
    assert encoder.backend == "onnx"
    assert onnx_backend.EXPORTS["count"] == before + 1
    assert len(files) == 1 and files[0].name.startswith(f"{NAME}-")
    return encoder, files[0]


def copy_cache(exported_file: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(exported_file, folder / exported_file.name))


def test_onnx_matches_torch_on_real_photos(exported) -> None:
    encoder, _ = exported
    assert encoder.parity is not None and encoder.parity[0] >= onnx_backend.PARITY_MIN_COSINE
    pixels = np.stack([encoder.prepare(im) for im in photos()])
    cosines = row_cosines(encoder._torch_forward(pixels), encoder.forward(pixels))
    assert cosines.min() >= 0.9999, cosines
    vectors = encoder.encode(photos(), batch_size=4)  # batches of 4 and 2: the batch axis is dynamic
    assert vectors.shape == (6, 1280)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_second_load_reuses_the_cached_file(exported, onnx_cache) -> None:
    _, path = exported
    mtime, exports = path.stat().st_mtime_ns, onnx_backend.EXPORTS["count"]
    again = build("auto", onnx_cache)
    assert again.backend == "onnx"
    assert onnx_backend.EXPORTS["count"] == exports  # no export on the second load
    assert path.stat().st_mtime_ns == mtime
    assert [p.name for p in onnx_cache.iterdir()] == [path.name]  # no temporary files left behind


def test_cache_file_name_changes_with_the_weights(exported) -> None:
    encoder, path = exported

    class Weights:  # cache_file reads nothing but the state dict
        def __init__(self, state: dict) -> None:
            self._state = state

        def state_dict(self) -> dict:
            return self._state

    state = {k: v.clone() for k, v in encoder._model.state_dict().items()}
    assert onnx_backend.cache_file(path.parent, NAME, Weights(state), 224) == path
    state["conv_stem.weight"][0, 0, 0, 0] += 1e-3
    assert onnx_backend.cache_file(path.parent, NAME, Weights(state), 224) != path
    assert onnx_backend.cache_file(path.parent, "other/net", encoder._model, 224).name.startswith("other_net-")


def test_prepared_arrays_encode_like_pictures(exported) -> None:
    encoder, _ = exported
    images = photos(3)
    from_images = encoder.encode(images)
    from_arrays = encoder.encode([encoder.prepare(im) for im in images])
    mixed = encoder.encode([images[0], encoder.prepare(images[1]), images[2]])
    assert np.array_equal(from_images, from_arrays) and np.array_equal(from_images, mixed)
    with pytest.raises(ValueError, match="prepared image has shape"):
        encoder.encode([np.zeros((3, 64, 64), np.float32)])


def test_parity_failure_falls_back_to_torch_with_a_warning(exported, tmp_path, monkeypatch, caplog) -> None:
    _, path = exported
    cache = tmp_path / "cache"
    copy_cache(path, cache)
    real_call = onnx_backend.OnnxRunner.__call__
    monkeypatch.setattr(onnx_backend.OnnxRunner, "__call__",
                        lambda self, pixels: real_call(self, pixels)[:, ::-1].copy())  # a wrong graph
    monkeypatch.setattr(onnx_backend, "export_bytes", lambda model, size: path.read_bytes())
    with caplog.at_level(logging.WARNING, logger="shoprec.encoders"):
        encoder = build("auto", cache)
    assert encoder.backend == "torch" and encoder.parity is None
    assert any("falls back to torch" in r.getMessage() and "disagrees with torch" in r.getMessage()
               for r in caplog.records)
    assert not list(cache.glob("*.onnx"))  # the rejected export is not left for the next load
    images = photos(2)
    pixels = np.stack([encoder.prepare(im) for im in images])
    assert np.array_equal(encoder.forward(pixels), encoder._torch_forward(pixels))


def test_explicit_onnx_also_falls_back_when_parity_fails(exported, tmp_path, monkeypatch, caplog) -> None:
    _, path = exported
    monkeypatch.setattr(onnx_backend, "row_cosines", lambda ref, cand: np.full(len(ref), 0.5))
    monkeypatch.setattr(onnx_backend, "export_bytes", lambda model, size: path.read_bytes())
    with caplog.at_level(logging.WARNING, logger="shoprec.encoders"):
        encoder = build("onnx", tmp_path / "cache")
    assert encoder.backend == "torch"
    assert any("lowest cosine 0.500000" in r.getMessage() for r in caplog.records)


def test_missing_onnxruntime(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    exports = onnx_backend.EXPORTS["count"]
    encoder = build("auto", tmp_path / "cache")
    assert encoder.backend == "torch"
    assert onnx_backend.EXPORTS["count"] == exports and not (tmp_path / "cache").exists()
    assert encoder.encode(photos(1)).shape == (1, 1280)
    with pytest.raises(EncoderUnavailable, match="pip install onnx onnxruntime"):
        build("onnx", tmp_path / "cache")


def test_corrupt_cached_file_is_exported_again(exported, tmp_path, caplog) -> None:
    _, path = exported
    cache = tmp_path / "cache"
    corrupt = copy_cache(path, cache)
    corrupt.write_bytes(b"\x08\x07not an onnx model" + path.read_bytes()[:1000])
    exports = onnx_backend.EXPORTS["count"]
    with caplog.at_level(logging.WARNING, logger="shoprec.encoders"):
        encoder = build("auto", cache)
    assert encoder.backend == "onnx"
    assert onnx_backend.EXPORTS["count"] == exports + 1
    assert any("cached ONNX export rejected" in r.getMessage() for r in caplog.records)
    assert corrupt.read_bytes() == path.read_bytes()  # the same export again, now whole


def test_corrupt_file_and_failing_export_stay_on_torch(exported, tmp_path, monkeypatch, caplog) -> None:
    _, path = exported
    cache = tmp_path / "cache"
    copy_cache(path, cache).write_bytes(b"garbage")

    def broken_export(model, size):
        raise RuntimeError("exporter cannot handle this graph")

    monkeypatch.setattr(onnx_backend, "export_bytes", broken_export)
    with caplog.at_level(logging.WARNING, logger="shoprec.encoders"):
        encoder = build("auto", cache)
    assert encoder.backend == "torch"
    assert any("ONNX export failed" in r.getMessage() for r in caplog.records)


def test_unwritable_cache_runs_the_export_from_memory(exported, tmp_path, monkeypatch, caplog) -> None:
    _, path = exported
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setattr(onnx_backend, "export_bytes", lambda model, size: path.read_bytes())
    with caplog.at_level(logging.WARNING, logger="shoprec.encoders"):
        encoder = build("auto", blocker / "onnx")
    assert encoder.backend == "onnx" and encoder.parity[0] >= onnx_backend.PARITY_MIN_COSINE
    assert any("could not cache the ONNX export" in r.getMessage() for r in caplog.records)


def test_backend_comes_from_the_settings(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SHOPREC_IMAGE_BACKEND", "torch")
    monkeypatch.setenv("SHOPREC_ONNX_CACHE", str(tmp_path / "from-env"))
    assert Settings().image_backend == "torch" and Settings().onnx_cache == tmp_path / "from-env"
    assert build_image_encoder(NAME).backend == "torch"
    assert not (tmp_path / "from-env").exists()  # torch never exports
    monkeypatch.setenv("SHOPREC_IMAGE_BACKEND", "tensorrt")
    with pytest.raises(ValueError, match="image_backend"):
        Settings()
    with pytest.raises(ValueError, match="use one of auto, onnx, torch"):
        build("tensorrt", tmp_path)


def test_indexing_prepares_photos_on_the_worker_threads(tmp_path, monkeypatch) -> None:
    """The indexer hands the encoder ready arrays (resized off its thread), with the same vectors
    as from pictures; a photo that cannot be prepared costs only its own image vector."""
    import json
    import threading

    from shoprec.service import Shoprec

    folder = tmp_path / "shop"
    folder.mkdir()
    colours = {"red": (200, 30, 40), "blue": (30, 40, 200), "green": (20, 180, 60), "odd": (90, 90, 90)}
    for name, colour in colours.items():
        Image.new("RGB", (65, 48) if name == "odd" else (48, 64), colour).save(folder / f"{name}.png")
    rows = [{"id": name, "title": f"{name} shirt", "image": f"{name}.png"} for name in colours]
    catalog = folder / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    service = Shoprec(Settings(store=tmp_path / "store", batch_size=2))
    encoder = service.embedder.image_encoder
    real_prepare, real_encode = encoder.prepare, encoder.encode
    prepared_on: set[str] = set()
    received: list[type] = []

    def prepare(image):
        if image.size == (65, 48):
            raise ValueError("cannot resize this one")
        prepared_on.add(threading.current_thread().name)
        return real_prepare(image)

    def encode(images, **kwargs):
        received.extend(type(im) for im in images)
        return real_encode(images, **kwargs)

    monkeypatch.setattr(encoder, "prepare", prepare)
    monkeypatch.setattr(encoder, "encode", encode)
    report = service.index_catalog(catalog, progress=False)
    monkeypatch.undo()

    assert report.indexed == 4 and [e.item_id for e in report.image_errors] == ["odd"]
    assert "cannot resize this one" in report.image_errors[0].reason
    assert received and set(received) == {np.ndarray}
    assert threading.main_thread().name not in prepared_on
    stored = {h.item_id: h for h in service.store.retrieve(list(colours), with_vectors=True)}
    assert "image" not in stored["odd"].vectors
    for name in ("red", "blue", "green"):
        expected = encoder.encode([Image.open(folder / f"{name}.png").convert("RGB")])[0]
        assert np.allclose(stored[name].vectors["image"], expected, atol=1e-6)
    service.close()


def test_table_normalisation_is_bit_identical_to_the_formula() -> None:
    """preprocess looks normalised values up in a table; stored vectors must not move by a bit."""
    from shoprec.encoders.preprocess import IMAGENET_MEAN, IMAGENET_STD, preprocess, to_square

    rng = np.random.default_rng(3)
    pictures = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in
                [(336, 224), (224, 224), (100, 400), (17, 9)]]
    pictures += [pictures[0].convert("L"), pictures[1].convert("P"), pictures[2].convert("RGBA")]
    for picture in pictures:
        square = to_square(picture.convert("RGB"), "pad").resize((224, 224), Image.Resampling.BICUBIC)
        expected = np.asarray(square, dtype=np.float32) / 255.0
        expected = (expected - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
        got = preprocess(picture, 224, "pad")
        assert got.dtype == np.float32 and got.flags.c_contiguous
        assert np.array_equal(got, expected.transpose(2, 0, 1)), picture.mode
