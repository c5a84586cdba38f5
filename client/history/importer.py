"""Turning browser visits into events: :func:`read_history`, :class:`ImportSummary`, :class:`HistoryBatch`.

See :mod:`vane.client.history` for the formats, kinds and skip rules.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vane.client.history.browsers import (
    BROWSERS,
    READERS,
    Visit,
    copy_database,
    count_visits,
    detect_browser,
    schema_version,
)
from vane.client.history.rules import CategoryRules
from vane.client.history.site_topics import SiteTopics, choose_rules
from vane.client.history.urls import url_skip_reason
from vane.shared import events as _events
from vane.shared.errors import ConfigError, EventValidationError, HistoryImportError
from vane.shared.events import MAX_CLOCK_SKEW_S, MAX_ITEM_ID_LEN, Event, is_duplicate

if TYPE_CHECKING:
    from vane.client.categorize import Categorizer
    from vane.client.tracker_state import TrackerState

logger = logging.getLogger("vane.client")

PROGRESS_EVERY = 500
#: Events per ``record_many`` call of a streaming import.
IMPORT_BATCH = 5000
#: Every reason :attr:`ImportSummary.skipped` may hold, in the order the rules are tried.
SKIP_REASONS: tuple[str, ...] = (
    "invalid_time", "invalid_transition", "invalid_url", "internal", "redirect", "subframe", "download",
    "failed_load", "future_time", "invalid_title", "invalid_row", "duplicate",
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


def _visit_event(visit: Visit, url: str, rules: CategoryRules | SiteTopics) -> Event:
    return Event(
        # Event ids are capped at 2048 characters; longer URLs are almost all tracking noise past that point.
        url[:MAX_ITEM_ID_LEN], rules.categorize(url), visit.timestamp,
        visit.kind, visit.title, visit.dwell_s,
    )


class _BatchBuilder:
    """Turns visits (oldest first) into batches of kept events, counting what it skips in ``summary``."""

    def __init__(self, summary: ImportSummary, since: datetime | None, rules: CategoryRules | SiteTopics,
                 now: float) -> None:
        self.summary = summary
        self.since = since
        self.rules = rules
        self.newest = since
        self.future_limit = now + MAX_CLOCK_SKEW_S
        self.skipped: Counter[str] = Counter()
        self.last_kept: Event | None = None

    def take(self, visit: Visit) -> Event | None:
        """The event ``visit`` becomes, or None when it is skipped (and counted) or not newer than ``since``."""
        summary, when = self.summary, visit.timestamp
        if when is None:
            if self.since is None:
                summary.visits_read += 1
                self.skipped["invalid_time"] += 1
            return None
        if self.since is not None and when <= self.since:
            return None
        self.newest = when if self.newest is None else max(self.newest, when)
        summary.visits_read += 1
        url, url_reason = url_skip_reason(visit.url)
        reason = visit.skip if visit.skip == "invalid_transition" else (url_reason or visit.skip)
        if reason is None and when.timestamp() > self.future_limit:
            reason = "future_time"
        if reason is not None or url is None:
            self.skipped[reason or "invalid_url"] += 1
            return None
        try:
            event = _visit_event(visit, url, self.rules)
        except EventValidationError as exc:
            self.skipped[f"invalid_{exc.field}" if f"invalid_{exc.field}" in SKIP_REASONS else "invalid_row"] += 1
            return None
        if is_duplicate(event, self.last_kept):  # the tracker's one duplicate rule, against the last kept event
            self.skipped["duplicate"] += 1
            return None
        self.last_kept = event
        summary.top_categories.update(event.categories)
        if summary.first_timestamp is None:
            summary.first_timestamp = event.timestamp
        summary.last_timestamp = event.timestamp
        summary.imported += 1
        return event

    def finish(self) -> None:
        self.summary.skipped = dict(self.skipped)


def _event_batches(visits: Iterator[Visit], builder: _BatchBuilder, total: int, batch_size: int,
                   progress: Callable[[int, int], None] | None) -> Iterator[tuple[list[Event], datetime | None]]:
    """Batches of at most about ``batch_size`` events, each with the import cursor valid after it.

    A batch ends only between two different visit times, so a cursor ("everything up to this time
    was read") never splits visits of the same instant.
    """
    pending: list[Event] = []
    last_time: datetime | None = None
    done = 0
    for visit in visits:
        done += 1
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(done, max(total, done))
        if len(pending) >= batch_size and visit.timestamp is not None and visit.timestamp != last_time:
            yield pending, builder.newest
            pending = []
        event = builder.take(visit)
        if visit.timestamp is not None:
            last_time = visit.timestamp
        if event is not None:
            pending.append(event)
    if progress is not None:
        progress(done, max(total, done))
    builder.finish()
    yield pending, builder.newest


def _check_arguments(browser: str, since: datetime | None) -> None:
    if browser != "auto" and browser not in BROWSERS:
        raise ConfigError(f"browser is {browser!r}; expected one of auto, {', '.join(BROWSERS)}")
    if since is not None and (not isinstance(since, datetime) or since.utcoffset() is None):
        raise ConfigError(f"since is {since!r}; expected a timezone-aware datetime or None")


@contextlib.contextmanager
def open_history(path: str | os.PathLike[str], browser: str = "auto") -> Iterator[HistorySource]:
    """A private copy of the history at ``path``, open for reading; removed on exit.

    Raises
    ------
    HistoryImportError
        The file is missing, empty, unreadable, not SQLite, or not (the requested browser's) history.
    """
    source = Path(path)
    if not source.is_file():
        raise HistoryImportError(f"history file {source} does not exist or is not a file")
    if source.stat().st_size == 0:
        raise HistoryImportError(f"history file {source} is empty; expected a browser history SQLite database")
    with tempfile.TemporaryDirectory(prefix="vane-history-") as tmp:
        copy = copy_database(source, Path(tmp))
        con = sqlite3.connect(copy)
        # A title (or URL) that is not valid UTF-8 is decoded with replacement characters instead of
        # failing the whole import.
        con.text_factory = lambda raw: raw.decode("utf-8", errors="replace")
        try:
            try:
                detected = detect_browser(source, con, browser)
                found = HistorySource(source, detected, schema_version(con), count_visits(con, detected),
                                      READERS[detected](con))
            except sqlite3.DatabaseError as exc:
                raise HistoryImportError(f"cannot read history from {source}: {exc}") from None
            yield found
        except sqlite3.DatabaseError as exc:
            raise HistoryImportError(f"cannot read history from {source}: {exc}") from None
        finally:
            con.close()


@dataclass
class HistorySource:
    """An open history copy: what :func:`open_history` yields."""

    path: Path
    browser: str
    schema_version: str | None
    total: int
    visits: Iterator[Visit]


def read_history(
    path: str | os.PathLike[str],
    browser: str = "auto",
    since: datetime | None = None,
    rules: CategoryRules | SiteTopics | str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    now: float | None = None,
) -> HistoryBatch:
    """Import a browser history database as events, without touching the original.

    All events are returned at once; :func:`import_into` (``InterestTracker.import_history``)
    streams them into a store in bounded memory instead.

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
    rules : SiteTopics or CategoryRules or str or Path or None, default None
        Rules, or a user rules file (:func:`~vane.client.history.site_topics.choose_rules`: a
        ``vane.site-topics/1`` file extends the curated Topics rules, an older one the coarse
        ``history_rules.json``). None: the curated Topics rules (categories are Topics paths).
    progress : callable (done, total) or None, default None
        Called every few hundred visits and once at the end.
    now : float, optional
        Unix seconds for the future-time rule; :data:`vane.shared.events.clock` when omitted.

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
    category_rules = choose_rules(rules)
    events: list[Event] = []
    with open_history(path, browser) as found:
        summary = ImportSummary(str(found.path), found.browser, found.schema_version)
        builder = _BatchBuilder(summary, since, category_rules, events_clock() if now is None else now)
        for batch, _ in _event_batches(found.visits, builder, found.total, 1 << 62, progress):
            events.extend(batch)
    logger.info("imported %s of %s %s visits from %s", summary.imported, summary.visits_read, found.browser, path)
    return HistoryBatch(events, summary, builder.newest)


def import_into(state: TrackerState, path: str | os.PathLike[str], browser: str = "auto",
                rules: CategoryRules | SiteTopics | str | os.PathLike[str] | None = None,
                progress: Callable[[int, int], None] | None = None,
                batch_size: int | None = None) -> ImportSummary:
    """Import a history file into a tracker's state (``InterestTracker.import_history``), streaming.

    Visits are read with a cursor and recorded in batches of about ``batch_size`` (default
    :data:`IMPORT_BATCH`) events through
    the tracker's ``record_many``, so memory stays bounded whatever the size of the history. Each
    batch is all-or-nothing, and after each batch the file's import cursor (the newest visit time
    read, kept in the store) moves on: an import that fails part-way keeps the batches already
    stored, and running it again continues after them. (A process killed between a batch and its
    cursor update re-imports that one batch.) Only visits newer than the cursor are read. The events
    go through the tracker's one duplicate rule once more, against the kept event before each in
    time; what that drops is counted as ``duplicate`` too. A history older than events already
    stored is inserted in its place in time, and the tracker's state is replayed once, at the end of
    the import (:mod:`vane.client.tracker_state`), so the import order of several browsers does not
    change the answers. With Topics rules and a text encoder installed in the store, a titled visit no
    rule knows gets its topics from the store's categoriser (corrections, the trained head, else the
    zero-shot prior: :mod:`vane.client.categorize`), embedded in one batch per import batch.
    """
    _check_arguments(browser, None)
    category_rules = choose_rules(rules, state.slots.taxonomy())  # Topics, unless the store speaks another
    categorizer = _store_categorizer(state, category_rules)
    since = state.slots.import_cursor(path)
    with open_history(path, browser) as found:
        summary = ImportSummary(str(found.path), found.browser, found.schema_version)
        builder = _BatchBuilder(summary, since, category_rules, events_clock())
        size = IMPORT_BATCH if batch_size is None else batch_size
        for batch, cursor in _event_batches(found.visits, builder, found.total, size, progress):
            if categorizer is not None:  # visits no rule knows: the classifier head, else the zero-shot prior
                batch = fill_other(categorizer, batch)
            summary.drop_duplicates(len(batch) - len(state.record_many(batch)))
            if cursor is not None and cursor != since:
                state.slots.save_import_cursor(path, cursor)
    state.save()
    logger.info("imported %s of %s %s visits from %s", summary.imported, summary.visits_read, found.browser, path)
    return summary


def _store_categorizer(state: TrackerState, rules: CategoryRules | SiteTopics) -> Categorizer | None:
    """The categoriser for visits no rule knows: only with Topics rules and a text encoder in the store."""
    from vane.client.categorize_store import load_categorizer, store_encoder

    if not isinstance(rules, SiteTopics) or store_encoder(state.slots.store) is None:
        return None
    return load_categorizer(state.slots.store, rules=rules)


def fill_other(categorizer: Categorizer, events: list[Event]) -> list[Event]:
    """:func:`vane.client.categorize_store.fill_other` (imported when an import needs it)."""
    from vane.client.categorize_store import fill_other as fill

    return fill(categorizer, events)


def events_clock() -> float:
    """Now, by the events' clock (:data:`vane.shared.events.clock`, replaceable in tests)."""
    return _events.clock()
