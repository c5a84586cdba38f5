"""Property-based: any event input, title or history row either raises a VaneError naming the field,
or is stored and reads back identically; the store always reopens; no page string reaches the
terminal unescaped.
"""

from __future__ import annotations

import io
import json
import math
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from history_files import chrome_history
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from vane.client.cli_views import UNSAFE, cell, json_text, literal
from vane.client.history import read_history
from vane.client.tracker import InterestTracker
from vane.shared import events as shared_events
from vane.shared.errors import EventValidationError, VaneError
from vane.shared.events import KINDS, MAX_TIME, MIN_TIME, Event

FIELDS = {"item_id", "categories", "timestamp", "kind", "title", "dwell_s", "event"}
NOW = datetime(2026, 6, 1, tzinfo=UTC)
#: What the generated inputs did, so the last test can check that both outcomes were exercised.
OUTCOMES = {"stored": 0, "rejected": 0, "imported": 0, "skipped": 0}
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Every character, lone surrogates and controls included.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
nasty_text = st.one_of(
    any_text,
    st.sampled_from(["", "   ", "[/bold]", "[link=https://evil.example/]x[/link]", "\x1b]8;;https://e/\x07x",
                     "\x1b[2J", "\ud800", "a" * 5000, "\u202e", "\x00"]),
)
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
aware = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets)
timestamps = st.one_of(
    aware,
    aware.map(lambda d: d.isoformat()),
    aware.map(lambda d: d.isoformat().replace("+00:00", "Z")),
    st.datetimes(),  # naive
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=MAX_TIME.timestamp() * 1.01),
    any_text,
    st.none(),
    st.booleans(),
)
anything = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), nasty_text, st.binary(max_size=8),
                     st.lists(nasty_text, max_size=3))
in_range = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2026, 5, 30), timezones=offsets)
valid_inputs = st.fixed_dictionaries(
    {
        "item_id": st.one_of(st.text(st.characters(codec=None, exclude_categories=()), min_size=1, max_size=30),
                             st.integers(min_value=0)),
        "timestamp": st.one_of(in_range, in_range.map(lambda d: d.isoformat()),
                               st.floats(min_value=0, max_value=NOW.timestamp())),
        "kind": st.sampled_from(KINDS),
    },
    optional={
        "categories": st.lists(any_text, max_size=4),
        "title": st.one_of(st.none(), any_text),
        "dwell_s": st.one_of(st.none(), st.floats(min_value=0, allow_infinity=False)),
    },
)
event_inputs = st.fixed_dictionaries(
    {},
    optional={
        "item_id": st.one_of(nasty_text, st.integers(), anything),
        "categories": st.one_of(st.none(), st.lists(nasty_text, max_size=20), nasty_text, anything),
        "timestamp": timestamps,
        "kind": st.one_of(st.sampled_from(KINDS), anything),
        "title": st.one_of(st.none(), nasty_text, anything),
        "dwell_s": st.one_of(st.none(), st.floats(), st.integers(min_value=-10, max_value=10**20), anything),
    },
)


@pytest.fixture(scope="module")
def tracker_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vane-prop-") as tmp:
        yield Path(tmp)


def _record_or_reject(tracker: InterestTracker, data: dict[str, Any]) -> Event | None:
    """The event stored for ``data``; None when it was rejected (naming a field) or a duplicate."""
    try:
        event = Event.from_dict(data)
    except EventValidationError as exc:
        assert exc.field in FIELDS and repr(exc.field) in str(exc)
        OUTCOMES["rejected"] += 1
        return None
    try:
        seq = tracker.record(event)
    except EventValidationError as exc:  # the future rule of record()
        assert exc.field == "timestamp" and "clock-skew" in str(exc)
        assert event.unix_time > NOW.timestamp()
        return None
    if seq is None:
        return None
    ((stored_seq, stored),) = tracker.store.events(since_seq=seq - 1, limit=1)
    assert stored_seq == seq and stored == event
    OUTCOMES["stored"] += 1
    return event


@SETTINGS
@given(st.lists(st.one_of(valid_inputs, valid_inputs, event_inputs), min_size=1, max_size=6))
def test_any_event_input_is_rejected_by_field_or_stored_and_read_back(tracker_dir: Path,
                                                                      inputs: list[dict[str, Any]]) -> None:
    shared_events.clock = lambda: NOW.timestamp()
    try:
        path = tracker_dir / "events.db"
        key = tracker_dir / "events.key"
        with InterestTracker.open(path, key_file=key) as tracker:
            before = [e for _, e in tracker.store.events()]
            kept = [e for e in (_record_or_reject(tracker, d) for d in inputs) if e is not None]
        with InterestTracker.open(path, key_file=key) as tracker:  # the store always reopens
            assert [e for _, e in tracker.store.events()] == before + kept
            assert tracker.store.count() == len(before) + len(kept)
    finally:
        shared_events.clock = time.time


