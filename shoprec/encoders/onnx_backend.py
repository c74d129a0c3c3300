"""Run a torch image model's inference on ONNX Runtime: export once, cache, verify, or fall back.

Why: on small CPUs ONNX Runtime runs EfficientNet-Lite0 about 4x faster than eager torch (fused
convolutions, no Python per layer), and encoding photos is what makes indexing a catalog slow.
Only inference moves; anything that trains keeps torch.

How it stays safe:
- the exported file is keyed by model name + a hash of the weights + the torch, onnx and opset
  versions, so a changed model or toolchain exports a new file instead of reusing a stale one;
- the export is written to a temporary file and renamed into place, so a crash or a second
  process never leaves a half-written model under the final name;
- every load runs a few fixed synthetic pictures through both torch and ONNX Runtime and
  requires cosine >= ``PARITY_MIN_COSINE`` per row; a file that fails (or does not load) is
  exported again once, and if that fails too the encoder stays on torch with a warning.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from shoprec.files import write_atomic

from .base import EncoderUnavailable
from .threads import available_cores

log = logging.getLogger("shoprec.encoders")

Backend = Literal["auto", "onnx", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "onnx", "torch")

#: Opset of the export: supported by every onnxruntime release since 1.12 and by torch's
#: TorchScript-based exporter, which needs no ``onnxscript`` (unlike the dynamo exporter).
OPSET = 17

#: Lowest cosine between the torch and ONNX vector of one sample picture that still counts as
#: the same model (float32 reorderings give ~0.9999999; a wrong graph gives far less).
PARITY_MIN_COSINE = 0.999

#: Synthetic pictures checked on every load: an odd count, so the dynamic batch axis is exercised
#: with a batch size the export did not trace.
PARITY_SAMPLES = 3

#: Whether ONNX Runtime's intra-op threads busy-wait between parallel sections. Off: on a small,
#: shared CPU the spinning threads take cycles from the indexer's decode/resize workers, the text
#: encoder and other processes; measured here (2 cores, other load present) spin-off was faster
#: in every setting (forward alone 88 vs 80 images/s, with resizing beside it 75-79 vs 51-64).
ALLOW_SPINNING = False

Forward = Callable[[np.ndarray], np.ndarray]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/shoprec/onnx`` (``~/.cache/shoprec/onnx``): one export serves every store,
    because the file depends on the model alone, not on a catalog."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "shoprec" / "onnx"


def weights_digest(model: Any) -> str:
    """SHA-256 over the model's state dict (names, dtypes, shapes, bytes), in order."""
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{key}:{array.dtype}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def cache_file(cache_dir: Path, name: str, model: Any, image_size: int) -> Path:
    """Where the export of ``model`` lives; any change to weights or toolchain changes the name."""
    import onnx
    import torch

    key = json.dumps({"weights": weights_digest(model), "torch": torch.__version__, "onnx": onnx.__version__,
                      "opset": OPSET, "image_size": image_size}, sort_keys=True)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"
    return Path(cache_dir) / f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.onnx"


def pooled_features_module(model: Any) -> Any:
    """The module exported: timm's pooled pre-classifier features (the image vector)."""
    import torch

    class PooledFeatures(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixels: Any) -> Any:
            return self.inner.forward_head(self.inner.forward_features(pixels), pre_logits=True)

    return PooledFeatures(model).eval()


#: Counts exports in this process (tests read it to prove the cache is used).
EXPORTS = {"count": 0}


def export_bytes(model: Any, image_size: int) -> bytes:
    """The ONNX model of ``model``'s pooled features, with a dynamic batch axis."""
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter announces its deprecation in favour of the dynamo one, which
        # would add onnxscript as a dependency; it still exports this model exactly.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            pooled_features_module(model), torch.zeros(2, 3, image_size, image_size), buffer,
            dynamo=False, opset_version=OPSET, input_names=["pixels"], output_names=["features"],
            dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
        )
    EXPORTS["count"] += 1
    return buffer.getvalue()


class OnnxRunner:
    """An ONNX Runtime session on the CPU: ``(n, 3, S, S)`` float32 pixels -> ``(n, dim)`` features."""

    def __init__(self, model: str | bytes, source: str) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = available_cores()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if ALLOW_SPINNING else "0")
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.source = source
        self.parity: tuple[float, float] | None = None  # (min, max) cosine against torch on load

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(pixels, dtype=np.float32)
        return self.session.run(None, {self.input_name: batch})[0]


