"""A cheap, clearly-labelled stand-in for content vectors: TF-IDF over catalogue text,
reduced with LSA (truncated SVD) to a small dense float32 matrix.

It exists so content-aware baselines (content kNN, LightFM features, NCF's feature tower)
can be measured before shoprec's encoders produce real embeddings; swap in those
embeddings (same shape: one row per catalogue item) and nothing else changes. It is not
shoprec's model, and the report says so.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from shoprec.catalog import Product, RowError, read_catalog

#: Name shown in reports wherever these features are used.
STAND_IN_LABEL = "stand-in content vectors: TF-IDF(title, category, description, attributes) -> LSA"

#: Attributes left out of the text: the product code is an identifier shared by colour
#: variants, not content an encoder would read from text or photo.
_SKIP_ATTRIBUTES = frozenset({"product_code"})
_WORD = re.compile(r"[a-z0-9]+")


def read_products(path: Path) -> list[Product]:
    """Every catalogue row, or a ``ValueError`` naming the first bad one: an evaluation over
    a silently shortened catalogue would misstate coverage and cold-item counts."""
    products: list[Product] = []
    for row in read_catalog(Path(path)):
        if isinstance(row, RowError):
            raise ValueError(f"{path}: {row}")
        products.append(row.product)
    return products


def product_tokens(product: Product) -> list[str]:
    """Lower-cased words of title, category and description, plus one ``name=value`` token per
    attribute so "colour=black" and a title word "black" stay distinct features."""
    text = " ".join(p for p in (product.title, product.category, product.description) if p)
    tokens = _WORD.findall(text.lower())
    tokens += [
        f"{name}={value.strip().lower()}"
        for name, value in sorted(product.attributes.items())
        if name not in _SKIP_ATTRIBUTES and value.strip()
    ]
    return tokens


def tfidf_matrix(documents: Sequence[Sequence[str]], min_df: int = 2) -> tuple[sp.csr_matrix, list[str]]:
    """Rows: documents; columns: tokens seen in >= ``min_df`` documents (sorted, so the
    vocabulary is reproducible). Sublinear tf, smoothed idf, unit-length rows."""
    df: Counter[str] = Counter()
    for doc in documents:
        df.update(set(doc))
    vocab = sorted(t for t, n in df.items() if n >= min_df)
    col = {t: i for i, t in enumerate(vocab)}
    n_docs = len(documents)
    idf = np.array([math.log((1 + n_docs) / (1 + df[t])) + 1.0 for t in vocab], dtype=np.float64)
    rows, cols, vals = [], [], []
    for r, doc in enumerate(documents):
        for token, count in Counter(t for t in doc if t in col).items():
            rows.append(r)
            cols.append(col[token])
            vals.append((1.0 + math.log(count)) * idf[col[token]])
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(n_docs, len(vocab)), dtype=np.float64)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return (sp.diags(inv) @ matrix).tocsr(), vocab


def lsa(matrix: sp.spmatrix, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Truncated SVD to ``dim`` dense columns (U * S), rows unit length, float32.

    The start vector is seeded and each component's sign fixed (largest entry positive) so
    the same catalogue always gives the same vectors.
    """
    dim = min(dim, min(matrix.shape) - 1)
    if dim < 1:
        raise ValueError(f"matrix {matrix.shape} too small for LSA")
    v0 = np.random.default_rng(seed).standard_normal(min(matrix.shape))
    u, s, _ = svds(matrix.astype(np.float64), k=dim, v0=v0, random_state=seed)
    order = np.argsort(-s)
    vecs = u[:, order] * s[order]
    signs = np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(vecs.shape[1])])
    vecs = vecs * np.where(signs == 0, 1.0, signs)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return np.divide(vecs, norms, out=np.zeros_like(vecs), where=norms > 0).astype(np.float32)


def stand_in_item_features(products: Sequence[Product], dim: int = 64, seed: int = 0) -> np.ndarray:
    """One dense unit vector per product, rows in ``products`` order."""
    matrix, _ = tfidf_matrix([product_tokens(p) for p in products])
    return lsa(matrix, dim=dim, seed=seed)
