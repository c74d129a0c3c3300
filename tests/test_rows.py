"""The one reader of catalog, events and users files (shoprec/rows.py): formats, line numbers,
bad lines, and the same words for the same bad value whichever file it is in."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoprec.catalog import CatalogRow, RowError, read_catalog
from shoprec.evaluation.interactions import read_events as read_interactions
from shoprec.recommend.events import Event, EventError, EventRow, read_events
from shoprec.recommend.segments import UserError, UserRow, read_users


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_a_tsv_events_file_is_split_on_tabs(tmp_path: Path) -> None:
    path = _write(tmp_path / "events.tsv", [
        "\ufeffuser_id\titem_id\ttype\tts\tsession_id\tprice".encode(),
        b"u1\tshirt, blue\tpurchase\t2024-05-01T10:00:00Z\ts,1\t19.9",
        b"u2\ti2\tview\tnot-a-time\t\t",
    ])
    rows = list(read_events(path))
    assert [type(r) for r in rows] == [EventRow, EventError]
    event = rows[0].event
    assert (rows[0].line, event.user_id, event.item_id, event.session_id, event.price) == \
        (2, "u1", "shirt, blue", "s,1", 19.9)
    assert rows[1].line == 3 and "'ts'" in rows[1].reason and rows[1].item_id == "i2"


def test_a_tsv_users_file_is_split_on_tabs(tmp_path: Path) -> None:
    path = _write(tmp_path / "users.tsv", [
        b"user_id\tregion\tage",
        b"u1\tnorth, coast\t34",
        b"\tsouth\t20",
    ])
    rows = list(read_users(path))
    assert isinstance(rows[0], UserRow) and rows[0].line == 2
    assert (rows[0].user_id, rows[0].attributes) == ("u1", {"region": "north, coast", "age": "34"})
    assert isinstance(rows[1], UserError) and rows[1].line == 3 and "user_id" in rows[1].reason


def test_a_csv_record_spanning_two_lines_keeps_the_next_lines_numbers(tmp_path: Path) -> None:
    catalog = _write(tmp_path / "catalog.csv", [
        b"id,title,description,price",
        b'p1,Shirt,"soft,',            # lines 2-3: one record with a newline in its description
        b'warm",10',
        b"p2,Shoe,,-5",                # line 4: a bad price
    ])
    rows = list(read_catalog(catalog))
    assert isinstance(rows[0], CatalogRow) and rows[0].line == 2
    assert rows[0].product.description == "soft,\nwarm"
    assert isinstance(rows[1], RowError) and (rows[1].line, rows[1].item_id) == (4, "p2")
    assert "field 'price'" in rows[1].reason

    events = _write(tmp_path / "events.csv", [
        b"user_id,item_id,type,ts,session_id",
        b'u1,i1,view,2024-05-01T10:00:00Z,"s',   # lines 2-3: a session id with a newline
        b'1"',
        b"\xff",                                 # line 4: not UTF-8
        b"u1,i2,cart,yesterday,",                # line 5: a bad timestamp
        b"u1,i2,cart,2024-05-01T10:00:00Z,,x",   # line 6: more fields than the header
    ])
    rows = list(read_events(events))
    assert [(type(r).__name__, r.line) for r in rows] == \
        [("EventRow", 2), ("EventError", 4), ("EventError", 5), ("EventError", 6)]
    assert "UTF-8" in rows[1].reason and "'ts'" in rows[2].reason and "more fields" in rows[3].reason
    assert rows[3].item_id == "i2"


def test_skipped_lines_are_neither_rows_nor_errors_but_the_csv_header_still_counts(tmp_path: Path) -> None:
    path = _write(tmp_path / "events.tsv", [
        b"user_id\titem_id\ttype\tts",
        b"u1\ti1\tview\t2024-05-01T10:00:00Z",
        b"\xff",
        b"u1\ti2\tview\t2024-05-01T11:00:00Z",
        b"\xfe",
    ])
    assert [(type(r).__name__, r.line) for r in read_events(path, skip_lines=3)] == \
        [("EventRow", 4), ("EventError", 5)]
    assert read_events(path, skip_lines=3).__next__().event.item_id == "i2"


BAD_LINES = [b"{not json", b"\xff\xfe", b"[1, 2]", b'{"n": 1' + b"0" * 5000 + b"}"]


def _reasons(rows: list) -> list[str]:
    return [r.reason for r in rows]


def test_the_same_bad_line_gets_the_same_words_from_every_reader(tmp_path: Path) -> None:
    catalog = list(read_catalog(_write(tmp_path / "c.jsonl", BAD_LINES)))
    events = list(read_events(_write(tmp_path / "e.jsonl", BAD_LINES)))
    users = list(read_users(_write(tmp_path / "u.jsonl", BAD_LINES)))
    assert [r.line for r in catalog] == [r.line for r in events] == [r.line for r in users] == [1, 2, 3, 4]
    # a list is "not an object" in each reader's own words; the line-level errors are shared
    assert _reasons(catalog)[:2] == _reasons(events)[:2] == _reasons(users)[:2]
    assert _reasons(catalog)[3] == _reasons(events)[3] == _reasons(users)[3]
    assert "invalid JSON" in catalog[0].reason and "UTF-8" in catalog[1].reason and "invalid JSON" in catalog[3].reason


@pytest.mark.parametrize("bad_id", ["\ud800", "x" * 300])
def test_the_same_bad_id_gets_the_same_message_from_catalog_events_and_users(tmp_path: Path, bad_id: str) -> None:
    import json

    def one(path: Path, row: dict) -> str:
        path.write_text(json.dumps(row) + "\n", encoding="utf-8")
        return str(path)

    catalog = list(read_catalog(Path(one(tmp_path / "c.jsonl", {"id": bad_id, "title": "t"}))))
    events = list(read_events(Path(one(tmp_path / "e.jsonl", {"user_id": bad_id, "item_id": "i", "type": "view",
                                                              "ts": "2024-05-01T10:00:00Z"}))))
    users = list(read_users(Path(one(tmp_path / "u.jsonl", {"user_id": bad_id, "age": 30}))))
    c, e, u = catalog[0].reason, events[0].reason, users[0].reason
    message = c.removeprefix("field 'id': ")
    assert message != c and e == f"field 'user_id': {message}" and u == f"user_id: {message}"
    assert ("lone surrogate" if bad_id == "\ud800" else "SHOPREC_MAX_ID_CHARS") in message


def test_unsupported_or_missing_files_fail_before_reading(tmp_path: Path) -> None:
    (tmp_path / "u.txt").write_text("user_id\nu1\n")
    with pytest.raises(ValueError, match="unsupported users file format '.txt'"):
        read_users(tmp_path / "u.txt")
    with pytest.raises(FileNotFoundError, match="users file not found"):
        read_users(tmp_path / "none.csv")


def test_the_evaluation_reads_events_files_as_the_service_does(tmp_path: Path) -> None:
    path = _write(tmp_path / "events.tsv", [
        b"user_id\titem_id\ttype\tts\tsession_id",
        b"u1\ti1\tpurchase\t2024-05-01T23:30:00-02:00\t",   # 2024-05-02 in UTC
        b"u1\ti2\tview\t2024-05-01T10:00:00Z\t",
        b"u2\ti3\tpurchase\t2024-05-01T10:00:00Z\ts9",
    ])
    got = read_interactions(path)
    assert [(i.user_id, i.item_id) for i in got] == [("u1", "i1"), ("u2", "i3")]
    served = [r.event for r in read_events(path) if isinstance(r, EventRow) and r.event.type == "purchase"]
    assert [i.session_id for i in got] == [e.basket() for e in served]
    assert got[0].session_id.endswith("@2024-05-02")
    bad = _write(tmp_path / "bad.jsonl", [b'{"user_id": "u", "item_id": "i", "type": "purchase", "ts": "x"}'])
    with pytest.raises(ValueError, match="line 1"):
        read_interactions(bad)
    with pytest.raises(ValueError, match="line 1: invalid UTF-8"):
        read_interactions(_write(tmp_path / "bytes.jsonl", [b"\xff"]))
    assert isinstance(served[0], Event)


def test_a_tsv_events_file_with_a_multi_line_record_is_ingested_once_and_resumed(tmp_path: Path) -> None:
    import numpy as np
    from qdrant_client import QdrantClient

    from shoprec.config import Settings
    from shoprec.indexing.server import ServerStore
    from shoprec.indexing.store import ItemPoint
    from shoprec.service import Shoprec

    eye = np.eye(4, dtype=np.float32)
    store = ServerStore(QdrantClient(":memory:"))
    store.ensure_collection({"text": 4, "image": 4, "joint": 4})
    store.upsert([ItemPoint(f"i{n}", {"text": eye[n], "joint": eye[n]},
                            {"title": f"item {n}", "category": "c", "price": 1.0, "in_stock": True})
                  for n in range(1, 4)])
    svc = Shoprec(Settings(store=tmp_path / "store", profile_vector="text"), store=store)
    try:
        path = tmp_path / "log.tsv"
        path.write_bytes(b"user_id\titem_id\ttype\tts\tsession_id\n"
                         b"u1\ti1\tpurchase\t2024-05-01T10:00:00Z\t\n"
                         b'u1\ti2\tpurchase\t2024-05-01T10:01:00Z\t"s\n1"\n')   # lines 3-4: one record
        first = svc.ingest_events_file(path)
        assert (first.ingested, first.errors) == (2, [])
        assert svc.ingest_events_file(path).ingested == 0
        with path.open("ab") as fh:
            fh.write(b"u1\ti3\tpurchase\t2024-05-01T10:02:00Z\t\n")
        grown = svc.ingest_events_file(path)
        assert (grown.ingested, grown.errors) == (1, [])
        assert sorted(e.item_id for e in svc.history("u1")) == ["i1", "i2", "i3"]
    finally:
        svc.close()
