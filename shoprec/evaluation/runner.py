"""Run every method over one split and measure next-purchase and bought-together quality.

Next purchase: for each test user, the relevant set is the distinct items they bought in
test. With ``count_repeats`` (the default, what a shop sees) buying an item again counts as a
hit and nothing is excluded from any list; without it (the usual published leave-last
protocol) the user's training items are excluded from every list and dropped from the
targets. ``offered`` is the catalogue as it was at the cut: no method may return an item
outside it (in a shop, an item nobody could see yet cannot be recommended; offering it would
leak the answer). Segments:

- ``all``: every test user, every relevant item (end to end: what a shop would see);
- ``new_to_user``: the same lists with the user's training items removed, scored on the items
  new to them (is the method more than "buy it again"?);
- ``warm_items``: users known in training, relevant items also bought in training;
- ``cold_items``: users known in training, relevant items nobody bought in training;
- ``cold_users``: users with no training history.

A method that declares it cannot score cold items (or users) gets ``None`` in that segment,
not 0.0, and contributes empty lists to ``all`` where it cannot answer.

Bought together: for each held-out ordered pair (a, b) from one test basket, is b in the
method's top-k for ``similar_or_complementary(a)``; segments ``all``, ``warm`` (a and b both
bought in training) and ``cold`` (either one new).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from shoprec.progress import track
from shoprec.evaluation import metrics
from shoprec.evaluation.interactions import Interaction, items_by_user, items_of, users_of
from shoprec.evaluation.method import ItemFeatures, Method
from shoprec.evaluation.split import bought_together_pairs, check_no_leakage

DEFAULT_KS: tuple[int, ...] = (10, 20, 50)
USER_SEGMENTS: tuple[str, ...] = ("all", "new_to_user", "warm_items", "cold_items", "cold_users")
PAIR_SEGMENTS: tuple[str, ...] = ("all", "warm", "cold")


@dataclass(frozen=True)
class UserCase:
    """One test user: what to exclude (training purchases) and what counts as a hit."""

    user_id: str
    exclude: frozenset[str]
    relevant: frozenset[str]
    cold_user: bool
    history: frozenset[str] = frozenset()
    at: datetime | None = None  # the moment the user's test visit began (leave-last)


def user_cases(train: Sequence[Interaction], test: Sequence[Interaction],
               count_repeats: bool = False, moments: Mapping[str, datetime] | None = None) -> list[UserCase]:
    """Test users with at least one relevant purchase, sorted by id so runs are reproducible.
    Without ``count_repeats`` a user's training items are excluded and are not targets."""
    seen = items_by_user(train)
    bought = items_by_user(test)
    cases = []
    for user in sorted(bought):
        history = frozenset(seen.get(user, ()))
        relevant = frozenset(bought[user]) if count_repeats else frozenset(bought[user] - history)
        if relevant:
            cases.append(UserCase(user, frozenset() if count_repeats else history, relevant, user not in seen,
                                  history, (moments or {}).get(user)))
    return cases


def _ranking_metrics(
    ranked_lists: Sequence[Sequence[str]], relevant_sets: Sequence[frozenset[str]], ks: Sequence[int]
) -> dict[str, Any]:
    """Means over users of recall / NDCG / hit at each k, plus MRR cut at the largest k."""
    out: dict[str, Any] = {"users": len(ranked_lists)}
    for k in ks:
        out[f"recall@{k}"] = float(np.mean([metrics.recall_at_k(r, s, k) for r, s in zip(ranked_lists, relevant_sets)]))
        out[f"ndcg@{k}"] = float(np.mean([metrics.ndcg_at_k(r, s, k) for r, s in zip(ranked_lists, relevant_sets)]))
        out[f"hit@{k}"] = float(np.mean([1.0 if set(r[:k]) & s else 0.0 for r, s in zip(ranked_lists, relevant_sets)]))
    out[f"mrr@{max(ks)}"] = float(np.mean([metrics.reciprocal_rank(r, s, max(ks)) for r, s in zip(ranked_lists, relevant_sets)]))
    return out


