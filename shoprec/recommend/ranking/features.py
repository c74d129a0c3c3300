"""Features of (user, candidate) pairs: what the ranker learns from.

One row per candidate, columns named in ``FEATURES`` (the model file records them, so a model
trained with another list is refused rather than misread). Missing values are NaN: LightGBM
learns a direction for them, and the blend treats them as zero.
"""

from __future__ import annotations

import numpy as np

from .candidates import UserContext
from .state import Windows

_DAY = 86400.0

SOURCE_FEATURES = ("src_rebuy", "src_variant", "src_similar", "src_co_bought", "src_shoppers", "src_trending",
                   "src_group_trending", "src_segment", "src_new")

FEATURES: tuple[str, ...] = (
    *SOURCE_FEATURES,
    "n_sources",
    # the user's own relation to the item
    "own_weight", "days_since_own", "variant_weight",
    # content similarity in the serving space
    "sim_max", "sim_mean", "sim_last", "sim_profile", "sim_session", "sim_disliked",
    # popularity and its trend
    "pop_all", "pop_decayed", "pop_7d", "pop_30d", "pop_trend", "days_since_sold", "item_age_days",
    # taste and budget
    "category_affinity", "group_affinity", "price_ratio",
    # the user
    "user_events", "user_items", "days_since_user_last",
)


def _dense(keys: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Sum of ``values`` per key, as an array indexed by key."""
    return np.bincount(keys, weights=values, minlength=size)[:max(size, 0)] if len(keys) else np.zeros(size)


def build(ctx: UserContext, codes: np.ndarray, sources: dict[str, np.ndarray]) -> np.ndarray:
    """The feature matrix (len(codes) x len(FEATURES)), float32."""
    n = len(codes)
    t, w, h = ctx.table, ctx.windows, ctx.history
    cols: dict[str, np.ndarray] = {}
    for name in SOURCE_FEATURES:
        cols[name] = sources.get(name[4:], np.zeros(n))
    cols["n_sources"] = np.sum([cols[s] > 0 for s in SOURCE_FEATURES], axis=0).astype(np.float64)

    own = ctx.own
    own_codes = np.fromiter(own, dtype=np.int64, count=len(own))
    own_w = np.fromiter(own.values(), dtype=np.float64, count=len(own))
    # per-user lookups as small dense arrays, gathered once per candidate
    own_dense = _dense(own_codes, own_w, len(t))
    cols["own_weight"] = own_dense[codes]
    last_touch = np.full(len(t), -np.inf)
    if len(h.items):
        np.maximum.at(last_touch, h.items, h.ts)
    touched = last_touch[codes]
    cols["days_since_own"] = np.where(np.isfinite(touched), (ctx.now - touched) / _DAY, np.nan)
    product_w = _dense(t.product[own_codes], own_w, len(t.products))
    cols["variant_weight"] = product_w[t.product[codes]] - cols["own_weight"]

    m = t.matrix()
    cand = m[codes] if len(m) else np.zeros((n, 1), np.float32)
    anchors = [c for c in ctx.recent if c < len(m)]
    if anchors and n:
        sims = cand @ m[anchors].T
        cols["sim_max"] = sims.max(axis=1)
        cols["sim_mean"] = sims.mean(axis=1)
        cols["sim_last"] = sims[:, 0]
        weights = np.array([own.get(a, 0.0) for a in anchors], dtype=np.float32)
        profile = weights @ m[anchors]
        norm = float(np.linalg.norm(profile))
        cols["sim_profile"] = cand @ (profile / norm) if norm > 0 else np.full(n, np.nan)
    else:
        for name in ("sim_max", "sim_mean", "sim_last", "sim_profile"):
            cols[name] = np.full(n, np.nan)

    session = [c for c in ctx.session if c < len(m)]
    cols["sim_session"] = (cand @ m[session].T).max(axis=1) if session and n else np.full(n, np.nan)
    disliked = [c for c in ctx.disliked if c < len(m)][:50]
    cols["sim_disliked"] = (cand @ m[disliked].T).max(axis=1) if disliked and n else np.full(n, np.nan)

    pop = _popularity(w, len(t))[codes]
    for i, name in enumerate(_POPULARITY):
        cols[name] = pop[:, i]
    cols["days_since_sold"] = (ctx.now - cols["days_since_sold"]) / _DAY
    created = t.created[codes]
    cols["item_age_days"] = (ctx.now - np.where(np.isnan(created), cols["item_age_days"], created)) / _DAY

    total = float(own_w.sum()) or 1.0
    for name, groups, size in (("category_affinity", t.category, len(t.categories)),
                               ("group_affinity", t.group, len(t.groups))):
        # codes are -1 for "unknown": shift by one so they get a bin of their own, never counted
        per_group = _dense(groups[own_codes] + 1, own_w, size + 1)
        per_group[0] = 0.0
        cols[name] = per_group[groups[codes] + 1] / total

    user_prices = t.price[h.items] if len(h.items) else np.array([])
    user_prices = user_prices[np.isfinite(user_prices)]
    if len(user_prices):
        with np.errstate(divide="ignore", invalid="ignore"):
            cols["price_ratio"] = np.log(t.price[codes] / np.median(user_prices))
        cols["price_ratio"][~np.isfinite(cols["price_ratio"])] = np.nan
    else:
        cols["price_ratio"] = np.full(n, np.nan)

    cols["user_events"] = np.full(n, float(len(h.items)))
    cols["user_items"] = np.full(n, float(len(own)))
    cols["days_since_user_last"] = np.full(n, (ctx.now - h.ts[-1]) / _DAY if len(h.ts) else np.nan)
    x = np.empty((n, len(FEATURES)), dtype=np.float32)
    for i, f in enumerate(FEATURES):
        x[:, i] = cols[f]
    return x


#: Per-item columns that depend only on the popularity snapshot; ``days_since_sold`` and
#: ``item_age_days`` hold the epoch of the last sale / first sighting until ``build`` subtracts.
_POPULARITY = ("pop_all", "pop_decayed", "pop_7d", "pop_30d", "pop_trend", "days_since_sold", "item_age_days")


def _popularity(w: Windows, size: int) -> np.ndarray:
    """(size x len(_POPULARITY)) for every item code, computed once per snapshot (items newer
    than the snapshot: no sales, never seen)."""
    key = ("features", size)
    cached = w.derived.get(key)
    if cached is None:
        def padded(arr: np.ndarray, fill: float) -> np.ndarray:
            out = np.full(size, fill)
            out[: min(size, len(arr))] = arr[:size]
            return out

        last_30d = np.nan_to_num(padded(w.last_30d, 0.0))
        logs = [np.log1p(np.nan_to_num(padded(a, 0.0))) for a in (w.all_time, w.decayed, w.last_7d)]
        cached = w.derived[key] = np.column_stack([
            *logs, np.log1p(last_30d), logs[2] - np.log1p(last_30d / 4.0),
            padded(w.last_sold, np.nan), padded(w.first_seen, np.nan)])
    return cached
