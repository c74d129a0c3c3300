"""Indexing a catalog: bad rows and bad images cost only themselves; re-runs re-encode nothing."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from shoprec.config import Settings
from shoprec.service import Shoprec


def _png(path: Path, colour=(200, 30, 40), size=(64, 64)) -> None:
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    folder = tmp_path / "shop"
    (folder / "img").mkdir(parents=True)
    _png(folder / "img" / "red.png", (200, 30, 40))
    _png(folder / "img" / "blue.png", (30, 40, 200))
    (folder / "img" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    full = io.BytesIO()
    Image.new("RGB", (300, 300), (10, 200, 10)).save(full, format="JPEG")
    (folder / "img" / "truncated.jpg").write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    # A decompression bomb: tiny file, 30000 x 30000 pixels declared.
    Image.new("1", (30000, 30000)).save(folder / "img" / "bomb.png", optimize=True)
    (tmp_path / "secret.png").write_bytes((folder / "img" / "red.png").read_bytes())
    return folder


def _write_jsonl(path: Path, rows: list) -> Path:
    with path.open("wb") as fh:
        for row in rows:
            fh.write(row if isinstance(row, bytes) else (json.dumps(row, ensure_ascii=False) + "\n").encode())
    return path


def _service(tmp_path: Path) -> Shoprec:
    return Shoprec(Settings(store=tmp_path / "store", batch_size=4))


GOOD = [
    {"id": "a1", "title": "红色纯棉T恤", "category": "T恤", "price": 59, "image": "img/red.png"},
    {"id": "a2", "title": "blue cotton T-shirt", "category": "T恤", "price": 69, "image": "img/blue.png"},
    {"id": "a3", "title": "真皮手提包", "category": "包", "price": 899, "in_stock": False},
]


def test_every_bad_row_and_image_is_reported_and_the_rest_indexed(shop: Path, tmp_path: Path) -> None:
    rows = GOOD + [
        b'{"id": "bad-json", "title": \n',                                     # line 4: invalid JSON
        {"title": "no id"},                                                     # 5: missing id
        {"id": "no-title"},                                                     # 6: missing title
        {"id": "bad-price", "title": "x", "price": "cheap"},                   # 7: wrong type
        b'{"id": "bad-utf8", "title": "\xff\xfe broken"}\n',                   # 8: bad UTF-8
        {"id": "a1", "title": "duplicate"},                                    # 9: duplicate id
        {"id": "i-missing", "title": "missing photo", "image": "img/nope.png"},  # 10
        {"id": "i-corrupt", "title": "corrupt photo", "image": "img/corrupt.jpg"},  # 11
        {"id": "i-trunc", "title": "truncated photo", "image": "img/truncated.jpg"},  # 12
        {"id": "i-bomb", "title": "bomb photo", "image": "img/bomb.png"},      # 13
        {"id": "i-escape", "title": "escaping photo", "image": "../secret.png"},  # 14
        {"id": "bad-attr", "title": "x", "attributes": {"size": {"nested": 1}}},  # 15
    ]
    catalog = _write_jsonl(shop / "catalog.jsonl", rows)
    service = _service(tmp_path)
    report = service.index_catalog(catalog, progress=False)

    rejected = {e.line: e.reason for e in report.row_errors}
    assert set(rejected) == {4, 5, 6, 7, 8, 9, 15}
    assert "invalid JSON" in rejected[4]
    assert "'id'" in rejected[5] and "'title'" in rejected[6] and "'price'" in rejected[7]
    assert "UTF-8" in rejected[8] and "duplicate" in rejected[9] and "size" in rejected[15]

    image_problems = {e.item_id: e.reason for e in report.image_errors}
    assert set(image_problems) == {"i-missing", "i-corrupt", "i-trunc", "i-bomb", "i-escape"}
    assert "not found" in image_problems["i-missing"]
    assert "escapes" in image_problems["i-escape"]
    assert "pixel limit" in image_problems["i-bomb"] or "bomb" in image_problems["i-bomb"]
    assert {e.line for e in report.image_errors} == {10, 11, 12, 13, 14}

    # Items whose photo failed are still indexed (by text); nothing else was lost.
    assert report.indexed == 8 and service.count() == 8
    stored = {h.item_id: h for h in service.store.retrieve(["a1", "i-corrupt"], with_vectors=True)}
    assert "image" in stored["a1"].vectors and "image" not in stored["i-corrupt"].vectors
    assert [r.id for r in service.search("corrupt photo", k=1)] == ["i-corrupt"]

    details = tmp_path / "errors.jsonl"
    report.write_details(details)
    lines = [json.loads(x) for x in details.read_text().splitlines()]
    assert {(d["kind"], d["line"]) for d in lines} >= {("row", 4), ("image", 13)}
    service.close()


def test_reindex_is_idempotent_changes_reencode_and_deletes(shop: Path, tmp_path: Path) -> None:
    catalog = _write_jsonl(shop / "catalog.jsonl", GOOD)
    service = _service(tmp_path)
    first = service.index_catalog(catalog, progress=False)
    assert (first.indexed, first.unchanged) == (3, 0)

    again = service.index_catalog(catalog, progress=False)
    assert (again.indexed, again.unchanged, again.joint_updated) == (0, 3, 0)

    changed = [dict(GOOD[0], title="红色纯棉T恤 新款"), GOOD[1]]
    _write_jsonl(catalog, changed)
    third = service.index_catalog(catalog, progress=False, delete_missing=True)
    assert (third.indexed, third.unchanged, third.deleted) == (1, 1, 1)
    assert service.get_item("a1")["title"] == "红色纯棉T恤 新款"
    assert service.get_item("a3") is None

    # Replacing a photo (same path, new bytes) is a change too.
    _png(shop / "img" / "blue.png", (0, 0, 0), size=(80, 80))
    fourth = service.index_catalog(catalog, progress=False)
    assert (fourth.indexed, fourth.unchanged) == (1, 1)
    assert service.delete_items(["a2", "never-existed"]) == 1
    assert service.count() == 1
    service.close()


def test_photos_copied_anew_with_the_same_bytes_are_not_encoded_again(shop: Path, tmp_path: Path, monkeypatch) -> None:
    """A fresh clone or a restored volume gives every photo a new mtime: the bytes decide, and the
    next run is back on the cheap check (no photo read)."""
    import os

    from shoprec.indexing import indexer, seen_hashes

    catalog = _write_jsonl(shop / "catalog.jsonl", GOOD)
    service = _service(tmp_path)
    assert service.index_catalog(catalog, progress=False).indexed == 3
    photos = sorted((shop / "img").glob("*.png"))
    for photo in photos:
        later = photo.stat().st_mtime_ns + 10**12
        os.utime(photo, ns=(later, later))
    read = []
    real = indexer.image_content_fingerprint
    monkeypatch.setattr(indexer, "image_content_fingerprint", lambda ref, base, cap: read.append(ref) or real(ref, base, cap))
    writes = []
    real_set_payload = service.store.set_payload
    monkeypatch.setattr(service.store, "set_payload", lambda ids, payload: writes.append(ids) or real_set_payload(ids, payload))
    copied = service.index_catalog(catalog, progress=False)
    assert (copied.indexed, copied.unchanged) == (0, 3) and read  # photos read, none encoded
    assert writes == []  # and the store left as it is: the confirmations live beside it
    assert (tmp_path / "store" / seen_hashes.FILE_NAME).is_file()
    read.clear()
    assert (service.index_catalog(catalog, progress=False).unchanged, read) == (3, [])
    # a confirmation vouches only for the point as it was stored: re-encoded since (a new
    # title), the old row back is a change again even though its cheap hash was confirmed once
    _write_jsonl(catalog, [dict(GOOD[0], title="红色纯棉T恤 新款"), *GOOD[1:]])
    assert service.index_catalog(catalog, progress=False).indexed == 1
    _write_jsonl(catalog, GOOD)
    assert service.index_catalog(catalog, progress=False).indexed == 1
    assert service.get_item("a1")["title"] == GOOD[0]["title"]
    # new bytes under the same name are still a change
    _png(shop / "img" / "blue.png", (0, 0, 0), size=(80, 80))
    assert service.index_catalog(catalog, progress=False).indexed == 1
    # the shop moved to another folder: nothing is encoded, and the photos are served from there
    moved = tmp_path / "moved-shop"
    shutil.copytree(shop, moved)
    shutil.rmtree(shop / "img")
    relocated = service.index_catalog(moved / "catalog.jsonl", progress=False)
    assert (relocated.indexed, relocated.unchanged) == (0, 3)
    served = service.image_path("a1")
    assert served is not None and served.is_relative_to(moved) and served.is_file()
    service.close()


def test_interrupted_run_resumes_without_reencoding(shop: Path, tmp_path: Path, monkeypatch) -> None:
    rows = [{"id": f"p{i}", "title": f"product {i}", "image": "img/red.png" if i % 2 else None} for i in range(10)]
    catalog = _write_jsonl(shop / "catalog.jsonl", rows)
    service = _service(tmp_path)
    original = service.embedder.embed
    calls = {"n": 0}

    def crash_on_third_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(service.embedder, "embed", crash_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        service.index_catalog(catalog, progress=False)
    assert service.count() == 8  # two batches of four landed

    monkeypatch.setattr(service.embedder, "embed", original)
    resumed = service.index_catalog(catalog, progress=False)
    assert (resumed.indexed, resumed.unchanged) == (2, 8)
    assert all("joint" in h.vectors for h in service.store.scroll(with_vectors=True))
    service.close()


def test_csv_catalog_with_attribute_columns(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(
        "id,title,category,price,in_stock,attr.colour,attr.材质\n"
        "c1,白色衬衫,衬衫,129,yes,white,棉\n"
        "c2,black trousers,裤子,not-a-price,no,black,wool\n"
        "c3,black trousers,裤子,199,no,black,wool\n",
        encoding="utf-8",
    )
    service = _service(tmp_path)
    report = service.index_catalog(catalog, progress=False)
    assert report.indexed == 2
    assert [(e.line, e.item_id) for e in report.row_errors] == [(3, "c2")]
    item = service.get_item("c1")
    assert item["attributes"] == {"colour": "white", "材质": "棉"} and item["in_stock"] == 1
    assert service.get_item("c3")["in_stock"] == 0
    service.close()


def test_unsupported_or_missing_catalog_is_a_clear_error(tmp_path: Path) -> None:
    service = _service(tmp_path)
    with pytest.raises(FileNotFoundError, match="catalog not found"):
        service.index_catalog(tmp_path / "nope.jsonl", progress=False)
    (tmp_path / "catalog.xml").write_text("<x/>")
    with pytest.raises(ValueError, match="unsupported catalog format"):
        service.index_catalog(tmp_path / "catalog.xml", progress=False)


def test_remote_images_over_http(shop: Path, tmp_path: Path, monkeypatch) -> None:
    """http(s) image URLs are fetched when allowed; a dead link costs the photo only.

    The server is on loopback, which a real fetch refuses (tests/test_image_safety.py), so the
    address check is relaxed here.
    """
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from shoprec import safe_fetch

    monkeypatch.setattr(safe_fetch, "address_allowed", lambda address, allow_private: True)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(shop / "img"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        catalog = _write_jsonl(shop / "catalog.jsonl", [
            {"id": "r1", "title": "remote red", "image": f"{base}/red.png"},
            {"id": "r2", "title": "remote missing", "image": f"{base}/nope.png"},
        ])
        service = Shoprec(Settings(store=tmp_path / "store", batch_size=4, allow_remote_images=True))
        report = service.index_catalog(catalog, progress=False)
    finally:
        server.shutdown()
    assert report.indexed == 2
    assert [(e.item_id, "could not fetch" in e.reason) for e in report.image_errors] == [("r2", True)]
    stored = {h.item_id: h for h in service.store.retrieve(["r1", "r2"], with_vectors=True)}
    assert "image" in stored["r1"].vectors and "image" not in stored["r2"].vectors
    service.close()


def test_a_tsv_catalog_is_split_on_tabs(tmp_path):
    from shoprec.catalog import CatalogRow, read_catalog

    path = tmp_path / "catalog.tsv"
    path.write_text("id\ttitle\tcategory\tprice\n"
                    "tee-1\tBlack tee, cotton\tT恤\t19.5\n"
                    "tee-2\t白色T恤\tT恤\tnot-a-price\n", encoding="utf-8")
    rows = list(read_catalog(path))
    good = [r for r in rows if isinstance(r, CatalogRow)]
    assert [(r.product.id, r.product.title, r.product.price) for r in good] == [("tee-1", "Black tee, cotton", 19.5)]
    (bad,) = [r for r in rows if not isinstance(r, CatalogRow)]
    assert bad.line == 3 and "price" in bad.reason
