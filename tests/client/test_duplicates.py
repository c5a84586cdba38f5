"""One duplicate rule: ``record`` one by one, ``record_many`` and ``shared.events.dedupe`` keep the same events.

Issue 12: item ``a`` at 0 s, 0.5 s and 1.2 s used to store 2 events through ``record`` and 1 through
``record_many``. Now both compare with the last *kept* event, so the stores, the profiles and the
predictions are the same however the events arrive.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from vane.client.answers import Prediction
from vane.client.profile import InterestProfile
from vane.client.shifts import Shift
from vane.client.tracker import InterestTracker
from vane.shared import Event, Taxonomy
from vane.shared.events import dedupe

T0 = datetime(2024, 5, 1, 9, tzinfo=UTC)
NAMES = ["sports", "news", "food", "travel", "music", "films", "games"]


def _event(item: str, seconds: float, category: str) -> Event:
    return Event.create(item_id=item, categories=[category], timestamp=T0 + timedelta(seconds=seconds),
                        title=f"{category} {item}")


def bursty_sequence() -> list[Event]:
    """Bursts of the same item (0, 0.5, 1.2 s), interleaved items, and a plain tail."""
    out = [
        _event("a", 0.0, "sports"), _event("a", 0.5, "sports"), _event("a", 1.2, "sports"),  # keeps 0 and 1.2
        _event("b", 3.0, "news"), _event("a", 3.3, "sports"), _event("a", 3.6, "sports"),  # a after b is kept
        _event("c", 10.0, "food"), _event("c", 10.9, "food"), _event("c", 11.5, "food"),  # 11.5 - 10.0 >= 1
        _event("d", 20.0, "travel"), _event("d", 20.0, "travel"),  # same instant
    ]
    for i in range(30):
        t = 30.0 + 40.0 * i
        cat = NAMES[(i * i) % len(NAMES)]
        out.append(_event(f"{cat}-{i % 6}", t, cat))
        if i % 4 == 0:  # a reload burst inside the tail
            out.append(_event(f"{cat}-{i % 6}", t + 0.4, cat))
            out.append(_event(f"{cat}-{i % 6}", t + 0.8, cat))
            out.append(_event(f"{cat}-{i % 6}", t + 1.1, cat))
    return out


def _open(path: Path, blob: bytes | None, taxonomy: Taxonomy | None) -> InterestTracker:
    return InterestTracker.open(path, key=b"\x05" * 32, model=blob, taxonomy=taxonomy)


def _answers(tracker: InterestTracker) -> tuple[list[tuple[int, Event]], InterestProfile, Prediction, list[Shift]]:
    return tracker.store.events(), tracker.interests(10), tracker.predict(10), tracker.shifts()


@pytest.mark.parametrize("with_model", [False, True], ids=["profile-only", "with-model"])
def test_record_one_by_one_and_record_many_keep_the_same_events_and_answers(
    tmp_path: Path, with_model: bool, request: pytest.FixtureRequest
) -> None:
    blob = request.getfixturevalue("small_training_blob") if with_model else None
    taxonomy = Taxonomy(NAMES) if with_model else None
    events = bursty_sequence()
    expected = dedupe(events)
    assert [(e.item_id, (e.timestamp - T0).total_seconds()) for e in expected[:6]] == [
        ("a", 0.0), ("a", 1.2), ("b", 3.0), ("a", 3.3), ("c", 10.0), ("c", 11.5)
    ]

    with _open(tmp_path / "one.store", blob, taxonomy) as one:
        seqs = [one.record(e) for e in events]
        assert [s is not None for s in seqs] == [any(e is k for k in expected) for e in events]
        stored_one, interests_one, predict_one, shifts_one = _answers(one)
    with _open(tmp_path / "many.store", blob, taxonomy) as many:
        # Three batches: the rule also holds across calls (the last kept event of the batch before).
        assert len(many.record_many(events[:2])) == 1
        many.record_many(events[2:20])
        many.record_many(events[20:])
        stored_many, interests_many, predict_many, shifts_many = _answers(many)

    assert [ev for _, ev in stored_one] == [ev for _, ev in stored_many] == expected
    assert [seq for seq, _ in stored_one] == [seq for seq, _ in stored_many]
    # A batch runs the shift detector as one block (exact to ~1e-14) and, with a model, the LSTM as
    # chunked ``infer`` instead of ``step`` (float32, <= 1e-7 in DESIGN): the same answers up to that
    # rounding, so the same rankings, reasons and shifts.
    tol = 1e-5 if with_model else 1e-12
    assert predict_one.source == predict_many.source == ("model+profile" if with_model else "profile")
    for ranked_one, ranked_many in ((predict_one.next_interest, predict_many.next_interest),
                                    (predict_one.intensity, predict_many.intensity)):
        assert [c for c, _ in ranked_one] == [c for c, _ in ranked_many]
        assert [p for _, p in ranked_one] == pytest.approx([p for _, p in ranked_many], abs=tol)
    assert (interests_one.source, interests_one.events_seen) == (interests_many.source, interests_many.events_seen)
    assert [c.category for c in interests_one.top] == [c.category for c in interests_many.top]
    for a, b in zip(interests_one.top, interests_many.top, strict=True):
        assert (a.profile_share, a.because) == (b.profile_share, b.because)
        assert a.score == pytest.approx(b.score, abs=tol)
        assert (a.model_probability is None) == (b.model_probability is None) == (not with_model)
    assert shifts_one == shifts_many


def test_the_rule_survives_a_restart(tmp_path: Path) -> None:
    """The last kept event is part of the saved state: a duplicate right after reopening is dropped."""
    first, again = _event("a", 0.0, "news"), _event("a", 0.6, "news")
    with _open(tmp_path / "s.store", None, None) as tracker:
        assert tracker.record(first) == 1
    with _open(tmp_path / "s.store", None, None) as tracker:
        assert tracker.personal_state.last_event == first
        assert tracker.record(again) is None
        assert tracker.record_many([again]) == []


def test_a_state_saved_before_last_event_existed_reads_it_from_the_store(tmp_path: Path) -> None:
    """Stores written by earlier versions keep only last_item/last_time: they still open and dedupe."""
    import json

    first = _event("a", 0.0, "news")
    tracker = _open(tmp_path / "s.store", None, None)
    tracker.record(first)
    tracker.flush()
    state = json.loads(tracker.store.get_state("tracker/state") or b"{}")
    del state["personal"]["last_event"]
    tracker.store.put_state("tracker/state", json.dumps(state).encode())
    tracker.store.close()  # no save on the way out: keep the old-format state
    with _open(tmp_path / "s.store", None, None) as tracker:
        assert tracker.personal_state.last_event == first
        assert tracker.record(_event("a", 0.9, "news")) is None
        assert tracker.record(_event("a", 1.0, "news")) == 2
