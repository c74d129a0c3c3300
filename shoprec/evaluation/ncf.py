"""A small NCF-style model (He et al. 2017) in torch, optionally fed content vectors.

User and item embeddings go through an MLP (over [u, i, u*i], so the GMF interaction is
available to it) to a purchase logit, trained with BCE on uniformly sampled negatives.

With item features, an item's vector is its id embedding plus a projection of its content
vector, and during training the id part is dropped at random (DropoutNet, Volkovs et al.
2017) so the model also learns to rank from content alone. Items never bought in training
are then scored through the content projection only, which is what makes this a method that
can rank cold items rather than one that merely has a vector for them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import torch
from torch import nn

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


class _NCFNet(nn.Module):
    """Embeddings + optional content projection + MLP -> one logit per (user, item)."""

    def __init__(self, n_users: int, n_items: int, dim: int, hidden: Sequence[int], n_features: int) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user.weight, std=0.05)
        nn.init.normal_(self.item.weight, std=0.05)
        self.content = nn.Linear(n_features, dim) if n_features else None
        layers: list[nn.Module] = []
        width = 3 * dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def item_vectors(self, items: torch.Tensor, features: torch.Tensor | None, keep_id: torch.Tensor) -> torch.Tensor:
        """id embedding (where ``keep_id`` is 1) plus content projection (where features exist)."""
        vec = self.item(items) * keep_id.unsqueeze(1)
        if self.content is not None and features is not None:
            vec = vec + self.content(features[items])
        return vec

    def logits(self, users: torch.Tensor, item_vecs: torch.Tensor) -> torch.Tensor:
        u = self.user(users)
        return self.mlp(torch.cat([u, item_vecs, u * item_vecs], dim=1)).squeeze(1)


class NCF:
    """Neural collaborative filtering as an evaluated ``Method`` and a candidate ranker.

    Negatives are drawn from items bought in training only: drawing never-bought items
    would teach the content tower that "new" means "unwanted", the one thing nobody can know
    about a new arrival.
    """

    can_score_cold_users = False

    def __init__(
        self,
        dim: int = 32,
        hidden: Sequence[int] = (64, 32),
        epochs: int = 5,
        negatives: int = 4,
        batch_size: int = 1024,
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-6,
        id_dropout: float = 0.5,
        seed: int = 0,
        num_threads: int = 1,
    ) -> None:
        if not 0.0 <= id_dropout < 1.0:
            raise ValueError("id_dropout must be in [0, 1)")
        self.dim, self.hidden, self.epochs, self.negatives = dim, tuple(hidden), epochs, negatives
        self.batch_size, self.learning_rate, self.weight_decay = batch_size, learning_rate, weight_decay
        self.id_dropout, self.seed, self.num_threads = id_dropout, seed, num_threads
        self.can_score_cold_items = False
        self.losses: list[float] = []  # mean training loss per epoch, for the report / debugging
        self._m: InteractionMatrix | None = None
        self._net: _NCFNet | None = None
        self._item_vecs = torch.empty(0)
        self._item_unit = np.empty((0, 0), dtype=np.float32)
        self._mask = np.empty(0)

    def fit(self, train: Sequence[Interaction], item_ids: Sequence[str], item_features: ItemFeatures | None = None) -> None:
        self._m = build_matrix(train, item_ids)
        warm = self._m.warm_items
        self.can_score_cold_items = item_features is not None
        feats = None
        if item_features is not None:
            feats = torch.from_numpy(l2_normalise_rows(dense_features(item_features, len(item_ids))))
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(self.num_threads)
        try:
            self._train(warm, feats)
        finally:
            torch.set_num_threads(previous_threads)

    def _train(self, warm: np.ndarray, feats: torch.Tensor | None) -> None:
        assert self._m is not None
        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        coo = self._m.matrix.tocoo()
        pos_users, pos_items = coo.row.astype(np.int64), coo.col.astype(np.int64)
        warm_cols = np.flatnonzero(warm)
        net = _NCFNet(len(self._m.user_ids), len(self._m.item_ids), self.dim, self.hidden,
                      0 if feats is None else feats.shape[1])
        optimiser = torch.optim.Adam(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        loss_fn = nn.BCEWithLogitsLoss()
        self.losses = []
        net.train()
        for _ in range(self.epochs):
            # A sampled negative may be something the user bought: at this sparsity (a user
            # holds ~0.1% of items) rejecting them changes nothing measurable but costs time.
            neg_items = rng.choice(warm_cols, size=pos_items.size * self.negatives)
            users = np.concatenate([pos_users, np.repeat(pos_users, self.negatives)])
            items = np.concatenate([pos_items, neg_items])
            labels = np.concatenate([np.ones(pos_items.size), np.zeros(neg_items.size)]).astype(np.float32)
            order = rng.permutation(users.size)
            users_t = torch.from_numpy(users[order])
            items_t = torch.from_numpy(items[order])
            labels_t = torch.from_numpy(labels[order])
            total, batches = 0.0, 0
            for start in range(0, users_t.numel(), self.batch_size):
                sl = slice(start, start + self.batch_size)
                keep = torch.ones(items_t[sl].numel())
                if feats is not None and self.id_dropout > 0:
                    keep = (torch.rand(keep.numel()) >= self.id_dropout).float()
                logits = net.logits(users_t[sl], net.item_vectors(items_t[sl], feats, keep))
                loss = loss_fn(logits, labels_t[sl])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += loss.item()
                batches += 1
            self.losses.append(total / max(batches, 1))
        net.eval()
        with torch.no_grad():
            all_items = torch.arange(len(self._m.item_ids))
            # Cold items keep no id part: their id embedding never received a gradient.
            self._item_vecs = net.item_vectors(all_items, feats, torch.from_numpy(warm.astype(np.float32)))
        self._net = net
        self._item_unit = l2_normalise_rows(self._item_vecs.numpy().astype(np.float32))
        self._mask = np.zeros(warm.size) if self.can_score_cold_items else np.where(warm, 0.0, -np.inf)

    def score(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray:
        """Logits for ``item_ids`` (NaN for ids outside the catalogue or unscoreable): the
        entry point for reranking another method's candidates."""
        if self._m is None or self._net is None:
            raise RuntimeError("fit first")
        out = np.full(len(item_ids), np.nan)
        row = self._m.user_row.get(user_id)
        if row is None:
            return out
        positions = [(pos, self._m.item_col[i]) for pos, i in enumerate(item_ids) if i in self._m.item_col]
        if not positions:
            return out
        pos_idx = np.array([p for p, _ in positions])
        cols = np.array([c for _, c in positions])
        out[pos_idx] = self._all_scores(row)[cols]
        out[~np.isfinite(out)] = np.nan
        return out

    def _all_scores(self, row: int) -> np.ndarray:
        assert self._net is not None
        with torch.no_grad():
            users = torch.full((self._item_vecs.shape[0],), row, dtype=torch.long)
            logits = self._net.logits(users, self._item_vecs).numpy().astype(np.float64)
        return logits + self._mask

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = frozenset()) -> Scored:
        if self._m is None:
            raise RuntimeError("fit first")
        row = self._m.user_row.get(user_id)
        if row is None:
            return []
        return top_k(self._all_scores(row), self._m.item_ids, k, exclude_cols(self._m.item_col, exclude))

    def similar_or_complementary(self, item_id: str, k: int) -> Scored | None:
        """Cosine between item vectors (id + content for warm items, content only for cold)."""
        if self._m is None:
            raise RuntimeError("fit first")
        col = self._m.item_col.get(item_id)
        if col is None or not np.isfinite(self._mask[col]):
            return []
        scores = self._item_unit @ self._item_unit[col] + self._mask
        return top_k(scores, self._m.item_ids, k, np.array([col]))
