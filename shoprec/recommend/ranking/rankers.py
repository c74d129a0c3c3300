"""Rankers over candidate features: a hand-tuned blend and a LightGBM model learned per shop.

Both have one method, ``score(X) -> np.ndarray`` (higher first). The learned ranker is a
versioned file beside the store (``STORE/ranker/``: the LightGBM text model plus a JSON card
with its feature list, training window, validation figures and importances) or, with
PostgreSQL, a row of its ``models`` table (model_store.py); the blend is what
serves when there is no model, too few events to train one, or the model lost to the blend by
more than the noise on its own validation window.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .features import FEATURES

MODEL_FILE = "model.txt"
CARD_FILE = "card.json"


class Ranker(Protocol):
    name: str

    def score(self, x: np.ndarray, top: int | None = None) -> np.ndarray:
        """Scores of the candidate rows, higher first. ``top``: only the order of the best
        ``top`` rows is read; a ranker may then place the others below them more cheaply."""
        ...


def _column(x: np.ndarray, name: str) -> np.ndarray:
    return np.nan_to_num(x[:, FEATURES.index(name)].astype(np.float64), nan=0.0)


def _scaled(v: np.ndarray) -> np.ndarray:
    top = float(np.max(v)) if len(v) else 0.0
    return v / top if top > 0 else v


#: Hand-tuned on H&M's self-split (bench/tune_ranker.py): each term is scaled to [0, 1] within
#: one user's candidates, so the weights compare evidence, not units.
BLEND_WEIGHTS: Mapping[str, float] = {
    "own_weight": 1.0, "variant_weight": 0.5, "sim_max": 1.0, "src_co_bought": 0.4, "src_shoppers": 0.4,
    "pop_7d": 0.3, "pop_decayed": 0.3, "group_affinity": 0.3, "src_segment": 0.2, "src_new": 0.1,
    "sim_session": 1.5,
}


#: For shoppers with no history: long-run best sellers (on sparse shops all-time popularity
#: beat last-week popularity for new users: 0.0032 vs 0.0023 NDCG@10 on H&M's time split),
#: what their segment buys, then recency.
COLD_BLEND_WEIGHTS: Mapping[str, float] = {
    "pop_all": 1.0, "pop_decayed": 0.5, "pop_7d": 0.2, "src_segment": 0.5, "src_new": 0.1,
}


@dataclass
class BlendRanker:
    weights: Mapping[str, float] = field(default_factory=lambda: dict(BLEND_WEIGHTS))
    name: str = "blend"

    def score(self, x: np.ndarray, top: int | None = None) -> np.ndarray:
        total = np.zeros(len(x))
        for feature, w in self.weights.items():
            col = _column(x, feature)
            if feature.startswith("sim_"):
                total += w * np.clip(col, 0.0, 1.0)
            else:
                total += w * _scaled(np.maximum(col, 0.0))
        return total


#: Trees that screen a large pool before the whole model scores its best rows (``LearnedRanker``;
#: ``SHOPREC_RANKER_SCREEN_TREES`` sets it for a service).
SCREEN_TREES = 50


class LearnedRanker:
    """A LightGBM booster with the card it was trained under."""

    def __init__(self, booster: Any, card: dict[str, Any]) -> None:
        self.booster = booster
        self.card = card
        self.name = f"lightgbm@{card.get('version', '?')}"
        self.trees = int(booster.current_iteration())
        self.screen_trees = SCREEN_TREES  # 0: every row through every tree
        self._parts: tuple[int, Any, Any] | None = None  # (screen trees, their booster, the rest's)
        self._parts_lock = threading.Lock()

    def score(self, x: np.ndarray, top: int | None = None) -> np.ndarray:
        """With ``top`` (a feed reads its best few hundred of ~550 candidates), a cascade: the
        first ``screen_trees`` trees score every row, the rest only the ``top`` best of those.
        Walking the trees is most of a computed feed's CPU, and this cuts it by ~45 %; on 300 H&M
        shoppers the top 10 was the same as the whole model's for 296 (5 items of 3,000
        differed). Rows screened out keep their screening order, below every row kept."""
        first = self.screen_trees
        if top is None or top <= 0 or len(x) <= top or first <= 0 or self.trees <= 2 * first:
            return self._predict(self.booster, x)
        head, tail = self._split(first)
        screen = self._predict(head, x)
        kept = np.argpartition(-screen, top)[:top]
        full = screen[kept] + self._predict(tail, x[kept])
        out = screen - screen.max() + full.min() - 1.0
        out[kept] = full
        return out

    def _split(self, first: int) -> tuple[Any, Any]:
        """The model cut into its first ``first`` trees and the rest, as two boosters made once.
        One booster asked for different tree ranges by concurrent feeds is not safe: LightGBM
        keeps the range of the last call on the booster (its predictions are thread-safe only
        for the same range), and feeds are computed on several threads at once."""
        with self._parts_lock:
            if self._parts is None or self._parts[0] != first:
                import lightgbm as lgb

                self._parts = (first, lgb.Booster(model_str=self.booster.model_to_string(num_iteration=first)),
                               lgb.Booster(model_str=self.booster.model_to_string(start_iteration=first)))
            return self._parts[1], self._parts[2]

    @staticmethod
    def _predict(booster: Any, x: np.ndarray) -> np.ndarray:
        return np.asarray(booster.predict(x, num_threads=1), dtype=np.float64)

    @property
    def version(self) -> str:
        return str(self.card.get("version", ""))

    def importances(self) -> dict[str, float]:
        gains = self.booster.feature_importance(importance_type="gain")
        total = float(np.sum(gains)) or 1.0
        return {f: round(float(g) / total, 4) for f, g in sorted(zip(FEATURES, gains), key=lambda p: -p[1])}

    def save(self, folder: Path) -> Path:
        """Write model + card into ``folder/VERSION`` and point ``folder/current`` at it."""
        target = folder / self.version
        target.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(target / MODEL_FILE))
        return save_card(folder, self.card)

    def to_text(self) -> str:
        """The LightGBM text model (what ``save`` writes; the models table stores it too)."""
        return str(self.booster.model_to_string())

    @staticmethod
    def usable(card: dict[str, Any]) -> bool:
        """Whether a card's model serves and fits this code's feature list (a model from another
        version is never misread)."""
        return list(card.get("features", [])) == list(FEATURES) and bool(card.get("serves", False))

    @classmethod
    def from_text(cls, text: str, card: dict[str, Any]) -> "LearnedRanker":
        import lightgbm as lgb

        return cls(lgb.Booster(model_str=text), card)

    @classmethod
    def load(cls, folder: Path) -> "LearnedRanker | None":
        """The current model in ``folder``, or None when there is none or it is not ``usable``."""
        pointer = folder / "current"
        if not pointer.exists():
            return None
        target = folder / pointer.read_text().strip()
        try:
            card = json.loads((target / CARD_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not cls.usable(card):
            return None
        return cls.from_text((target / MODEL_FILE).read_text(), card)


def save_card(folder: Path, card: dict[str, Any]) -> Path:
    """Write a training card into ``folder/VERSION`` and make it current. Without a model beside
    it (too few events), the card still records when training ran and why nothing serves."""
    target = folder / str(card["version"])
    target.mkdir(parents=True, exist_ok=True)
    tmp_card = target / (CARD_FILE + ".tmp")
    tmp_card.write_text(json.dumps(card, indent=2))
    tmp_card.replace(target / CARD_FILE)
    tmp = folder / "current.tmp"
    tmp.write_text(str(card["version"]))
    tmp.replace(folder / "current")
    return target


def read_card(folder: Path) -> dict[str, Any] | None:
    """The current card (also for a model that does not serve), for status and reports."""
    pointer = folder / "current"
    if not pointer.exists():
        return None
    try:
        return json.loads((folder / pointer.read_text().strip() / CARD_FILE).read_text())
    except (OSError, ValueError):
        return None


def new_version() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{time.time_ns() % 1_000_000:06d}"


def ndcg_at(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray], n_relevant: Sequence[int],
            k: int = 10) -> float:
    """Mean NDCG@k over groups; the ideal counts every relevant item of the user, found by the
    candidates or not, so a ranker is never praised for what the candidates missed."""
    per_group = ndcg_per_group(scores, labels, n_relevant, k)
    return float(np.mean(per_group)) if len(per_group) else 0.0


def ndcg_per_group(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray], n_relevant: Sequence[int],
                   k: int = 10) -> np.ndarray:
    """NDCG@k of each group with something relevant (``ndcg_at`` is their mean)."""
    out = []
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    for s, y, r in zip(scores, labels, n_relevant):
        if r == 0:
            continue
        top = np.argsort(-s, kind="stable")[:k]
        dcg = float((y[top] * disc[: len(top)]).sum())
        out.append(dcg / float(disc[: min(r, k)].sum()))
    return np.asarray(out, dtype=np.float64)
