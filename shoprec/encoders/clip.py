"""open_clip models as text and image encoders that share one joint space.

A CLIP checkpoint is named ``open_clip:ARCH:CHECKPOINT``. CHECKPOINT is a local file (the only
way that works offline) or, for users with internet, one of open_clip's pretrained tags. With
``HF_HUB_OFFLINE`` set a tag is refused up front with a message saying how to pass a file,
rather than letting open_clip try a download that cannot succeed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .base import EncoderUnavailable, UnknownEncoderError, encode_in_batches, require
from .threads import limit_torch_threads

_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def hub_offline() -> bool:
    """True when the user said there is no model hub (huggingface_hub's own switch)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ClipSpec:
    """A parsed ``open_clip:ARCH:CHECKPOINT`` name."""

    arch: str
    checkpoint: str

    @classmethod
    def parse(cls, name: str) -> "ClipSpec":
        # maxsplit=2 keeps checkpoint paths that contain ':' (e.g. C:\\models\\clip.pt) intact.
        parts = name.split(":", 2)
        if len(parts) != 3 or parts[0] != "open_clip" or not parts[1] or not parts[2]:
            raise UnknownEncoderError(
                f"bad open_clip encoder name {name!r}: expected 'open_clip:ARCH:CHECKPOINT', "
                "e.g. 'open_clip:ViT-B-32:/models/clip-vit-b-32.pt'"
            )
        return cls(parts[1], parts[2])

    @property
    def name(self) -> str:
        return f"open_clip:{self.arch}:{self.checkpoint}"


def _resolve_pretrained(open_clip: Any, spec: ClipSpec) -> str:
    """The ``pretrained=`` value to hand open_clip: a file path, or a tag only when online."""
    if Path(spec.checkpoint).is_file():
        return str(Path(spec.checkpoint))
    if spec.checkpoint.endswith(_CHECKPOINT_SUFFIXES) or os.sep in spec.checkpoint or "/" in spec.checkpoint:
        raise EncoderUnavailable(f"open_clip checkpoint file not found: {spec.checkpoint}")
    tags = open_clip.list_pretrained_tags_by_model(spec.arch)
    if spec.checkpoint not in tags:
        raise EncoderUnavailable(
            f"{spec.checkpoint!r} is neither a checkpoint file nor a pretrained tag of {spec.arch} "
            f"(known tags: {', '.join(tags) or 'none'})"
        )
    if hub_offline():
        raise EncoderUnavailable(
            f"open_clip tag {spec.arch}:{spec.checkpoint} must be downloaded, but HF_HUB_OFFLINE is set. "
            f"Download the checkpoint on a machine with internet and name the file instead: "
            f"open_clip:{spec.arch}:/path/to/checkpoint.pt"
        )
    return spec.checkpoint


@dataclass
class OpenClipModel:
    """One loaded CLIP: both towers, the eval image transform and the tokenizer."""

    spec: ClipSpec
    model: Any
    transform: Any
    tokenizer: Any
    dim: int


@lru_cache(maxsize=4)
def load_open_clip(arch: str, checkpoint: str) -> OpenClipModel:
    """Build ``arch`` and load ``checkpoint``; cached because text and image encoders share it."""
    spec = ClipSpec(arch, checkpoint)
    open_clip = require("open_clip", "open-clip-torch", f"The encoder {spec.name!r}")
    if arch not in open_clip.list_models():
        raise UnknownEncoderError(
            f"unknown open_clip architecture {arch!r}; see open_clip.list_models() "
            "(or register a config with open_clip.add_model_config)"
        )
    pretrained = _resolve_pretrained(open_clip, spec)
    limit_torch_threads()
    try:
        model, _, transform = open_clip.create_model_and_transforms(arch, pretrained=pretrained, device="cpu")
    except (OSError, RuntimeError, ValueError, KeyError) as err:
        # e.g. a checkpoint of another architecture, or an HF text tower that needs the hub.
        raise EncoderUnavailable(f"open_clip could not build {arch!r} from {pretrained!r}: {err}") from err
    model.eval()
    try:
        tokenizer = open_clip.get_tokenizer(arch)
    except Exception as err:  # HF tokenizers need the hub; say so instead of a deep traceback
        raise EncoderUnavailable(f"tokenizer for open_clip {arch!r} could not be loaded: {err}") from err
    dim = int(open_clip.get_model_config(arch)["embed_dim"])
    return OpenClipModel(spec, model, transform, tokenizer, dim)


class ClipTextEncoder:
    """The text tower of an open_clip model."""

    def __init__(self, clip: OpenClipModel) -> None:
        import torch

        self._torch = torch
        self._clip = clip
        self.name = clip.spec.name
        self.dim = clip.dim

    def _encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        with self._torch.inference_mode():
            tokens = self._clip.tokenizer([str(t) for t in texts])
            return self._clip.model.encode_text(tokens).float().numpy()

    def encode(self, texts: Sequence[str], batch_size: int = 32,
               show_progress_bar: bool = False) -> np.ndarray:
        return encode_in_batches(texts, self._encode_batch, self.dim, batch_size, show_progress_bar,
                                 "encoding texts (CLIP)")


class ClipImageEncoder:
    """The image tower of an open_clip model (its own eval transform does the preprocessing)."""

    def __init__(self, clip: OpenClipModel) -> None:
        import torch

        self._torch = torch
        self._clip = clip
        self.name = clip.spec.name
        self.dim = clip.dim

    def _encode_batch(self, images: Sequence[Image.Image]) -> np.ndarray:
        for im in images:
            if not isinstance(im, Image.Image):
                raise TypeError(f"expected a PIL.Image.Image, got {type(im).__name__}")
        with self._torch.inference_mode():
            pixels = self._torch.stack([self._clip.transform(im.convert("RGB")) for im in images])
            return self._clip.model.encode_image(pixels).float().numpy()

    def encode(self, images: Sequence[Image.Image], batch_size: int = 32,
               show_progress_bar: bool = False) -> np.ndarray:
        return encode_in_batches(images, self._encode_batch, self.dim, batch_size, show_progress_bar,
                                 "encoding images (CLIP)")
