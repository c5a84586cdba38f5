"""Forgetting events keeps the corrections of items still stored and deletes the others', in one transaction.

Real SQLite stores throughout: forget by item, by time, everything, retention, the forget of a topic
(the tracker's blocks), an item kept under another spelling of its URL, the old sealed record gone
from the file, and a failure half-way through a deletion that leaves events and corrections as they were.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from vane.client.categorize import correction_key
from vane.client.categorize_store import CORRECTIONS, correct, read_corrections, read_head, save_head
from vane.client.store import EventStore
from vane.client.store_rows import item_key
from vane.client.topic_head import SoftmaxHead, head_topics
from vane.shared import Event
from vane.shared.errors import ConfigError

T0 = datetime(2025, 5, 1, 9, tzinfo=UTC)
COOKING, SOCCER, BASKETBALL = "/Food & Drink/Cooking & Recipes", "/Sports/Soccer", "/Sports/Basketball"
A, B = "https://a.example/stew", "https://b.example/derby"


def _head() -> SoftmaxHead:
    head = SoftmaxHead.zeros(8)
    head.fit(np.eye(8, dtype=np.float32), [0, 1, 2, 3, 0, 1, 2, 3], epochs=3)
    assert len(head_topics()) == head.n_topics
    return head


def _store_with_two_corrections(path: Path) -> EventStore:
    store = EventStore.open(path, key=b"\x21" * 32)
    old = store.append(Event.create(A, ["/News"], T0, title="Secret stew qx17"))
    store.append(Event.create(B, ["/News"], T0 + timedelta(days=2), title="Derby night"))
    correct(store, old, [COOKING])
    correct(store, B, [SOCCER])
    save_head(store, _head())
    return store


def _raw(path: Path) -> bytes:
    return path.read_bytes() + b"".join(p.read_bytes() for p in path.parent.glob(path.name + "-*"))


def _state_rows(path: Path) -> list[bytes]:
    conn = sqlite3.connect(path)
    try:
        return [bytes(row[0]) for row in conn.execute("SELECT sealed FROM state")]
    finally:
        conn.close()


def test_forgetting_one_item_drops_its_correction_and_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "one.db"
    with _store_with_two_corrections(path) as store:
        before = _state_rows(path)
        assert len(before) == 2 and set(read_corrections(store)) == {A, B}
        assert store.forget(item_id=A) == 1
        kept = read_corrections(store)
        assert set(kept) == {B} and kept[B].topics == (SOCCER,) and kept[B].title == "Derby night"
        assert read_head(store) is None  # the head may have learnt from the forgotten event: trained again
        exported = json.dumps(store.export(include_states=True))
        assert "qx17" not in exported
        blob = store.get_state(CORRECTIONS)
        assert blob is not None and b"qx17" not in blob and b"Derby night" in blob
    raw = _raw(path)
    # neither the old sealed corrections record (which held the forgotten title) nor the head lingers
    assert all(old[-40:] not in raw for old in before)
    with EventStore.open(path, key=b"\x21" * 32) as store:  # the head record accounts for the re-sealed blob
        assert set(read_corrections(store)) == {B} and store.count() == 1


def test_forgetting_by_time_keeps_items_with_a_newer_event(tmp_path: Path) -> None:
    with _store_with_two_corrections(tmp_path / "time.db") as store:
        store.append(Event.create(B, ["/News"], T0 - timedelta(days=9), title="Derby preview"))
        assert store.forget(before=T0 + timedelta(days=1)) == 2  # A's only event, and B's old one
        assert set(read_corrections(store)) == {B}
        assert store.forget(before=T0 + timedelta(days=3)) == 1
        assert read_corrections(store) == {} and store.get_state(CORRECTIONS) is None


def test_forgetting_everything_removes_every_correction(tmp_path: Path) -> None:
    with _store_with_two_corrections(tmp_path / "all.db") as store:
        correct(store, "https://never-visited.example/", [BASKETBALL])
        assert len(read_corrections(store)) == 3
        assert store.forget(everything=True) == 2
        assert read_corrections(store) == {} and read_head(store) is None


def test_retention_keeps_the_corrections_of_the_newest_events(tmp_path: Path) -> None:
    with _store_with_two_corrections(tmp_path / "ret.db") as store:
        assert store.apply_retention(max_events=1) == 1  # A's event is the older one
        assert set(read_corrections(store)) == {B}
        assert store.apply_retention(max_age_days=1, now=T0 + timedelta(days=30)) == 1
        assert read_corrections(store) == {}


def test_the_tracker_forgetting_a_topic_keeps_other_items_corrections(tmp_path: Path) -> None:
    from vane.client.tracker import InterestTracker

    with InterestTracker.open(tmp_path / "tr.db", key=b"\x22" * 32) as tracker:
        tracker.record(Event.create(A, ["/Food & Drink"], T0, title="Stew"))
        tracker.record(Event.create(B, ["/Sports"], T0 + timedelta(hours=1), title="Derby"))
        tracker.correct(A, [COOKING])
        tracker.correct(B, [SOCCER])
        assert tracker.forget_topic("/Sports") == 1
        assert set(read_corrections(tracker.store)) == {A}


def test_an_item_stored_under_another_spelling_of_its_url_keeps_its_correction(tmp_path: Path) -> None:
    spellings = [B, "HTTPS://B.example:443/derby?utm_source=x#top", " item-7 ", "not a url"]
    assert [item_key(s) for s in spellings] == [correction_key(s) for s in spellings]
    with _store_with_two_corrections(tmp_path / "url.db") as store:
        store.append(Event.create("https://B.example/derby?utm_campaign=z", ["/News"], T0 + timedelta(days=3)))
        assert store.forget(before=T0 + timedelta(days=2, hours=1)) == 2
        assert set(read_corrections(store)) == {B}


def test_a_failure_during_the_deletion_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    with _store_with_two_corrections(path) as store:
        sealer = store._sealer  # the re-sealing of the kept corrections fails half-way through the transaction

        def broken(*args: object, **kwargs: object) -> tuple[bytes, bytes]:
            raise RuntimeError("disk gone")

        sealer.seal_state = broken
        with pytest.raises(RuntimeError, match="disk gone"):
            store.forget(item_id=A)
        del sealer.seal_state
        assert store.count() == 2 and set(read_corrections(store)) == {A, B} and read_head(store) is not None
    with EventStore.open(path, key=b"\x21" * 32) as store:
        assert store.count() == 2 and set(read_corrections(store)) == {A, B}


def test_a_per_item_blob_must_be_a_json_object_and_old_derived_corrections_still_go_whole(tmp_path: Path) -> None:
    with _store_with_two_corrections(tmp_path / "bad.db") as store:
        kept = store.get_state(CORRECTIONS)
        for bad in (b"[1, 2]", b"\xff not json"):
            with pytest.raises(ConfigError, match="must be a UTF-8 JSON object keyed by item key"):
                store.put_state(CORRECTIONS, bad, per_item=True)
        assert store.get_state(CORRECTIONS) == kept
        assert kept is not None
        store.put_state(CORRECTIONS, kept, derived=True)  # as written before per-item corrections
        store.forget(item_id=A)
        assert read_corrections(store) == {}
