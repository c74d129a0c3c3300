"""Evaluation package: metrics by hand, leak-free splits, baselines on tiny data, runner, report."""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from shoprec.evaluation import metrics
from shoprec.evaluation.baselines import ALS, ContentKNN, ItemKNN, LightFMHybrid, Popularity, lightfm_unavailable_reason
from shoprec.evaluation.interactions import Interaction, parse_ts
from shoprec.evaluation.method import ItemFeatures, Method, Scored
from shoprec.evaluation.ncf import NCF
from shoprec.evaluation.registry import build_methods
from shoprec.evaluation.report import write_report
from shoprec.evaluation.runner import evaluate
from shoprec.evaluation.split import (
    LeakageError,
    bought_together_pairs,
    check_no_leakage,
    leave_last_split,
    time_split,
)

DAY0 = datetime(2020, 1, 1, tzinfo=timezone.utc)


def ev(user: str, item: str, day: int) -> Interaction:
    """One purchase; the basket is (user, day), as in the H&M data."""
    ts = DAY0 + timedelta(days=day)
    return Interaction(user, item, ts, f"{user}-{ts.date().isoformat()}")


# ---------------------------------------------------------------- metrics, checked by hand

RANKED = ["a", "b", "c", "d", "e"]
RELEVANT = {"b", "d", "x"}  # x is never recommended


def test_recall_counts_hits_over_all_relevant() -> None:
    assert metrics.recall_at_k(RANKED, RELEVANT, 3) == pytest.approx(1 / 3)  # b
    assert metrics.recall_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 3)  # b, d
    assert metrics.recall_at_k(RANKED, set(), 5) == 0.0


def test_ndcg_by_hand() -> None:
    # k=5: hits at ranks 2 and 4 -> DCG = 1/log2(3) + 1/log2(5) = 0.630930 + 0.430677 = 1.061606
    # ideal over min(|rel|=3, 5) = 3 hits: 1 + 0.630930 + 0.5 = 2.130930 -> NDCG = 0.498189
    assert metrics.dcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(1.061606, abs=1e-6)
    assert metrics.ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(0.498189, abs=1e-6)
    # k=2: one hit at rank 2 -> 0.630930; ideal over min(3, 2) = 2 hits: 1.630930 -> 0.386853
    assert metrics.ndcg_at_k(RANKED, RELEVANT, 2) == pytest.approx(0.386853, abs=1e-6)
    # Both relevant items on top: perfect, even though k is larger than |relevant|.
    assert metrics.ndcg_at_k(["x", "y", "z"], {"x", "y"}, 5) == pytest.approx(1.0)
    # A repeated id is credited once.
    assert metrics.dcg_at_k(["b", "b"], {"b"}, 2) == pytest.approx(1.0)


def test_reciprocal_rank_and_cutoff() -> None:
    assert metrics.reciprocal_rank(RANKED, RELEVANT) == pytest.approx(0.5)
    assert metrics.reciprocal_rank(RANKED, RELEVANT, k=1) == 0.0
    assert metrics.reciprocal_rank(RANKED, {"zz"}) == 0.0


def test_hit_rate_coverage_novelty_by_hand() -> None:
    assert metrics.hit_rate([(["a", "b", "c"], "c"), (["a"], "z")], 3) == pytest.approx(0.5)
    assert metrics.hit_rate([(["a", "b", "c"], "c")], 2) == 0.0
    assert metrics.catalogue_coverage([["a", "b"], ["b", "c"]], 10, 2) == pytest.approx(0.3)
    assert metrics.catalogue_coverage([["a", "b"], ["b", "c"]], 10, 1) == pytest.approx(0.2)
    # 3 users; a bought by all 3: p = 4/4 -> 0 bits; b by none: p = 1/4 -> 2 bits; mean 1.0
    assert metrics.novelty([["a", "b"]], {"a": 3}, 3, 2) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        metrics.recall_at_k(RANKED, RELEVANT, 0)


# ---------------------------------------------------------------- splits and leakage

EVENTS = [
    ev("u1", "a", 0), ev("u1", "b", 0), ev("u1", "c", 5),
    ev("u2", "a", 1), ev("u2", "b", 6), ev("u2", "x", 6),
    ev("u3", "c", 2),
    ev("u4", "a", 7), ev("u4", "y", 7),
]


