"""One contract, two backends: every test here runs on EdgeStore and on ServerStore
(qdrant-client local mode), so the rest of shoprec can treat them as interchangeable."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from shoprec.config import Settings
from shoprec.indexing import factory
from shoprec.indexing.edge import EdgeStore
from shoprec.indexing.server import ServerStore
from shoprec.indexing.store import ItemFilter, ItemPoint, SparseVec, VectorStore

DIMS = {"text": 8, "image": 8, "joint": 16}
N = 40
CATEGORIES = ("shoes", "bags", "hats")
RARE_TERM = 500  # only in p00 and p01: high IDF
rng = np.random.default_rng(7)
VECS = {name: rng.normal(size=(N, d)).astype(np.float32) for name, d in DIMS.items()}


def iid(i: int) -> str:
    return f"p{i:02d}"


def has_image(i: int) -> bool:
    return i % 4 != 3


def price(i: int) -> float:
    return 5.0 + 2.5 * i


def make_point(i: int) -> ItemPoint:
    vectors = {n: VECS[n][i] for n in DIMS if n != "image" or has_image(i)}
    terms = [1000 + i, i % 5] + ([RARE_TERM] if i < 2 else [])
    return ItemPoint(
        item_id=iid(i),
        vectors=vectors,
        payload={"title": f"item {i}", "category": CATEGORIES[i % 3], "price": price(i),
                 "in_stock": i % 2 == 0},  # a bool on purpose: stores must write 0/1
        sparse=SparseVec(indices=terms, values=[1.0] * len(terms)),
    )


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def ids(hits) -> list[str]:
    return [h.item_id for h in hits]


@pytest.fixture(params=["edge", "server"])
def empty_store(request, tmp_path: Path) -> Iterator[VectorStore]:
    store: VectorStore
    if request.param == "edge":
        store = EdgeStore(tmp_path / "store")
    else:
        store = ServerStore(QdrantClient(":memory:"))
    store.ensure_collection(DIMS)
    yield store
    store.close()


@pytest.fixture
def store(empty_store: VectorStore) -> VectorStore:
    empty_store.upsert([make_point(i) for i in range(N)])
    return empty_store


# --- collection ----------------------------------------------------------------------------


def test_ensure_collection_is_idempotent_and_checks_dims(store: VectorStore) -> None:
    store.ensure_collection(dict(DIMS))
    assert store.count() == N
    with pytest.raises(ValueError, match="dims"):
        store.ensure_collection({**DIMS, "joint": 32})
    with pytest.raises(ValueError, match="dims"):
        store.ensure_collection({"text": 8})
    assert store.count() == N


def test_wrong_vector_dim_is_refused_with_the_item_id(empty_store: VectorStore) -> None:
    bad = ItemPoint("bad", {"text": np.ones(5, dtype=np.float32)}, {})
    with pytest.raises(ValueError, match="'bad'.*dim 5"):
        empty_store.upsert([bad])
    with pytest.raises(ValueError, match="unknown dense vector"):
        empty_store.upsert([ItemPoint("bad", {"audio": np.ones(8)}, {})])


# --- writes and reads ----------------------------------------------------------------------


def test_retrieve_round_trip_in_order_skipping_missing(store: VectorStore) -> None:
    hits = store.retrieve([iid(3), "no-such-item", iid(1)], with_vectors=True)
    assert ids(hits) == [iid(3), iid(1)]
    h3, h1 = hits
    assert h3.score == 0
    assert h3.payload == {"item_id": iid(3), "title": "item 3", "category": CATEGORIES[0],
                          "price": price(3), "in_stock": False}
    # stored as 0/1 (Edge never matches booleans), read back as the boolean the catalog gave
    assert h1.payload["in_stock"] is False and store.retrieve([iid(2)])[0].payload["in_stock"] is True
    assert set(h3.vectors) == {"text", "joint"}  # p03 has no image
    assert set(h1.vectors) == {"text", "image", "joint"}
    for name in h1.vectors:  # cosine: stored normalised
        np.testing.assert_allclose(h1.vectors[name], unit(VECS[name][1]), atol=1e-5)
    assert store.retrieve([iid(1)])[0].vectors == {}
    assert store.retrieve([]) == []


def test_search_ranks_nearest_first(store: VectorStore) -> None:
    q = VECS["joint"][5] + 0.05 * rng.normal(size=DIMS["joint"]).astype(np.float32)
    hits = store.search("joint", q, k=5, with_vectors=True)
    sims = np.array([unit(v) @ unit(q) for v in VECS["joint"]])
    assert ids(hits) == [iid(int(i)) for i in np.argsort(-sims)[:5]]
    assert hits[0].item_id == iid(5)
    np.testing.assert_allclose([h.score for h in hits], np.sort(sims)[::-1][:5], atol=1e-4)
    assert set(hits[0].vectors) == {"text", "image", "joint"}
    assert store.search("joint", q, k=0) == []
    with pytest.raises(ValueError, match="unknown dense vector"):
        store.search("audio", q, k=3)


def test_search_many_answers_each_query_like_search(store: VectorStore) -> None:
    queries = [VECS["joint"][i] + 0.05 * rng.normal(size=DIMS["joint"]).astype(np.float32) for i in (2, 7, 11)]
    batch = store.search_many("joint", queries, k=4, fields=[])
    assert [ids(hits) for hits in batch] == [ids(store.search("joint", q, k=4)) for q in queries]
    assert all(h.payload in ({}, {"item_id": h.item_id}) for hits in batch for h in hits)  # ids and scores only
    np.testing.assert_allclose([h.score for h in batch[0]], [h.score for h in store.search("joint", queries[0], 4)],
                               atol=1e-5)
    assert store.search_many("joint", [], k=3) == []
    with pytest.raises(ValueError, match="unknown dense vector"):
        store.search_many("audio", queries, k=3)


def test_search_can_ship_fewer_payload_fields(store: VectorStore) -> None:
    hit = store.search("joint", VECS["joint"][3], k=1, fields=["price"])[0]
    assert hit.item_id == iid(3) and set(hit.payload) <= {"price", "item_id"} and "price" in hit.payload


@pytest.mark.parametrize(
    ("flt", "keep"),
    [
        (ItemFilter(categories=["shoes", "hats"]), lambda i: CATEGORIES[i % 3] in ("shoes", "hats")),
        (ItemFilter(min_price=20.0, max_price=50.0), lambda i: 20.0 <= price(i) <= 50.0),  # inclusive
        (ItemFilter(min_price=80.0), lambda i: price(i) >= 80.0),
        (ItemFilter(in_stock=True), lambda i: i % 2 == 0),
        (ItemFilter(in_stock=False), lambda i: i % 2 == 1),
        (ItemFilter(exclude_ids=[iid(0), iid(5), "unknown"]), lambda i: i not in (0, 5)),
        (ItemFilter(categories=["bags"], in_stock=True, max_price=60.0, exclude_ids=(iid(4),)),
         lambda i: i % 3 == 1 and i % 2 == 0 and price(i) <= 60.0 and i != 4),
        (ItemFilter(), lambda i: True),
    ],
    ids=["category", "price-range", "min-price", "in-stock", "out-of-stock", "exclude", "combined", "empty"],
)
def test_filters(store: VectorStore, flt: ItemFilter, keep) -> None:
    expected = {iid(i) for i in range(N) if keep(i)}
    q = rng.normal(size=DIMS["text"]).astype(np.float32)
    assert set(ids(store.search("text", q, k=N, flt=flt))) == expected
    assert store.count(flt) == len(expected)
    assert {h.item_id for h in store.scroll(flt)} == expected
    with_image = {iid(i) for i in range(N) if keep(i) and has_image(i)}
    assert set(ids(store.search("image", VECS["image"][0], k=N, flt=flt))) == with_image


def test_negatives_push_results_away(store: VectorStore) -> None:
    q = VECS["text"][0] + 0.05 * rng.normal(size=DIMS["text"]).astype(np.float32)
    plain = store.search("text", q, k=10)
    assert plain[0].item_id == iid(0)
    neg = VECS["text"][0]
    pushed = store.search("text", q, k=10, negatives=[neg])
    assert iid(0) not in ids(pushed)  # closer to the negative than to the query
    scores = [h.score for h in pushed]
    assert scores == sorted(scores, reverse=True)
    by_id = {iid(i): unit(VECS["text"][i]) for i in range(N)}
    near_neg = lambda hits: np.mean([by_id[h] @ unit(neg) for h in ids(hits)])  # noqa: E731
    assert near_neg(pushed) < near_neg(plain)
    pushed_filtered = store.search("text", q, k=N, negatives=[neg], flt=ItemFilter(in_stock=False))
    assert all(int(h.item_id[1:]) % 2 == 1 for h in pushed_filtered)


def test_sparse_search_finds_lexical_matches_with_idf(store: VectorStore) -> None:
    assert ids(store.search_sparse(SparseVec([1000 + 7], [1.0]), k=5)) == [iid(7)]
    common = store.search_sparse(SparseVec([2], [1.0]), k=N)
    assert set(ids(common)) == {iid(i) for i in range(N) if i % 5 == 2}
    # p00/p01 match only the rare term, eight items only the common term 3: without the IDF
    # modifier all ten would tie at 1.0
    mixed = store.search_sparse(SparseVec([RARE_TERM, 3], [1.0, 1.0]), k=N)
    assert len(mixed) == 10
    assert set(ids(mixed[:2])) == {iid(0), iid(1)}
    assert mixed[1].score > mixed[2].score
    in_stock = store.search_sparse(SparseVec([2], [1.0]), k=N, flt=ItemFilter(in_stock=True))
    assert set(ids(in_stock)) == {iid(i) for i in range(N) if i % 5 == 2 and i % 2 == 0}
    assert store.search_sparse(SparseVec([], []), k=5) == []
    assert store.search_sparse(SparseVec([99999], [1.0]), k=5) == []


def test_items_without_image_are_absent_from_image_search(store: VectorStore) -> None:
    hits = store.search("image", VECS["image"][3] if has_image(3) else VECS["image"][0], k=N, with_vectors=True)
    assert set(ids(hits)) == {iid(i) for i in range(N) if has_image(i)}
    assert all("image" in h.vectors for h in hits)
    # ...but they are found through the vectors they do have
    assert store.search("text", VECS["text"][3], k=1)[0].item_id == iid(3)


def test_delete(store: VectorStore) -> None:
    assert store.points_count() == N
    store.delete([iid(1), iid(2), "never-existed"])
    assert store.count() == N - 2
    assert store.points_count() == N - 2  # the cheap size the serving caches watch
    assert store.retrieve([iid(1), iid(2)]) == []
    assert iid(1) not in ids(store.search("text", VECS["text"][1], k=N))
    store.delete([])
    assert store.count() == N - 2


def test_update_vectors_and_set_payload_keep_everything_else(store: VectorStore) -> None:
    fresh = np.random.default_rng(99).normal(size=(2, DIMS["joint"])).astype(np.float32)  # unlike any stored
    store.update_vectors([(iid(4), {"joint": fresh[0]}), (iid(6), {"joint": fresh[1]})])
    store.set_payload([iid(4), iid(6)], {"joint_version": "v2"})
    hit = store.retrieve([iid(4)], with_vectors=True)[0]
    np.testing.assert_allclose(hit.vectors["joint"], unit(fresh[0]), atol=1e-5)
    np.testing.assert_allclose(hit.vectors["text"], unit(VECS["text"][4]), atol=1e-5)  # untouched
    assert hit.payload["joint_version"] == "v2" and hit.payload["title"] == "item 4"
    assert store.search("joint", fresh[1], k=1)[0].item_id == iid(6)
    assert iid(4) in ids(store.search_sparse(SparseVec([1004], [1.0]), k=3))  # sparse vector kept
    with pytest.raises(ValueError, match="p04"):
        store.update_vectors([(iid(4), {"joint": np.ones(3, np.float32)})])


def test_reads_can_ask_for_some_vectors_only(store: VectorStore) -> None:
    hit = store.retrieve([iid(0)], with_vectors=["joint"])[0]
    assert set(hit.vectors) == {"joint"}
    assert all(set(h.vectors) == {"text"} for h in store.search("joint", VECS["joint"][0], k=3, with_vectors=["text"]))
    assert all(set(h.vectors) <= {"image"} for h in store.scroll(with_vectors=["image"]))
    with pytest.raises(ValueError, match="unknown dense vector"):
        store.retrieve([iid(0)], with_vectors=["smell"])


def test_count(store: VectorStore) -> None:
    assert store.count() == N
    assert store.count(ItemFilter(categories=["hats"])) == len([i for i in range(N) if i % 3 == 2])
    assert store.count(ItemFilter(categories=["nothing"])) == 0


def test_count_empty(empty_store: VectorStore) -> None:
    assert empty_store.count() == 0
    assert list(empty_store.scroll()) == []


def test_scroll_returns_everything_with_restricted_fields(store: VectorStore) -> None:
    store.scroll_batch = 7  # type: ignore[attr-defined]  # several pages
    hits = list(store.scroll(fields=["price", "category"]))
    assert sorted(ids(hits)) == [iid(i) for i in range(N)]
    assert all(set(h.payload) == {"price", "category"} and not h.vectors for h in hits)
    full = list(store.scroll(with_vectors=True))
    assert len(full) == N and all("text" in h.vectors and "item_id" in h.payload for h in full)
    assert all(set(h.payload) == {"item_id"} for h in store.scroll(fields=["item_id"]))


def test_upsert_of_existing_id_replaces_it(store: VectorStore) -> None:
    new = ItemPoint(iid(5), {"text": VECS["text"][9], "joint": VECS["joint"][9]},
                    {"title": "renamed", "category": "bags", "price": 1, "in_stock": 1})
    store.upsert([new])
    assert store.count() == N
    hit = store.retrieve([iid(5)], with_vectors=True)[0]
    assert hit.payload == {"item_id": iid(5), "title": "renamed", "category": "bags", "price": 1.0, "in_stock": 1}
    assert set(hit.vectors) == {"text", "joint"}  # the old image vector went with the old point
    np.testing.assert_allclose(hit.vectors["text"], unit(VECS["text"][9]), atol=1e-5)
    assert iid(5) not in ids(store.search("image", VECS["image"][5], k=N))
    assert store.search_sparse(SparseVec([1005], [1.0]), k=3) == []  # no sparse vector now


# --- Edge specifics ------------------------------------------------------------------------


def _snapshot(store: VectorStore) -> list[list[tuple[float, str]]]:
    """Results of a fixed set of queries, to compare a store before and after something.
    Sorted by (score, id) because ties (sparse scores) come back in segment order."""
    q = np.random.default_rng(3).normal(size=(3, DIMS["joint"])).astype(np.float32)
    results = [
        store.search("joint", q[0], k=10),
        store.search("joint", q[1], k=10, flt=ItemFilter(in_stock=True, min_price=20.0)),
        store.search("image", VECS["image"][2], k=10),
        store.search("joint", q[2], k=10, negatives=[VECS["joint"][4]]),
        store.search_sparse(SparseVec([RARE_TERM, 3], [1.0, 1.0]), k=10),
    ]
    return [sorted((-round(h.score, 4), h.item_id) for h in hits) for hits in results]


def test_edge_persists_across_close_and_reopen(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path)
    with pytest.raises(RuntimeError, match="ensure_collection"):
        store.count()
    store.ensure_collection(DIMS)
    store.upsert([make_point(i) for i in range(N)])
    before = _snapshot(store)
    store.close()
    with pytest.raises(RuntimeError):
        store.count()

    again = EdgeStore(tmp_path)
    assert again.count() == N  # usable before ensure_collection: dims come from the json
    assert _snapshot(again) == before
    assert again.retrieve([iid(2)])[0].payload["in_stock"] == 1
    again.ensure_collection(DIMS)
    with pytest.raises(ValueError, match="dims"):
        again.ensure_collection({"text": 384, "image": 1280, "joint": 512})
    again.close()
    assert (tmp_path / "products.json").exists()
    other = EdgeStore(tmp_path, collection="other")  # collections are separate shards
    other.ensure_collection({"text": 4})
    assert other.count() == 0
    other.close()


def test_edge_folder_is_locked_while_open(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path)
    store.ensure_collection({"text": 4})
    with pytest.raises(RuntimeError, match="already open"):
        EdgeStore(tmp_path)
    store.close()
    EdgeStore(tmp_path).close()


def test_edge_recovers_a_shard_whose_metadata_was_never_written(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path)
    store.ensure_collection(DIMS)
    store.upsert([make_point(i) for i in range(5)])
    store.close()
    (tmp_path / "products.json").unlink()  # as if the process died right after creating the shard
    lost = EdgeStore(tmp_path)
    with pytest.raises(ValueError, match="does not match"):
        lost.ensure_collection({**DIMS, "joint": 32})
    lost.ensure_collection(DIMS)
    assert lost.count() == 5
    lost.close()
    reopened = EdgeStore(tmp_path)  # the json is back
    assert reopened.count() == 5
    reopened.close()


def test_edge_writes_survive_a_crash(tmp_path: Path) -> None:
    script = (
        "import os, sys, numpy as np\n"
        "from shoprec.indexing.edge import EdgeStore\n"
        "from shoprec.indexing.store import ItemPoint\n"
        "s = EdgeStore(sys.argv[1]); s.ensure_collection({'text': 4})\n"
        "s.upsert([ItemPoint(f'x{i}', {'text': np.ones(4) + i}, {'in_stock': 1}) for i in range(5)])\n"
        "s.delete(['x0'])\n"
        "os._exit(0)\n"  # no close(), no interpreter shutdown
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=60)
    store = EdgeStore(tmp_path)
    assert store.count() == 4
    assert [h.item_id for h in store.retrieve(["x0", "x4"])] == ["x4"]
    store.close()


def test_edge_optimize_builds_hnsw_and_keeps_results(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path, indexing_threshold_kb=1)  # index even this tiny segment
    store.ensure_collection(DIMS)
    store.upsert([make_point(i) for i in range(N)])
    before = _snapshot(store)
    store.optimize()
    assert store._shard is not None and store._shard.info().indexed_vectors_count > 0
    assert _snapshot(store) == before
    with_image = {iid(i) for i in range(N) if has_image(i)}
    assert set(ids(store.search("image", VECS["image"][0], k=N))) == with_image  # HNSW too
    # Re-upserting after optimize writes to a fresh appendable segment and soft-deletes the
    # indexed copy. Edge's IDF statistics still count that copy (N=41, df(rare)=3 here) until a
    # vacuum, so sparse scores drift a little; dense results stay identical.
    store.upsert([make_point(0)])
    after = _snapshot(store)
    assert after[:4] == before[:4] and store.count() == N
    assert [i for _, i in after[4]] == [i for _, i in before[4]]
    store.close()


def test_edge_reads_and_writes_from_threads(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path)
    store.ensure_collection(DIMS)
    errors: list[BaseException] = []

    def guarded(fn) -> None:
        try:
            fn()
        except BaseException as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    def writer(offset: int) -> None:
        for start in range(0, N, 5):
            pts = [make_point(i) for i in range(start, start + 5)]
            for p in pts:
                p.item_id = f"w{offset}-{p.item_id}"
            store.upsert(pts)

    def reader() -> None:
        for i in range(60):
            store.search("joint", VECS["joint"][i % N], k=5, flt=ItemFilter(in_stock=True))
            store.count()

    threads = [threading.Thread(target=guarded, args=(lambda o=o: writer(o),)) for o in range(2)]
    threads += [threading.Thread(target=guarded, args=(reader,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.count() == 2 * N
    store.close()


# --- factory -------------------------------------------------------------------------------


def test_factory_picks_edge_without_url(tmp_path: Path) -> None:
    store = factory.open_store(Settings(store=tmp_path, qdrant_url=None, collection="c1"))
    assert isinstance(store, EdgeStore) and store.collection == "c1" and store.path == tmp_path
    store.close()


def test_factory_picks_server_with_url(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def fake_client(**kwargs: object) -> QdrantClient:
        seen.update(kwargs)
        return QdrantClient(":memory:")

    monkeypatch.setattr("qdrant_client.QdrantClient", fake_client)  # imported when the server is chosen
    store = factory.open_store(Settings(qdrant_url="http://qdrant:6333", qdrant_api_key="k",
                                        collection="c2", shard_number=3, replication_factor=2))
    assert isinstance(store, ServerStore)
    assert seen == {"url": "http://qdrant:6333", "api_key": "k"}
    assert (store.collection, store.shard_number, store.replication_factor) == ("c2", 3, 2)
    store.close()
