"""Forgetting and retention: gone from the events, the state, the answers, exports and every file, at once.

Each test failed before issue 13's fixes: an older state blob naming the forgotten item stayed in the
file until close; retention left deleted ids and titles in the state and in ``because``; retention by
count followed insertion order; ``max_age_days=nan`` was accepted; and a store with a model whose
events were all forgotten could not be reopened.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from store_scan import STATE, leftovers, open_raw_state, raw_state, state_slot
from vane.client.store import EventStore
from vane.client.tracker import InterestTracker
from vane.shared import Event, Taxonomy
from vane.shared.errors import ConfigError

NAMES = ["sports", "news", "food", "travel", "music", "films", "games"]
T0 = datetime(2024, 3, 1, 8, tzinfo=UTC)
SECRET_ID, SECRET_TITLE = "secret-item-zq81", "Unmistakable secret headline"


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return Taxonomy(NAMES)


def ordinary(n: int, start: int = 0, at: datetime = T0) -> list[Event]:
    return [Event.create(f"{NAMES[i % 3]}-{i}", [NAMES[i % 3]], at + timedelta(minutes=7 * i), title=f"story {i}")
            for i in range(start, start + n)]


def secret(at: datetime) -> Event:
    return Event.create(SECRET_ID, ["films"], at, title=SECRET_TITLE)


def open_tracker(d: Path, blob: bytes | None, taxonomy: Taxonomy | None, name: str = "t.db") -> InterestTracker:
    return InterestTracker.open(d / name, key_file=d / "key", model=blob, taxonomy=taxonomy)


def mentions_secret(data: object) -> bool:
    text = json.dumps(data, default=str)
    return SECRET_ID in text or "Unmistakable" in text


def answers(tracker: InterestTracker) -> dict[str, object]:
    return {"interests": tracker.interests(10).to_dict(), "prediction": tracker.predict(10).to_dict(),
            "shifts": [s.to_dict() for s in tracker.shifts()]}


def without_seqs(data: object) -> object:
    """``data`` without sequence numbers (a store that forgot one numbers the rest differently)."""
    if isinstance(data, dict):
        return {k: without_seqs(v) for k, v in data.items() if k != "seq"}
    if isinstance(data, list):
        return [without_seqs(v) for v in data]
    return data


def vane(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from vane.client.cli import main; sys.argv = ['vane', *sys.argv[1:]]; main()"
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, env=env)


# --------------------------------------------------------------------------- forget


def test_forget_leaves_no_copy_of_the_old_state_anywhere_and_rebuilds_at_once(
        tmp_path: Path, small_training_blob: bytes, taxonomy: Taxonomy) -> None:
    d = tmp_path / "store"
    d.mkdir()
    db, key = d / "t.db", d / "key"
    tracker = open_tracker(d, small_training_blob, taxonomy)
    tracker.persist_every = 4
    slot = state_slot(db, key)
    old_states: list[bytes] = []
    tracker.record_many(ordinary(20))
    before_secret = raw_state(db, slot)
    tracker.record(secret(T0 + timedelta(hours=3)))
    for event in ordinary(12, start=40):  # saves several states that all name the secret (in `because`)
        tracker.record(event)
        sealed = raw_state(db, slot)
        if sealed is not None and sealed != before_secret and sealed not in old_states:
            old_states.append(sealed)
    tracker.flush()
    old_states.append(raw_state(db, slot) or b"")
    assert len(old_states) >= 3
    assert all(SECRET_ID.encode() in open_raw_state(db, key, slot, s) for s in old_states)
    assert mentions_secret(answers(tracker))

    assert tracker.forget(item_id=SECRET_ID) == 1

    # At once, with the tracker still open: not in any file (store, -wal, -shm, lock), in plaintext or
    # as any earlier ciphertext of the state.
    assert leftovers(d, key, [SECRET_ID.encode(), b"Unmistakable"], old_states) == []
    assert not mentions_secret(answers(tracker)) and not mentions_secret(tracker.export())
    assert tracker.interests().events_seen == 32
    # The rebuilt state is exactly what recording only the remaining events gives.
    reference = open_tracker(tmp_path, small_training_blob, taxonomy, "ref.db")
    reference.record_many([*ordinary(20), *ordinary(12, start=40)])
    assert without_seqs(answers(tracker)) == without_seqs(answers(reference))
    np_h = tracker.model_state.h
    assert np_h is not None and reference.model_state.h is not None
    assert abs(np_h - reference.model_state.h).max() <= 1e-5
    reference.close()
    tracker.close()
    assert leftovers(d, key, [SECRET_ID.encode(), b"Unmistakable"], old_states) == []


def test_a_store_with_a_model_and_every_event_forgotten_reopens_from_the_api_and_the_cli(
        tmp_path: Path, small_training_blob: bytes, taxonomy: Taxonomy) -> None:
    with open_tracker(tmp_path, small_training_blob, taxonomy) as tracker:
        tracker.record_many(ordinary(15))
        assert tracker.forget(everything=True) == 15
    with open_tracker(tmp_path, None, None) as tracker:  # the stored model and taxonomy
        assert tracker.has_model
        assert tracker.interests().events_seen == 0 and tracker.predict().source is not None
        tracker.record(ordinary(1, start=30)[0])
    profile = vane("client", "profile", "--store", str(tmp_path / "t.db"), "--key-file", str(tmp_path / "key"),
                   "--json")
    assert profile.returncode == 0, profile.stderr
    assert json.loads(profile.stdout)["interests"]["events_seen"] == 1


# --------------------------------------------------------------------------- retention


def test_retention_rebuilds_the_state_and_leaves_no_trace_of_deleted_events(
        tmp_path: Path, small_training_blob: bytes, taxonomy: Taxonomy) -> None:
    d = tmp_path / "store"
    d.mkdir()
    db, key = d / "t.db", d / "key"
    now = T0 + timedelta(days=400)
    tracker = open_tracker(d, small_training_blob, taxonomy)
    recent = ordinary(10, at=now - timedelta(days=2))
    tracker.record_many(recent)
    tracker.record(secret(T0))  # an old event stored after newer ones (an imported history does this)
    tracker.flush()
    slot = state_slot(db, key)
    old_state = raw_state(db, slot) or b""
    assert SECRET_ID.encode() in open_raw_state(db, key, slot, old_state)
    assert mentions_secret(answers(tracker))

    assert tracker.apply_retention(max_age_days=30, now=now) == 1

    assert leftovers(d, key, [SECRET_ID.encode(), b"Unmistakable"], [old_state]) == []
    assert not mentions_secret(answers(tracker)) and not mentions_secret(tracker.export())
    assert tracker.interests().events_seen == 10
    tracker.close()


def test_retention_by_count_keeps_the_newest_by_event_time_not_insertion_order(tmp_path: Path) -> None:
    with EventStore.open(tmp_path / "s.db", key=b"k" * 32) as store:
        new = [Event.create(f"new-{i}", ["news"], datetime(2026, 1, 1 + i, tzinfo=UTC)) for i in range(3)]
        old = [Event.create(f"old-{i}", ["news"], datetime(2014, 1, 1 + i, tzinfo=UTC)) for i in range(3)]
        store.append_many(new + old)  # the 2014 events are stored last
        assert store.apply_retention(max_events=4) == 2
        assert sorted(e.item_id for _, e in store.events()) == ["new-0", "new-1", "new-2", "old-2"]


def test_retention_through_the_store_reaches_the_trackers_state(tmp_path: Path) -> None:
    """Deleting through ``tracker.store`` (open tracker) or a bare EventStore (closed tracker) also rebuilds."""
    tracker = open_tracker(tmp_path, None, None)
    tracker.record_many([secret(T0), *ordinary(5, at=T0 + timedelta(days=100))])
    tracker.flush()
    assert tracker.store.apply_retention(max_events=5) == 1
    assert not mentions_secret(answers(tracker)) and tracker.interests().events_seen == 5
    tracker.record(secret(T0 + timedelta(days=200)))
    tracker.close()
    with EventStore.open(tmp_path / "t.db", key_file=tmp_path / "key") as store:
        assert store.forget(item_id=SECRET_ID) == 1
        assert store.get_state(STATE) is None  # the derived state went with the events
    with open_tracker(tmp_path, None, None) as tracker:
        assert not mentions_secret(answers(tracker)) and tracker.interests().events_seen == 5


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, True, "30"])
def test_a_bad_max_age_is_refused_and_nothing_is_deleted(tmp_path: Path, bad: object) -> None:
    with EventStore.open(tmp_path / "s.db", key=b"k" * 32) as store:
        store.append_many(ordinary(3))
        with pytest.raises(ConfigError, match="max_age_days must be None or a finite number of days >= 0"):
            store.apply_retention(max_age_days=bad)  # type: ignore[arg-type]
        assert store.count() == 3


def test_a_saved_state_older_than_the_last_deletion_is_not_used(tmp_path: Path) -> None:
    """A state blob not marked derived (as a version before issue 13 wrote it) survives a store-level
    forget; the tracker sees it predates the deletion and replays instead of loading it."""
    with open_tracker(tmp_path, None, None) as tracker:
        tracker.record_many([secret(T0), *ordinary(4, at=T0 + timedelta(days=1))])
        tracker.flush()
        saved = tracker.store.get_state(STATE)
    assert saved is not None and SECRET_ID.encode() in saved
    with EventStore.open(tmp_path / "t.db", key_file=tmp_path / "key") as store:
        store.put_state(STATE, saved)  # not derived: forget leaves it
        assert store.forget(item_id=SECRET_ID) == 1
        assert store.get_state(STATE) == saved
    with open_tracker(tmp_path, None, None) as tracker:
        assert not mentions_secret(answers(tracker)) and tracker.interests().events_seen == 4
        assert SECRET_ID.encode() not in (tracker.store.get_state(STATE) or b"")
