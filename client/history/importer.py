"""Turning browser visits into events: :func:`read_history`, :class:`ImportSummary`, :class:`HistoryBatch`.

See :mod:`vane.client.history` for the formats, kinds and skip rules.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vane.client.history.browsers import BROWSERS, READERS, Visit, copy_database, detect_browser, schema_version
from vane.client.history.rules import CategoryRules, load_rules
from vane.client.history.urls import url_skip_reason
from vane.shared.errors import ConfigError, HistoryImportError
from vane.shared.events import MAX_ITEM_ID_LEN, Event, dedupe

if TYPE_CHECKING:
    from vane.client.tracker_state import TrackerState

logger = logging.getLogger("vane.client")

PROGRESS_EVERY = 500
#: Every reason :attr:`ImportSummary.skipped` may hold, in the order the rules are tried.
SKIP_REASONS: tuple[str, ...] = (
    "invalid_time", "invalid_url", "internal", "redirect", "subframe", "download", "failed_load", "duplicate",
)


@dataclass
class ImportSummary:
    """What one import read, kept and skipped.

    Attributes
    ----------
    path : str
        The history file that was read.
    browser : str
        ``chrome``, ``firefox`` or ``safari``.
    schema_version : str or None
        Chrome ``meta.version``, else SQLite ``PRAGMA user_version``.
    visits_read : int
        Visits considered (newer than ``since`` when given).
    imported : int
        Events returned.
    skipped : dict of str to int
        Skipped visits per reason (see the module docstring).
    first_timestamp, last_timestamp : datetime or None
        Time of the oldest and newest imported event.
    top_categories : Counter
        Category → number of imported events carrying it.
    """

    path: str
    browser: str
    schema_version: str | None
    visits_read: int = 0
    imported: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    first_timestamp: datetime | None = None
    last_timestamp: datetime | None = None
    top_categories: Counter[str] = field(default_factory=Counter)

    def drop_duplicates(self, n: int) -> None:
        """Count ``n`` imported events that the tracker then dropped as duplicates of events it held."""
        if n:
            self.imported -= n
            self.skipped["duplicate"] = self.skipped.get("duplicate", 0) + n

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (timestamps as ISO-8601, categories most common first)."""
        return {
            "path": self.path,
            "browser": self.browser,
            "schema_version": self.schema_version,
            "visits_read": self.visits_read,
            "imported": self.imported,
            "skipped": dict(sorted(self.skipped.items())),
            "first_timestamp": self.first_timestamp.isoformat() if self.first_timestamp else None,
            "last_timestamp": self.last_timestamp.isoformat() if self.last_timestamp else None,
            "top_categories": dict(self.top_categories.most_common()),
        }


@dataclass
class HistoryBatch:
    """The events of one import, its summary, and where the next incremental import starts.

    Attributes
    ----------
    events : list of Event
        Imported events, oldest first.
    summary : ImportSummary
    last_visit_time : datetime or None
        The newest visit time seen, skipped visits included; pass it as
        ``since`` next time. Equals ``since`` when nothing newer was found.
    """

    events: list[Event]
    summary: ImportSummary
    last_visit_time: datetime | None


def _visit_event(visit: Visit, url: str, rules: CategoryRules) -> Event:
    return Event.create(
        # Event ids are capped at 2048 characters; longer URLs are almost all tracking noise past that point.
        item_id=url[:MAX_ITEM_ID_LEN],
        categories=list(rules.categorize(url)),
        timestamp=visit.timestamp,
        kind=visit.kind,
        title=visit.title,
        dwell_s=visit.dwell_s,
    )


