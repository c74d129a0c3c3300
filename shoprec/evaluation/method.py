"""The one shape every evaluated recommender has: baselines, NCF and shoprec's own adapter.

Modelled on ``implicit`` (fit once, then ``recommend`` / ``similar_items`` per query) but with
string ids and an explicit ``exclude`` set, so the runner never needs a method's internal
indexing, and with declared capabilities, so "cannot score cold items" is reported as such
instead of as a zero.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol, TypeAlias, runtime_checkable

import numpy as np
import scipy.sparse as sp

from shoprec.evaluation.interactions import Interaction

#: (item_id, score), best first. Scores only order one list; they are not comparable
#: between methods.
Scored: TypeAlias = list[tuple[str, float]]

#: Rows aligned with ``item_ids`` as passed to ``fit``: dense float array or scipy sparse.
ItemFeatures: TypeAlias = np.ndarray | sp.spmatrix | sp.sparray


@runtime_checkable
class Method(Protocol):
    """A recommender under evaluation.

    ``fit`` sees training events only, plus the whole catalogue's ids (a shop knows its
    catalogue before anyone buys from it) and optional content features for those ids.

    ``recommend`` ranks catalogue items for a user, never returning ids in ``exclude``.
    ``similar_or_complementary`` answers "what goes with this item" and returns ``None``
    when the method has no notion of it (the runner then reports the method as unable,
    not as scoring zero).

    The runner asks ``recommend`` only for users seen in training unless
    ``can_score_cold_users``, and counts test purchases of items unseen in training only
    for methods that set ``can_score_cold_items``. Both flags are read after ``fit``: a
    hybrid may only gain cold-item scoring when it is given item features.
    """

    can_score_cold_items: bool
    can_score_cold_users: bool

    def fit(
        self,
        train: Sequence[Interaction],
        item_ids: Sequence[str],
        item_features: ItemFeatures | None = None,
    ) -> None: ...

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = frozenset()) -> Scored: ...

    def similar_or_complementary(self, item_id: str, k: int) -> Scored | None: ...
