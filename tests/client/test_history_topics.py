"""History import gives Topics by default: the real browser fixtures, and stores that keep the older vocabulary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from vane.client.history import load_rules, read_history
from vane.client.history.rules import CategoryRules
from vane.client.history.site_topics import SiteTopics, choose_rules
from vane.client.tracker import InterestTracker
from vane.shared import Taxonomy
from vane.shared.events import OTHER
from vane.shared.topics import topics
from vane.shared.vocabularies import browsing_taxonomy, topics_taxonomy

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "browser-history-fixtures"
FILES = ["grr/chrome_History2", "grr/chrome_History3", "plaso/chrome_History", "plaso/chrome_History-59.0.3071.86",
         "plaso/firefox_places.sqlite", "plaso/safari_History.db", "pyspark-plaso/chrome_History_demo-2019-09"]
pytestmark = pytest.mark.skipif(not FIXTURES.exists(), reason="browser-history fixtures not present")


def _copies(folder: Path) -> list[Path]:
    folder.mkdir()
    out = []
    for name in FILES:  # copies: opening the Safari file writes sidecars
        target = folder / name.replace("/", "__")
        shutil.copyfile(FIXTURES / name, target)
        out.append(target)
    return out


def test_real_fixtures_leave_at_most_10_percent_other_with_rules_alone(tmp_path: Path):
    files = _copies(tmp_path / "h")
    before = [e for f in files for e in read_history(f, rules=load_rules()).events]
    with InterestTracker.open(tmp_path / "me.db", key=b"\x0b" * 32) as tracker:
        for f in files:
            tracker.import_history(f)
        after = [e for _, e in tracker.store.events()]
    assert len(after) == len(before) == 137
    share = sum(e.categories == (OTHER,) for e in after) / len(after)
    chrome = [e for f in files if "chrome" in f.name for e in read_history(f).events]
    chrome_share = sum(e.categories == (OTHER,) for e in chrome) / len(chrome)
    old_share = sum(e.categories == (OTHER,) for e in before) / len(before)
    assert share <= 0.10 and chrome_share <= 0.10 < old_share  # 1.5% and 1.6% vs 21% with the older rules
    tree = topics()
    assert all(c in tree for e in after for c in e.categories if c != OTHER)  # every category is a Topics path
    assert all(c in topics_taxonomy() for e in after for c in e.categories)


def test_a_store_pinned_to_the_browsing_vocabulary_keeps_its_coarse_categories(tmp_path: Path, small_training_blob):
    history = _copies(tmp_path / "h")[-1]  # the Czech news session
    with InterestTracker.open(tmp_path / "old.db", key=b"\x0c" * 32, model=small_training_blob,
                              taxonomy=Taxonomy(["news", "social", "tech", "video", "shopping", "travel", "sports"])
                              ) as tracker:
        tracker.import_history(history)
        assert {c for _, e in tracker.store.events() for c in e.categories} <= {*browsing_taxonomy().names}
    assert isinstance(choose_rules(None, browsing_taxonomy()), CategoryRules)
    assert isinstance(choose_rules(None, topics_taxonomy()), SiteTopics)
    assert isinstance(choose_rules(None, None), SiteTopics)


def test_a_user_rules_file_is_read_by_its_format(tmp_path: Path):
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"format": "vane.site-topics/1", "sites": {"github.com": [299]}}))
    assert choose_rules(mine).categorize("https://github.com/x") == ("/Sports",)
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"hosts": {"hobby": ["github.com"]}}))
    assert choose_rules(old).categorize("https://github.com/x") == ("hobby",)


@pytest.mark.slow
def test_with_an_encoder_no_titled_visit_stays_other_and_the_head_trains_on_sealed_embeddings(
        tmp_path: Path, encoder_blob: bytes):
    from vane.client.categorize_store import load_categorizer, train_head
    from vane.client.encoder import TextEncoder

    class Counting:
        def __init__(self, encoder: TextEncoder) -> None:
            self.encoder, self.version, self.texts = encoder, encoder.version, 0

        def embed(self, texts):
            self.texts += len(texts)
            return self.encoder.embed(texts)

    files = _copies(tmp_path / "h")
    with InterestTracker.open(tmp_path / "me.db", key=b"\x0d" * 32, encoder=encoder_blob) as tracker:
        for f in files:
            tracker.import_history(f)
        events = [e for _, e in tracker.store.events()]
        assert not [e for e in events if e.title and e.categories == (OTHER,)]
        assert all(c in topics() for e in events for c in e.categories if c != OTHER)
        counting = Counting(TextEncoder.from_bytes(encoder_blob))
        report = train_head(tracker.store, counting, min_examples=10)
        assert report.examples > 100 and counting.texts == 0  # every example's embedding was already sealed
        assert load_categorizer(tracker.store).head is not None
