"""Nothing counted twice (shoprec issue 9): event ids, re-ingested files, retried requests, and a
server killed mid-stream.

The probe behind these tests: re-ingesting an events file doubled trending (events carry no
id), and a client retrying a write whose answer it lost applied it again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from qdrant_client import QdrantClient
from typer.testing import CliRunner

from shoprec.cli import app as cli_app
from shoprec.config import Settings
from shoprec.http import create_app
from shoprec.indexing.edge import EdgeStore
from shoprec.indexing.server import ServerStore
from shoprec.indexing.store import ItemPoint
from shoprec.recommend import engine as engine_module
from shoprec.recommend.event_store import EventStore
from shoprec.recommend.events import Event
from shoprec.service import Shoprec

EYE = np.eye(4, dtype=np.float32)


def items() -> list[ItemPoint]:
    return [ItemPoint(f"i{n}", {"text": EYE[n], "joint": EYE[n]},
                      {"title": f"item {n}", "category": "c", "price": 1.0, "in_stock": True}) for n in range(1, 4)]


def event(user: str = "u1", item: str = "i1", type_: str = "purchase", ts: str = "2024-05-01T10:00:00Z",
          **more) -> dict:
    return {"user_id": user, "item_id": item, "type": type_, "ts": ts, **more}


@pytest.fixture
def service(tmp_path) -> Iterator[Shoprec]:
    """Three 4-d items in an in-memory Qdrant: the engine and HTTP app without any encoder."""
    store = ServerStore(QdrantClient(":memory:"))
    store.ensure_collection({"text": 4, "image": 4, "joint": 4})
    store.upsert(items())
    svc = Shoprec(Settings(store=tmp_path / "store", profile_vector="text"), store=store)
    yield svc
    svc.close()


def count_events(svc: Shoprec) -> int:
    return svc.engine.stats()["events"]


def write_jsonl(path: Path, rows: list[dict], newline_at_end: bool = True) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + ("\n" if newline_at_end else ""), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- event_id
def test_a_repeated_event_id_is_skipped_and_counted_as_duplicate(service):
    engine = service.engine
    first = engine.ingest([Event(**event(event_id="e1")), Event(**event(event_id="e2")),
                           Event(**event(event_id="e1")), Event(**event())])
    assert (first.ingested, first.duplicates) == (3, 1)
    again = engine.ingest([Event(**event(event_id="e2")), Event(**event(event_id="e3"))])
    assert (again.ingested, again.duplicates) == (1, 1)
    assert sorted(e.event_id or "-" for e in engine.history("u1")) == ["-", "e1", "e2", "e3"]
    # popularity counted the four stored purchases, not the six sent
    assert engine.popularity.decayed(engine.popularity.log_scores(["i1"]), engine._now()) == pytest.approx([32.0])


def test_an_events_file_of_schema_1_is_upgraded_in_place(tmp_path):
    db = tmp_path / "ev.sqlite"
    with sqlite3.connect(db) as conn:  # what shoprec wrote before event ids
        conn.executescript("""
            CREATE TABLE events (id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, item_id TEXT NOT NULL,
                type TEXT NOT NULL, ts REAL NOT NULL, session_id TEXT, basket TEXT NOT NULL, price REAL,
                quantity INTEGER);
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO meta VALUES ('schema', '1');
            INSERT INTO events (user_id, item_id, type, ts, basket) VALUES ('u1', 'i1', 'view', 1.7e9, 'b');
        """)
    store = EventStore(db)
    assert [e.item_id for e in store.history("u1")] == ["i1"]
    with store.transaction() as conn:
        fresh, dups = EventStore.new_events(conn, [Event(**event(event_id="e1"))] * 2)
        EventStore.insert_events(conn, fresh)
    assert dups == 1 and store.conn().execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == "3"
    with pytest.raises(sqlite3.IntegrityError):  # the log itself refuses a second e1
        with store.transaction() as conn:
            EventStore.insert_events(conn, fresh)
    store.close()


# ---------------------------------------------------------------------------- files
def test_the_same_file_twice_is_a_no_op_but_identical_lines_are_real(service, tmp_path):
    rows = [event(), event(), event(item="i2"), event(user="u2", item="i3", type_="view")]  # u1 bought i1 twice
    path = write_jsonl(tmp_path / "events.jsonl", rows)
    first = service.ingest_events_file(path)
    assert (first.ingested, first.skipped_lines) == (4, 0)
    again = service.ingest_events_file(path)
    assert (again.ingested, again.skipped_lines, again.errors) == (0, 4, [])
    copy = tmp_path / "elsewhere" / "renamed.jsonl"  # by content, not path
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    assert service.ingest_events_file(copy).ingested == 0
    assert count_events(service) == 4
    assert [e.item_id for e in service.history("u1")].count("i1") == 2


def test_an_appended_file_ingests_only_its_new_lines(service, tmp_path):
    path = write_jsonl(tmp_path / "log.jsonl", [event(), event(item="i2")], newline_at_end=False)
    assert service.ingest_events_file(path).ingested == 2
    with path.open("a", encoding="utf-8") as fh:  # the last line gets its newline, then more lines
        fh.write("\n" + json.dumps(event(item="i3")) + "\n" + json.dumps(event(item="i1")) + "\n")
    grown = service.ingest_events_file(path)
    assert (grown.ingested, grown.skipped_lines) == (2, 2)
    assert sorted(e.item_id for e in service.history("u1")) == ["i1", "i1", "i2", "i3"]
    edited = path.read_text().replace('"i2"', '"i3"', 1)  # a changed line is a different file from there on
    path.write_text(edited)
    assert service.ingest_events_file(path).skipped_lines == 1


def test_a_csv_file_twice_and_bad_lines_are_not_reported_again(service, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,type,ts,quantity\n"
                    "u1,i1,purchase,2024-05-01T10:00:00Z,2\n"
                    "u1,i2,purchase,2024-05-01T10:00:00Z,99999\n"
                    "u1,i3,view,2024-05-01T10:00:00Z,\n", encoding="utf-8")
    first = service.ingest_events_file(path)
    assert first.ingested == 2 and [(e.line, e.reason.split("'")[1]) for e in first.errors] == [(3, "quantity")]
    again = service.ingest_events_file(path)
    assert (again.ingested, again.errors, again.skipped_lines) == (0, [], 4)


def test_a_run_killed_half_way_resumes_after_its_last_committed_batch(service, tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "events.jsonl", [event(item=f"i{1 + n % 3}", user=f"u{n}") for n in range(7)])
    monkeypatch.setattr(engine_module, "_INGEST_BATCH", 2)
    real_add = service.engine.popularity.add
    calls = []

    def failing_add(conn, rows):
        calls.append(len(rows))
        if len(calls) == 3:
            raise OSError("disk gone")  # the third batch's transaction rolls back, like a kill
        real_add(conn, rows)

    monkeypatch.setattr(service.engine.popularity, "add", failing_add)
    with pytest.raises(OSError):
        service.ingest_events_file(path)
    assert count_events(service) == 4
    monkeypatch.setattr(service.engine.popularity, "add", real_add)
    resumed = service.ingest_events_file(path)
    assert (resumed.ingested, resumed.skipped_lines) == (3, 4)
    assert count_events(service) == 7
    assert service.ingest_events_file(path).ingested == 0


def test_the_cli_says_how_many_lines_it_skipped(tmp_path):
    # The CLI opens its own store: index nothing, just point it at an events db of a Qdrant-less
    # store by ingesting into a fresh Edge store holding the three items.
    store_dir = tmp_path / "cli-store"
    edge = EdgeStore(store_dir)
    edge.ensure_collection({"text": 4, "image": 4, "joint": 4})
    edge.upsert(items())
    edge.close()
    path = write_jsonl(tmp_path / "events.jsonl", [event(), event(), event(item="no-such-item")])
    runner = CliRunner()
    args = ["events", str(path), "--store", str(store_dir)]
    first = runner.invoke(cli_app, [*args, "--json"])
    assert first.exit_code == 0, first.output
    assert {k: json.loads(first.stdout)[k] for k in ("ingested", "skipped_lines")} == {"ingested": 2, "skipped_lines": 0}
    second = runner.invoke(cli_app, args)
    assert second.exit_code == 0 and "0 events ingested" in second.stdout and "3 lines skipped" in second.stdout


# ---------------------------------------------------------------------------- Idempotency-Key
def test_a_retried_request_gets_the_first_answer_and_changes_nothing(service):
    batch = [event(user="k1"), event(user="k1", item="nope")]
    with TestClient(create_app(service.settings, service=service)) as client:
        first = client.post("/events", json=batch, headers={"Idempotency-Key": "req-1"})
        retry = client.post("/events", json=batch, headers={"Idempotency-Key": "req-1"})
        assert first.status_code == retry.status_code == 200
        assert retry.json() == first.json() and first.json()["ingested"] == 1
        assert retry.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
        assert len(service.history("k1")) == 1

        other = client.post("/events", json=batch[:1], headers={"Idempotency-Key": "req-1"})
        assert other.status_code == 422
        assert other.json()["errors"][0]["field"] == "Idempotency-Key" and "different" in other.json()["detail"]

        invalid = [event(type_="teleport")]  # a 422 is an answer too: replayed, not recomputed
        assert client.post("/events", json=invalid, headers={"Idempotency-Key": "req-2"}).status_code == 422
        assert client.post("/events", json=invalid, headers={"Idempotency-Key": "req-2"}).status_code == 422

        too_long = client.post("/events", json=batch, headers={"Idempotency-Key": "k" * 256})
        assert too_long.status_code == 422 and too_long.json()["errors"][0]["location"] == "header"
        without = client.post("/events", json=batch)  # no key: applied again, as before
        assert without.status_code == 200 and len(service.history("k1")) == 2

        spec = client.get("/openapi.json").json()["paths"]
        for path in ("/events", "/items"):
            params = {(p["name"], p["in"]) for p in spec[path]["post"].get("parameters", [])}
            assert ("Idempotency-Key", "header") in params


def test_keys_expire_and_are_bounded(service):
    settings = service.settings.model_copy(update={"idempotency_max_keys": 2})
    with TestClient(create_app(settings, service=service)) as client:
        for n in range(3):
            assert client.post("/events", json=[event(user=f"m{n}")], headers={"Idempotency-Key": f"k{n}"}).status_code == 200
        kept = {r[0] for r in service.engine.events.conn().execute("SELECT key FROM idempotency")}
        assert kept == {"k1", "k2"}  # the oldest went
        replay = client.post("/events", json=[event(user="m0")], headers={"Idempotency-Key": "k0"})
        assert "Idempotent-Replayed" not in replay.headers  # forgotten key: a new request
        assert replay.json()["ingested"] == 1
    expiring = service.settings.model_copy(update={"idempotency_ttl_hours": 1e-9})
    with TestClient(create_app(expiring, service=service)) as client:
        client.post("/events", json=[event(user="t")], headers={"Idempotency-Key": "short"})
        time.sleep(0.01)
        again = client.post("/events", json=[event(user="t")], headers={"Idempotency-Key": "short"})
        assert "Idempotent-Replayed" not in again.headers
    assert len(service.history("t")) == 2


def test_item_upserts_replay_their_first_answer(indexed_demo):
    item = {"id": "idem-gift-card", "title": "礼品卡 gift card", "category": "礼品卡", "price": 100}
    with TestClient(create_app(indexed_demo.settings, service=indexed_demo)) as client:
        try:
            # one valid item and one whose title is a lone surrogate: the valid one is indexed
            # once, the other rejected by field, and the answer (200) is sent
            body = json.dumps([item, {"id": "idem-bad", "title": "x\ud800"}]).encode()
            post = {"content": body, "headers": {"Idempotency-Key": "items-1", "content-type": "application/json"}}
            first = client.post("/items", **post)
            assert first.status_code == 200 and first.json()["indexed"] == 1
            assert [(e["index"], e["field"]) for e in first.json()["rejected"]] == [(1, "title")]
            retry = client.post("/items", **post)
            assert retry.json() == first.json() and retry.headers["Idempotent-Replayed"] == "true"
            changed = client.post("/items", json=[{**item, "price": 90}], headers={"Idempotency-Key": "items-1"})
            assert changed.status_code == 422
            assert client.get("/items/idem-gift-card").json()["price"] == 100
        finally:
            client.delete("/items/idem-gift-card")


# ---------------------------------------------------------------------------- kill -9 mid-stream
def _post(port: int, batch: list[dict], timeout: float = 5.0) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/events", data=json.dumps(batch).encode(),
                                     headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as r:
        return r.status


def test_every_acknowledged_event_survives_kill_9_exactly_once(tmp_path, serve_process):
    store = tmp_path / "store"
    edge = EdgeStore(store)
    edge.ensure_collection({"text": 4, "image": 4, "joint": 4})
    edge.upsert(items())
    edge.close()
    batches = [[event(user=f"u{b % 7}", item=f"i{1 + (b + n) % 3}", event_id=f"b{b}-n{n}") for n in range(20)]
               for b in range(400)]
    acked: list[int] = []
    server, port = serve_process(store)
    enough = threading.Event()

    def send() -> None:
        for number, batch in enumerate(batches):
            try:
                if _post(port, batch) == 200:
                    acked.append(number)
            except (OSError, urllib.error.URLError):
                return  # the server is gone
            if len(acked) >= 25:
                enough.set()

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert enough.wait(60), "the server acknowledged too few batches"
        server.kill()  # SIGKILL mid-stream: no shutdown, no checkpoint
        server.wait(10)
        sender.join(30)
    finally:
        if server.poll() is None:
            server.kill()
    assert acked and len(acked) < len(batches)
    with sqlite3.connect(store / "events.sqlite") as conn:
        stored = dict(conn.execute("SELECT event_id, COUNT(*) FROM events GROUP BY event_id").fetchall())
    wanted = {e["event_id"] for number in acked for e in batches[number]}
    assert wanted <= set(stored) and set(stored.values()) == {1}

    # The client retries everything it did not see acknowledged (and, to be sure, the rest too).
    server, _ = serve_process(store, port)
    try:
        retried = [number for number in range(len(acked) + 3)]
        for number in retried:
            assert _post(port, batches[number]) == 200
    finally:
        server.kill()
        server.wait(10)
    with sqlite3.connect(store / "events.sqlite") as conn:
        stored = dict(conn.execute("SELECT event_id, COUNT(*) FROM events GROUP BY event_id").fetchall())
    wanted = {e["event_id"] for number in retried for e in batches[number]}
    assert wanted <= set(stored) and set(stored.values()) == {1}
