"""The evaluation protocols besides one fixed split: daily replay and held-out (cold) items.

- ``replay``: from the start date on, each test day every buying user's basket is predicted
  from everything before that day — other users' earlier test-period events included, as a
  live shop would have them — then that day's events are added. The catalogue on offer is what
  had been seen (an event) before the day. Methods that can take new events (``update``) get
  them; the others are refitted on everything so far each day.
- ``items-cold``: a fifth of the items are held out with all their events; every user who
  bought held-out items and has other history gets the held-out items ranked for them. Only
  content (or content-aware hybrids) can do better than random here.

Both return the same block shape as ``runner.evaluate``: ``methods -> name -> next_purchase ->
all -> ndcg@10``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from shoprec.progress import track
from shoprec.evaluation import metrics
from shoprec.evaluation.interactions import Interaction, items_by_user, items_of
from shoprec.evaluation.method import ItemFeatures, Method
from shoprec.evaluation.runner import UserCase, _check_list, _ranking_metrics, score_lists

MethodFactory = Callable[[], Method]


def _day(ts: datetime) -> datetime:
    return ts.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def _features_for(item_features: ItemFeatures | None, catalog_ids: Sequence[str],
                  chosen: Sequence[str]) -> ItemFeatures | None:
    if item_features is None:
        return None
    row = {item: i for i, item in enumerate(catalog_ids)}
    return item_features[[row[i] for i in chosen]]


def replay(methods: Mapping[str, MethodFactory], interactions: Sequence[Interaction], start: datetime,
           catalog_ids: Sequence[str], ks: Sequence[int] = (10, 20, 50), item_features: ItemFeatures | None = None,
           progress: bool = True, max_days: int | None = None) -> dict[str, Any]:
    events = sorted(interactions, key=lambda e: e.ts)
    start = _day(start if start.tzinfo else start.replace(tzinfo=timezone.utc))
    train = [e for e in events if e.ts < start]
    days: dict[datetime, list[Interaction]] = {}
    for e in events:
        if e.ts >= start:
            days.setdefault(_day(e.ts), []).append(e)
    order = sorted(days)[:max_days] if max_days else sorted(days)
    catalog = list(catalog_ids)
    out: dict[str, Any] = {"data": {"start": start.date().isoformat(), "days": len(order),
                                    "train_events": len(train), "test_events": sum(len(days[d]) for d in order)},
                           "ks": list(ks), "methods": {}}
    for name, factory in methods.items():
        began = time.perf_counter()
        method = factory()
        seen = list(train)
        known = items_of(seen)
        offered = [i for i in catalog if i in known]
        method.fit(seen, offered, _features_for(item_features, catalog, offered))
        incremental = hasattr(method, "update")
        cases: list[UserCase] = []
        lists: list[list[str]] = []
        warm: set[str] = set(items_of(seen))
        for day in track(order, f"{name}: days", enabled=progress):
            offered_set = frozenset(known)
            history = items_by_user(seen)
            for user, bought in sorted(items_by_user(days[day]).items()):
                case = UserCase(user, frozenset(), frozenset(bought), user not in history,
                                frozenset(history.get(user, ())))
                cases.append(case)
                if case.cold_user and not method.can_score_cold_users:
                    lists.append([])
                    continue
                scored = method.recommend(user, max(ks), exclude=frozenset())
                lists.append(_check_list(name, user, scored, max(ks), frozenset(), offered_set))
            seen += days[day]
            today = items_of(days[day])
            known |= today
            if incremental:
                method.update(days[day], [i for i in catalog if i in today and i not in offered_set])
            else:
                offered = [i for i in catalog if i in known]
                method.fit(seen, offered, _features_for(item_features, catalog, offered))
        if hasattr(method, "close"):
            method.close()
        out["methods"][name] = {
            "can_score_cold_items": bool(method.can_score_cold_items),
            "can_score_cold_users": bool(method.can_score_cold_users),
            "next_purchase": score_lists(cases, lists, method, frozenset(warm), ks),
            "catalogue": {f"coverage@{k}": metrics.catalogue_coverage(lists, len(catalog), k) for k in ks},
            "seconds": {"total": round(time.perf_counter() - began, 1)},
        }
        if progress:
            tqdm.write(f"replay {name}: {time.perf_counter() - began:.1f}s")
    out["data"]["cases"] = len(cases) if methods else 0
    return out


def items_cold(methods: Mapping[str, MethodFactory], interactions: Sequence[Interaction], catalog_ids: Sequence[str],
               ks: Sequence[int] = (10, 20, 50), item_features: ItemFeatures | None = None, fraction: float = 0.2,
               seed: int = 0, progress: bool = True) -> dict[str, Any]:
    sold = sorted(items_of(interactions))
    rng = np.random.default_rng(seed)
    held = frozenset(rng.choice(sold, size=int(round(fraction * len(sold))), replace=False).tolist())
    train = [e for e in interactions if e.item_id not in held]
    test = [e for e in interactions if e.item_id in held]
    history = items_by_user(train)
    cases = [UserCase(u, frozenset(), frozenset(b), False, frozenset(history[u]))
             for u, b in sorted(items_by_user(test).items()) if u in history]
    out: dict[str, Any] = {"data": {"held_out_items": len(held), "train_events": len(train),
                                    "users": len(cases), "fraction": fraction, "seed": seed},
                           "ks": list(ks), "methods": {}}
    catalog = list(catalog_ids)
    outside = frozenset(catalog) - held
    for name, factory in methods.items():
        began = time.perf_counter()
        method = factory()
        method.fit(train, catalog, item_features)
        if not method.can_score_cold_items:
            out["methods"][name] = None
            continue
        narrowed = hasattr(method, "offer_only")
        if narrowed:
            method.offer_only(held)
        lists = []
        for case in track(cases, f"{name}: users", enabled=progress):
            scored = method.recommend(case.user_id, max(ks), exclude=frozenset() if narrowed else outside)
            lists.append(_check_list(name, case.user_id, scored, max(ks), frozenset(), held))
        if hasattr(method, "close"):
            method.close()
        out["methods"][name] = {
            "can_score_cold_items": True, "can_score_cold_users": bool(method.can_score_cold_users),
            "next_purchase": {"all": _ranking_metrics(lists, [c.relevant for c in cases], ks)},
            "seconds": {"total": round(time.perf_counter() - began, 1)},
        }
    return out


def replay_start(spec: str) -> datetime:
    kind, _, date = spec.partition(":")
    if kind != "replay" or not date:
        raise ValueError(f"replay protocol must be 'replay:YYYY-MM-DD', not {spec!r}")
    return datetime.fromisoformat(date).replace(tzinfo=timezone.utc)