def _check_list(name: str, query: str, scored: Sequence[tuple[str, float]], k: int, forbidden: frozenset[str],
                offered: frozenset[str] | None = None) -> list[str]:
    """The contract every method must keep; breaking it would silently inflate its numbers."""
    ids = [item for item, _ in scored]
    if len(ids) > k:
        raise ValueError(f"{name}: returned {len(ids)} items for {query!r}, asked for {k}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{name}: duplicate items in the list for {query!r}")
    leaked = forbidden.intersection(ids)
    if leaked:
        raise ValueError(f"{name}: returned excluded item(s) {sorted(leaked)[:3]} for {query!r}")
    if offered is not None:
        unknown = [i for i in ids if i not in offered]
        if unknown:
            raise ValueError(f"{name}: returned item(s) not on offer at the cut {unknown[:3]} for {query!r}")
    return ids


def ask(name: str, method: Method, case: UserCase, k: int, offered: frozenset[str] | None) -> list[str]:
    """One checked list for one case (empty where the method cannot serve a cold user)."""
    if case.cold_user and not method.can_score_cold_users:
        return []
    if case.at is not None and hasattr(method, "recommend_at"):  # a method that can serve "as of then"
        scored = method.recommend_at(case.user_id, k, case.at, exclude=case.exclude)
    else:
        scored = method.recommend(case.user_id, k, exclude=case.exclude)
    return _check_list(name, case.user_id, scored, k, case.exclude, offered)


def score_lists(cases: Sequence[UserCase], lists: Sequence[list[str]], method: Method, warm_items: frozenset[str],
                ks: Sequence[int]) -> dict[str, Any]:
    """Metrics per segment for lists already asked for."""
    segments: dict[str, Any] = {"all": _ranking_metrics(lists, [c.relevant for c in cases], ks)}
    fresh = [([i for i in r if i not in c.history], c.relevant - c.history) for c, r in zip(cases, lists)
             if c.relevant - c.history]
    segments["new_to_user"] = _ranking_metrics([f[0] for f in fresh], [f[1] for f in fresh], ks) if fresh \
        else {"users": 0}
    capable = {
        "warm_items": True,
        "cold_items": method.can_score_cold_items,
        "cold_users": method.can_score_cold_users,
    }
    for segment, can in capable.items():
        chosen_lists, chosen_sets = [], []
        for case, ranked in zip(cases, lists):
            if segment == "cold_users":
                rel = case.relevant if case.cold_user else frozenset()
            elif case.cold_user:
                rel = frozenset()
            elif segment == "warm_items":
                rel = case.relevant & warm_items
            else:
                rel = case.relevant - warm_items
            if rel:
                chosen_lists.append(ranked)
                chosen_sets.append(rel)
        if not can:
            segments[segment] = None
        elif chosen_lists:
            segments[segment] = _ranking_metrics(chosen_lists, chosen_sets, ks)
        else:
            segments[segment] = {"users": 0}
    return segments


def _next_purchase(
    name: str, method: Method, cases: Sequence[UserCase], warm_items: frozenset[str], ks: Sequence[int], progress: bool,
    offered: frozenset[str] | None = None,
) -> tuple[dict[str, Any], list[list[str]]]:
    lists = [ask(name, method, case, max(ks), offered)
             for case in track(cases, f"{name}: users", enabled=progress)]
    return score_lists(cases, lists, method, warm_items, ks), lists


def _bought_together(
    name: str,
    method: Method,
    pairs: Sequence[tuple[str, str]],
    warm_items: frozenset[str],
    ks: Sequence[int],
    progress: bool,
) -> dict[str, Any] | None:
    k_max = max(ks)
    answers: dict[str, list[str]] = {}
    for query in track(sorted({a for a, _ in pairs}), f"{name}: items", enabled=progress):
        scored = method.similar_or_complementary(query, k_max)
        if scored is None:
            return None
        answers[query] = _check_list(name, query, scored, k_max, frozenset({query}))
    out: dict[str, Any] = {}
    for segment in PAIR_SEGMENTS:
        if segment == "cold" and not method.can_score_cold_items:
            out[segment] = None
            continue
        chosen = [
            (answers[a], b) for a, b in pairs
            if segment == "all"
            or (segment == "warm" and a in warm_items and b in warm_items)
            or (segment == "cold" and not (a in warm_items and b in warm_items))
        ]
        out[segment] = {"pairs": len(chosen), **{f"hit@{k}": metrics.hit_rate(chosen, k) for k in ks}}
    return out


