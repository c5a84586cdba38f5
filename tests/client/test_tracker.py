"""InterestTracker: recording, state, answers, forgetting, restarts, threads, shifts."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from store_scan import leftovers, open_raw_state, raw_state, state_slot
from vane.client.tracker import InterestTracker
from vane.shared import Event, EventValidationError, Featurizer, Taxonomy

T0 = datetime(2024, 3, 1, 8, tzinfo=UTC)
NAMES = ["sports", "news", "food", "travel", "music", "films", "games"]


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return Taxonomy(NAMES)


def make_events(n: int, seed: int = 0, switch_at: int | None = None, start: int = 0) -> list[Event]:
    """A person who mostly reads one category (and another after ``switch_at``)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(start, start + n):
        main = "travel" if switch_at is not None and i >= switch_at else "sports"
        cat = main if rng.random() < 0.75 else NAMES[int(rng.integers(len(NAMES)))]
        out.append(Event.create(item_id=f"{cat}-{int(rng.integers(40))}", categories=[cat],
                                timestamp=T0 + timedelta(minutes=7 * i), title=f"{cat} story number {i}",
                                kind="view"))
    return out


def open_tracker(tmp_path: Path, blob: bytes | None, taxonomy: Taxonomy | None, name: str = "t.db") -> InterestTracker:
    return InterestTracker.open(tmp_path / name, key_file=tmp_path / "key", model=blob, taxonomy=taxonomy,
                                scrypt_params=(2**10, 8, 1))


def test_incremental_state_equals_replay_through_infer(tmp_path: Path, small_training_blob: bytes,
                                                       taxonomy: Taxonomy) -> None:
    tracker = open_tracker(tmp_path, small_training_blob, taxonomy)
    events = make_events(45)
    for event in events:
        tracker.record(event)
    stepped_h, stepped_interest = tracker.model_state.h.copy(), tracker.model_state.interest.copy()
    model = tracker.model
    feats = Featurizer(model.spec, taxonomy).encode(events)
    batched = feats.map(lambda a: a[None])
    replay = model.infer(batched)
    assert np.max(np.abs(replay.h - stepped_h)) <= 1e-5
    assert np.max(np.abs(replay.interest[0, -1] - stepped_interest)) <= 1e-5
    tracker.close()


def test_record_many_with_a_bad_event_stores_nothing(tmp_path: Path, small_training_blob: bytes,
                                                    taxonomy: Taxonomy) -> None:
    tracker = open_tracker(tmp_path, small_training_blob, taxonomy)
    good = [e.to_dict() for e in make_events(5)]
    bad = dict(good[2], timestamp="not a time")
    with pytest.raises(EventValidationError, match="timestamp"):
        tracker.record_many([*good[:2], bad, *good[3:]])
    assert tracker.store.count() == 0
    assert tracker.interests().top == ()
    tracker.close()


def test_missing_data_rules(tmp_path: Path) -> None:
    tracker = open_tracker(tmp_path, None, None)
    with pytest.raises(EventValidationError, match="item_id"):
        tracker.record({"timestamp": T0.isoformat(), "kind": "view"})
    with pytest.raises(EventValidationError, match=r"'kind'.*required"):
        tracker.record({"item_id": "a", "timestamp": T0.isoformat()})
    seq = tracker.record({"item_id": "a", "timestamp": T0.isoformat(), "kind": "view"})
    later = [{"item_id": "a", "timestamp": (T0 + timedelta(seconds=s)).isoformat(), "kind": "view"} for s in (0.4, 3)]
    assert tracker.record(later[0]) is None
    assert tracker.record(later[1]) is not None
    stored = dict(tracker.store.events())[seq]
    assert stored.categories == ("other",) and stored.dwell_s is None
    assert tracker.store.count() == 2
    tracker.close()