@SETTINGS
@given(timestamps)
def test_every_timestamp_form_follows_one_range(value: object) -> None:
    try:
        event = Event.create(item_id="x", timestamp=value)
    except EventValidationError as exc:
        assert exc.field == "timestamp"
        return
    assert MIN_TIME <= event.timestamp < MAX_TIME and event.timestamp.tzinfo is UTC
    assert Event.from_json(event.to_json()) == event
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        assert math.isclose(event.unix_time, value, abs_tol=1e-6)


@SETTINGS
@given(nasty_text)
def test_any_title_is_shown_literally_and_without_terminal_controls(title: str) -> None:
    shown = literal(title)
    assert UNSAFE.search(shown) is None
    buf = io.StringIO()
    Console(file=buf, width=10_000, color_system=None, force_terminal=False).print(cell(title))
    printed = buf.getvalue()
    assert UNSAFE.search(printed.rstrip("\n")) is None
    assert shown.strip() in printed  # Rich keeps the text itself (no markup is parsed)
    if "\\" not in title and UNSAFE.search(title) is None:
        assert shown == title  # plain text is untouched
    dumped = json_text({"title": title})
    assert "\x1b" not in dumped and UNSAFE.search(dumped.replace("\n", "")) is None
    try:
        title.encode("utf-8")
    except UnicodeEncodeError:
        return  # lone surrogates: not valid JSON text to parse back
    assert json.loads(dumped) == {"title": title}


chrome_times = st.one_of(
    st.integers(min_value=11_644_473_600_000_000, max_value=13_500_000_000_000_000),  # 1970..2028
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.binary(max_size=5),
)
history_rows = st.lists(
    st.fixed_dictionaries({
        "url": st.one_of(st.builds("https://news.example.com/{}".format, st.integers(0, 5)),
                         st.sampled_from(["https://news.example.com/a", "https://shop.example.org/b?utm_source=x",
                                          "chrome://settings", "http://localhost:8000/", "javascript:alert(1)"]),
                         st.text(st.characters(codec="utf-8"), max_size=30), st.binary(max_size=10),
                         st.integers(min_value=-(2**63), max_value=2**63 - 1)),
        "title": st.one_of(st.none(), st.text(st.characters(codec="utf-8"), max_size=30), st.binary(max_size=20)),
        "time": chrome_times,
        "transition": st.one_of(st.just(0x20000000), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                                st.just(0x20000001), st.text(max_size=4), st.binary(max_size=4)),
    }),
    min_size=1, max_size=8,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history_rows)
def test_any_history_rows_import_or_are_skipped_and_counted(tracker_dir: Path, rows: list[dict[str, Any]]) -> None:
    path = tracker_dir / "History"
    path.unlink(missing_ok=True)
    chrome_history(path, rows)
    batch = read_history(path, now=NOW.timestamp())
    summary = batch.summary
    assert summary.visits_read == len(rows)
    assert summary.imported + sum(summary.skipped.values()) == len(rows)
    assert summary.imported == len(batch.events)
    OUTCOMES["imported"] += summary.imported
    OUTCOMES["skipped"] += len(rows) - summary.imported
    for event in batch.events:
        assert MIN_TIME <= event.timestamp <= NOW + timedelta(days=1)
        assert Event.from_dict(event.to_dict()) == event
    store = tracker_dir / "import.db"
    for leftover in tracker_dir.glob("import.db*"):
        leftover.unlink()
    shared_events.clock = lambda: NOW.timestamp()
    try:
        with InterestTracker.open(store, key_file=tracker_dir / "import.key") as tracker:
            assert tracker.import_history(path).to_dict() == summary.to_dict()
        with InterestTracker.open(store, key_file=tracker_dir / "import.key") as tracker:  # reopens
            assert [e for _, e in tracker.store.events()] == batch.events
    finally:
        shared_events.clock = time.time


def test_both_outcomes_were_exercised_and_the_clock_restored() -> None:
    assert all(n > 0 for n in OUTCOMES.values()), OUTCOMES
    assert shared_events.clock() == pytest.approx(datetime.now(UTC).timestamp(), abs=60)
    assert issubclass(EventValidationError, VaneError)
