"""The product's colour, from its own pixels: a soft LCh histogram of the photo's foreground.

Why a separate vector: ImageNet CNN features are trained with colour jitter, so the image vector
barely tells a red dress from a blue one, yet colour is the first thing a shopper sees. This
descriptor is cheap (a few ms on a ~96 px copy of the decoded photo, no model) and is computed
on the indexer's image threads right after decoding, beside the CNN input.

How:
- the photo is reduced to ``SIDE`` px; product photos sit on a plain light background, so the
  background colour is the median of the outer ring of pixels and a pixel counts as product in
  proportion to how far (CIE76 ΔE) it is from it. Where almost nothing differs from the
  background (a white shirt on white), the central box stands in for the product;
- pixels go to CIE Lab, then LCh (lightness, chroma, hue), because distances there follow what
  people see, and hue/chroma separate "which colour" from "how strong";
- each pixel is spread (soft, linear) over ``L_BINS`` lightness bins x (one neutral bin + ``HUE_BINS``
  hues x 2 chroma levels), so a colour on a bin edge does not flip between bins;
- the histogram is square-rooted and L2-normalised (Hellinger), so Qdrant's cosine between two
  descriptors is their Bhattacharyya coefficient: 1 for the same colour mix, 0 for disjoint ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from .base import empty

NAME = "lch-hist-v1"
#: Longer side of the copy the descriptor reads (pixels beyond this add time, not colour).
SIDE = 96
L_BINS = 5
HUE_BINS = 12
#: Chroma below ``NEUTRAL_C0`` is grey/black/white, above ``NEUTRAL_C1`` fully coloured; between, both.
NEUTRAL_C0, NEUTRAL_C1 = 6.0, 14.0
#: Chroma at which a colour moves from the "soft" to the "strong" chroma level (linearly between).
CHROMA_LOW, CHROMA_HIGH = 18.0, 40.0
#: ΔE from the background below which a pixel is background, above which it is fully product.
BG_DE0, BG_DE1 = 6.0, 16.0
#: Below this share of product pixels the mask is not trusted and the central box is used.
MIN_FOREGROUND = 0.04
DIM = L_BINS * (1 + 2 * HUE_BINS)

# sRGB (D65) -> XYZ, and the D65 white point, for Lab.
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]], dtype=np.float32)
_WHITE = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` uint8 sRGB -> CIE Lab (D65), float32."""
    c = rgb.astype(np.float32) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / _WHITE
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def _small_rgb(image: Image.Image) -> np.ndarray:
    """An RGB copy at most ``SIDE`` px long (the caller's image is left untouched)."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    w, h = rgb.size
    scale = min(1.0, SIDE / max(w, h))
    if scale < 1.0:
        rgb = rgb.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR,
                         reducing_gap=2.0)
    return np.asarray(rgb, dtype=np.uint8)


def foreground_weights(lab: np.ndarray) -> np.ndarray:
    """Per-pixel weight of "this is the product" in [0, 1], from the distance to the border colour."""
    h, w, _ = lab.shape
    ring = max(1, min(h, w) // 24)
    border = np.concatenate([lab[:ring].reshape(-1, 3), lab[-ring:].reshape(-1, 3),
                             lab[:, :ring].reshape(-1, 3), lab[:, -ring:].reshape(-1, 3)])
    background = np.median(border, axis=0)
    distance = np.linalg.norm(lab - background, axis=-1)
    weights = np.clip((distance - BG_DE0) / (BG_DE1 - BG_DE0), 0.0, 1.0)
    if weights.mean() < MIN_FOREGROUND:  # product in the background's colour: trust the centre
        weights = np.zeros((h, w), np.float32)
        weights[h // 4: h - h // 4 or h, w // 4: w - w // 4 or w] = 1.0
    return weights.astype(np.float32)


def _linear_bins(x: np.ndarray, centres: np.ndarray, circular: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soft assignment of ``x`` to the two nearest bin centres: (lower index, upper index, upper weight)."""
    n = len(centres)
    step = centres[1] - centres[0]
    pos = (x - centres[0]) / step
    if circular:
        lo = np.floor(pos).astype(np.int64)
        frac = pos - lo
        return lo % n, (lo + 1) % n, frac.astype(np.float32)
    pos = np.clip(pos, 0.0, n - 1.0)
    lo = np.minimum(np.floor(pos).astype(np.int64), n - 2)
    return lo, lo + 1, (pos - lo).astype(np.float32)


_L_CENTRES = np.linspace(10.0, 90.0, L_BINS, dtype=np.float32)
_HUE_CENTRES = np.arange(HUE_BINS, dtype=np.float32) * (360.0 / HUE_BINS)


def histogram(lab: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Soft L x (neutral | hue x chroma level) histogram of the weighted pixels, summing to 1."""
    lab = lab.reshape(-1, 3)
    weights = weights.reshape(-1)
    keep = weights > 0
    lab, weights = lab[keep], weights[keep]
    width = 1 + 2 * HUE_BINS
    if len(weights) == 0:
        return np.zeros(DIM, np.float32)
    light, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    chroma = np.hypot(a, b)
    hue = np.degrees(np.arctan2(b, a)) % 360.0
    coloured = np.clip((chroma - NEUTRAL_C0) / (NEUTRAL_C1 - NEUTRAL_C0), 0.0, 1.0)
    strong = np.clip((chroma - CHROMA_LOW) / (CHROMA_HIGH - CHROMA_LOW), 0.0, 1.0)
    l_lo, l_hi, l_up = _linear_bins(light, _L_CENTRES)
    h_lo, h_hi, h_up = _linear_bins(hue, _HUE_CENTRES, circular=True)
    index, mass = [], []
    for l_idx, l_w in ((l_lo, 1.0 - l_up), (l_hi, l_up)):
        base = weights * l_w
        index.append(l_idx * width)
        mass.append(base * (1.0 - coloured))
        for h_idx, h_w in ((h_lo, 1.0 - h_up), (h_hi, h_up)):
            for level, c_w in ((0, 1.0 - strong), (1, strong)):
                index.append(l_idx * width + 1 + 2 * h_idx + level)
                mass.append(base * coloured * h_w * c_w)
    out = np.bincount(np.concatenate(index), np.concatenate(mass), minlength=DIM).astype(np.float32)
    total = float(out.sum())
    return out / total if total > 0 else out


def describe(image: Image.Image) -> np.ndarray:
    """The colour descriptor of one decoded photo: unit length, ``DIM`` floats (Hellinger)."""
    lab = to_lab(_small_rgb(image))
    hist = np.sqrt(histogram(lab, foreground_weights(lab)))
    norm = float(np.linalg.norm(hist))
    return (hist / norm).astype(np.float32) if norm > 0 else hist


class ColourDescriptor:
    """The encoder call shape (images in, unit float32 rows out) over ``describe``."""

    name = NAME
    dim = DIM

    def encode(self, images: Sequence[Image.Image], batch_size: int = 32,
               show_progress_bar: bool = False) -> np.ndarray:
        if isinstance(images, Image.Image):
            raise TypeError("encode() takes a sequence of images, not a single Image")
        if len(images) == 0:
            return empty(DIM)
        return np.stack([describe(image) for image in images])