def test_time_split_has_no_leakage_and_names_cold_cases() -> None:
    cut = DAY0 + timedelta(days=5)
    split = time_split(EVENTS, cut)
    assert all(e.ts < cut for e in split.train) and all(e.ts >= cut for e in split.test)
    assert len(split.train) + len(split.test) == len(EVENTS)
    assert not {e.session_id for e in split.train} & {e.session_id for e in split.test}
    assert split.cold_items == {"x", "y"}
    assert split.cold_users == {"u4"}
    assert split.bought_together == {("b", "x"), ("x", "b"), ("a", "y"), ("y", "a")}


def test_leave_last_holds_out_each_users_last_day_only() -> None:
    split = leave_last_split(EVENTS)
    test_by_user = {(e.user_id, e.item_id) for e in split.test}
    assert test_by_user == {("u1", "c"), ("u2", "b"), ("u2", "x")}  # u3, u4: one visit, stay in train
    for user in ("u1", "u2"):
        last_train = max(e.ts for e in split.train if e.user_id == user)
        first_test = min(e.ts for e in split.test if e.user_id == user)
        assert last_train < first_test
    assert leave_last_split(EVENTS, unit="session").test == split.test  # session = user + day here
    held = leave_last_split(EVENTS, hold_out_single_visit=True)
    assert held.cold_users == {"u3", "u4"}


def test_leakage_checks_reject_overlaps() -> None:
    with pytest.raises(LeakageError, match="session"):
        check_no_leakage([ev("u1", "a", 0)], [ev("u1", "b", 0)], global_time=False)
    with pytest.raises(LeakageError, match="train reaches"):
        check_no_leakage([ev("u1", "a", 3)], [ev("u2", "b", 2)], global_time=True)
    with pytest.raises(LeakageError, match="not earlier"):
        check_no_leakage([ev("u1", "a", 3)], [Interaction("u1", "b", DAY0 + timedelta(days=2), "s")], global_time=False)


def test_bought_together_pairs_are_distinct_items_of_one_basket() -> None:
    pairs = bought_together_pairs([ev("u1", "a", 0), ev("u1", "a", 0), ev("u1", "b", 0), ev("u2", "c", 0)])
    assert pairs == {("a", "b"), ("b", "a")}


def test_parse_ts_reads_z_and_naive_as_utc() -> None:
    assert parse_ts("2020-06-01T00:00:00Z") == datetime(2020, 6, 1, tzinfo=timezone.utc)
    assert parse_ts("2020-06-01") == datetime(2020, 6, 1, tzinfo=timezone.utc)


# ---------------------------------------------------------------- baselines on a tiny shop

CATALOG = ["i0", "i1", "i2", "i3", "i4", "i5", "c0"]  # c0: new item, nobody bought it
TRAIN = [
    ev("u1", "i0", 0), ev("u1", "i1", 0),
    ev("u2", "i0", 0), ev("u2", "i1", 0),
    ev("u3", "i0", 1), ev("u3", "i2", 1),
    ev("u4", "i0", 2),
    ev("u5", "i3", 3), ev("u5", "i4", 3),
    ev("u6", "i3", 4), ev("u6", "i4", 4),
    ev("u7", "i3", 5),
    # i5: bought by 3 users, long ago; i2: bought by 2, recently
    ev("u8", "i5", -100), ev("u9", "i5", -100), ev("u10", "i5", -100),
    ev("u11", "i2", 60), ev("u12", "i2", 60),
]
# Content: c0 looks like i3 and i4, i0..i2 look alike, i5 is on its own.
FEATURES = np.array([
    [1, 0, 0], [1, 0.1, 0], [0.9, 0, 0.1], [0, 1, 0], [0, 1, 0.1], [0, 0, 1], [0, 1, 0.02],
], dtype=np.float32)


def ids(scored: Scored) -> list[str]:
    return [item for item, _ in scored]


