"""Image preprocessing in PIL + numpy: square, resize, ImageNet-normalise, CHW float32.

Done by hand rather than with torchvision transforms so the pixels fed to the network do not
depend on torchvision's version, and so the "pad" mode can letterbox tall product photos
(H&M's are 224x336) instead of cropping away the top and bottom of a garment.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Fit = Literal["pad", "crop"]

#: Before squaring, the longer side is cut to this many times the network's input size. Padding
#: costs memory in the square of the longer side (a 20000x1950 photo padded as is needs 1.2 GB);
#: at 4x the final bicubic resize still sees plenty of pixels, so the result barely changes.
PAD_HEADROOM = 4


def _edge_colour(image: Image.Image) -> tuple[int, int, int]:
    """Mean colour of the border pixels: padding in it looks like the studio background."""
    pixels = np.asarray(image, dtype=np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    r, g, b = border.mean(axis=0).round().astype(int)
    return int(r), int(g), int(b)


def to_square(image: Image.Image, fit: Fit) -> Image.Image:
    """Make the picture square: letterbox it ("pad", keeps the whole product) or centre-crop."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height) if fit == "pad" else min(width, height)
    if fit == "pad":
        canvas = Image.new("RGB", (side, side), _edge_colour(image))
        canvas.paste(image, ((side - width) // 2, (side - height) // 2))
        return canvas
    if fit == "crop":
        left, top = (width - side) // 2, (height - side) // 2
        return image.crop((left, top, left + side, top + side))
    raise ValueError(f"unknown fit {fit!r}: use 'pad' or 'crop'")


def preprocess(
    image: Image.Image,
    size: int = 224,
    fit: Fit = "pad",
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> np.ndarray:
    """One PIL image -> ``(3, size, size)`` float32 normalised array."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL.Image.Image, got {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise ValueError("image has no pixels")
    rgb = image.convert("RGB")  # palette, greyscale, RGBA and CMYK all become plain RGB
    longest = PAD_HEADROOM * size
    if max(rgb.size) > longest:
        scale = longest / max(rgb.size)
        shrunk = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        rgb = rgb.resize(shrunk, Image.Resampling.BICUBIC, reducing_gap=2.0)
    square = to_square(rgb, fit).resize((size, size), Image.Resampling.BICUBIC)
    array = np.asarray(square, dtype=np.float32) / 255.0
    array = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))
