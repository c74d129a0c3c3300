"""Storage faults end as one clear sentence (CLI) or a 507/503 (HTTP), never a crash or a traceback.

The disk-full cases shrink what the store sees as free space (``shutil.disk_usage``) or cap the
SQLite file (``max_page_count``, which makes SQLite answer SQLITE_FULL exactly as a full disk
does); a real full disk killed the process with SIGBUS before (Qdrant Edge's memory maps).
"""

from __future__ import annotations

import shutil
import sqlite3
from collections import namedtuple
from datetime import datetime, timezone

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from shoprec import storage
from shoprec.cli import app
from shoprec.config import Settings
from shoprec.indexing.edge import EdgeStore
from shoprec.indexing.store import ItemPoint
from shoprec.recommend.event_store import EventStore
from shoprec.recommend.events import Event

runner = CliRunner()
_Usage = namedtuple("_Usage", "total used free")


@pytest.fixture
def tiny_disk(monkeypatch):
    """Every disk reports 1 MiB free from now on."""
    monkeypatch.setattr(storage.shutil, "disk_usage", lambda _: _Usage(10 << 30, (10 << 30) - (1 << 20), 1 << 20))


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """A two-item Edge store on disk (no encoders needed)."""
    path = tmp_path_factory.mktemp("faults") / "store"
    store = EdgeStore(path)
    store.ensure_collection({"text": 4})
    vec = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
    store.upsert([ItemPoint(f"item-{i}", {"text": vec}, {"title": f"item {i}"}) for i in range(2)])
    store.close()
    return path


def _single_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_the_store_is_not_opened_when_its_reserved_length_does_not_fit(small_store, tiny_disk):
    with pytest.raises(storage.StoreFull, match="not enough disk space to open the store"):
        EdgeStore(small_store)


def _sparse_files_supported(folder) -> bool:
    probe = folder / "sparse-probe"
    with probe.open("wb") as f:
        f.truncate(8 << 20)
    try:
        return probe.stat().st_blocks * 512 < 4 << 20
    finally:
        probe.unlink()


def test_holes_of_the_memory_mapped_files_count_as_needed_space(small_store, tmp_path):
    if not _sparse_files_supported(tmp_path):
        pytest.skip("this file system stores no holes: every byte of a store is already backed")
    # Edge's files are mostly holes: what the check reserves is their unbacked length.
    assert storage.unbacked_bytes(small_store) > 10 << 20


def test_a_write_is_refused_before_it_starts_when_the_disk_fills(small_store, tmp_path, monkeypatch):
    copy = tmp_path / "store"
    shutil.copytree(small_store, copy)
    store = EdgeStore(copy)
    monkeypatch.setattr(storage.shutil, "disk_usage", lambda _: _Usage(1 << 30, 1 << 30, 0))
    with pytest.raises(storage.StoreFull, match="write items"):
        store.upsert([ItemPoint("item-9", {"text": np.ones(4, dtype=np.float32)}, {})])
    monkeypatch.undo()
    assert store.count() == 2  # nothing half-written; the store still answers
    store.close()


def test_a_full_disk_is_one_line_in_the_cli(small_store, tiny_disk):
    line = _single_line_error(runner.invoke(app, ["stats", "--store", str(small_store)]))
    assert "not enough disk space" in line and "SHOPREC_MIN_FREE_MB" in line


def test_a_read_only_store_is_one_line_in_the_cli(small_store, monkeypatch):
    real_access = storage.os.access
    monkeypatch.setattr(storage.os, "access", lambda p, mode: False if mode == storage.os.W_OK else real_access(p, mode))
    line = _single_line_error(runner.invoke(app, ["similar", "item-0", "--store", str(small_store)]))
    assert "not writable" in line


def test_a_store_held_by_another_process_is_one_line_for_queries_and_serve(small_store):
    holder = EdgeStore(small_store)  # what a running `shoprec serve` holds
    try:
        for args in (["similar", "item-0"], ["stats"], ["serve", "--port", "1"]):
            line = _single_line_error(runner.invoke(app, [*args, "--store", str(small_store)]))
            assert "in use by another shoprec process" in line, args
    finally:
        holder.close()


def _event(i: int) -> Event:
    return Event(user_id="u1", item_id=f"item-{i}", type="purchase", ts=datetime(2026, 1, 1, tzinfo=timezone.utc))


def test_sqlite_full_is_reported_as_such_not_as_a_failed_rollback(tmp_path):
    events = EventStore(tmp_path / "events.sqlite")
    pages = events.conn().execute("PRAGMA page_count").fetchone()[0]
    events.conn().execute(f"PRAGMA max_page_count = {pages + 1}")  # the file cannot grow: SQLITE_FULL
    with pytest.raises(storage.StoreFull, match="disk of .* is full"):
        with events.transaction() as conn:
            EventStore.insert_events(conn, [_event(i) for i in range(5000)])
    assert not events.conn().in_transaction
    assert events.conn().execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0
    events.close()


def test_events_are_refused_below_the_free_space_margin(tmp_path, tiny_disk):
    events = EventStore(tmp_path / "events.sqlite", min_free_mb=0)  # created while the check is off
    events.db.min_free_mb = 64
    with pytest.raises(storage.StoreFull, match="record events"):
        with events.transaction() as conn:
            EventStore.insert_events(conn, [_event(0)])
    events.close()
    assert sqlite3.connect(tmp_path / "events.sqlite").execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0


def test_http_writes_on_a_full_disk_answer_507_and_keep_serving(indexed_demo, monkeypatch):
    from shoprec.http.app import create_app

    client = TestClient(create_app(service=indexed_demo))
    before = indexed_demo.stats()["events"]
    monkeypatch.setattr(storage.shutil, "disk_usage", lambda _: _Usage(1 << 30, 1 << 30, 0))
    event = {"user_id": "disk-full", "item_id": "tshirt-black", "type": "view", "ts": "2026-03-01T10:00:00Z"}
    answer = client.post("/events", json=[event])
    assert answer.status_code == 507, answer.text
    body = answer.json()
    assert "disk" in body["detail"] and body["errors"][0]["field"] == "store"
    item = {"id": "disk-full-item", "title": "磁盘已满测试", "category": "T恤"}
    assert client.post("/items", json=[item]).status_code == 507
    monkeypatch.undo()
    assert indexed_demo.stats()["events"] == before
    assert client.get("/items/tshirt-black").status_code == 200
    assert client.get("/items/disk-full-item").status_code == 404


def test_settings_carry_the_margin_to_both_stores(tmp_path):
    settings = Settings(store=tmp_path / "s", min_free_mb=7)
    from shoprec.indexing.factory import open_store

    store = open_store(settings)
    assert store.min_free_mb == 7
    store.close()


def test_a_bad_setting_is_one_line_naming_the_variable(small_store, monkeypatch):
    monkeypatch.setenv("SHOPREC_MIN_FREE_MB", "plenty")
    line = _single_line_error(runner.invoke(app, ["stats", "--store", str(small_store)]))
    assert "invalid configuration: SHOPREC_MIN_FREE_MB" in line
