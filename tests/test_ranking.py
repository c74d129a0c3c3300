"""The ranking pipeline piece by piece, on a hand-made shop whose answers can be worked out:
each candidate source, the features they feed, the rankers and the training fallbacks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shoprec.recommend.ranking import candidates as C
from shoprec.recommend.ranking.copurchase import CoPurchase
from shoprec.recommend.ranking.features import FEATURES, build
from shoprec.recommend.ranking.pipeline import PipelineSettings, RankingPipeline, disliked_rows, sink_disliked
from shoprec.recommend.ranking.rankers import BlendRanker, LearnedRanker, ndcg_at, read_card
from shoprec.recommend.ranking.state import EventLog, ItemFacts, ItemTable
from shoprec.recommend.ranking.training import TrainSettings, train

DAY = 86400.0
NOW = 1_700_000_000.0
W = {"view": 1.0, "click": 2.0, "cart": 4.0, "purchase": 8.0, "dislike": -6.0}


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def shop() -> tuple[ItemTable, EventLog]:
    """Tops (axis 0) in two colours of one product, a skirt (axis 1), shoes (axis 2), a hat (axis 3)
    created yesterday and never sold."""
    t = ItemTable()
    t.add("top-red", ItemFacts("top", "women", "T1", 10.0, NOW - 300 * DAY, unit(1, 0.1, 0, 0)))
    t.add("top-blue", ItemFacts("top", "women", "T1", 10.0, NOW - 300 * DAY, unit(1, 0.12, 0, 0)))
    t.add("skirt", ItemFacts("skirt", "women", "S1", 20.0, NOW - 300 * DAY, unit(0.3, 1, 0, 0)))
    t.add("shoe", ItemFacts("shoes", "men", "F1", 50.0, NOW - 300 * DAY, unit(0, 0, 1, 0)))
    t.add("hat", ItemFacts("hat", "men", "H1", 15.0, NOW - 1 * DAY, unit(0.2, 0, 0, 1)))
    return t, EventLog(W)


def add(log: EventLog, t: ItemTable, user: str, item: str, kind: str, days_ago: float, basket: str = "") -> None:
    log.add(user, t.pos[item], kind, NOW - days_ago * DAY, basket or f"{user}@{int(days_ago)}")


def context(p: RankingPipeline, user: str, allowed: np.ndarray | None = None) -> C.UserContext:
    return p.context(user, NOW, allowed)


def proposed(source: C.CandidateSource, ctx: C.UserContext, t: ItemTable, limit: int = 10) -> dict[str, float]:
    return {t.ids[c]: s for c, s in source.generate(ctx, limit).as_dict().items()}


# ---------------------------------------------------------------------------- sources
def test_rebuy_weights_recent_purchases_higher():
    t, log = shop()
    add(log, t, "u", "skirt", "purchase", 90)
    add(log, t, "u", "shoe", "purchase", 1)
    got = proposed(C.Rebuy(), context(RankingPipeline(t, log), "u"), t)
    assert set(got) == {"skirt", "shoe"} and got["shoe"] > got["skirt"]


def test_variants_are_other_colours_of_bought_products_only():
    t, log = shop()
    add(log, t, "u", "top-red", "purchase", 2)
    got = proposed(C.Variants(), context(RankingPipeline(t, log), "u"), t)
    assert list(got) == ["top-blue"]


def test_similar_takes_the_best_match_over_recent_items_not_the_mean():
    t, log = shop()
    add(log, t, "u", "top-red", "view", 2)
    add(log, t, "u", "shoe", "view", 1)
    p = RankingPipeline(t, log)
    got = proposed(C.Similar(C.exact_neighbours(t)), context(p, "u"), t)
    # the mean of a top and a shoe is near neither; max-over-items keeps the other top near 1
    assert got["top-blue"] > 0.95 and "top-red" not in got and "shoe" not in got


def test_co_bought_and_shoppers_like_you_come_from_other_baskets():
    t, log = shop()
    add(log, t, "a", "skirt", "purchase", 10, "a1")
    add(log, t, "a", "shoe", "purchase", 10, "a1")
    add(log, t, "u", "skirt", "purchase", 1, "u1")
    p = RankingPipeline(t, log)
    co = p.copurchase()
    ctx = context(p, "u")
    assert proposed(C.CoBoughtSource(co.scores), ctx, t) == {"shoe": pytest.approx(1.3)}  # basket 1 + buyer 0.3
    assert set(proposed(C.Shoppers(co.shoppers_like), ctx, t)) == {"shoe"}
    assert co.best_anchor(t.pos["shoe"], [t.pos["top-red"], t.pos["skirt"]]) == t.pos["skirt"]


def test_copurchase_matches_its_matrix_definition_on_a_random_shop():
    """The index-array arithmetic against the plain matrix formulas: co-bought = basket and buyer
    counts of items sharing a basket / buyer with the query; shoppers like you = cosine-weighted
    votes of the nearest shoppers, their own items left out."""
    rng = np.random.default_rng(3)
    t = ItemTable()
    for i in range(40):
        t.add(f"i{i}", ItemFacts("c", "g", f"P{i}", 1.0, NOW - 300 * DAY, unit(*rng.normal(size=4))))
    log = EventLog(W)
    for _ in range(300):
        u, i = int(rng.integers(25)), int(rng.integers(40))
        kind = str(rng.choice(["view", "cart", "purchase"]))
        log.add(f"u{u}", i, kind, NOW - float(rng.integers(1, 60)) * DAY, f"b{u}-{int(rng.integers(4))}")
    co = CoPurchase(log, len(t), basket_weight=1.0, user_weight=0.3)
    baskets, buyers, items, _ = log.basket_arrays()
    in_basket = {(b, i) for b, i in zip(baskets.tolist(), items.tolist())}
    by_buyer = {(u, i) for u, i in zip(buyers.tolist(), items.tolist())}
    users, item_of, weight, _ = log.arrays()
    dense = np.zeros((len(log.users), len(t)))
    np.add.at(dense, (users[weight > 0], item_of[weight > 0]), weight[weight > 0])
    dense /= np.maximum(np.linalg.norm(dense, axis=1, keepdims=True), 1e-12)
    for query in ([0], [3, 7], [5, 5, 11, 39]):
        expected = np.zeros(len(t))
        for pairs, w in ((in_basket, 1.0), (by_buyer, 0.3)):
            holders = {k for k, i in pairs if i in query}
            for k, i in pairs:
                expected[i] += w * (k in holders)
        expected[query] = 0.0
        codes, scores = co.scores(query, 10)
        assert np.allclose(scores, np.sort(expected)[::-1][: len(scores)]) and len(scores) == min(10, (expected > 0).sum())
        assert np.allclose(expected[codes], scores)
    # "often bought with Y": the anchor sharing the most baskets (then buyers) with the item, the
    # first such anchor on a tie
    anchors = [1, 4, 9, 16, 25, 36]
    for item in range(len(t)):
        shared = [sum(w * len({k for k, i in pairs if i == item} & {k for k, i in pairs if i == a})
                      for pairs, w in ((in_basket, 1.0), (by_buyer, 0.3))) for a in anchors if a != item]
        others = [a for a in anchors if a != item]
        expected_anchor = others[int(np.argmax(shared))] if max(shared) > 0 else None
        assert co.best_anchor(item, anchors) == expected_anchor
    checked = 0
    for user in range(len(log.users)):
        sims = dense @ dense[user]
        sims[user] = 0.0
        top = np.argsort(-sims, kind="stable")[:5]
        votes = sims[top] @ dense[top]
        votes[dense[user] > 0] = 0.0
        codes, got = co.shoppers_like(user, 5, 8)
        if sims[top[-1]] > 0 and sims[top[-1]] != np.sort(sims)[::-1][5]:  # a unique 5 nearest shoppers
            assert np.allclose(got, np.sort(votes)[::-1][: len(got)], atol=1e-5)
            assert np.allclose(votes[codes], got, atol=1e-5)
            checked += 1
    assert checked >= 10  # most shoppers have a unique nearest five


def test_copurchase_as_of_a_cut_ignores_later_baskets():
    t, log = shop()
    add(log, t, "a", "skirt", "purchase", 1, "a1")
    add(log, t, "a", "shoe", "purchase", 1, "a1")
    codes, _ = CoPurchase(log, len(t), before=NOW - 2 * DAY).scores([t.pos["skirt"]], 5)
    assert len(codes) == 0


def test_trending_and_group_trending():
    t, log = shop()
    for n in range(3):
        add(log, t, f"fan{n}", "shoe", "purchase", 2)
    add(log, t, "x", "skirt", "purchase", 3)
    add(log, t, "u", "top-red", "view", 1)
    p = RankingPipeline(t, log)
    ctx = context(p, "u")
    trending = proposed(C.Trending(), ctx, t)
    assert max(trending, key=trending.get) == "shoe"
    group = proposed(C.GroupTrending(), ctx, t)  # u's group is "women": the skirt, not the shoe
    assert "skirt" in group and "shoe" not in group


def test_segment_source_and_new_arrivals():
    t, log = shop()
    add(log, t, "u", "top-red", "view", 5)
    p = RankingPipeline(t, log, segment_items=lambda user, now: np.array([t.pos["shoe"]]))
    ctx = context(p, "u")
    assert proposed(C.Segment(), ctx, t) == {"shoe": 1.0}
    new = proposed(C.NewArrivals(days=14), ctx, t)
    assert list(new) == ["hat"]  # created yesterday, never sold


def test_sources_respect_the_offered_catalogue_and_dislikes():
    t, log = shop()
    add(log, t, "u", "top-red", "purchase", 5)
    add(log, t, "u", "skirt", "dislike", 1)
    p = RankingPipeline(t, log)
    allowed = np.ones(len(t), dtype=bool)
    allowed[t.pos["top-blue"]] = False
    ctx = context(p, "u", allowed)
    codes, _ = C.generate(p.sources(allowed), ctx)
    names = {t.ids[c] for c in codes}
    assert "top-blue" not in names and "skirt" not in names and "top-red" in names


# ---------------------------------------------------------------------------- features and rankers
def test_features_describe_the_users_relation_to_each_candidate():
    t, log = shop()
    add(log, t, "u", "top-red", "purchase", 3)
    p = RankingPipeline(t, log)
    ctx = context(p, "u")
    codes = np.array([t.pos["top-red"], t.pos["top-blue"], t.pos["shoe"]])
    x = build(ctx, codes, {})
    col = {f: x[:, i] for i, f in enumerate(FEATURES)}
    assert x.shape == (3, len(FEATURES))
    assert col["own_weight"][0] > 0 and col["own_weight"][1] == 0
    assert col["variant_weight"][1] > 0 and col["variant_weight"][2] == 0
    assert col["days_since_own"][0] == pytest.approx(3.0) and np.isnan(col["days_since_own"][2])
    assert col["sim_max"][1] > 0.99 and col["sim_max"][2] < 0.01
    assert col["category_affinity"][1] == pytest.approx(1.0) and col["category_affinity"][2] == 0


def test_disliked_neighbourhood_sinks_below_everything():
    x = np.zeros((3, len(FEATURES)), dtype=np.float32)
    x[:, FEATURES.index("sim_max")] = [0.9, 0.5, 0.1]
    x[:, FEATURES.index("sim_disliked")] = [0.1, 0.9, np.nan]
    scores = sink_disliked(np.array([3.0, 2.0, 1.0]), x)
    assert list(np.argsort(-scores)) == [0, 2, 1]


def test_rows_the_dislike_rule_sinks_do_not_use_up_the_rows_ranked_exactly():
    """A screening ranker orders ``top`` rows exactly; sunk rows go below all of them, so the
    pipeline asks for that many more."""
    t, log = shop()
    t.add("boot", ItemFacts("shoes", "men", "F2", 60.0, NOW - 300 * DAY, unit(0, 0, 1, 0.1)))
    add(log, t, "fan", "boot", "purchase", 2)  # a best seller, next to what "u" disliked
    add(log, t, "u", "top-red", "purchase", 5)
    add(log, t, "u", "shoe", "dislike", 1)
    asked = []

    class Recording(BlendRanker):
        def score(self, x: np.ndarray, top: int | None = None) -> np.ndarray:
            asked.append((top, int(disliked_rows(x).sum())))
            return super().score(x, top)

    RankingPipeline(t, log).rank("u", NOW, 2, Recording())
    (top, sunk), = asked
    assert sunk > 0 and top == 2 + sunk


def test_blend_prefers_own_purchases_and_close_items():
    x = np.zeros((2, len(FEATURES)), dtype=np.float32)
    x[0, FEATURES.index("own_weight")] = 8.0
    x[1, FEATURES.index("sim_max")] = 0.2
    s = BlendRanker().score(x)
    assert s[0] > s[1]


def test_ndcg_counts_targets_the_candidates_missed():
    assert ndcg_at([np.array([1.0, 0.0])], [np.array([1.0, 0.0])], [1]) == pytest.approx(1.0)
    assert ndcg_at([np.array([1.0, 0.0])], [np.array([1.0, 0.0])], [2]) < 1.0


# ---------------------------------------------------------------------------- training
def busy_shop(users: int = 120, weeks: int = 40, seed: int = 0) -> tuple[ItemTable, EventLog]:
    """Shoppers who rebuy their favourite item now and then and otherwise buy near it: a shop
    where the signals are learnable."""
    rng = np.random.default_rng(seed)
    t = ItemTable()
    for i in range(60):
        axis = i % 6
        v = np.zeros(8, np.float32)
        v[axis] = 1.0
        v[6 + i % 2] = 0.3 + 0.01 * i
        t.add(f"i{i}", ItemFacts(f"c{axis}", f"g{axis % 3}", f"p{i // 2}", 10.0 + i, None, v))
    log = EventLog(W)
    for u in range(users):
        fav = int(rng.integers(60))
        for w in range(weeks):
            if rng.random() < 0.4:
                item = fav if rng.random() < 0.5 else int(rng.choice([j for j in range(60) if j % 6 == fav % 6]))
                log.add(f"u{u}", item, "purchase", NOW - (weeks - w) * 7 * DAY + float(rng.integers(0, 6 * 86400)),
                        f"u{u}w{w}")
    return t, log


@pytest.mark.parametrize("objective", ["rank_xendcg", "lambdarank"])
def test_training_learns_a_ranker_that_beats_the_blend_on_a_learnable_shop(tmp_path, objective):
    t, log = busy_shop()
    report = train(RankingPipeline(t, log), TrainSettings(label_days=14, windows=8, min_positive_queries=20,
                                                          objective=objective))
    v = report.card["validation"]
    assert report.ranker is not None and report.serves
    assert report.card["objective"] == objective
    assert f"objective={objective}" in report.ranker.booster.model_to_string()
    # shoppers here rebuy their favourite half the time: the model must learn that and beat the blend
    assert v["ndcg@10_learned"] > v["ndcg@10_blend"] > 0.3
    assert set(report.card["importances"]) == set(FEATURES)
    report.ranker.save(tmp_path)
    card = read_card(tmp_path)
    assert card["version"] == report.card["version"]
    loaded = LearnedRanker.load(tmp_path)
    assert (loaded is not None) == report.serves


def test_too_few_events_keep_the_blend():
    t, log = shop()
    add(log, t, "u", "top-red", "purchase", 3)
    report = train(RankingPipeline(t, log), TrainSettings())
    assert not report.serves and report.ranker is None
    assert "too" in report.reason


def test_a_model_card_for_other_features_is_refused(tmp_path):
    t, log = busy_shop(users=60, weeks=30)
    report = train(RankingPipeline(t, log), TrainSettings(label_days=14, windows=6, min_positive_queries=5))
    assert report.ranker is not None
    report.ranker.card["serves"] = True
    folder = report.ranker.save(tmp_path)
    assert LearnedRanker.load(tmp_path) is not None
    card = json.loads((folder / "card.json").read_text())
    card["features"] = card["features"][:-1]
    (folder / "card.json").write_text(json.dumps(card))
    assert LearnedRanker.load(tmp_path) is None


def test_the_pipeline_ranks_and_explains_with_sources():
    t, log = shop()
    add(log, t, "u", "top-red", "purchase", 3)
    p = RankingPipeline(t, log, PipelineSettings())
    ranked = p.rank("u", NOW, 5, BlendRanker())
    by_id = {t.ids[r.code]: r for r in ranked}
    assert by_id["top-red"].reason_source == "rebuy"
    assert by_id["top-blue"].reason_source == "variant"


def test_ranking_as_of_a_cut_never_reuses_a_later_snapshot():
    """Two visits in the same hour: what was bought between them must not leak into the earlier."""
    t, log = shop()
    add(log, t, "u", "top-red", "view", 1.0)
    hour = 3600.0 / DAY
    log.add("fan", t.pos["shoe"], "purchase", NOW - 0.5 * hour * DAY, "fan@1")  # 30 minutes ago
    p = RankingPipeline(t, log)
    later = {t.ids[r.code]: r for r in p.rank("u", NOW, 10, BlendRanker(), cut=NOW)}
    earlier = {t.ids[r.code]: r for r in p.rank("u", NOW - 0.75 * hour * DAY, 10, BlendRanker(),
                                               cut=NOW - 0.75 * hour * DAY)}
    assert later["shoe"].sources.get("trending", 0) > 0
    assert "shoe" not in earlier or earlier["shoe"].sources.get("trending", 0) == 0


def test_the_learned_ranker_falls_back_only_when_it_loses_beyond_the_noise():
    """One validation window holds a few dozen users who bought: a model that loses by less
    than the difference's standard error still serves; one that loses clearly does not."""
    from shoprec.recommend.ranking.training import learned_serves

    rng = np.random.default_rng(0)
    blend = rng.uniform(0, 0.2, 60)
    noisy = blend + rng.normal(0, 0.1, 60)
    noisy -= noisy.mean() - blend.mean() + 0.002  # 0.002 worse on average, well inside the noise
    serves, se = learned_serves(noisy, blend)
    assert serves and se > 0.002
    serves, _ = learned_serves(blend - 0.05, blend)  # worse for every user
    assert not serves
    assert learned_serves(blend + 0.01, blend)[0]
    assert learned_serves(np.array([0.1]), np.array([0.2])) == (False, 0.0)  # one user: no noise estimate


