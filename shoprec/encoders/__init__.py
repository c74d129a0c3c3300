"""Encoders: catalog text and images -> vectors (dense text, dense image, joint, lexical sparse).

Every dense encoder has sentence-transformers' call shape, ``encode(items, batch_size=32,
show_progress_bar=False) -> float32 (n, dim)`` with unit rows, and is built by name from
``registry``. Heavy libraries (torch, timm, open_clip, jieba) load only when an encoder needs them.
"""

from .base import EncoderUnavailable, ImageEncoder, TextEncoder, UnknownEncoderError
from .registry import build_image_encoder, build_text_encoder, known_encoders

__all__ = [
    "EncoderUnavailable",
    "ImageEncoder",
    "TextEncoder",
    "UnknownEncoderError",
    "build_image_encoder",
    "build_text_encoder",
    "known_encoders",
]
