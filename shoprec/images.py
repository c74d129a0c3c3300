"""Opening product images without trusting them.

Every failure is an ``ImageError`` with a reason a merchandiser can act on (missing file,
path escaping the catalog folder, too many bytes, too many pixels, a side too long or too thin,
truncated or corrupt data). Pixels are only decoded after the header has been checked, so a
decompression bomb costs a header read, not gigabytes; and an image is decoded straight down to
a working size (JPEG at reduced DCT scale, others reduced right after decoding), because every
later step (letterboxing to a square above all) costs memory in the square of the longer side.
Remote URLs go through ``safe_fetch`` (no requests to the server's own network, one generic
error text).
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

from PIL import Image, UnidentifiedImageError

from shoprec.safe_fetch import Budget, FetchError, FetchPolicy, fetch

#: Longer side images are reduced to right after decoding: comfortably above what the encoders
#: read (224 px for EfficientNet-Lite0, up to ~448 for CLIP variants), small enough that padding
#: to a square costs at most 3 MiB.
WORKING_SIDE = 1024

#: Modes PIL resizes directly; others (palette, 16-bit, CMYK...) become RGB before reducing.
_RESIZABLE_MODES = {"RGB", "RGBA", "L", "LA"}


class ImageError(ValueError):
    """An image that cannot be used; the item is still indexed by text."""


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 25_000_000
    max_side: int = 10_000
    max_aspect: float = 20.0
    working_side: int = WORKING_SIDE
    allow_remote: bool = False
    allow_private_hosts: bool = False
    timeout_s: float = 3.0
    deadline_s: float = 5.0
    max_redirects: int = 3

    @property
    def fetch_policy(self) -> FetchPolicy:
        return FetchPolicy(max_bytes=self.max_bytes, timeout_s=self.timeout_s, deadline_s=self.deadline_s,
                           max_redirects=self.max_redirects, allow_private=self.allow_private_hosts)


def is_remote(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


def resolve_local(ref: str, base_dir: Path) -> Path:
    """A relative path must stay inside the catalog's folder; absolute paths are the shop's call."""
    if "\x00" in ref:
        raise ImageError("image path contains a NUL byte")
    candidate = Path(ref)
    if candidate.is_absolute():
        return candidate
    base = base_dir.resolve()
    resolved = (base / candidate).resolve()
    if not resolved.is_relative_to(base):
        raise ImageError(f"image path {ref!r} escapes the catalog folder")
    return resolved


def read_image_bytes(ref: str, base_dir: Path, limits: ImageLimits, budget: Budget | None = None) -> bytes:
    """The file's bytes, or a remote URL's (``budget``: the batch's shared fetch time)."""
    if is_remote(ref):
        if not limits.allow_remote:
            raise ImageError("remote images are disabled (set SHOPREC_ALLOW_REMOTE_IMAGES=true to fetch URLs)")
        try:
            data = fetch(ref, limits.fetch_policy, budget)
        except FetchError as err:
            raise ImageError(str(err)) from err  # the generic text: no hosts, ports or reasons leak
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


def check_header_size(width: int, height: int, limits: ImageLimits) -> None:
    """Refuse sizes whose decoding or squaring would cost far more than the file suggests."""
    if width < 1 or height < 1:
        raise ImageError(f"image is {width}x{height} pixels: it has no pixels")
    if width * height > limits.max_pixels:
        raise ImageError(
            f"image is {width}x{height} pixels, over the {limits.max_pixels} pixel limit "
            "(possible decompression bomb)"
        )
    if max(width, height) > limits.max_side:
        raise ImageError(f"image is {width}x{height} pixels: its longer side is over the {limits.max_side} px limit")
    if max(width, height) / min(width, height) > limits.max_aspect:
        raise ImageError(f"image is {width}x{height} pixels: wider or taller than "
                         f"{limits.max_aspect:g}:1, not a product photo")


def _working_size(width: int, height: int, side: int) -> tuple[int, int]:
    scale = min(1.0, side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def decode_image(data: bytes, limits: ImageLimits) -> Image.Image:
    """Check the header, then decode (catching truncation) straight down to the working size, in RGB."""
    if not data:
        raise ImageError("image file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            probe = Image.open(io.BytesIO(data))
            width, height = probe.size
            check_header_size(width, height, limits)
            target = _working_size(width, height, limits.working_side)
            if probe.format == "JPEG":
                probe.draft("RGB", target)  # DCT scaling: a 6000 px JPEG decodes at 750..1500 px
            probe.load()
            image: Image.Image = probe
            if image.mode not in _RESIZABLE_MODES:
                image = image.convert("RGB")
            if max(image.size) > limits.working_side:
                image.thumbnail((limits.working_side, limits.working_side), Image.Resampling.BICUBIC)
            return image.convert("RGB")
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"decompression bomb rejected: {err}") from err
    except UnidentifiedImageError as err:
        raise ImageError("not a recognised image format (corrupt file?)") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"corrupt or truncated image: {err}") from err


def load_image(ref: str, base_dir: Path, limits: ImageLimits, budget: Budget | None = None) -> Image.Image:
    return decode_image(read_image_bytes(ref, base_dir, limits, budget), limits)


def _local_photo(ref: str | None, base_dir: Path) -> tuple[Path, os.stat_result] | str:
    """A local photo's path and stat, or the fingerprint that stands for a photo without them:
    "" for none, the URL of a remote one, ``REF:missing`` for one that cannot be found."""
    if not ref:
        return ""
    if is_remote(ref):
        return ref
    try:
        path = resolve_local(ref, base_dir)
        return path, path.stat()
    except (ImageError, OSError):
        return f"{ref}:missing"


def image_fingerprint(ref: str | None, base_dir: Path) -> str:
    """Cheap change detector for the content hash: size + mtime of a local file, the URL otherwise."""
    found = _local_photo(ref, base_dir)
    if isinstance(found, str):
        return found
    path, stat = found
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


def image_content_fingerprint(ref: str | None, base_dir: Path, max_bytes: int) -> str:
    """The photo's bytes (SHA-256) instead of its size and mtime: read only when the cheap
    fingerprint changed, so a photo copied anew (a fresh clone, a restored backup, a re-provisioned
    volume: new mtimes, same bytes) is recognised without decoding or encoding it again. Only a
    regular file within ``max_bytes`` is read; anything else is left to the loader to report."""
    found = _local_photo(ref, base_dir)
    if isinstance(found, str):
        return found
    path, stat = found
    if not S_ISREG(stat.st_mode) or stat.st_size > max_bytes:
        return f"{ref}:unreadable"
    try:
        with path.open("rb") as f:
            return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return f"{ref}:missing"
