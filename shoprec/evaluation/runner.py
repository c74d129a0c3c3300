"""Run every method over one split and measure next-purchase and bought-together quality.

Next purchase: for each test user, the relevant set is the distinct items they bought in
test minus what they had bought in training (those are excluded from every method's list,
so counting them would only punish all methods equally). Metrics are split into segments
that partition the (user, item) pairs:

- ``all``: every test user, every relevant item (end to end: what a shop would see);
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
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from shoprec.evaluation import metrics
from shoprec.evaluation.interactions import Interaction, items_by_user, items_of, users_of
from shoprec.evaluation.method import ItemFeatures, Method
from shoprec.evaluation.split import bought_together_pairs, check_no_leakage

DEFAULT_KS: tuple[int, ...] = (10, 20, 50)
USER_SEGMENTS: tuple[str, ...] = ("all", "warm_items", "cold_items", "cold_users")
PAIR_SEGMENTS: tuple[str, ...] = ("all", "warm", "cold")


@dataclass(frozen=True)
class UserCase:
    """One test user: what to exclude (training purchases) and what counts as a hit."""

    user_id: str
    exclude: frozenset[str]
    relevant: frozenset[str]
    cold_user: bool


def user_cases(train: Sequence[Interaction], test: Sequence[Interaction]) -> list[UserCase]:
    """Test users with at least one new purchase, sorted by id so runs are reproducible."""
    seen = items_by_user(train)
    bought = items_by_user(test)
    cases = []
    for user in sorted(bought):
        exclude = frozenset(seen.get(user, ()))
        relevant = frozenset(bought[user] - exclude)
        if relevant:
            cases.append(UserCase(user, exclude, relevant, user not in seen))
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


def _check_list(name: str, query: str, scored: Sequence[tuple[str, float]], k: int, forbidden: frozenset[str]) -> list[str]:
    """The contract every method must keep; breaking it would silently inflate its numbers."""
    ids = [item for item, _ in scored]
    if len(ids) > k:
        raise ValueError(f"{name}: returned {len(ids)} items for {query!r}, asked for {k}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{name}: duplicate items in the list for {query!r}")
    leaked = forbidden.intersection(ids)
    if leaked:
        raise ValueError(f"{name}: returned excluded item(s) {sorted(leaked)[:3]} for {query!r}")
    return ids


def _next_purchase(
    name: str, method: Method, cases: Sequence[UserCase], warm_items: frozenset[str], ks: Sequence[int], progress: bool
) -> tuple[dict[str, Any], list[list[str]]]:
    k_max = max(ks)
    lists: list[list[str]] = []
    for case in tqdm(cases, desc=f"{name}: users", disable=not progress, leave=False):
        if case.cold_user and not method.can_score_cold_users:
            lists.append([])
            continue
        scored = method.recommend(case.user_id, k_max, exclude=case.exclude)
        lists.append(_check_list(name, case.user_id, scored, k_max, case.exclude))

    segments: dict[str, Any] = {"all": _ranking_metrics(lists, [c.relevant for c in cases], ks)}
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
    return segments, lists


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
    for query in tqdm(sorted({a for a, _ in pairs}), desc=f"{name}: items", disable=not progress, leave=False):
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
) -> dict[str, Any]:
    """Fit each method on ``train`` only and score it on ``test``; a JSON-ready dict.

    ``unavailable`` maps method names that could not be built to the reason, so the report
    lists them instead of dropping them. Raises if the split leaks or a method breaks the
    ``Method`` contract (too many, duplicate or excluded items).
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
    cases = user_cases(train_t, test_t)
    pairs = sorted(bought_together_pairs(test_t))
    buyers = Counter(item for items in items_by_user(train_t).values() for item in items)
    n_train_users = len(users_of(train_t))

    results: dict[str, Any] = {
        "data": {
            "train_events": len(train_t),
            "test_events": len(test_t),
            "catalogue_items": len(catalog),
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
        method.fit(train_t, list(catalog_ids), item_features)
        fitted = time.perf_counter()
        segments, lists = _next_purchase(name, method, cases, warm_items, ks, progress)
        together = _bought_together(name, method, pairs, warm_items, ks, progress)
        finished = time.perf_counter()
        results["methods"][name] = {
            "can_score_cold_items": bool(method.can_score_cold_items),
            "can_score_cold_users": bool(method.can_score_cold_users),
            "next_purchase": segments,
            "catalogue": {
                **{f"coverage@{k}": metrics.catalogue_coverage(lists, len(catalog), k) for k in ks},
                **{f"novelty@{k}": metrics.novelty([r for r in lists if r], buyers, n_train_users, k) for k in ks},
            },
            "bought_together": together,
            "seconds": {"fit": round(fitted - started, 3), "evaluate": round(finished - fitted, 3)},
        }
        if progress:
            tqdm.write(f"{name}: fit {fitted - started:.1f}s, evaluate {finished - fitted:.1f}s")
    return results
