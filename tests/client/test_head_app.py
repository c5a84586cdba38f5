"""The head's ClientApp in a deployment: its examples come from the device's encrypted store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from flwr.app import Context, RecordDict
from vane.client.head_app import store_examples
from vane.client.topic_head import head_topics
from vane.client.tracker import InterestTracker
from vane.shared import protocol as p
from vane.shared.errors import ConfigError

pytestmark = pytest.mark.slow  # opens the int8 encoder


def _context(store, key) -> Context:
    return Context(run_id=1, node_id=1, node_config={p.NODE_STORE_KEY: str(store), p.NODE_KEY_FILE_KEY: str(key)},
                   state=RecordDict(), run_config={})


def test_store_examples_are_the_labelled_events_with_their_sealed_embeddings(tmp_path, encoder_blob):
    db, key = tmp_path / "me.db", tmp_path / "me.db.key"
    start = datetime(2025, 3, 1, tzinfo=UTC)
    events = [
        {"item_id": "https://www.nba.com/news/a", "title": "Celtics win game 7", "categories": ["/Sports/Basketball"]},
        {"item_id": "https://example.org/x", "title": "Untitled thoughts", "categories": ["other"]},
        {"item_id": "https://www.bbc.co.uk/news/b", "title": "Parliament votes on the budget",
         "categories": ["/News/Politics"]},
        {"item_id": "https://example.org/no-title", "categories": ["/News"]},
    ]
    with InterestTracker.open(db, key_file=key, encoder=encoder_blob) as tracker:
        tracker.record_many([{**e, "timestamp": start + timedelta(minutes=i), "kind": "view"}
                             for i, e in enumerate(events)])
        sealed = tracker.store.embeddings()
        seqs = [seq for seq, ev in tracker.store.events() if ev.title and ev.categories[0] != "other"]
    x, y = store_examples(_context(db, key))
    index = {path: i for i, path in enumerate(head_topics())}
    assert y.tolist() == [index["/Sports/Basketball"], index["/News/Politics"]]  # titled, Topics-labelled
    np.testing.assert_array_equal(x, np.stack([sealed[s] for s in seqs]))  # the sealed vectors, not recomputed


def test_store_examples_refuse_a_light_store_and_a_missing_key(tmp_path):
    db, key = tmp_path / "light.db", tmp_path / "light.db.key"
    with InterestTracker.open(db, key_file=key) as tracker:
        tracker.record({"item_id": "a", "title": "Celtics win", "categories": ["/Sports/Basketball"],
                        "timestamp": datetime(2025, 3, 1, tzinfo=UTC), "kind": "view"})
    with pytest.raises(ConfigError, match="no text encoder installed"):
        store_examples(_context(db, key))
    bare = Context(run_id=1, node_id=1, node_config={p.NODE_STORE_KEY: str(db)}, state=RecordDict(), run_config={})
    with pytest.raises(ConfigError, match="needs 'store' and 'key-file'"):
        store_examples(bare)
