"""Vector value types shared by the encoders (which make them) and the stores (which keep them).

They live below both layers so an encoder never imports from ``indexing``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SparseVec:
    """A sparse vector as Qdrant takes it: term ids and their weights, ids ascending."""

    indices: list[int]
    values: list[float]