def test_popularity_returns_most_bought_and_recent_window_tracks_season() -> None:
    pop = Popularity()
    pop.fit(TRAIN, CATALOG)
    assert ids(pop.recommend("u5", 2, exclude={"i3", "i4"})) == ["i0", "i2"]  # 4 buyers, then 3 (i2 beats i5 by catalogue order)
    assert "c0" not in ids(pop.recommend("u5", 10))  # unscoreable, not guessed
    recent = Popularity(days=30)
    recent.fit(TRAIN, CATALOG)
    assert ids(recent.recommend("nobody", 1)) == ["i2"]  # the only sale in the last 30 days
    everything = ids(recent.recommend("nobody", 7))
    assert len(everything) == 6 and "c0" not in everything  # older items still rank, after i2


def test_item_knn_recommends_the_co_bought_item() -> None:
    knn = ItemKNN(neighbours=10)
    knn.fit(TRAIN, CATALOG)
    assert ids(knn.recommend("u7", 3, exclude={"i3"})) == ["i4"]  # only positive evidence
    assert ids(knn.similar_or_complementary("i1", 1)) == ["i0"]  # cos = 2 / sqrt(2 * 4)
    assert knn.recommend("stranger", 3) == []
    assert knn.similar_or_complementary("c0", 3) == []


def test_als_returns_k_warm_items_excluding_seen() -> None:
    als = ALS(factors=4, iterations=5, seed=0)
    als.fit(TRAIN, CATALOG)
    recs = ids(als.recommend("u1", 4, exclude={"i0", "i1"}))
    assert len(recs) == 4 and not {"i0", "i1", "c0"} & set(recs)
    again = ALS(factors=4, iterations=5, seed=0)
    again.fit(TRAIN, CATALOG)
    assert again.recommend("u1", 4, exclude={"i0", "i1"}) == als.recommend("u1", 4, exclude={"i0", "i1"})
    assert "i1" not in ids(als.similar_or_complementary("i1", 3))


def test_content_knn_reaches_cold_items() -> None:
    content = ContentKNN()
    content.fit(TRAIN, CATALOG, FEATURES)
    assert content.can_score_cold_items
    assert ids(content.recommend("u7", 2, exclude={"i3"})) == ["c0", "i4"]
    assert ids(content.similar_or_complementary("c0", 1)) == ["i3"]
    with pytest.raises(ValueError):
        ContentKNN().fit(TRAIN, CATALOG, None)


def test_ncf_ranks_with_and_without_content_tower() -> None:
    plain = NCF(dim=8, hidden=(16,), epochs=3, seed=0)
    plain.fit(TRAIN, CATALOG)
    assert not plain.can_score_cold_items
    recs = ids(plain.recommend("u1", 5, exclude={"i0", "i1"}))
    assert len(recs) == 4 and "c0" not in recs and not {"i0", "i1"} & set(recs)
    assert np.isnan(plain.score("u1", ["c0", "nope"])).all()
    hybrid = NCF(dim=8, hidden=(16,), epochs=3, seed=0)
    hybrid.fit(TRAIN, CATALOG, FEATURES)
    assert hybrid.can_score_cold_items
    assert "c0" in ids(hybrid.recommend("u1", 5, exclude={"i0", "i1"}))
    same = NCF(dim=8, hidden=(16,), epochs=3, seed=0)
    same.fit(TRAIN, CATALOG, FEATURES)
    assert same.losses == hybrid.losses  # seeded: identical training


def test_lightfm_hybrid_when_installed() -> None:
    reason = lightfm_unavailable_reason()
    if reason is not None:
        with pytest.raises(ImportError, match="no-build-isolation"):
            LightFMHybrid()
        return
    model = LightFMHybrid(components=4, epochs=3, seed=0)
    model.fit(TRAIN, CATALOG, FEATURES)
    assert model.can_score_cold_items
    recs = ids(model.recommend("u1", 5, exclude={"i0", "i1"}))
    assert len(recs) == 5 and not {"i0", "i1"} & set(recs)


def test_every_method_keeps_the_protocol() -> None:
    built, unavailable = build_methods(["popularity", "item-knn", "content-knn"], have_features=False)
    assert set(built) == {"popularity", "item-knn"} and "content-knn" in unavailable
    for method in built.values():
        assert isinstance(method, Method)


# ---------------------------------------------------------------- runner and report

RUN_TRAIN = [ev("u1", "a", 0), ev("u1", "b", 0), ev("u2", "a", 1), ev("u3", "c", 2)]
RUN_TEST = [ev("u1", "c", 10), ev("u2", "b", 11), ev("u2", "x", 11), ev("u4", "a", 12)]
RUN_CATALOG = ["a", "b", "c", "x", "y"]


