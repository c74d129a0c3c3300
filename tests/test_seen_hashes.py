"""The indexer's confirmations of unchanged photos, kept beside the store (seen_hashes.py)."""

from pathlib import Path

import pytest

from shoprec.indexing import seen_hashes


def test_round_trip_keeps_only_entries_that_still_vouch_for_the_stored_point(tmp_path: Path) -> None:
    seen = {"a": ("h-a", "d-a"), "b": ("h-b", "d-b"), "gone": ("h-g", "d-g")}
    seen_hashes.save(tmp_path, seen, {"a": "h-a", "b": "re-encoded since"})
    loaded = seen_hashes.load(tmp_path)
    assert loaded == {"a": ("h-a", "d-a")}
    assert seen_hashes.vouches(loaded, "a", "h-a", "d-a")
    assert not seen_hashes.vouches(loaded, "a", "h-a", "another mtime")
    assert not seen_hashes.vouches(loaded, "a", None, "d-a")  # the item is not stored (deleted)


def test_nothing_left_removes_the_file(tmp_path: Path) -> None:
    seen_hashes.save(tmp_path, {"a": ("h", "d")}, {"a": "h"})
    assert (tmp_path / seen_hashes.FILE_NAME).is_file()
    seen_hashes.save(tmp_path, {"a": ("h", "d")}, {})
    assert not (tmp_path / seen_hashes.FILE_NAME).exists()


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"a": "not a pair", "b": ["h", "d"]}'])
def test_an_unreadable_file_means_reading_the_photos_again(tmp_path: Path, text: str, caplog) -> None:
    (tmp_path / seen_hashes.FILE_NAME).write_text(text)
    loaded = seen_hashes.load(tmp_path)
    assert "a" not in loaded
    if text.startswith('{"a"'):
        assert loaded == {"b": ("h", "d")}  # the good entries of a partly odd file still count
    else:
        assert loaded == {} and "ignoring" in caplog.text


def test_writers_side_by_side_never_fail_each_other(tmp_path: Path) -> None:
    """Two HTTP upserts (or two workers on one volume) may save at the same moment."""
    from concurrent.futures import ThreadPoolExecutor

    seen = {f"item-{i}": (f"h{i}", f"d{i}") for i in range(5_000)}
    stored = {k: v[0] for k, v in seen.items()}
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: seen_hashes.save(tmp_path, seen, stored), range(40)))
    assert seen_hashes.load(tmp_path) == seen
    assert [p.name for p in tmp_path.iterdir()] == [seen_hashes.FILE_NAME]  # no temporary file left


def test_a_store_folder_that_cannot_be_written_is_only_a_warning(tmp_path: Path, caplog) -> None:
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    seen_hashes.save(blocked, {"a": ("h", "d")}, {"a": "h"})
    assert "could not save" in caplog.text
