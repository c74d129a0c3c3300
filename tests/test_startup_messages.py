"""An operator sees why a first request waits: loading an encoder is logged on both sides."""

from __future__ import annotations

import logging

from shoprec.config import Settings
from shoprec.indexing.embedder import ProductEmbedder


def test_loading_an_encoder_is_logged_with_its_duration(tmp_path, caplog):
    embedder = ProductEmbedder(Settings(store=tmp_path))
    with caplog.at_level(logging.INFO, logger="shoprec.encoders"):
        embedder.text_encoder  # noqa: B018 - the lazy load under test
        embedder.text_encoder  # noqa: B018 - cached: no second pair of lines
    messages = [r.getMessage() for r in caplog.records if r.name == "shoprec.encoders"]
    assert len(messages) == 2, messages
    assert messages[0].startswith("loading the text encoder use-multilingual")
    assert messages[1].startswith("text encoder use-multilingual ready in ")
