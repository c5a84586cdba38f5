"""A tracker whose model reads text (spec.text_dim): the sealed embeddings reach the LSTM.

The encoder is the real int8 artifact and the model a real LiteRT training export of ``TEXT_SPEC``
(both built once in subprocesses; this process never imports TensorFlow), over real stores.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from model_cache import cached_models
from model_inputs import SMALL_SPEC, TEXT_SPEC
from vane.client.tracker import InterestTracker
from vane.shared import Event, Taxonomy
from vane.shared.features import Featurizer
from vane.shared.weights import layout_slices

T0 = datetime(2024, 3, 1, 8, tzinfo=UTC)
NAMES = ["sports", "news", "food", "travel", "music", "films", "games"]
TITLES = {"sports": "Lakers beat the Celtics in overtime thriller", "news": "Parliament votes on the new budget",
          "food": "Ten easy pasta recipes for weeknights", "travel": "Cheap flights to Lisbon this spring"}


@pytest.fixture(scope="module")
def text_blob() -> bytes:
    return cached_models(TEXT_SPEC, ["training"])["training"]


def events(n: int, start: int = 0) -> list[Event]:
    """Titled events of four topics, every fifth one without a title."""
    topic = [list(TITLES)[(i // 6) % 4] for i in range(start + n)]
    return [Event.create(item_id=f"https://site{i % 3}.example/{topic[i]}/{i}", categories=[topic[i]],
                         timestamp=T0 + timedelta(minutes=7 * i), kind="view",
                         title=None if i % 5 == 4 else f"{TITLES[topic[i]]} ({i})")
            for i in range(start, start + n)]


def open_tracker(path: Path, blob: bytes | None = None, encoder: bytes | None = None) -> InterestTracker:
    return InterestTracker.open(path, key_file=path.with_name(path.name + ".key"), model=blob,
                                taxonomy=Taxonomy(NAMES) if blob else None, encoder=encoder)


def replayed(tracker: InterestTracker, text: bool) -> np.ndarray:
    """The model's next-interest output after the stored events, computed here from the stored embeddings."""
    items = sorted(tracker.store.events(), key=lambda it: it[1].unix_time)
    found = tracker.store.embeddings([seq for seq, _ in items])  # type: ignore[attr-defined]
    rows = np.stack([found.get(seq, np.zeros(384, np.float32)) for seq, _ in items]) if text else None
    model = tracker.model
    assert model is not None
    feats = Featurizer(TEXT_SPEC, Taxonomy(NAMES)).encode([ev for _, ev in items], text=rows)
    return model.infer_sequence(feats, *model.zero_state()).interest[-1]


def test_the_lstm_reads_each_events_sealed_embedding(tmp_path: Path, text_blob: bytes, encoder_blob: bytes) -> None:
    db = tmp_path / "t.db"
    tracker = open_tracker(db, text_blob, encoder_blob)
    assert tracker.spec == TEXT_SPEC
    for event in events(12):  # one by one: the step signature
        tracker.record(event)
    tracker.record_many(events(300, start=12))  # a batch: chunked infer
    seqs = [seq for seq, _ in tracker.store.events()]
    texts = tracker.model_state.texts(seqs)
    assert texts is not None and texts.shape == (312, 384)
    titled = [i for i, (_, ev) in enumerate(tracker.store.events()) if ev.title]
    assert np.all(np.abs(np.linalg.norm(texts[titled], axis=1) - 1.0) < 0.02)
    assert not texts[[i for i in range(312) if i not in titled]].any()  # no title: zeros
    tracker.refresh()
    live = tracker.model_state.interest
    assert live is not None
    assert np.max(np.abs(live - replayed(tracker, text=True))) <= 1e-5
    assert np.max(np.abs(live - replayed(tracker, text=False))) > 1e-4  # the text made a difference
    assert tracker.predict(3).source == "model+profile"
    tracker.close()
    # Reopened: the state rebuilt from the stored events and their embeddings is the same.
    tracker = open_tracker(db)
    tracker.model_state.mark_stale()
    tracker.refresh()
    assert np.max(np.abs(tracker.model_state.interest - live)) <= 1e-5
    tracker.close()


def test_on_device_training_learns_the_text_projection(tmp_path: Path, text_blob: bytes, encoder_blob: bytes) -> None:
    tracker = open_tracker(tmp_path / "t.db", text_blob, encoder_blob)
    tracker.record_many(events(240))
    before = tracker.get_weights().flat.copy()
    result = tracker.train_local(epochs=2, learning_rate=0.01)
    after = tracker.get_weights().flat
    kernel = layout_slices(TEXT_SPEC)["text/kernel"]
    assert result.steps > 0 and np.isfinite(result.loss)
    assert np.max(np.abs(after[kernel] - before[kernel])) > 1e-4
    metrics = tracker.evaluate_local()
    assert metrics["num-examples"] == 24.0 and 0.0 <= metrics["hr@1"] <= 1.0
    tracker.close()


def test_without_an_encoder_a_text_model_reads_zeros_and_a_plain_model_is_unchanged(
        tmp_path: Path, text_blob: bytes, small_training_blob: bytes) -> None:
    tracker = open_tracker(tmp_path / "t.db", text_blob)  # the light mode: no embeddings stored
    tracker.record_many(events(60))
    tracker.refresh()
    assert not tracker.model_state.texts([seq for seq, _ in tracker.store.events()]).any()
    assert np.max(np.abs(tracker.model_state.interest - replayed(tracker, text=False))) <= 1e-5
    tracker.close()
    plain = open_tracker(tmp_path / "p.db", small_training_blob)
    plain.record_many(events(30))
    assert plain.model_state.texts([1, 2]) is None and plain.spec == SMALL_SPEC
    assert plain.model is not None and plain.featurizer is not None
    assert plain.featurizer.encode(events(2)).text is None
    plain.close()
