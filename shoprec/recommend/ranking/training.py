"""Learn a ranker from the shop's own events by a time self-split.

Cuts are placed ``stride_days`` apart going back from the newest event. For each cut, the users
who bought in the ``label_days`` after it are the queries; their candidates and features are
computed with everything (history, popularity, co-purchase, the items on offer) cut at that
moment, and a candidate's label is whether the user bought it in the window. The newest window
validates, the older ones train. The learned model serves only if it beats the hand-tuned blend
on the validation window's NDCG@10; either way the card says what was measured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .features import FEATURES
from .pipeline import RankingPipeline
from .rankers import BlendRanker, LearnedRanker, ndcg_per_group, new_version

_DAY = 86400.0


@dataclass
class Examples:
    x: list[np.ndarray] = field(default_factory=list)
    y: list[np.ndarray] = field(default_factory=list)
    relevant: list[int] = field(default_factory=list)

    def add(self, other: "Examples") -> None:
        self.x += other.x
        self.y += other.y
        self.relevant += other.relevant

    @property
    def queries(self) -> int:
        return len(self.x)

    @property
    def positive_queries(self) -> int:
        return sum(int(y.sum() > 0) for y in self.y)


@dataclass
class TrainSettings:
    label_days: float = 28.0
    # Cuts every 14 days with 28-day labels: twice the examples from the same history. On H&M's
    # self-split the learned ranker then beat the blend on its validation window by 20 % (0.0194
    # vs 0.0161) instead of 1 % with non-overlapping windows.
    windows: int = 24
    stride_days: float | None = 14.0  # distance between cuts (None: label_days, no overlap)
    min_positive_queries: int = 30
    max_users_per_window: int = 3000
    # small trees, many rounds: chosen on H&M's self-split validation windows (bench/tune_ranker.py,
    # 3 seeds, NDCG@10 valid / time-split test / ms to score one customer's ~560 candidates):
    # 300 rounds at 0.03: 0.0213 / 0.0162 / 1.97; 150 at 0.06: 0.0209 / 0.0160 / 1.00;
    # 100 at 0.09: 0.0206 / 0.0150 / 0.70; 60 at 0.15: 0.0198 / 0.0151 / 0.43. 150 rounds
    # looked as good at half the feed's scoring cost, but one `shoprec eval` each (same code,
    # same seed) gave time split 0.0174 vs 0.0161 and daily replay 0.0333 vs 0.0365: the
    # replay, closest to serving, lost 9 %, so 300 rounds stay (LightGBM releases the GIL).
    num_boost_round: int = 300
    learning_rate: float = 0.03
    num_leaves: int = 7
    min_data_in_leaf: int = 100
    seed: int = 0
    # LambdaRank, not LightGBM's listwise XE-NDCG ("rank_xendcg"). One `shoprec eval` each on the
    # same H&M store: XE-NDCG won the time split (0.0168 vs 0.0156) and the replay (0.0367 vs
    # 0.0349), and the self-split's validation over three seeds (0.0219 vs 0.0204,
    # bench/tune_ranker.py), but it leans harder on buying again: leave-last, where history
    # items are excluded, fell from 0.0104 to 0.0080, items-cold from 0.1024 to 0.0946, the
    # replay's "new to the user" from 0.0117 to 0.0097; without photos the time split stayed
    # 0.0172 and leave-last fell 11 %, items-cold 16 %.
    objective: str = "lambdarank"


def examples_at(pipeline: RankingPipeline, cut: float, label_days: float, max_users: int,
                rng: np.random.Generator) -> Examples:
    """Candidates and labels for the users who bought in ``[cut, cut + label_days)``."""
    user, item, weight, ts = pipeline.log.arrays()
    basket_user = pipeline.log.basket_arrays()
    _, b_user, b_item, b_ts = basket_user
    in_window = (b_ts >= cut) & (b_ts < cut + label_days * _DAY)
    bought: dict[int, set[int]] = {}
    for u, i in zip(b_user[in_window].tolist(), b_item[in_window].tolist()):
        bought.setdefault(u, set()).add(i)
    # the catalogue as it was at the cut: items seen in an event before it (or created before it)
    known = np.zeros(len(pipeline.table), dtype=bool)
    known[np.unique(item[ts < cut])] = True
    created = pipeline.table.created[: len(known)]
    known |= np.isfinite(created) & (created < cut)
    users = [u for u in bought if (ts[user == u] < cut).any() and (weight[(user == u) & (ts < cut)] > 0).any()]
    if len(users) > max_users:
        users = list(rng.choice(users, size=max_users, replace=False))
    sources = pipeline.sources(allowed=known, cut=cut)
    out = Examples()
    keys = pipeline.log.users.keys
    for u in sorted(users):
        ctx = pipeline.context(keys[u], cut, allowed=known, cut=cut)
        codes, _, x = pipeline.candidates(ctx, sources)
        if len(codes) == 0:
            continue
        out.x.append(x)
        out.y.append(np.isin(codes, list(bought[u])).astype(np.float32))
        out.relevant.append(len(bought[u]))
    return out


@dataclass
class TrainReport:
    serves: bool
    reason: str
    card: dict[str, Any]
    ranker: LearnedRanker | None = None


def train(pipeline: RankingPipeline, settings: TrainSettings | None = None, now: float | None = None,
          progress: bool = False) -> TrainReport:
    """Build examples over several past windows, fit a LightGBM ranker on the older ones,
    compare it with the blend on the newest, and refit on all windows if it wins."""
    s = settings or TrainSettings()
    _, _, _, ts = pipeline.log.arrays()
    card: dict[str, Any] = {"version": new_version(), "features": list(FEATURES), "serves": False,
                            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            "events": int(len(ts)), "label_days": s.label_days, "objective": s.objective}
    if len(ts) == 0:
        return TrainReport(False, "no events yet", card)
    newest = float(ts.max()) if now is None else now
    rng = np.random.default_rng(s.seed)
    windows: list[Examples] = []
    cuts: list[float] = []
    stride = s.stride_days or s.label_days
    for w in range(s.windows):
        cut = newest - s.label_days * _DAY - w * stride * _DAY
        if cut <= float(ts.min()):
            break
        ex = examples_at(pipeline, cut, s.label_days, s.max_users_per_window, rng)
        windows.append(ex)
        cuts.append(cut)
        if progress:
            print(f"window {w}: cut {time.strftime('%Y-%m-%d', time.gmtime(cut))}, {ex.queries} users, "
                  f"{ex.positive_queries} with a bought candidate")
    card["windows"] = [{"queries": e.queries, "positive_queries": e.positive_queries} for e in windows]
    if len(windows) < 2:
        return TrainReport(False, "too little history for a validation window", card)
    # Validation is the newest window; training windows whose labels reach into it are left out
    # of the model it validates (they would have seen its targets), and added back for the refit.
    valid, train_ex, overlapping = windows[0], Examples(), Examples()
    for e, cut in zip(windows[1:], cuts[1:]):
        (train_ex if cut + s.label_days * _DAY <= cuts[0] else overlapping).add(e)
    if train_ex.positive_queries < s.min_positive_queries or valid.positive_queries < 5:
        reason = (f"too few users with a bought candidate ({train_ex.positive_queries} to train, "
                  f"{valid.positive_queries} to validate; need {s.min_positive_queries} and 5)")
        return TrainReport(False, reason, card)

    booster = _fit(train_ex, s)
    learned = LearnedRanker(booster, card)
    blend = BlendRanker()
    per_learned = ndcg_per_group([learned.score(x) for x in valid.x], valid.y, valid.relevant)
    per_blend = ndcg_per_group([blend.score(x) for x in valid.x], valid.y, valid.relevant)
    ndcg_learned, ndcg_blend = float(per_learned.mean()), float(per_blend.mean())
    serves, noise = learned_serves(per_learned, per_blend)
    card["validation"] = {"ndcg@10_learned": round(ndcg_learned, 5), "ndcg@10_blend": round(ndcg_blend, 5),
                          "difference_se": round(noise, 5), "queries": valid.queries}
    card["train_queries"] = train_ex.queries
    figures = f"NDCG@10 {ndcg_learned:.4f} vs {ndcg_blend:.4f}, difference's standard error {noise:.4f}"
    if not serves:
        card["importances"] = learned.importances()
        return TrainReport(False, f"the learned ranker lost to the blend on validation by more than "
                                  f"the noise ({figures})", card, learned)
    train_ex.add(valid)
    train_ex.add(overlapping)
    final = LearnedRanker(_fit(train_ex, s), card)
    card["serves"] = True
    card["importances"] = final.importances()
    verdict = "beats the blend" if ndcg_learned > ndcg_blend else "is within the noise of the blend"
    return TrainReport(True, f"learned ranker {verdict} on validation ({figures})", card, final)


def learned_serves(learned: np.ndarray, blend: np.ndarray) -> tuple[bool, float]:
    """Whether the learned ranker serves, from per-user NDCG on the validation window; and the
    standard error of the mean difference. It serves unless it is worse by more than one
    standard error: one window holds a few dozen users who bought, and on H&M a model whose
    features were identical and whose candidates differed only by HNSW's approximate neighbours
    (two indexes of one catalog) scored 0.0214 on one and 0.0177 on the other against the
    blend's 0.0183, so "lost by any margin" was a coin flip; on the time split's test weeks the
    blend that then served scored 0.0139 where the model scored 0.0161."""
    diff = learned - blend
    if len(diff) < 2:
        return bool(diff.sum() >= 0), 0.0
    noise = float(diff.std(ddof=1) / np.sqrt(len(diff)))
    return bool(diff.mean() >= -noise), noise


def _fit(ex: Examples, s: TrainSettings) -> Any:
    import lightgbm as lgb

    keep = [i for i, y in enumerate(ex.y) if y.sum() > 0]  # a query without a positive teaches nothing
    x = np.vstack([ex.x[i] for i in keep])
    y = np.concatenate([ex.y[i] for i in keep])
    group = [len(ex.y[i]) for i in keep]
    params = {
        "objective": s.objective, "metric": "ndcg", "eval_at": [10], "learning_rate": s.learning_rate,
        "num_leaves": s.num_leaves, "min_data_in_leaf": s.min_data_in_leaf, "feature_fraction": 0.8,
        "bagging_fraction": 0.8, "bagging_freq": 1, "seed": s.seed,
        "deterministic": True, "num_threads": 2, "verbose": -1,
    }
    if s.objective == "lambdarank":
        params["lambdarank_truncation_level"] = 20
    data = lgb.Dataset(x, y, group=group, feature_name=list(FEATURES), free_raw_data=True)
    return lgb.train(params, data, num_boost_round=s.num_boost_round)
