"""The one call shape every shoprec encoder shares, and the small helpers they all need.

Shaped like sentence-transformers' ``model.encode(texts, batch_size=32,
show_progress_bar=False)``: inputs in, a float32 ``(n, dim)`` matrix of unit-length rows out.
Keeping that one shape is what lets the indexer swap USE for MiniLM, or EfficientNet for a
CLIP tower, by changing a name in the settings and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
from PIL import Image

T = TypeVar("T")


class EncoderUnavailable(RuntimeError):
    """A package or weights file an encoder needs is missing; the message says what to install.

    Raised instead of falling back to a download, because these machines (and many shops'
    servers) have no route to a model hub and a silent download would hang or fail later.
    """


class UnknownEncoderError(ValueError):
    """An encoder name the registry does not know; the message lists the names it does know."""


@runtime_checkable
class TextEncoder(Protocol):
    """Texts to unit-length float32 vectors. ``name`` is the registry name (for fingerprints)."""

    name: str
    dim: int

    def encode(
        self, texts: Sequence[str], batch_size: int = 32, show_progress_bar: bool = False
    ) -> np.ndarray: ...


@runtime_checkable
class ImageEncoder(Protocol):
    """PIL images to unit-length float32 vectors. ``name`` is the registry name."""

    name: str
    dim: int

    def encode(
        self,
        images: Sequence[Image.Image],
        batch_size: int = 32,
        show_progress_bar: bool = False,
    ) -> np.ndarray: ...


def l2_normalise(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length as float32 (zero rows stay zero rather than becoming NaN).

    Cosine similarity in Qdrant and dot products in the recommenders both assume unit rows.
    """
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-d matrix, got shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def empty(dim: int) -> np.ndarray:
    """The ``(0, dim)`` result for empty input, so callers can ``np.vstack`` without a special case."""
    return np.zeros((0, dim), dtype=np.float32)


def batches(items: Sequence[T], batch_size: int, show_progress_bar: bool = False,
            description: str = "encoding") -> Iterator[Sequence[T]]:
    """Consecutive slices of ``items``; with a rich progress bar when asked (long catalogs)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    starts = range(0, len(items), batch_size)
    if show_progress_bar:
        from shoprec.progress import track

        starts = track(starts, description, total=len(starts))
    for start in starts:
        yield items[start:start + batch_size]


def encode_in_batches(
    items: Sequence[T],
    encode_batch: Callable[[Sequence[T]], np.ndarray],
    dim: int,
    batch_size: int,
    show_progress_bar: bool = False,
    description: str = "encoding",
) -> np.ndarray:
    """Run ``encode_batch`` over batches and return one normalised float32 matrix.

    Shared by every encoder so empty input, batching and normalisation behave identically.
    """
    if isinstance(items, (str, bytes, Image.Image)):
        raise TypeError(f"encode() takes a sequence of inputs, not a single {type(items).__name__}")
    if len(items) == 0:
        return empty(dim)
    parts = [np.asarray(encode_batch(chunk), dtype=np.float32)
             for chunk in batches(items, batch_size, show_progress_bar, description)]
    out = l2_normalise(np.vstack(parts))
    if out.shape != (len(items), dim):
        raise RuntimeError(f"encoder returned shape {out.shape}, expected {(len(items), dim)}")
    return out


def require(module: str, package: str, purpose: str) -> Any:
    """Import ``module`` or raise ``EncoderUnavailable`` naming the pip package to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise EncoderUnavailable(
            f"{purpose} needs the Python package '{package}' (import {module!r} failed: {err}). "
            f"Install it with: pip install {package}"
        ) from err