def test_runner_numbers_by_hand() -> None:
    results = evaluate({"pop": Popularity(), "knn": ItemKNN()}, RUN_TRAIN, RUN_TEST, RUN_CATALOG, ks=(1, 2),
                       progress=False, count_repeats=False)
    pop = results["methods"]["pop"]["next_purchase"]
    # Popularity order a (2 buyers), b, c (1 each, catalogue order).
    # u1: excl {a,b}, rel {c}, top-1 c -> 1; u2: excl {a}, rel {b,x}, top-1 b -> 1/2; u4 (cold): rel {a}, top-1 a -> 1
    assert pop["all"]["recall@1"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert pop["warm_items"] == pytest.approx({"users": 2, "recall@1": 1.0, "ndcg@1": 1.0, "hit@1": 1.0,
                                               "recall@2": 1.0, "ndcg@2": 1.0, "hit@2": 1.0, "mrr@2": 1.0})
    assert pop["cold_items"] is None  # x is new: popularity cannot score it
    assert pop["cold_users"]["users"] == 1 and pop["cold_users"]["recall@1"] == 1.0
    assert results["methods"]["knn"]["next_purchase"]["cold_users"] is None
    # Held-out pairs (b, x) and (x, b). For b popularity suggests [a, c]: never the new x.
    # For x it suggests [a, b]: b at rank 2. So hit@1 = 0, hit@2 = 1/2.
    together = results["methods"]["pop"]["bought_together"]
    assert together["all"] == {"pairs": 2, "hit@1": 0.0, "hit@2": 0.5}
    assert together["cold"] is None
    assert results["data"]["cold_test_items"] == 1 and results["data"]["cold_users_evaluated"] == 1


class _Spy:
    """Records what the runner lets a method see."""

    can_score_cold_items = True
    can_score_cold_users = True

    def __init__(self, leak: bool = False) -> None:
        self.leak = leak
        self.fitted_on: list[Interaction] = []
        self.excludes: dict[str, set[str]] = {}

    def fit(self, train: Sequence[Interaction], item_ids: Sequence[str], item_features: ItemFeatures | None = None) -> None:
        self.fitted_on = list(train)

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = frozenset()) -> Scored:
        self.excludes[user_id] = set(exclude)
        if self.leak:
            return [(item, 1.0) for item in sorted(exclude)[:k]]
        return [("y", 1.0)]

    def similar_or_complementary(self, item_id: str, k: int) -> Scored | None:
        return None


def test_runner_fits_on_train_only_and_enforces_exclusion() -> None:
    spy = _Spy()
    results = evaluate({"spy": spy}, RUN_TRAIN, RUN_TEST, RUN_CATALOG, ks=(1,), progress=False, count_repeats=False)
    assert spy.fitted_on == RUN_TRAIN and not set(spy.fitted_on) & set(RUN_TEST)
    assert spy.excludes == {"u1": {"a", "b"}, "u2": {"a"}, "u4": set()}
    assert results["methods"]["spy"]["bought_together"] is None
    with pytest.raises(ValueError, match="excluded"):
        evaluate({"leaky": _Spy(leak=True)}, RUN_TRAIN, RUN_TEST, RUN_CATALOG, ks=(1,), progress=False,
                 count_repeats=False)
    with pytest.raises(LeakageError):
        evaluate({"spy": _Spy()}, RUN_TRAIN + [RUN_TEST[0]], RUN_TEST, RUN_CATALOG, progress=False)


