"""Visual similarity that sees colour: the look (or joint) vector plus the colour descriptor.

The CNN image vector ignores colour (colour jitter in its training); the ``colour`` vector
(encoders/colour.py) is the photo's own colours, and the ``look`` vector (encoders/look.py) both,
in a text-aligned space. "Similar by image" ranks by look where the store has it, by the CNN
vector in a store made before look existed. Look or joint and colour are combined at query time, inside
Qdrant, as ``(1 - w) * cos(vector) + w * cos(colour)`` over the vector's nearest candidates
(``VectorStore.search_weighted``: prefetch + formula). Query time rather than a fused vector
at index time because the ranking is the same (the cosine of a weighted concatenation of unit
vectors is this weighted sum) while the weight stays a setting that needs no re-index, the
stored image vector keeps its meaning, and stores created before the colour vector keep working
(no colour vector: plain search).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..config import Settings
from ..indexing.store import Hit, ItemFilter, VectorStore, WithVectors

COLOUR = "colour"
LOOK = "look"
#: What similar items compare by (the HTTP ``modality`` and the CLI's ``--modality``). ``look`` is
#: not one of them: it serves ``image`` where the store has it (``ranked_by``), so one question
#: keeps one name whichever store answers it.
MODALITIES = ("text", "image", "joint", COLOUR)


@dataclass(frozen=True)
class ColourMix:
    """How much colour each modality gets, and how many candidates colour re-scores."""

    image: float = 0.1
    joint: float = 0.1
    candidates: int = 100
    reason_min: float = 0.9

    @classmethod
    def of(cls, settings: Settings) -> "ColourMix":
        return cls(settings.colour_weight_image, settings.colour_weight_joint, settings.colour_candidates,
                   settings.colour_reason_min)

    def weight(self, modality: str) -> float:
        """Colour's share for ``modality`` (text never gets any; ``colour`` alone is all colour)."""
        return {"image": self.image, "joint": self.joint}.get(modality, 0.0)


def ranked_by(modality: str, vectors: Mapping[str, np.ndarray]) -> str:
    """The stored vector that ``search`` ranks ``modality`` by for this query: ``look`` serves
    ``image`` where the query has one. Whatever else compares the hits (MMR's redundancy) must
    use the same vector, or it judges a ranking it did not make."""
    return LOOK if modality == "image" and vectors.get(LOOK) is not None else modality


def search(store: VectorStore, modality: str, vectors: Mapping[str, np.ndarray], k: int, mix: ColourMix,
           flt: ItemFilter | None = None, with_vectors: WithVectors = False,
           fields: Sequence[str] | None = None) -> list[Hit]:
    """Nearest items to ``vectors[modality]`` (``image`` is served by ``vectors["look"]`` where
    given), with colour mixed in where the query has a colour vector and the modality takes
    colour; a plain search otherwise."""
    weight = mix.weight(modality)
    colour = vectors.get(COLOUR)
    name = ranked_by(modality, vectors)
    if weight <= 0.0 or colour is None or modality == COLOUR:
        return store.search(name, vectors[name], k, flt, with_vectors=with_vectors, fields=fields)
    parts = [(name, vectors[name], 1.0 - weight), (COLOUR, colour, weight)]
    return store.search_weighted(parts, k, mix.candidates, flt, with_vectors=with_vectors, fields=fields)


def same_colour(query_colour: np.ndarray | None, hit: Hit, mix: ColourMix) -> bool:
    """Whether ``hit``'s photo has the query's colours (for the "same colour" reason)."""
    other = hit.vectors.get(COLOUR)
    if query_colour is None or other is None:
        return False
    return float(np.dot(query_colour, other)) >= mix.reason_min
