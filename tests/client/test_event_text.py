"""What an event is embedded as: its title and the words of its URL (``vane.client.encoder.event_text``)."""

from __future__ import annotations

import numpy as np
import pytest
from vane.client.encoder import BATCH_TOKENS, TextEncoder, event_text, url_words
from vane.shared.errors import ModelError


def test_url_words_keep_host_and_path_words_without_ids_numbers_or_tld() -> None:
    assert url_words("https://www.nytimes.com/2024/05/01/sports/basketball/lakers-win-game-7.html?id=3") == [
        "nytimes", "sports", "basketball", "lakers", "win", "game"]
    assert url_words("https://news.bbc.co.uk/sport/football/live/c9x2d81f3a") == [
        "news", "bbc", "sport", "football", "live"]
    assert url_words("https://github.com/torvalds/linux/pull/1234") == ["github", "torvalds", "linux", "pull"]
    assert url_words("example.org/travel_guides/deadbeefcafe1234") == ["example", "travel", "guides"]
    assert url_words("not a url") == [] and url_words("") == []


def test_event_text_is_the_title_then_the_url_words_it_lacks() -> None:
    title = "Over 4 Million Americans Roll Up Sleeves For COVID Boosters"
    url = "https://www.huffpost.com/entry/covid-boosters-uptake-us_n_632d719ee4b087fae6feaac9"
    assert event_text(title, url) == f"{title} huffpost uptake us"
    assert event_text(None, "https://m.youtube.com/watch?v=abc") == "youtube watch"
    assert event_text("  Only a title  ") == "Only a title"
    assert event_text(None, None) == ""


def test_long_and_short_texts_batch_alike(encoder_blob: bytes) -> None:
    encoder = TextEncoder.from_bytes(encoder_blob)
    texts = ["short", "word " * 200, "a medium length title about football and rugby", "", "x"] * 4
    together = encoder.embed(texts)
    alone = np.stack([encoder.embed_one(t) for t in texts])
    assert together.shape == (20, 384)
    assert np.min(np.sum(together * alone, axis=1)) > 0.999  # padding and batching change nothing
    assert encoder.embed([]).shape == (0, 384)
    assert BATCH_TOKENS >= encoder.artifact.max_len  # a text of max_len always fits one call
    with pytest.raises(ModelError, match="sequence of texts"):
        encoder.embed("a bare string")  # type: ignore[arg-type]