def test_repeats_count_and_nothing_unknown_at_the_cut_may_be_offered() -> None:
    offered = ["a", "b", "c"]  # x and y: no event before the cut
    results = evaluate({"pop": Popularity()}, RUN_TRAIN, RUN_TEST, RUN_CATALOG, ks=(1, 2), progress=False,
                       offered_ids=offered, count_repeats=True)
    pop = results["methods"]["pop"]["next_purchase"]
    # Popularity [a, b]. u1 bought c (new to them): 0; u2 bought b (a repeat? no: new) and x: 1/2;
    # u4 (cold) bought a: 1. Repeats are not excluded, so u1's list may hold a and b.
    assert pop["all"]["recall@2"] == pytest.approx((0 + 0.5 + 1) / 3)
    # new to user: u1's list without its own {a, b} is empty; u2 without {a} is [b]
    assert pop["new_to_user"]["users"] == 3 and pop["new_to_user"]["recall@2"] == pytest.approx((0 + 0.5 + 1) / 3)
    assert results["data"]["offered_items"] == 3
    # u1 buys a again after the cut: a hit for "all" (repeats count), not a target "new to user"
    again = evaluate({"pop": Popularity()}, RUN_TRAIN, RUN_TEST + [ev("u1", "a", 10)], RUN_CATALOG, ks=(1,),
                     progress=False, offered_ids=offered, count_repeats=True)["methods"]["pop"]["next_purchase"]
    assert again["all"]["hit@1"] == pytest.approx(2 / 3)  # u1 (a, again) and u4 (a); u2's b is second
    assert again["new_to_user"]["hit@1"] == pytest.approx(1 / 3)  # u1's list without a, b is empty; u4 still a
    with pytest.raises(ValueError, match="not on offer"):  # the spy offers y, unknown at the cut
        evaluate({"spy": _Spy()}, RUN_TRAIN, RUN_TEST, RUN_CATALOG, ks=(1,), progress=False, offered_ids=offered)


def test_report_writes_markdown_json_and_plots(tmp_path) -> None:
    results = evaluate({"pop": Popularity(), "knn": ItemKNN()}, RUN_TRAIN, RUN_TEST, RUN_CATALOG,
                       ks=(1, 2), progress=False, unavailable={"lightfm": "not installed"}, count_repeats=False)
    report = write_report(results, tmp_path, title="tiny", notes=["seed 0"])
    text = report.read_text()
    assert "| pop | 0.8333" in text and "n/a" in text and "**lightfm**: not installed" in text
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(results))
    for png in ("metric_vs_k.png", "warm_cold.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert math.isclose(results["methods"]["pop"]["catalogue"]["coverage@1"], 3 / 5)


class _Diary:
    """Records the order in which the replay lets a method see events and answer."""

    can_score_cold_items = True
    can_score_cold_users = True

    def __init__(self) -> None:
        self.log: list[tuple[str, object]] = []
        self.offered: set[str] = set()

    def fit(self, train, item_ids, item_features=None) -> None:
        self.log.append(("fit", max(e.ts for e in train)))
        self.offered = set(item_ids)

    def update(self, events, new_items) -> None:
        self.log.append(("update", {e.ts for e in events}))
        self.offered |= set(new_items)

    def recommend(self, user_id, k, exclude=frozenset()):
        self.log.append(("ask", user_id))
        return [(i, 1.0) for i in sorted(self.offered)[:k]]

    def similar_or_complementary(self, item_id, k):
        return None


def test_replay_asks_each_day_before_showing_that_day_and_offers_only_what_was_seen() -> None:
    from shoprec.evaluation.protocols import items_cold, replay

    events = RUN_TRAIN + RUN_TEST  # train days 0..2, test days 10, 11, 12
    diary = _Diary()
    out = replay({"diary": lambda: diary}, events, ev("x", "a", 10).ts, RUN_CATALOG, ks=(1, 2), progress=False)
    kinds = [kind for kind, _ in diary.log]
    assert kinds == ["fit", "ask", "update", "ask", "update", "ask", "update"]
    assert diary.log[0][1] < ev("x", "a", 10).ts  # fitted on the days before the replay only
    assert out["data"]["days"] == 3 and out["methods"]["diary"]["next_purchase"]["all"]["users"] == 3
    # the new item x appears only on day 11: nothing may offer it on that day
    with pytest.raises(ValueError, match="not on offer"):
        replay({"cheat": lambda: _Cheat()}, events, ev("x", "a", 10).ts, RUN_CATALOG, ks=(1,), progress=False)
    held = items_cold({"pop": Popularity}, events, RUN_CATALOG, ks=(1,), progress=False)
    assert held["methods"]["pop"] is None  # popularity cannot rank items nobody bought


class _Cheat(_Diary):
    def recommend(self, user_id, k, exclude=frozenset()):
        return [("x", 1.0)]