def test_the_learned_ranker_screens_a_large_pool_then_scores_its_best_rows_with_every_tree():
    import lightgbm as lgb

    from shoprec.recommend.ranking.rankers import SCREEN_TREES

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, len(FEATURES))).astype(np.float32)
    relevance = (x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.normal(size=3000) > 1.0).astype(int)
    booster = lgb.train({"objective": "lambdarank", "num_leaves": 7, "verbose": -1, "min_data_in_leaf": 5},
                        lgb.Dataset(x, relevance, group=[100] * 30), num_boost_round=3 * SCREEN_TREES)
    ranker = LearnedRanker(booster, {"version": "t"})
    pool = rng.normal(size=(500, len(FEATURES))).astype(np.float32)
    exact = booster.predict(pool)
    assert np.allclose(ranker.score(pool), exact)
    assert np.allclose(ranker.score(pool, top=600), exact)  # a pool no larger than top: every tree
    screen = booster.predict(pool, num_iteration=SCREEN_TREES)
    kept = set(np.argsort(-screen)[:100].tolist())
    cascade = ranker.score(pool, top=100)
    order = np.argsort(-cascade, kind="stable")
    # the 100 best by the screening trees come first, scored by the whole model
    assert set(order[:100].tolist()) == kept
    assert np.allclose(cascade[order[:100]], exact[order[:100]])
    # the rest follow in screening order
    rest = order[100:]
    assert np.all(np.diff(screen[rest]) <= 0)
    # and on this learnable pool the screen loses nothing of the whole model's top 10
    assert set(order[:10].tolist()) == set(np.argsort(-exact)[:10].tolist())
    # feeds computed on several threads at once get the same scores as one at a time
    from concurrent.futures import ThreadPoolExecutor

    pools = [rng.normal(size=(400, len(FEATURES))).astype(np.float32) for _ in range(24)]
    alone = [ranker.score(p, top=100) for p in pools]
    with ThreadPoolExecutor(4) as threads:
        together = list(threads.map(lambda i: (i, ranker.score(pools[i], top=100 if i % 2 else None)), range(24)))
    for i, scores in together:
        assert np.allclose(scores, alone[i] if i % 2 else booster.predict(pools[i]))
    ranker.screen_trees = 0  # SHOPREC_RANKER_SCREEN_TREES=0: every row through every tree
    assert np.allclose(ranker.score(pool, top=100), exact)


@pytest.mark.parametrize("screen", [0, 20])
def test_the_feed_serves_the_learned_ranker_with_the_configured_screen(tmp_path, screen):
    from shoprec.config import Settings
    from shoprec.recommend.ranked_feed import RankedFeed
    from shoprec.recommend.ranking.model_store import FileModels

    t, log = busy_shop(users=60, weeks=30)
    report = train(RankingPipeline(t, log), TrainSettings(label_days=14, windows=6, min_positive_queries=5))
    report.ranker.card["serves"] = True
    report.ranker.save(tmp_path / "ranker")
    settings = Settings(store=tmp_path, ranker_screen_trees=screen)
    feed = RankedFeed(None, settings, None, "text", None, FileModels(tmp_path / "ranker"))  # type: ignore[arg-type]
    assert feed.ranker().screen_trees == screen
    assert feed.ranker_for("learned").screen_trees == screen
