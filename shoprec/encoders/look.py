"""The photo's look: its CNN features and colour descriptor, mapped into a text-aligned space.

Why: "similar by image" should find what a shopper sees as alike, and that is product type and
colour first. The CNN vector knows the type but not the colour (colour jitter in its training);
the colour descriptor knows the colour but not the type. A small head over both, trained
contrastively against the catalog's own text vectors (whose text names category and colour),
learns which of the photo's features matter to a shopper, and still reads only the photo: a
shopper's photo gets the same vector. It is the catalog-aligned joint space's recipe
(encoders/joint.py) with other image features and a hidden layer. The ten nearest photos of
1,000 validation H&M items share the query's category / catalog colour: look 0.63 / 0.60; a
linear head 0.62 / 0.57; the joint space's image head (CNN only) 0.66 / 0.42; the CNN vector
0.60 / 0.37.

The look space is trained beside the joint space (same trigger, its own folder) and stored items
get a ``look`` vector from their stored image and colour vectors, never a re-encode.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .joint import CatalogAlignedSpace, SavedSpace

NAME = "look"
DIM = 256
#: Hidden units of the heads: the non-linearity turns a colour histogram into colour names.
#: Chosen on 1,000 validation H&M items (never the test queries), top 10 with colour at 0.1,
#: category / colour share, training seconds on 17k pairs: 512 units 0.611 / 0.661, 8.8 s;
#: 256 units 0.614 / 0.662, 4.2 s; 256 units and 5 epochs 0.609 / 0.664 but held-out
#: text->photo recall fell (0.585 vs 0.604). 256 halves the fixed training cost of indexing.
HIDDEN = 256


@dataclass(frozen=True)
class _Encoders:
    """What ``CatalogAlignedSpace.build``/``saved`` read from settings: the inputs' names."""

    text_encoder: str
    image_encoder: str


def _encoders(text_encoder: str, image_encoder: str, colour: str) -> _Encoders:
    """The look space's input names: its "image encoder" is the CNN plus the colour descriptor."""
    return _Encoders(text_encoder, f"{image_encoder}+{colour}")


def features(image_vecs: np.ndarray, colour_vecs: np.ndarray) -> np.ndarray:
    """The look head's input: each photo's CNN vector beside its colour descriptor."""
    return np.hstack([np.asarray(image_vecs, np.float32), np.asarray(colour_vecs, np.float32)])


def build(text_encoder: str, image_encoder: str, colour: str, path: Path) -> CatalogAlignedSpace:
    """The look heads saved at ``path`` for these inputs, else an unfitted space."""
    names = _encoders(text_encoder, image_encoder, colour)
    saved = CatalogAlignedSpace.build(names, path)
    return saved if saved.is_fitted else CatalogAlignedSpace(names.text_encoder, names.image_encoder, DIM, HIDDEN)


def saved(text_encoder: str, image_encoder: str, colour: str, path: Path) -> SavedSpace | None:
    """``build``'s space told from its card alone (no torch)."""
    return CatalogAlignedSpace.saved(_encoders(text_encoder, image_encoder, colour), path)


def fit(space: CatalogAlignedSpace, text_vecs: np.ndarray, feature_vecs: np.ndarray, path: Path) -> CatalogAlignedSpace:
    """The look space fitted on these (text, photo features) pairs and saved at ``path``
    (saved heads are reused when trained on exactly these pairs)."""
    fitted, _ = CatalogAlignedSpace.load_or_fit(path, text_vecs, feature_vecs, space.text_encoder,
                                               space.image_encoder, dim=DIM, hidden=HIDDEN)
    return fitted
