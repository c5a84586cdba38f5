"""Browser history imported through InterestTracker.import_history into the encrypted store."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from vane.client.history import read_history
from vane.client.tracker import InterestTracker
from vane.shared.errors import HistoryImportError

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "browser-history-fixtures"
FILES = [
    "plaso/chrome_History",
    "grr/chrome_History2",
    "grr/chrome_History3",
    "plaso/chrome_History-59.0.3071.86",
    "pyspark-plaso/chrome_History_demo-2019-09",
    "plaso/firefox_places.sqlite",
    "plaso/safari_History.db",
]


def fixture(name: str) -> Path:
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"browser-history fixture {path} is missing")
    return path


def open_tracker(tmp_path: Path) -> InterestTracker:
    return InterestTracker.open(tmp_path / "me.db", key_file=tmp_path / "me.key")


def raw_store_bytes(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("me.db*")))


@pytest.mark.parametrize("name", FILES)
def test_import_stores_every_event_once_and_nothing_readable(name: str, tmp_path: Path) -> None:
    path = fixture(name)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    expected = read_history(path).events
    tracker = open_tracker(tmp_path)
    summary = tracker.import_history(path)
    assert summary.imported == len(expected) == tracker.store.count()
    again = tracker.import_history(path)
    assert again.imported == 0 and tracker.store.count() == len(expected)
    stored = [e for _, e in tracker.store.events()]
    assert [e.item_id for e in stored] == [e.item_id for e in expected]
    tracker.close()
    raw = raw_store_bytes(tmp_path)
    for event in expected:
        assert event.item_id.encode() not in raw
        if event.title and len(event.title) >= 6:
            assert event.title.encode() not in raw
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("content", [b"", os.urandom(4096), b"SQLite format 3\x00" + os.urandom(3000)])
def test_bad_files_give_clear_errors_and_leave_the_store_unchanged(content: bytes, tmp_path: Path) -> None:
    tracker = open_tracker(tmp_path)
    good = fixture("grr/chrome_History3")
    tracker.import_history(good)
    before = [e for _, e in tracker.store.events()]
    bad = tmp_path / "History"
    bad.write_bytes(content)
    with pytest.raises(HistoryImportError, match="History"):
        tracker.import_history(bad)
    assert [e for _, e in tracker.store.events()] == before
    tracker.close()


def test_non_history_sqlite_file_is_refused(tmp_path: Path) -> None:
    import sqlite3

    other = tmp_path / "notes.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
    tracker = open_tracker(tmp_path)
    with pytest.raises(HistoryImportError, match=r"notes\.sqlite"):
        tracker.import_history(other)
    assert tracker.store.count() == 0
    tracker.close()
