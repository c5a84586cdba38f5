"""Events embedded once with the text encoder and sealed beside them (``vane.client.embeddings``).

The encoder is the real int8 artifact (``encoder_blob``, built once by ``encoder_cache`` in a
subprocess: this process never imports TensorFlow) run by the real LiteRT runtime, over real stores.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from store_scan import disk_files, fragments
from vane.client.embeddings import ENCODER_SLOT, EmbeddingEventStore
from vane.client.encoder import TextEncoder, event_text
from vane.client.tracker import InterestTracker
from vane.shared import Event
from vane.shared.errors import ModelError, StoreIntegrityError

T0 = datetime(2024, 3, 1, 8, tzinfo=UTC)
TITLE = "Quixotic zebra migration astonishes Serengeti rangers"
URL = "https://www.example-news.com/world/africa/zebra-migration-2024-123456"


def events(n: int, start: int = 0) -> list[Event]:
    return [Event.create(f"https://site{i % 5}.com/story-{i}", ["news"], T0 + timedelta(minutes=5 * i),
                         title=f"Ordinary story number {i} about markets" if i % 4 else None)
            for i in range(start, start + n)]


def raw_rows(db: Path) -> dict[int, bytes]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'embeddings'").fetchone():
            return {}
        return {seq: bytes(b) for seq, b in conn.execute("SELECT seq, sealed FROM embeddings")}
    finally:
        conn.close()


def test_light_mode_stores_no_embeddings(tmp_path: Path) -> None:
    with InterestTracker.open(tmp_path / "t.db", key_file=tmp_path / "key") as tracker:
        seqs = tracker.record_many(events(8))
        assert tracker.embedding(seqs[1]) is None
        assert tracker.store.encoder is None  # type: ignore[attr-defined]
    assert raw_rows(tmp_path / "t.db") == {}


def test_record_embeds_a_titled_event_once_sealed_and_no_plain_trace_on_disk(tmp_path: Path,
                                                                             encoder_blob: bytes) -> None:
    expected = TextEncoder.from_bytes(encoder_blob).embed_one(event_text(TITLE, URL))
    db, key = tmp_path / "t.db", tmp_path / "key"
    with InterestTracker.open(db, key_file=key, encoder=encoder_blob) as tracker:
        seq = tracker.record(Event.create(URL, ["news"], T0, title=TITLE))
        untitled = tracker.record(Event.create("https://example.org/a", ["news"], T0 + timedelta(hours=1)))
        assert seq is not None and untitled is not None
        got = tracker.embedding(seq)
        assert got is not None and got.dtype == np.float32 and got.shape == (384,)
        assert float(got @ expected) / float(np.linalg.norm(got)) > 0.9999  # float16 storage
        assert tracker.embedding(untitled) is None
    patterns = [expected.astype("<f4").tobytes()[i : i + 12] for i in range(0, 1536, 384)]
    patterns += [expected.astype("<f2").tobytes()[i : i + 8] for i in range(0, 768, 192)]
    for path, data in disk_files(tmp_path, key).items():
        assert b"zebra" not in data.lower() and TITLE.encode() not in data, path
        assert not [p for p in patterns if p in data], f"an embedding's bytes in {path.name}"
    assert set(raw_rows(db)) == {seq}


def test_record_many_embeds_in_a_batch_and_reopening_recomputes_nothing(tmp_path: Path, encoder_blob: bytes) -> None:
    db, key = tmp_path / "t.db", tmp_path / "key"
    batch = events(40)
    with InterestTracker.open(db, key_file=key, encoder=encoder_blob) as tracker:
        seqs = tracker.record_many(batch)
        version = tracker.store.encoder_version  # type: ignore[attr-defined]
        stored = tracker.store.embeddings()  # type: ignore[attr-defined]
    titled = [s for s, e in zip(seqs, batch, strict=True) if e.title]
    assert sorted(stored) == titled and len(titled) == 30
    direct = TextEncoder.from_bytes(encoder_blob).embed([event_text(e.title, e.item_id) for e in batch if e.title])
    assert np.min(np.sum(np.stack([stored[s] for s in titled]) * direct, axis=1)) > 0.999
    before = raw_rows(db)
    with InterestTracker.open(db, key_file=key) as again:  # the store keeps its encoder
        assert again.store.encoder_version == version  # type: ignore[attr-defined]
        np.testing.assert_array_equal(again.embedding(titled[3]), stored[titled[3]])
        later = again.record(Event.create("https://x.com/new", ["news"], T0 + timedelta(days=2), title="New title"))
        assert later is not None and again.embedding(later) is not None
    after = raw_rows(db)
    assert {s: after[s] for s in before} == before  # the same sealed bytes: nothing re-embedded on open


def test_forget_and_retention_delete_the_embedding_with_its_event(tmp_path: Path, encoder_blob: bytes) -> None:
    db, key = tmp_path / "t.db", tmp_path / "key"
    with InterestTracker.open(db, key_file=key, encoder=encoder_blob) as tracker:
        tracker.record_many(events(12))
        seq = tracker.record(Event.create(URL, ["news"], T0 + timedelta(hours=3), title=TITLE))
        assert seq is not None
        sealed = raw_rows(db)[seq]
        assert tracker.forget(item_id=URL) == 1
        assert tracker.embedding(seq) is None and seq not in raw_rows(db)
        left = [p for p in fragments(sealed) for data in disk_files(tmp_path, key).values() if p in data]
        assert not left, "a fragment of the forgotten embedding is still on disk"
        count = len(raw_rows(db))
        assert tracker.apply_retention(max_events=4) > 0
        assert len(raw_rows(db)) < count
        assert set(raw_rows(db)) <= {s for s, _ in tracker.store.events()}


def test_a_moved_embedding_row_fails_authentication(tmp_path: Path, encoder_blob: bytes) -> None:
    db, key = tmp_path / "t.db", tmp_path / "key"
    with InterestTracker.open(db, key_file=key, encoder=encoder_blob) as tracker:
        seqs = tracker.record_many(events(3, start=1))
    rows = raw_rows(db)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE embeddings SET sealed = ? WHERE seq = ?", (rows[seqs[0]], seqs[1]))
    conn.commit()
    conn.close()
    with InterestTracker.open(db, key_file=key) as tracker, pytest.raises(StoreIntegrityError):
        tracker.embedding(seqs[1])


def test_a_bad_encoder_is_refused_and_nothing_changes(tmp_path: Path, encoder_blob: bytes) -> None:
    db, key = tmp_path / "t.db", tmp_path / "key"
    with InterestTracker.open(db, key_file=key) as tracker:
        with pytest.raises(ModelError, match="not a Vane encoder artifact"):
            tracker.install_encoder(b"not an encoder")
        with pytest.raises(ModelError, match="cannot be read"):
            tracker.install_encoder(tmp_path / "missing.vane")
        assert tracker.store.get_state(ENCODER_SLOT) is None
        seq = tracker.record(Event.create("https://a.com/x", ["news"], T0, title="A title"))
        assert seq is not None and tracker.embedding(seq) is None
        version = tracker.install_encoder(encoder_blob)
        assert version.startswith("minilm-l6-v2.int8.")
        seq2 = tracker.record(Event.create("https://a.com/y", ["news"], T0 + timedelta(hours=1), title="B title"))
        assert seq2 is not None and tracker.embedding(seq2) is not None and tracker.embedding(seq) is None


def test_key_rotation_drops_embeddings_and_embed_missing_restores_them(tmp_path: Path, encoder_blob: bytes) -> None:
    db, key = tmp_path / "t.db", tmp_path / "key"
    store = EmbeddingEventStore.open(db, key_file=key)
    try:
        store.install_encoder(encoder_blob)
        seqs = store.append_many(events(9))
        assert len(store.embeddings()) == 6
        store.rotate_key(new_key_file=tmp_path / "key2")
        assert store.embeddings() == {}  # re-sealed events drop theirs (they were sealed under the old key)
        assert store.embed_missing(batch=4) == 6
        assert sorted(store.embeddings()) == [s for s, e in zip(seqs, events(9), strict=True) if e.title]
        assert store.embed_missing() == 0
    finally:
        store.close()