def _build_batch(
    visits: list[Visit],
    summary: ImportSummary,
    since: datetime | None,
    rules: CategoryRules,
    progress: Callable[[int, int], None] | None,
) -> HistoryBatch:
    skipped: Counter[str] = Counter()
    events: list[Event] = []
    newest = since
    total = len(visits)
    for done, visit in enumerate(visits, start=1):
        if progress is not None and (done % PROGRESS_EVERY == 0 or done == total):
            progress(done, total)
        if visit.timestamp is None:
            if since is None:
                summary.visits_read += 1
                skipped["invalid_time"] += 1
            continue
        url, reason = url_skip_reason(visit.url)
        reason = reason or visit.skip
        if since is not None and visit.timestamp <= since:
            continue
        newest = visit.timestamp if newest is None else max(newest, visit.timestamp)
        summary.visits_read += 1
        if reason is not None or url is None:
            skipped[reason or "invalid_url"] += 1
            continue
        events.append(_visit_event(visit, url, rules))
    events.sort(key=lambda e: e.timestamp)
    kept = dedupe(events)  # the tracker's one duplicate rule, against the last kept event
    if len(kept) < len(events):
        skipped["duplicate"] += len(events) - len(kept)
    events = kept
    summary.imported = len(events)
    summary.skipped = dict(skipped)
    summary.top_categories = Counter(c for e in events for c in e.categories)
    if events:
        summary.first_timestamp, summary.last_timestamp = events[0].timestamp, events[-1].timestamp
    return HistoryBatch(events, summary, newest)


def _check_arguments(browser: str, since: datetime | None) -> None:
    if browser != "auto" and browser not in BROWSERS:
        raise ConfigError(f"browser is {browser!r}; expected one of auto, {', '.join(BROWSERS)}")
    if since is not None and (not isinstance(since, datetime) or since.utcoffset() is None):
        raise ConfigError(f"since is {since!r}; expected a timezone-aware datetime or None")


def read_history(
    path: str | os.PathLike[str],
    browser: str = "auto",
    since: datetime | None = None,
    rules: CategoryRules | str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> HistoryBatch:
    """Import a browser history database as events, without touching the original.

    Parameters
    ----------
    path : str or Path
        A Chrome ``History``, Firefox ``places.sqlite`` or Safari ``History.db``.
    browser : str, default "auto"
        ``auto`` detects the format from the tables; ``chrome``, ``firefox`` or
        ``safari`` insists on one.
    since : datetime or None, default None
        Aware datetime; only visits strictly newer are read. Pass the previous
        batch's :attr:`HistoryBatch.last_visit_time` for an incremental import.
    rules : CategoryRules or str or Path or None, default None
        Category rules, or a user rules file for :func:`load_rules`. None uses
        the packaged defaults.
    progress : callable (done, total) or None, default None
        Called every few hundred visits and once at the end.

    Returns
    -------
    HistoryBatch

    Raises
    ------
    HistoryImportError
        The file is missing, unreadable, not SQLite, or not (the requested
        browser's) history; the message names the path.
    ConfigError
        ``browser`` or ``since`` is invalid, or the rules file is malformed.
    """
    _check_arguments(browser, since)
    source = Path(path)
    if not source.is_file():
        raise HistoryImportError(f"history file {source} does not exist or is not a file")
    if source.stat().st_size == 0:
        raise HistoryImportError(f"history file {source} is empty; expected a browser history SQLite database")
    category_rules = rules if isinstance(rules, CategoryRules) else load_rules(rules)
    with tempfile.TemporaryDirectory(prefix="vane-history-") as tmp:
        copy = copy_database(source, Path(tmp))
        con = sqlite3.connect(copy)
        try:
            detected = detect_browser(source, con, browser)
            summary = ImportSummary(str(source), detected, schema_version(con))
            visits = READERS[detected](con)
        except sqlite3.DatabaseError as exc:
            raise HistoryImportError(f"cannot read history from {source}: {exc}") from None
        finally:
            con.close()
    batch = _build_batch(visits, summary, since, category_rules, progress)
    logger.info("imported %s of %s %s visits from %s", summary.imported, summary.visits_read, detected, source)
    return batch


def import_into(state: TrackerState, path: str | os.PathLike[str], browser: str = "auto",
                rules: CategoryRules | str | os.PathLike[str] | None = None,
                progress: Callable[[int, int], None] | None = None) -> ImportSummary:
    """Import a history file into a tracker's state (``InterestTracker.import_history``).

    Only visits newer than the last import of the same file are read (its cursor is kept in the
    store). The events go through the tracker's one duplicate rule once more, against the last
    event it already holds; what that drops is counted as ``duplicate`` too.
    """
    batch = read_history(path, browser=browser, since=state.slots.import_cursor(path), rules=rules, progress=progress)
    batch.summary.drop_duplicates(len(batch.events) - len(state.record_many(batch.events)))
    if batch.last_visit_time is not None:
        state.slots.save_import_cursor(path, batch.last_visit_time)
    state.save()
    return batch.summary
