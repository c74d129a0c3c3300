"""Online measurement on the demo shop: rec_ids, exact attribution, experiments, /stats, /metrics.

Each test gets its own events database over the shared indexed demo's vector store (so nothing
here changes what other tests see) and ingests the demo's events into it.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from shoprec.http import create_app
from shoprec.online.experiments import ExperimentSpec, bucket, choose
from shoprec.online.stats import two_proportion_test, wilson
from shoprec.recommend.events import Event
from shoprec.service import Shoprec

USER = "u002"
T0 = "2026-03-20T10:00:00+00:00"


def _service(indexed_demo, demo_shop, db) -> Shoprec:
    settings = indexed_demo.settings.model_copy(update={"events_db": db})
    svc = Shoprec(settings, store=indexed_demo.store)
    svc.ingest_events_file(demo_shop[1])
    return svc


@pytest.fixture
def shop(indexed_demo, demo_shop, tmp_path) -> Iterator[Shoprec]:
    svc = _service(indexed_demo, demo_shop, tmp_path / "online.sqlite")
    yield svc
    svc.engine.close()  # never svc.close(): the vector store is the shared demo's


def ev(type_: str, item: str, ts: str = T0, user: str = USER, **extra) -> Event:
    return Event(user_id=user, item_id=item, type=type_, ts=ts, **extra)


def rows(svc: Shoprec, sql: str) -> list[tuple]:
    return [tuple(r) for r in svc.engine.events.conn().execute(sql)]


def feed(svc: Shoprec, user: str = USER, k: int = 5):
    return svc.serve("feed", user, lambda o: svc.recommend(user, k=k, overrides=o))


def test_every_answer_gets_a_fresh_rec_id_and_positions_even_from_the_cache(shop):
    first, again = feed(shop), feed(shop)
    assert first.rec_id != again.rec_id and re.fullmatch(r"[0-9a-f]{32}", first.rec_id)
    assert [r.id for r in first.results] == [r.id for r in again.results]  # the cached feed
    assert [r.position for r in first.results] == [1, 2, 3, 4, 5]
    assert first.surface == "feed" and first.variant == "default" and first.experiment is None
    shop.engine.online.tracker.flush()
    stored = rows(shop, f"SELECT surface, user_id, items FROM recs WHERE rec_id = '{first.rec_id}'")
    assert stored == [("feed", USER, str([r.id for r in first.results]).replace("'", '"'))]


def test_attribution_is_exact_on_constructed_cases(shop):
    served = feed(shop)
    a, b, c = (r.id for r in served.results[:3])
    before = rows(shop, "SELECT COUNT(*) FROM events")[0][0]
    pop_before = rows(shop, "SELECT item_id, pop FROM items ORDER BY item_id")
    report = shop.ingest_events([
        ev("impression", a, rec_id=served.rec_id), ev("impression", b, rec_id=served.rec_id),
        ev("click", b, "2026-03-20T10:01:00Z", rec_id=served.rec_id),               # direct: position 2
        ev("purchase", b, "2026-03-20T12:00:00Z", price=10.0, quantity=2),           # 2 h after the click
        ev("purchase", b, "2026-03-22T12:00:00Z", price=10.0),                        # 50 h after: outside 24 h
        ev("purchase", c, "2026-03-20T12:00:00Z", price=5.0),                         # never clicked
        ev("cart", c, "2026-03-20T12:00:00Z", user="someone-else"),                  # another shopper
        ev("impression", "not-in-list", rec_id=served.rec_id),                       # refused: not in the list
        ev("click", a, rec_id="feedbeef" * 4),                                       # refused: unknown list
        ev("click", a, user="u003", rec_id=served.rec_id),                           # refused: another's list
    ])
    assert report.ingested == 7 and report.attributed == 2
    assert [(e.line, e.reason) for e in report.errors] == [
        (8, f"item 'not-in-list' was not in list '{served.rec_id}'"),
        (9, f"unknown rec_id '{'feedbeef' * 4}' (not a list this server served)"),
        (10, f"list '{served.rec_id}' was served to another user"),
    ]
    assert rows(shop, "SELECT item_id, type, position, direct, price, quantity FROM attributions ORDER BY ts") == [
        (b, "click", 2, 1, None, None), (b, "purchase", 2, 0, 10.0, 2)]
    assert rows(shop, "SELECT item_id, position FROM impressions ORDER BY position") == [(a, 1), (b, 2)]
    # impressions are not behaviour: not in the log, not in popularity, not in the history
    assert rows(shop, "SELECT COUNT(*) FROM events")[0][0] == before + 5
    assert rows(shop, "SELECT COUNT(*) FROM events WHERE type = 'impression'") == [(0,)]
    assert "impression" not in {e.type for e in shop.history(USER)}
    assert rows(shop, "SELECT item_id, pop FROM items ORDER BY item_id") != pop_before  # purchases did move it

    stats = shop.online_stats()
    total = next(g for g in stats["groups"] if g["surface"] == "all")
    assert (total["lists"], total["items_shown"], total["clicks"], total["purchases"]) == (1, 2, 1, 1)
    assert total["ctr"]["value"] == 1.0 and total["conversion_rate"]["value"] == 1.0
    assert total["revenue"] == 20.0 and total["orders"] == 1 and total["items_per_order"] == 2.0
    assert total["coverage"] == pytest.approx(2 / 48)
    assert [d["day"] for d in stats["daily"] if d["surface"] == "feed"] == ["2026-03-20"]


def test_impressions_alone_do_not_change_the_feed_or_trending(shop):
    served = feed(shop, k=8)
    trending = [r.id for r in shop.trending(k=10)]
    before = [r.id for r in shop.recommend(USER, k=8)]
    shop.ingest_events([ev("impression", r.id, rec_id=served.rec_id, event_id=f"imp-{r.id}") for r in served.results])
    shop.engine.ranked.feeds.clear()
    assert [r.id for r in shop.recommend(USER, k=8)] == before
    assert [r.id for r in shop.trending(k=10)] == trending
    # an impression's event_id dedupes like any event's
    again = shop.ingest_events([ev("impression", served.results[0].id, rec_id=served.rec_id,
                                   event_id=f"imp-{served.results[0].id}")])
    assert again.duplicates == 1 and again.ingested == 0


def test_credits_survive_a_restart_and_forget_removes_them(indexed_demo, demo_shop, tmp_path):
    db = tmp_path / "restart.sqlite"
    svc = _service(indexed_demo, demo_shop, db)
    served = feed(svc)
    item = served.results[0].id
    svc.ingest_events([ev("impression", item, rec_id=served.rec_id),
                       ev("click", item, rec_id=served.rec_id)])
    before = svc.online_stats()
    svc.engine.close()

    svc = Shoprec(indexed_demo.settings.model_copy(update={"events_db": db}), store=indexed_demo.store)
    try:
        assert svc.online_stats() == before
        later = svc.ingest_events([ev("purchase", item, "2026-03-20T18:00:00Z", price=3.0)])
        assert later.attributed == 1  # the click before the restart credits the purchase after it
        other = feed(svc, user="u003")
        svc.ingest_events([ev("impression", other.results[0].id, user="u003", rec_id=other.rec_id)])
        assert svc.forget_user(USER) > 0
        for table in ("recs", "impressions", "attributions"):
            assert rows(svc, f"SELECT COUNT(*) FROM {table} WHERE user_id = '{USER}'") == [(0,)], table
        total = next(g for g in svc.online_stats()["groups"] if g["surface"] == "all")
        assert (total["lists"], total["clicks"], total["purchases"]) == (1, 0, 0)  # u003's list stays
    finally:
        svc.engine.close()


def test_assignment_is_stable_and_follows_the_shares():
    spec = ExperimentSpec(name="split", variants=[{"name": "a", "share": 3}, {"name": "b", "share": 1}])
    users = [f"user-{i}" for i in range(4000)]
    counts = Counter(choose(spec, u).name for u in users)
    assert abs(counts["a"] / len(users) - 0.75) < 0.03
    assert [choose(spec, u).name for u in users[:50]] == [choose(spec, u).name for u in users[:50]]
    resalted = spec.model_copy(update={"salt": "other"})
    assert sum(choose(spec, u).name != choose(resalted, u).name for u in users) > 500  # a new salt reshuffles
    assert 0 <= bucket("s", "u") < 1


def test_a_variant_serves_its_settings_and_a_stopped_experiment_promotes_its_winner(indexed_demo, demo_shop,
                                                                                    tmp_path):
    db = tmp_path / "exp.sqlite"
    svc = _service(indexed_demo, demo_shop, db)
    experiments = svc.engine.online.experiments
    experiments.start(ExperimentSpec(name="pop-test", variants=[
        {"name": "control"}, {"name": "popular", "overrides": {"ranker": "popular", "candidates": 50}}]))
    spec = experiments.running.spec
    users = [f"u{i:03d}" for i in range(1, 21)]
    by_variant = {u: choose(spec, u).name for u in users}
    assert set(by_variant.values()) == {"control", "popular"}
    for u in users:
        served = feed(svc, user=u, k=6)
        assert (served.experiment, served.variant) == ("pop-test", by_variant[u])
    # the same user under both settings: the popular ranker is not the personal one
    u = next(u for u in users if by_variant[u] == "control")
    personal = [r.id for r in svc.recommend(u, k=6)]
    popular = [r.id for r in svc.recommend(u, k=6, overrides=spec.variants[1].overrides)]
    assert personal != popular
    with pytest.raises(ValueError, match="running"):
        experiments.start(ExperimentSpec(name="second", variants=[{"name": "x"}, {"name": "y"}]))
    experiments.stop("pop-test", promote="popular")
    svc.engine.close()

    svc = Shoprec(indexed_demo.settings.model_copy(update={"events_db": db}), store=indexed_demo.store)
    try:
        again = feed(svc, user=u)
        assert (again.experiment, again.variant) == (None, "default")
        assert svc.engine.online.assign(u).overrides.ranker == "popular"  # the winner serves everyone
        assert svc.online_stats()["experiment"]["winner"] == "popular"
    finally:
        svc.engine.close()


def test_rates_intervals_and_test_on_known_numbers():
    low, high = wilson(10, 100)
    assert low == pytest.approx(0.0552, abs=1e-3) and high == pytest.approx(0.1744, abs=1e-3)
    z, p = two_proportion_test(50, 1000, 80, 1000)
    assert z == pytest.approx(2.73, abs=0.01) and p == pytest.approx(0.0063, abs=5e-4)
    assert two_proportion_test(0, 10, 0, 10) == (None, None)


# ---------------------------------------------------------------- HTTP
@pytest.fixture
def client(shop) -> Iterator[TestClient]:
    settings = shop.settings.model_copy(update={"api_key": "k"})
    with TestClient(create_app(settings, service=shop)) as c:
        yield c


KEY = {"X-API-Key": "k"}


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_http_experiment_lifecycle_stats_and_metrics_agree_with_the_log(client, shop):
    spec = {"name": "http-ab", "variants": [{"name": "control"}, {"name": "blend", "overrides": {"ranker": "blend"}}]}
    assert client.post("/experiments", json=spec).status_code == 401
    started = client.post("/experiments", json=spec, headers={**KEY, "Idempotency-Key": "start-1"})
    assert started.status_code == 201 and started.json()["state"] == "running"
    replay = client.post("/experiments", json=spec, headers={**KEY, "Idempotency-Key": "start-1"})
    assert replay.status_code == 201 and replay.headers.get("Idempotent-Replayed") == "true"
    assert client.post("/experiments", json=spec, headers=KEY).status_code == 409
    bad = client.post("/experiments", json={"name": "x", "variants": [{"name": "only"}]}, headers=KEY)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"].startswith("variants")

    shown = Counter()
    for i in range(1, 13):
        user = f"u{i:03d}"
        body = client.get(f"/users/{user}/recommendations", params={"k": 4}, headers=KEY).json()
        assert [r["position"] for r in body["results"]] == [1, 2, 3, 4] and body["experiment"] == "http-ab"
        events = [{"user_id": user, "item_id": r["id"], "type": "impression", "rec_id": body["rec_id"],
                   "ts": T0} for r in body["results"]]
        if i % 3 == 0:
            events.append({"user_id": user, "item_id": body["results"][1]["id"], "type": "click",
                           "rec_id": body["rec_id"], "ts": "2026-03-20T10:05:00Z"})
            events.append({"user_id": user, "item_id": body["results"][1]["id"], "type": "purchase",
                           "price": 7.5, "ts": "2026-03-20T10:09:00Z"})
        report = client.post("/events", json=events, headers=KEY).json()
        assert report["errors"] == [] and report["attributed"] == (2 if i % 3 == 0 else 0)
        shown[body["variant"]] += 1
    similar = client.get("/items/tshirt-red/similar", params={"k": 3, "user_id": "u001"}).json()
    assert similar["surface"] == "similar" and similar["rec_id"]

    stats = client.get("/stats").json()
    groups = {(g["surface"], g["variant"]): g for g in stats["groups"]}
    metrics = client.get("/metrics").text
    log = sqlite3.connect(shop.engine.events.path)
    for variant, n in shown.items():
        g = groups[("feed", variant)]
        assert g["lists"] == n and g["items_shown"] == 4 * n
        clicks = log.execute("SELECT COUNT(*) FROM events e JOIN recs r ON r.rec_id = e.rec_id "
                             "WHERE e.type = 'click' AND r.variant = ?", (variant,)).fetchone()[0]
        assert g["clicks"] == clicks == _metric(metrics, "shoprec_rec_clicks_total", surface="feed", variant=variant)
        assert g["items_shown"] == _metric(metrics, "shoprec_rec_impressions_total", surface="feed", variant=variant)
        assert g["revenue"] == pytest.approx(7.5 * clicks)
        assert g["revenue"] == pytest.approx(_metric(metrics, "shoprec_rec_revenue_total", variant=variant))
    assert _metric(metrics, "shoprec_rec_lists_served_total", surface="similar") == 1
    assert stats["verdict"]["metric"] == "ctr" and stats["tests"]

    stop = client.post("/experiments/http-ab/stop", json={"promote": "nope"}, headers=KEY)
    assert stop.status_code == 422
    assert client.post("/experiments/missing/stop", headers=KEY).status_code == 404
    stopped = client.post("/experiments/http-ab/stop", json={"promote": "blend"}, headers=KEY)
    assert stopped.status_code == 200 and stopped.json()["winner"] == "blend"
    assert client.post("/experiments/http-ab/stop", headers=KEY).status_code == 409
    assert client.get("/experiments").json()["running"] is None
    assert client.get("/stats", params={"experiment": "missing"}).status_code == 404


def test_rec_ids_are_unique_across_a_batch_boundary_and_in_a_forked_child():
    """Ids come 256 at a time from the OS; a child forked while another thread held the lock
    neither hangs nor repeats its parent's ids."""
    import os
    import threading

    from shoprec.online.tracking import RecIds

    ids = RecIds()
    seen = [ids() for _ in range(600)]  # crosses two batch boundaries
    assert len(set(seen)) == 600 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in seen)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with ids._lock:
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one id, written back, then out without running pytest's teardown
        import signal

        signal.alarm(5)  # a child stuck on the inherited lock dies instead of hanging the suite
        os.close(read)
        os.write(write, ids().encode())
        os._exit(0)
    os.close(write)
    release.set()
    holder.join()
    with os.fdopen(read, "rb") as pipe:
        child_id = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert re.fullmatch(rb"[0-9a-f]{32}", child_id) and child_id.decode() not in seen
    assert ids() not in seen