def parity_images(count: int = PARITY_SAMPLES, size: int = 256) -> list[Image.Image]:
    """Deterministic synthetic pictures (coloured shapes on a gradient): edges and colour, no files."""
    rng = np.random.default_rng(20261129)
    images = []
    for _ in range(count):
        ramp = np.linspace(0, 255, size, dtype=np.float32)
        base = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (size, 1)),
                         np.tile(ramp[:, None], (1, size))], axis=-1)
        image = Image.fromarray((base * rng.uniform(0.3, 1.0, 3)).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(8):
            x, y = (int(v) for v in rng.integers(0, size - 24, 2))
            w, h = (int(v) for v in rng.integers(16, size // 2, 2))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape([x, y, x + w, y + h], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        images.append(image)
    return images


def row_cosines(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``candidate`` with the same row of ``reference``."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        return np.full(len(reference), -1.0)
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    return (reference * candidate).sum(axis=1) / np.maximum(norms, 1e-12)


@dataclass
class _Attempt:
    runner: OnnxRunner | None
    problem: str | None


def _open(model: str | bytes, source: str, samples: np.ndarray, reference: np.ndarray) -> _Attempt:
    """Load a session and check it against torch; never raises for a bad file or graph."""
    try:
        runner = OnnxRunner(model, source)
        cosines = row_cosines(reference, runner(samples))
    except Exception as err:  # noqa: BLE001 - a corrupt or foreign file is a reason to re-export
        return _Attempt(None, f"{source} did not load or run ({type(err).__name__}: {err})")
    if not np.all(np.isfinite(cosines)) or cosines.min() < PARITY_MIN_COSINE:
        return _Attempt(None, f"{source} disagrees with torch (lowest cosine {np.nan_to_num(cosines).min():.6f} "
                              f"< {PARITY_MIN_COSINE})")
    runner.parity = (float(cosines.min()), float(cosines.max()))
    return _Attempt(runner, None)


def onnx_runtime_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def load_runner(name: str, model: Any, image_size: int, samples: np.ndarray, reference_forward: Forward,
                backend: str, cache_dir: Path | None) -> OnnxRunner | None:
    """An ONNX Runtime runner that matches ``model`` on ``samples``, or None to stay on torch.

    ``backend`` "torch" never touches ONNX; "auto" uses it when onnx + onnxruntime import and
    parity holds; "onnx" is the same but a missing package is an error rather than a quiet
    fallback. A runner that fails parity is never returned: wrong vectors are worse than slow ones.
    """
    if backend not in BACKENDS:
        raise ValueError(f"image backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return None
    if not onnx_runtime_available():
        if backend == "onnx":
            raise EncoderUnavailable(
                f"image encoder {name!r}: SHOPREC_IMAGE_BACKEND=onnx needs the Python packages 'onnx' and "
                "'onnxruntime'. Install them with: pip install onnx onnxruntime (or set the backend to auto/torch)")
        log.info("image encoder %s runs on torch: onnx/onnxruntime are not installed", name)
        return None
    reference = np.asarray(reference_forward(samples), dtype=np.float32)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        path = cache_file(cache_dir, name, model, image_size)
    except Exception as err:  # noqa: BLE001 - hashing/import trouble must not stop the encoder
        log.warning("image encoder %s stays on torch: could not key its ONNX export (%s)", name, err)
        return None
    problems: list[str] = []
    if path.is_file():
        attempt = _open(str(path), str(path), samples, reference)
        if attempt.runner is not None:
            log.info("image encoder %s runs on ONNX Runtime (%s, parity cosine >= %.9f)",
                     name, path, attempt.runner.parity[0])
            return attempt.runner
        problems.append(attempt.problem or "")
        log.warning("cached ONNX export rejected, exporting again: %s", attempt.problem)
    try:
        data = export_bytes(model, image_size)
    except Exception as err:  # noqa: BLE001 - an architecture the exporter cannot handle stays on torch
        log.warning("image encoder %s stays on torch: ONNX export failed (%s: %s)", name, type(err).__name__, err)
        return None
    try:
        write_atomic(path, data)
        model_ref: str | bytes = str(path)
    except OSError as err:
        log.warning("could not cache the ONNX export of %s in %s (%s); using it uncached for this process",
                    name, cache_dir, err)
        model_ref = data
    attempt = _open(model_ref, str(path) if isinstance(model_ref, str) else "in-memory export", samples, reference)
    if attempt.runner is None:
        problems.append(attempt.problem or "")
        log.warning("image encoder %s falls back to torch (slower, same vectors): %s", name, "; ".join(problems))
        if isinstance(model_ref, str):
            Path(model_ref).unlink(missing_ok=True)  # do not leave a file every load would reject
        return None
    log.info("image encoder %s exported to ONNX (%s) and runs on ONNX Runtime (parity cosine >= %.9f)",
             name, attempt.runner.source, attempt.runner.parity[0])
    return attempt.runner
