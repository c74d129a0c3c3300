"""LightFM hybrid baseline (Kula 2015): items are the sum of an id embedding and
content-feature embeddings, trained with WARP on training purchases.

It is the standard published answer to "CF that still ranks new items", so it is the
baseline shoprec's content-aware recommender must be compared with on cold items.

``lightfm`` is optional and its sdist does not build with current setuptools (setup.py fails
with "'dict' object has no attribute '__LIGHTFM_SETUP__'"); it builds with
``pip install --no-build-isolation lightfm`` where setuptools < 70 is installed. Where the
import fails, constructing this baseline raises ``ImportError`` with that reason so the
report can list the method as unavailable instead of omitting it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import scipy.sparse as sp

from shoprec.evaluation.baselines._matrix import (
    InteractionMatrix,
    build_matrix,
    dense_features,
    exclude_cols,
    l2_normalise_rows,
    top_k,
)
from shoprec.evaluation.interactions import Interaction
from shoprec.evaluation.method import ItemFeatures, Scored


def lightfm_unavailable_reason() -> str | None:
    """None when ``lightfm`` imports, else why not (shown in the report)."""
    try:
        import lightfm  # noqa: F401
        from lightfm import LightFM  # noqa: F401
    except ImportError as err:
        return (f"lightfm not importable ({err}); its sdist fails to build with setuptools >= 70 "
                "('dict' object has no attribute '__LIGHTFM_SETUP__'): install with setuptools<70 "
                "and `pip install --no-build-isolation lightfm`")
    return None


class LightFMHybrid:
    """WARP LightFM with item features [id one-hot | unit content vector].

    Items never bought in training get no id feature, only content: an id embedding that
    was never trained is noise, and the content part is exactly what LightFM offers for new
    items. Without ``item_features`` it degrades to plain WARP matrix factorisation and
    stops claiming cold items.
    """

    can_score_cold_users = False

    def __init__(
        self,
        components: int = 32,
        epochs: int = 15,
        learning_rate: float = 0.05,
        item_alpha: float = 1e-6,
        seed: int = 0,
    ) -> None:
        reason = lightfm_unavailable_reason()
        if reason is not None:
            raise ImportError(reason)
        self.components = components
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.item_alpha = item_alpha
        self.seed = seed
        self.can_score_cold_items = False
        self._m: InteractionMatrix | None = None
        self._user_emb = np.empty((0, 0), dtype=np.float32)
        self._user_bias = np.empty(0, dtype=np.float32)
        self._item_emb = np.empty((0, 0), dtype=np.float32)
        self._item_bias = np.empty(0, dtype=np.float32)
        self._item_unit = np.empty((0, 0), dtype=np.float32)
        self._mask = np.empty(0)

    def _item_feature_matrix(self, warm: np.ndarray, item_features: ItemFeatures | None) -> sp.csr_matrix:
        identity = sp.diags(warm.astype(np.float32)).tocsr()
        if item_features is None:
            return identity
        content = l2_normalise_rows(dense_features(item_features, warm.size))
        return sp.hstack([identity, sp.csr_matrix(content)], format="csr", dtype=np.float32)

    def fit(self, train: Sequence[Interaction], item_ids: Sequence[str], item_features: ItemFeatures | None = None) -> None:
        from lightfm import LightFM

        self._m = build_matrix(train, item_ids)
        warm = self._m.warm_items
        features = self._item_feature_matrix(warm, item_features)
        self.can_score_cold_items = item_features is not None
        model = LightFM(
            no_components=self.components,
            loss="warp",
            learning_rate=self.learning_rate,
            item_alpha=self.item_alpha,
            random_state=self.seed,
        )
        # One thread: LightFM's Hogwild updates are only reproducible single-threaded.
        model.fit(self._m.matrix.tocoo(), item_features=features, epochs=self.epochs, num_threads=1)
        self._user_bias, self._user_emb = model.get_user_representations()
        self._item_bias, self._item_emb = model.get_item_representations(features)
        self._item_unit = l2_normalise_rows(np.asarray(self._item_emb, dtype=np.float32))
        self._mask = np.zeros(len(item_ids)) if self.can_score_cold_items else np.where(warm, 0.0, -np.inf)

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = frozenset()) -> Scored:
        if self._m is None:
            raise RuntimeError("fit first")
        row = self._m.user_row.get(user_id)
        if row is None:
            return []
        scores = self._item_emb @ self._user_emb[row] + self._item_bias + self._mask
        return top_k(scores, self._m.item_ids, k, exclude_cols(self._m.item_col, exclude))

    def similar_or_complementary(self, item_id: str, k: int) -> Scored | None:
        """Cosine between item representations (id + content)."""
        if self._m is None:
            raise RuntimeError("fit first")
        col = self._m.item_col.get(item_id)
        if col is None or not np.isfinite(self._mask[col]):
            return []
        scores = self._item_unit @ self._item_unit[col] + self._mask
        return top_k(scores, self._m.item_ids, k, np.array([col]))
