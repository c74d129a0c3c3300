"""Opening product images without trusting them.

Every failure is an ``ImageError`` with a reason a merchandiser can act on (missing file,
path escaping the catalog folder, too many bytes, too many pixels, truncated or corrupt data).
Pixels are only decoded after the header has been checked, so a decompression bomb costs a
header read, not gigabytes.
"""

from __future__ import annotations

import io
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError


class ImageError(ValueError):
    """An image that cannot be used; the item is still indexed by text."""


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    allow_remote: bool = True
    timeout_s: float = 10.0


def is_remote(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


def resolve_local(ref: str, base_dir: Path) -> Path:
    """A relative path must stay inside the catalog's folder; absolute paths are the shop's call."""
    candidate = Path(ref)
    if candidate.is_absolute():
        return candidate
    base = base_dir.resolve()
    resolved = (base / candidate).resolve()
    if not resolved.is_relative_to(base):
        raise ImageError(f"image path {ref!r} escapes the catalog folder")
    return resolved


def read_image_bytes(ref: str, base_dir: Path, limits: ImageLimits) -> bytes:
    if is_remote(ref):
        if not limits.allow_remote:
            raise ImageError(f"remote images are disabled: {ref}")
        try:
            with urllib.request.urlopen(ref, timeout=limits.timeout_s) as response:  # noqa: S310 (http/https only)
                data = response.read(limits.max_bytes + 1)
        except OSError as err:
            raise ImageError(f"could not fetch {ref}: {err}") from err
    else:
        path = resolve_local(ref, base_dir)
        if not path.is_file():
            raise ImageError(f"image file not found: {path}")
        if path.stat().st_size > limits.max_bytes:
            raise ImageError(f"image is {path.stat().st_size} bytes, over the {limits.max_bytes} limit")
        data = path.read_bytes()
    if len(data) > limits.max_bytes:
        raise ImageError(f"image is over the {limits.max_bytes} byte limit")
    return data


def decode_image(data: bytes, limits: ImageLimits) -> Image.Image:
    """Validate the header, then decode fully (catching truncation) into RGB."""
    if not data:
        raise ImageError("image file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            probe = Image.open(io.BytesIO(data))
            width, height = probe.size
            if width * height > limits.max_pixels:
                raise ImageError(
                    f"image is {width}x{height} pixels, over the {limits.max_pixels} pixel limit "
                    "(possible decompression bomb)"
                )
            probe.load()
            return probe.convert("RGB")
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"decompression bomb rejected: {err}") from err
    except UnidentifiedImageError as err:
        raise ImageError("not a recognised image format (corrupt file?)") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"corrupt or truncated image: {err}") from err


def load_image(ref: str, base_dir: Path, limits: ImageLimits) -> Image.Image:
    return decode_image(read_image_bytes(ref, base_dir, limits), limits)


def image_fingerprint(ref: str | None, base_dir: Path) -> str:
    """Cheap change detector for the content hash: size + mtime of a local file, the URL otherwise."""
    if not ref:
        return ""
    if is_remote(ref):
        return ref
    try:
        path = resolve_local(ref, base_dir)
        stat = path.stat()
    except (ImageError, OSError):
        return f"{ref}:missing"
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"
