"""What a tracker holds: a closed tracker is freed by reference counting alone (no cycle) and frees its
interpreter at close; a long batch runs through ``infer`` in chunks with the same numbers as one call."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pytest
import vane.client.model_state as model_state
from test_tracker import make_events, open_tracker
from vane.shared import Taxonomy
from vane.shared.errors import ModelError

NAMES = ["sports", "news", "food", "travel", "music", "films", "games"]


def test_a_closed_tracker_is_freed_without_the_cycle_collector(tmp_path: Path, small_training_blob: bytes) -> None:
    tracker = open_tracker(tmp_path, small_training_blob, Taxonomy(NAMES))
    tracker.record_many(make_events(40))
    tracker.close()
    ref = weakref.ref(tracker)
    gc.disable()
    try:
        del tracker
        assert ref() is None
    finally:
        gc.enable()


def test_close_frees_the_interpreter_and_cached_answers_stay(tmp_path: Path, small_training_blob: bytes) -> None:
    tracker = open_tracker(tmp_path, small_training_blob, Taxonomy(NAMES))
    tracker.record_many(make_events(40))
    before = tracker.predict(3)
    model, features = tracker.model, tracker.featurizer.encode(make_events(3))
    tracker.close()
    assert tracker.predict(3) == before
    with pytest.raises(ModelError, match="its tracker was closed"):
        model.infer_sequence(features, *model.zero_state(1))
    with open_tracker(tmp_path, None, None) as reopened:
        assert reopened.predict(3) == before


def test_a_long_batch_runs_in_chunks_with_the_numbers_of_one_call(tmp_path: Path, small_training_blob: bytes,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    events = make_events(300)
    states = []
    for chunk in (1 << 20, 40):  # one call; then chunks of 40 (5 windows of 8), the last one partial
        monkeypatch.setattr(model_state, "_CHUNK", chunk)
        with open_tracker(tmp_path, small_training_blob, Taxonomy(NAMES), name=f"c{chunk}.db") as tracker:
            tracker.record_many(events)
            lstm = tracker.model_state
            states.append((lstm.h.copy(), lstm.c.copy(), lstm.interest.copy(), lstm.intensity.copy()))
            assert lstm.interest.base is None  # a copy, not a view of every position's outputs
    for one, chunked in zip(*states, strict=True):
        np.testing.assert_array_equal(one, chunked)
