"""Browser history imported through InterestTracker.import_history into the encrypted store."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from history_files import CHAIN_END, WRITERS, chrome_history
from vane.client.cli import run
from vane.client.history import importer, read_history
from vane.client.tracker import InterestTracker
from vane.client.tracker_state import TrackerState
from vane.shared import events as shared_events
from vane.shared.errors import HistoryImportError

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "browser-history-fixtures"
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


# Fixed junk (never os.urandom in parametrize: the test ids and the inputs must be reproducible).
JUNK = bytes((i * 37 + 11) % 256 for i in range(4096))


@pytest.mark.parametrize("content", [b"", JUNK, b"SQLite format 3\x00" + JUNK[:3000]], ids=["empty", "junk", "header"])
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


# --- crafted files: bad rows are skipped and counted, never fatal -----------------------------

DAY = timedelta(days=1)
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def crafted_rows(browser: str) -> list[dict[str, object]]:
    """Two good visits, one with a title that is not UTF-8, and one bad visit per rule."""
    rows: list[dict[str, object]] = [
        {"url": "https://good.example.com/a", "title": "Good page", "time": NOW - 3 * DAY},
        {"url": "https://good.example.com/b", "title": b"Caf\xe9 \xff\xfe broken", "time": NOW - 2 * DAY},
        {"url": "https://future.example.com/", "title": "From 2999", "time": datetime(2999, 12, 31, tzinfo=UTC)},
        {"url": "https://early.example.com/", "title": "Before 1970", "time": -5},
    ]
    if browser == "chrome":
        rows += [{"url": "https://t.example.com/1", "time": NOW - DAY, "transition": "abc"},
                 {"url": "https://t.example.com/2", "time": NOW - DAY + timedelta(seconds=5),
                  "transition": b"\x00\x01blob"},
                 {"url": "https://t.example.com/3", "time": 1}]  # visit_time 1 is not a visit in 1601
    if browser == "firefox":
        rows += [{"url": "https://t.example.com/1", "time": NOW - DAY, "visit_type": "abc"}]
    return rows


EXPECTED_SKIPS = {
    "chrome": {"future_time": 1, "invalid_time": 2, "invalid_transition": 2},
    "firefox": {"future_time": 1, "invalid_time": 1, "invalid_transition": 1},
    "safari": {"future_time": 1, "invalid_time": 1},
}


@pytest.fixture
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(shared_events, "clock", lambda: NOW.timestamp())
    return NOW.timestamp()


@pytest.mark.parametrize("browser", sorted(WRITERS))
def test_bad_visits_are_skipped_and_counted_by_reason(browser: str, tmp_path: Path, frozen_now: float) -> None:
    path = WRITERS[browser](tmp_path / f"{browser}-History", crafted_rows(browser))
    tracker = open_tracker(tmp_path)
    summary = tracker.import_history(path)
    assert summary.skipped == EXPECTED_SKIPS[browser]
    assert summary.imported == 2 == tracker.store.count()
    titles = [e.title for _, e in tracker.store.events()]
    assert titles == ["Good page", "Caf\ufffd \ufffd\ufffd broken"]  # decoded with replacement, not rejected
    assert all(e.timestamp.year >= 1970 for _, e in tracker.store.events())
    tracker.close()


def test_a_future_visit_cannot_dominate_the_profile(tmp_path: Path, frozen_now: float) -> None:
    rows = [{"url": f"https://news.bbc.co.uk/{i}", "time": NOW - DAY + timedelta(minutes=i)} for i in range(8)]
    rows.append({"url": "https://youtube.com/watch?v=1", "time": datetime(2999, 12, 31, tzinfo=UTC)})
    tracker = open_tracker(tmp_path)
    summary = tracker.import_history(chrome_history(tmp_path / "History", rows))
    assert summary.skipped == {"future_time": 1}
    top = tracker.interests(3).top
    assert top[0].category == "/News" and top[0].profile_share == pytest.approx(1.0)  # Topics by default
    tracker.close()


def test_failed_first_import_leaves_no_store_or_key_behind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "History"
    junk.write_bytes(JUNK)
    store = tmp_path / "new.db"
    assert run(["client", "import-history", str(junk), "--store", str(store)]) == 1
    assert "History" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["History"]


def test_failed_import_into_an_existing_store_keeps_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "me.db"
    with InterestTracker.open(store, key_file=tmp_path / "me.db.key") as tracker:
        tracker.record({"item_id": "a", "timestamp": "2025-01-01T00:00:00Z", "kind": "view"})
    junk = tmp_path / "History"
    junk.write_bytes(JUNK)
    assert run(["client", "import-history", str(junk), "--store", str(store)]) == 1
    capsys.readouterr()
    with InterestTracker.open(store, key_file=tmp_path / "me.db.key") as tracker:
        assert tracker.store.count() == 1


def streaming_rows(n: int) -> list[dict[str, object]]:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    return [{"url": f"https://site{i % 7}.example.com/{i}", "time": start + timedelta(minutes=i),
             "transition": CHAIN_END} for i in range(n)]


def test_import_records_in_bounded_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = chrome_history(tmp_path / "History", streaming_rows(50))
    sizes: list[int] = []
    original = TrackerState.record_many

    def counting(self: TrackerState, events: list[shared_events.Event]) -> list[int]:
        sizes.append(len(events))
        return original(self, events)

    monkeypatch.setattr(TrackerState, "record_many", counting)
    monkeypatch.setattr(importer, "IMPORT_BATCH", 8)
    tracker = open_tracker(tmp_path)
    summary = tracker.import_history(path)
    assert summary.imported == 50 == tracker.store.count()
    assert max(sizes) <= 8 and sum(sizes) == 50
    tracker.close()


def test_an_import_that_fails_part_way_resumes_after_the_stored_batches(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = chrome_history(tmp_path / "History", streaming_rows(40))
    expected = [e.item_id for e in read_history(path).events]
    original = TrackerState.record_many
    calls = {"n": 0}

    def failing_third(self: TrackerState, events: list[shared_events.Event]) -> list[int]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return original(self, events)

    monkeypatch.setattr(importer, "IMPORT_BATCH", 10)
    monkeypatch.setattr(TrackerState, "record_many", failing_third)
    tracker = open_tracker(tmp_path)
    with pytest.raises(OSError, match="disk full"):
        tracker.import_history(path)
    assert tracker.store.count() == 20  # two whole batches, nothing of the third
    monkeypatch.setattr(TrackerState, "record_many", original)
    resumed = tracker.import_history(path)
    assert resumed.imported == 20
    assert [e.item_id for _, e in tracker.store.events()] == expected  # every visit once, in order
    tracker.close()


def test_the_import_benchmark_measures_a_small_synthetic_history(tmp_path: Path) -> None:
    from vane.simulations.bench.history import run_import_bench

    result = run_import_bench(3000, workdir=str(tmp_path))
    assert result.visits == 3000 and result.imported + sum(result.skipped.values()) == 3000
    assert set(result.skipped) <= {"redirect", "duplicate"} and result.imported > 2500
    assert 0 < result.peak_rss_mib <= 200 and result.passed()
