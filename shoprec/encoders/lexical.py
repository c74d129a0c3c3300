"""Lexical (keyword) vectors: jieba words for Chinese, lowercase words for Latin, BM25 weights.

Dense encoders miss exact tokens a shopper types (a model number, "纯棉", a brand), so each
product also gets a sparse vector that Qdrant stores beside the dense ones and fuses with them.
Chinese has no spaces, so words come from jieba. Term ids are a stable hash (blake2b), never
Python's ``hash()``, which changes between processes and would scramble a stored index.

Document values are BM25's term-frequency part; IDF is left to Qdrant's IDF modifier on the
sparse vector, which keeps document frequencies current as the catalog changes.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from ..caching import BoundedCache
from ..vectors import SparseVec
from .base import EncoderUnavailable, require

Mode = Literal["search", "exact"]

#: Words too common to help ranking; kept tiny on purpose (product titles are short and
#: words like "top" or "新款" do carry meaning for a shop).
STOPWORDS = frozenset(
    "a an and the of for with in on to or by at from is are s".split()
    + ["的", "了", "和", "与", "及", "是", "在", "之", "或", "等"]
)

_LATIN_WORD = re.compile(r"[0-9a-z]+")
_HAS_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD_CHAR = re.compile(r"\w")
_JIEBA_LOCK = threading.Lock()


def term_id(token: str) -> int:
    """Stable 31-bit id of a token (same in every process and on every machine)."""
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def _quiet_jieba():
    jieba = require("jieba", "jieba", "Chinese word segmentation for the lexical vector")
    jieba.setLogLevel(logging.WARNING)  # jieba logs "Building prefix dict..." at DEBUG/INFO
    return jieba


class LexicalEncoder:
    """Tokens, space-joined segmentation and BM25-weighted sparse vectors for text.

    ``avg_len`` is the corpus' mean document length in tokens (set it with ``fit``); while it is
    ``None`` length normalisation is off, so single items can be encoded before a corpus exists.
    """

    name = "jieba-bm25"

    def __init__(self, user_dict: str | Path | None = None, k1: float = 1.2, b: float = 0.75,
                 avg_len: float | None = None) -> None:
        jieba = _quiet_jieba()
        # A private Tokenizer, so one encoder's user dictionary never leaks into another's.
        self._jieba = jieba.Tokenizer()
        self.user_dict = Path(user_dict) if user_dict is not None else None
        if self.user_dict is not None:
            if not self.user_dict.is_file():
                raise EncoderUnavailable(f"jieba user dictionary not found: {self.user_dict}")
            with _JIEBA_LOCK:
                self._jieba.load_userdict(str(self.user_dict))
        self.k1, self.b, self.avg_len = k1, b, avg_len
        self._tokens: BoundedCache[tuple[str, str], list[str]] = BoundedCache(50_000)

    # --- tokens ---------------------------------------------------------------------------
    def _segment(self, text: str, mode: Mode) -> list[str]:
        with _JIEBA_LOCK:  # jieba builds its dictionary lazily and is not thread-safe doing it
            if mode == "search":
                return self._jieba.lcut_for_search(text)
            return self._jieba.lcut(text)

    def tokens(self, text: str, mode: Mode = "search") -> list[str]:
        """Normalised word tokens in order (repeats kept: they are the term frequencies).

        ``search`` mode (documents) also emits the dictionary words inside long words
        (中华人民共和国 -> 中华, 人民, ...) so shorter queries still hit; ``exact`` (queries)
        keeps jieba's single best segmentation. Remembered per text: indexing segments each
        product's text twice (``fit`` for the corpus statistics, then ``encode_document``), and
        jieba was ~15% of indexing time.
        """
        if not text:
            return []
        key = (text, mode)
        found = self._tokens.get(key)
        if found is None:
            found = self._tokenise(text, mode)
            self._tokens.put(key, found)
        return list(found)

    def _tokenise(self, text: str, mode: Mode) -> list[str]:
        # NFKC turns full-width "Ｔ恤" and ideographic spaces into their plain forms.
        text = unicodedata.normalize("NFKC", text)
        out: list[str] = []
        for piece in self._segment(text, mode):
            piece = piece.strip().lower()
            if not piece or not _WORD_CHAR.search(piece):
                continue  # whitespace and punctuation
            words = [piece] if _HAS_CJK.search(piece) else _LATIN_WORD.findall(piece)
            out.extend(w for w in words if w not in STOPWORDS)
        return out

    def segmented(self, text: str, mode: Mode = "search") -> str:
        """Tokens joined by spaces: a payload field a word-splitting full-text match can use."""
        return " ".join(self.tokens(text, mode))

    # --- vectors --------------------------------------------------------------------------
    def fit(self, texts: Iterable[str]) -> "LexicalEncoder":
        """Set ``avg_len`` from a corpus (the catalog's lexical texts); returns self."""
        lengths = [len(self.tokens(t)) for t in texts]
        self.avg_len = (sum(lengths) / len(lengths)) if lengths and sum(lengths) else None
        return self

    @staticmethod
    def _sparse(weights: dict[int, float]) -> SparseVec:
        ids = sorted(weights)
        return SparseVec(indices=ids, values=[float(weights[i]) for i in ids])

    def encode_document(self, text: str) -> SparseVec:
        """BM25 TF weights ``tf*(k1+1)/(tf+k1*(1-b+b*len/avg_len))`` per term id."""
        tokens = self.tokens(text, "search")
        if not tokens:
            return SparseVec([], [])
        length_ratio = len(tokens) / self.avg_len if self.avg_len else 1.0
        norm = self.k1 * (1.0 - self.b + self.b * length_ratio)
        tf_by_id: Counter[int] = Counter()
        for token, tf in Counter(tokens).items():
            tf_by_id[term_id(token)] += tf  # a (rare) hash collision merges two terms' counts
        return self._sparse({i: tf * (self.k1 + 1.0) / (tf + norm) for i, tf in tf_by_id.items()})

    def encode_query(self, text: str) -> SparseVec:
        """Each unique query term weighs 1.0 (Qdrant multiplies in IDF at search time)."""
        return self._sparse({term_id(t): 1.0 for t in self.tokens(text, "exact")})