def test_concurrent_records_from_four_threads_lose_nothing(tmp_path: Path, small_training_blob: bytes,
                                                          taxonomy: Taxonomy) -> None:
    tracker = open_tracker(tmp_path, small_training_blob, taxonomy)
    per_thread = 40

    def writer(k: int) -> None:
        for e in make_events(per_thread, seed=k, start=k * 1000):
            tracker.record(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert tracker.store.count() == 4 * per_thread
    assert tracker.interests(10).events_seen == 4 * per_thread
    tracker.close()


def test_forget_removes_from_export_state_and_every_file(tmp_path: Path, small_training_blob: bytes,
                                                         taxonomy: Taxonomy) -> None:
    """The state blob is encrypted, so scanning the files for plaintext proves nothing: look for the
    ciphertext of the state that named the item, and decrypt the state that replaced it."""
    tracker = open_tracker(tmp_path, small_training_blob, taxonomy)
    events = make_events(30)
    secret = Event.create(item_id="secret-item-zq81", categories=["news"], timestamp=T0 + timedelta(days=2),
                          title="Unmistakable secret headline")
    tracker.record_many([*events, secret])
    tracker.flush()
    db, key = tmp_path / "t.db", tmp_path / "key"
    slot = state_slot(db, key)
    old_state = raw_state(db, slot)
    assert old_state is not None and b"secret-item-zq81" in open_raw_state(db, key, slot, old_state)
    assert "secret-item-zq81" in str(tracker.export())
    assert tracker.forget(item_id="secret-item-zq81") == 1
    exported = tracker.export(tmp_path / "export.json")
    assert "secret-item-zq81" not in str(exported) and "Unmistakable" not in str(tracker.interests(10).to_dict())
    assert "Unmistakable secret" not in (tmp_path / "export.json").read_text()
    new_state = raw_state(db, slot)
    assert new_state is not None and b"secret-item-zq81" not in open_raw_state(db, key, slot, new_state)
    (tmp_path / "export.json").unlink()
    assert leftovers(tmp_path, key, [b"secret-item-zq81", b"Unmistakable"], [old_state]) == []
    tracker.close()
    assert leftovers(tmp_path, key, [b"secret-item-zq81", b"Unmistakable"], [old_state]) == []


def test_restarted_tracker_continues_with_identical_state(tmp_path: Path, small_training_blob: bytes,
                                                          taxonomy: Taxonomy) -> None:
    events = make_events(60)
    reference = open_tracker(tmp_path, small_training_blob, taxonomy, "ref.db")
    for e in events:
        reference.record(e)
    restarted = open_tracker(tmp_path, small_training_blob, taxonomy, "restart.db")
    for e in events[:37]:
        restarted.record(e)
    restarted.close()
    restarted = InterestTracker.open(tmp_path / "restart.db", key_file=tmp_path / "key")
    assert restarted.has_model
    for e in events[37:]:
        restarted.record(e)
    np.testing.assert_allclose(restarted.model_state.h, reference.model_state.h, atol=1e-6)
    assert restarted.predict(5) == reference.predict(5)
    assert restarted.interests(5) == reference.interests(5)
    reference.close()
    restarted.close()


def test_state_survives_a_crash_between_saves(tmp_path: Path, small_training_blob: bytes,
                                              taxonomy: Taxonomy) -> None:
    events = make_events(20)
    tracker = open_tracker(tmp_path, small_training_blob, taxonomy)
    for e in events:
        tracker.record(e)
    expected = tracker.predict(3)
    tracker.store.close()  # no final save: as if the process died
    again = InterestTracker.open(tmp_path / "t.db", key_file=tmp_path / "key")
    assert again.predict(3) == expected
    again.close()


def test_answers_without_a_model_say_so(tmp_path: Path) -> None:
    tracker = open_tracker(tmp_path, None, None)
    tracker.record_many(make_events(40))
    profile = tracker.interests(3)
    assert profile.source == "profile" and profile.top[0].category == "sports"
    assert profile.top[0].because and profile.top[0].because[0].item_id.startswith("sports")
    prediction = tracker.predict(3)
    assert prediction.source == "profile" and prediction.next_interest[0][0] == "sports"
    assert prediction.intensity == ()
    recs = tracker.recommend([{"item_id": "x", "categories": ["games"]}, {"item_id": "y", "categories": ["sports"]}])
    assert [r.item_id for r in recs] == ["y", "x"] and "sports" in recs[0].reason
    tracker.close()


def test_rare_personal_category_can_be_predicted_with_a_model(tmp_path: Path, small_training_blob: bytes,
                                                              taxonomy: Taxonomy) -> None:
    tracker = open_tracker(tmp_path, small_training_blob, taxonomy)
    rare = [Event.create(item_id=f"r{i}", categories=["origami"], timestamp=T0 + timedelta(minutes=i))
            for i in range(12)]
    tracker.record_many(rare)
    assert tracker.predict(1).next_interest[0][0] == "origami"
    tracker.close()


def test_shift_detected_within_bounded_events_and_not_on_stationary_user(tmp_path: Path) -> None:
    switching = open_tracker(tmp_path, None, None, "switch.db")
    switching.record_many(make_events(300, seed=3, switch_at=150))
    shifts = switching.shifts()
    assert len(shifts) == 1
    assert 150 <= shifts[0].event_index <= 150 + 40
    assert "travel" in shifts[0].to_categories and "sports" in shifts[0].from_categories
    stationary = open_tracker(tmp_path, None, None, "stay.db")
    stationary.record_many(make_events(300, seed=4))
    assert stationary.shifts() == []
    switching.close()
    stationary.close()


def test_train_and_evaluate_locally_keep_holdout_apart(tmp_path: Path, small_training_blob: bytes,
                                                       taxonomy: Taxonomy) -> None:
    tracker = open_tracker(tmp_path, small_training_blob, taxonomy)
    tracker.record_many(make_events(200))
    before = tracker.get_weights().flat.copy()
    result = tracker.train_local(epochs=2, learning_rate=0.01)
    assert result.holdout == 20 and result.num_examples == 179 and np.isfinite(result.loss)
    assert not np.array_equal(before, tracker.get_weights().flat)
    metrics = tracker.evaluate_local()
    assert metrics["num-examples"] == 20
    assert 0.0 <= metrics["hr@1"] <= metrics["hr@5"] <= metrics["hr@10"] <= 1.0
    assert metrics["hr@5"] > 0.5  # the person mostly reads sports
    tracker.close()


def test_install_model_carries_or_rebuilds_state(tmp_path: Path, small_training_blob: bytes,
                                                 taxonomy: Taxonomy) -> None:
    tracker = open_tracker(tmp_path, None, None)
    tracker.record_many(make_events(30))
    tracker.install_model(small_training_blob, "v1", taxonomy=taxonomy)
    assert tracker.model_version == "v1" and tracker.predict(2).source == "model+profile"
    with pytest.raises(Exception, match="not a loadable"):
        tracker.install_model(b"garbage", "v2")
    assert tracker.model_version == "v1"
    tracker.close()


def test_tracker_never_imports_tensorflow(tmp_path: Path, small_training_blob: bytes, taxonomy: Taxonomy) -> None:
    (tmp_path / "m.tflite").write_bytes(small_training_blob)
    taxonomy.save(tmp_path / "tax.json")
    code = f"""
import sys
from datetime import datetime, timezone
from vane.client.tracker import InterestTracker
t = InterestTracker.open({str(tmp_path / 's.db')!r}, key_file={str(tmp_path / 'k')!r},
                         model={str(tmp_path / 'm.tflite')!r}, taxonomy={str(tmp_path / 'tax.json')!r})
t.record({{"item_id": "a", "categories": ["news"], "timestamp": datetime.now(timezone.utc), "kind": "view"}})
t.predict(); t.interests(); t.close()
print("tensorflow" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_interests_follow_a_detected_shift_before_the_time_decayed_profile_does(tmp_path: Path) -> None:
    tracker = open_tracker(tmp_path, None, None)
    tracker.record_many(make_events(130, seed=5, switch_at=80))
    assert tracker.shifts(), "the switch from sports to travel is reported"
    profile = tracker.interests(2)
    # 80 mostly-sports events against 50 mostly-travel ones within a day:: the 7-day time decay still ranks sports first
    shares = {c.category: c.profile_share for c in profile.top}
    assert shares.get("sports", 0.0) > shares.get("travel", 0.0)
    assert profile.top[0].category == "travel"
    tracker.close()


def test_candidate_blends_scored_on_the_holdout_match_the_trackers_own_metrics(
        tmp_path: Path, small_training_blob: bytes, taxonomy: Taxonomy) -> None:
    """Each candidate's mix-i metrics are what evaluate_local reports when that blend is the tracker's own."""
    from vane.client.tracker import Mix
    from vane.shared.blend import mix_grid

    events = make_events(150, switch_at=90)
    grid = mix_grid(0.5)
    scored = {}
    with open_tracker(tmp_path, small_training_blob, taxonomy) as tracker:
        tracker.record_many(events)
        scored = tracker.evaluate_local(mix_candidates=grid)
    assert {f"mix-{i}-{m}" for i in range(len(grid)) for m in ("hr@1", "mrr")} <= set(scored)
    values = {(scored[f"mix-{i}-hr@1"], scored[f"mix-{i}-mrr"]) for i in range(len(grid))}
    assert len(values) > 3  # the candidates do differ on this person
    for i in (0, 4, len(grid) - 1):
        own = InterestTracker.open(tmp_path / "t.db", key_file=tmp_path / "key", mix=Mix.of(grid[i]),
                                   scrypt_params=(2**10, 8, 1))
        with own:
            metrics = own.evaluate_local()
        assert scored[f"mix-{i}-hr@1"] == pytest.approx(metrics["hr@1"])
        assert scored[f"mix-{i}-mrr"] == pytest.approx(metrics["mrr"])


def test_a_recommended_mix_is_kept_in_the_store_unless_the_app_chose_its_own(tmp_path: Path) -> None:
    from vane.client.tracker import Mix
    from vane.shared.errors import ConfigError

    picked = Mix.of([0.0, 0.5, 0.0, 0.25, 0.25])
    with open_tracker(tmp_path, None, None) as tracker:
        assert tracker.mix == Mix()
        tracker.recommend_mix(picked)
        assert tracker.mix == picked
    with open_tracker(tmp_path, None, None) as tracker:
        assert tracker.mix == picked  # kept across restarts
    own = Mix(model=1.0, recent=0.0, profile=0.0, transitions=0.0)
    with InterestTracker.open(tmp_path / "t.db", key_file=tmp_path / "key", mix=own,
                              scrypt_params=(2**10, 8, 1)) as tracker:
        tracker.recommend_mix(Mix.of([0.2, 0.2, 0.2, 0.2, 0.2]))
        assert tracker.mix == own  # the app's explicit choice wins
    with open_tracker(tmp_path, None, None) as tracker:
        assert tracker.mix == Mix.of([0.2, 0.2, 0.2, 0.2, 0.2])  # but the recommendation is stored
    for bad, words in (([0.5, 0.5], "expected 5 weights"), ([0, 0, 0, 0, 0], "positive sum"),
                       ([1, -1, 1, 1, 1], "expected finite"), ({"model": 1, "bogus": 1}, "unknown fields")):
        with pytest.raises(ConfigError, match=words):
            Mix.of(bad)


def test_an_event_that_would_not_read_back_is_never_written_and_the_store_stays_readable(tmp_path: Path) -> None:
    """One forged event (an int item_id slipped past validation) once bricked every other event."""
    tracker = open_tracker(tmp_path, None, None)
    tracker.record_many(make_events(5))
    forged = make_events(1, start=9)[0]
    object.__setattr__(forged, "item_id", 12345)
    with pytest.raises(EventValidationError, match="event field 'item_id' is 12345"):
        tracker.record(forged)
    tracker.close()
    with open_tracker(tmp_path, None, None) as reopened:
        assert [e for _, e in reopened.store.events()] == make_events(5)
        assert reopened.interests().events_seen == 5