def evaluate(
    methods: Mapping[str, Method],
    train: Sequence[Interaction],
    test: Sequence[Interaction],
    catalog_ids: Sequence[str],
    ks: Sequence[int] = DEFAULT_KS,
    item_features: ItemFeatures | None = None,
    progress: bool = True,
    unavailable: Mapping[str, str] | None = None,
    offered_ids: Sequence[str] | None = None,
    count_repeats: bool = True,
    bought_together: bool = True,
    moments: Mapping[str, datetime] | None = None,
) -> dict[str, Any]:
    """Fit each method on ``train`` only and score it on ``test``; a JSON-ready dict.

    ``offered_ids``: the catalogue on offer at the cut (default: every catalogue item); methods
    are fitted on it (with ``item_features`` rows aligned to ``catalog_ids``, re-aligned here)
    and may return nothing else. ``unavailable`` maps method names that could not be built to
    the reason, so the report lists them instead of dropping them. Raises if the split leaks or
    a method breaks the ``Method`` contract (too many, duplicate, excluded or unoffered items).
    """
    ks = tuple(sorted(set(ks)))
    if not ks or ks[0] < 1:
        raise ValueError("ks must be positive")
    check_no_leakage(train, test, global_time=False)
    catalog = frozenset(catalog_ids)
    outside = items_of(test) - catalog
    if outside:
        raise ValueError(f"{len(outside)} test item(s) not in the catalogue, e.g. {sorted(outside)[0]!r}")

    train_t, test_t = tuple(train), tuple(test)
    warm_items = frozenset(items_of(train_t))
    cases = user_cases(train_t, test_t, count_repeats, moments)
    pairs = sorted(bought_together_pairs(test_t)) if bought_together else []
    offered_list = list(catalog_ids) if offered_ids is None else [i for i in catalog_ids if i in set(offered_ids)]
    offered = None if offered_ids is None else frozenset(offered_list)
    features = item_features
    if item_features is not None and offered_ids is not None:
        row = {item: i for i, item in enumerate(catalog_ids)}
        features = item_features[[row[i] for i in offered_list]]
    buyers = Counter(item for items in items_by_user(train_t).values() for item in items)
    n_train_users = len(users_of(train_t))

    results: dict[str, Any] = {
        "data": {
            "train_events": len(train_t),
            "test_events": len(test_t),
            "catalogue_items": len(catalog),
            "offered_items": len(offered_list),
            "count_repeats": count_repeats,
            "train_users": n_train_users,
            "test_users_evaluated": len(cases),
            "cold_users_evaluated": sum(c.cold_user for c in cases),
            "test_items": len(items_of(test_t)),
            "cold_test_items": len(items_of(test_t) - warm_items),
            "bought_together_pairs": len(pairs),
            "bought_together_pairs_warm": sum(a in warm_items and b in warm_items for a, b in pairs),
        },
        "ks": list(ks),
        "item_features": None if item_features is None else list(np.shape(item_features)),
        "methods": {},
        "unavailable": dict(unavailable or {}),
    }
    for name, method in methods.items():
        started = time.perf_counter()
        method.fit(train_t, offered_list, features)
        fitted = time.perf_counter()
        segments, lists = _next_purchase(name, method, cases, warm_items, ks, progress, offered)
        together = _bought_together(name, method, pairs, warm_items, ks, progress) if pairs else None
        finished = time.perf_counter()
        results["methods"][name] = {
            "can_score_cold_items": bool(method.can_score_cold_items),
            "can_score_cold_users": bool(method.can_score_cold_users),
            "next_purchase": segments,
            "catalogue": {
                **{f"coverage@{k}": metrics.catalogue_coverage(lists, len(offered_list), k) for k in ks},
                **{f"novelty@{k}": metrics.novelty([r for r in lists if r], buyers, n_train_users, k) for k in ks},
            },
            "bought_together": together,
            "seconds": {"fit": round(fitted - started, 3), "evaluate": round(finished - fitted, 3)},
        }
        if progress:
            tqdm.write(f"{name}: fit {fitted - started:.1f}s, evaluate {finished - fitted:.1f}s")
    return results
