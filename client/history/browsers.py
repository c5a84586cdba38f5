"""Reading Chrome, Firefox and Safari history databases into visit rows.

The original file is never opened: :func:`copy_database` copies it and its sidecars into a private
directory first. Queries are built from ``PRAGMA table_info`` so optional columns may be missing.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from vane.shared.errors import HistoryImportError
from vane.shared.events import MAX_TIME, MIN_TIME

BROWSERS: tuple[str, ...] = ("chrome", "firefox", "safari")
SIDECAR_SUFFIXES: tuple[str, ...] = ("-wal", "-shm", "-journal")
#: Visit rows fetched from SQLite at a time: the reader never holds the whole history.
FETCH_ROWS = 2000

_REQUIRED_TABLES: dict[str, tuple[str, str]] = {
    "chrome": ("urls", "visits"),
    "firefox": ("moz_places", "moz_historyvisits"),
    "safari": ("history_items", "history_visits"),
}
_EPOCHS: dict[str, datetime] = {
    "chrome": datetime(1601, 1, 1, tzinfo=UTC),
    "firefox": datetime(1970, 1, 1, tzinfo=UTC),
    "safari": datetime(2001, 1, 1, tzinfo=UTC),
}

# Chromium ui/base/page_transition_types.h
CHROME_CORE_MASK = 0xFF
CHROME_CHAIN_END = 0x20000000
CHROME_AUTO_SUBFRAME = 3
_CHROME_KINDS: dict[int, str] = {
    0: "link", 1: "typed", 2: "bookmark", 4: "link", 5: "search", 6: "view",
    7: "link", 8: "reload", 9: "search", 10: "search",
}
# Firefox nsINavHistoryService TRANSITION_*
FIREFOX_REDIRECTS = frozenset({5, 6})
_FIREFOX_KINDS: dict[int, str] = {1: "link", 2: "typed", 3: "bookmark", 8: "link", 9: "reload"}
_FIREFOX_SKIPS: dict[int, str] = {4: "subframe", 7: "download"}


@dataclass(frozen=True, slots=True)
class Visit:
    """One visit row, decoded but not yet filtered by the URL or duplicate rules."""

    visit_id: int
    page_id: int | None
    url: str | None
    title: str | None
    timestamp: datetime | None
    kind: str
    skip: str | None = None
    dwell_s: float | None = None


def _columns(con: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in con.execute(f'PRAGMA table_info("{table}")')}


def _optional(columns: set[str], alias: str, name: str, default: str = "NULL") -> str:
    return f"{alias}.{name}" if name in columns else default


def _to_datetime(browser: str, raw: object) -> datetime | None:
    """The visit time, or None when it is missing, not a number, or outside the events' one time range."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw <= 0:
        return None
    try:
        if browser == "safari":
            when = _EPOCHS[browser] + timedelta(seconds=float(raw))
        else:
            when = _EPOCHS[browser] + timedelta(microseconds=int(raw))
    except (OverflowError, ValueError):
        return None
    # Chrome counts from 1601: a visit_time of 1 is not a visit in 1601 but a broken row.
    return when if MIN_TIME <= when < MAX_TIME else None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    """An integer column's value; None for text, blobs, reals with a fraction and NULL."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _select_visits(
    con: sqlite3.Connection, tables: tuple[str, str], page_fk: str, time_col: str, extras: dict[str, str],
    joined: str = "",
) -> Iterator[tuple[Any, ...]]:
    """Rows of (visit id, page id, url, title, raw time, *extras), oldest first, read lazily.

    ``extras`` maps optional visit columns (or SQL expressions, when ``joined`` adds a table) to the
    SQL default used when the schema lacks them. The title comes from the visit row when it has one
    (Safari), else from the page row.
    """
    pages_table, visits_table = tables
    visit_cols, page_cols = _columns(con, visits_table), _columns(con, pages_table)
    title = _optional(visit_cols, "v", "title", _optional(page_cols, "p", "title"))
    extra_sql = "".join(
        f", {name if '.' in name else _optional(visit_cols, 'v', name, default)}" for name, default in extras.items()
    )
    sql = (
        f"SELECT v.id, v.{page_fk}, p.url, {title}, v.{time_col}{extra_sql} "
        f"FROM {visits_table} v LEFT JOIN {pages_table} p ON p.id = v.{page_fk}{joined} ORDER BY v.{time_col}, v.id"
    )
    cursor = con.execute(sql)
    while rows := cursor.fetchmany(FETCH_ROWS):
        yield from rows


def count_visits(con: sqlite3.Connection, browser: str) -> int:
    """How many visit rows the history holds (for progress)."""
    return int(con.execute(f"SELECT count(*) FROM {_REQUIRED_TABLES[browser][1]}").fetchone()[0])


def _read_chrome(con: sqlite3.Connection) -> Iterator[Visit]:
    extras = {"transition": str(CHROME_CHAIN_END), "visit_duration": "NULL"}
    for vid, page, url, title, raw_time, raw_transition, duration in _select_visits(
        con, _REQUIRED_TABLES["chrome"], "url", "visit_time", extras
    ):
        transition = 0 if raw_transition is None else _int(raw_transition)
        when = _to_datetime("chrome", raw_time)
        if transition is None:
            yield Visit(vid, page, _text(url), _text(title), when, "view", "invalid_transition")
            continue
        core = transition & CHROME_CORE_MASK
        skip = None
        if not transition & CHROME_CHAIN_END:
            skip = "redirect"
        elif core == CHROME_AUTO_SUBFRAME:
            skip = "subframe"
        dwell = duration / 1e6 if isinstance(duration, (int, float)) and 0 < duration < 1e15 else None
        yield Visit(vid, page, _text(url), _text(title), when, _CHROME_KINDS.get(core, "view"), skip, dwell)


def _read_firefox(con: sqlite3.Connection) -> Iterator[Visit]:
    columns = _columns(con, "moz_historyvisits")
    extras = {"visit_type": "1", "from_visit": "NULL"}
    joined = ""
    redirect_sources: set[object] = set()
    if {"visit_type", "from_visit"} <= columns:
        # The type of the visit a redirect landing came from, by primary key; and the visits that
        # redirected (the set holds only those, not every visit).
        extras["f.visit_type"] = "NULL"
        joined = " LEFT JOIN moz_historyvisits f ON f.id = v.from_visit"
        redirect_sources = {row[0] for row in con.execute(
            "SELECT from_visit FROM moz_historyvisits WHERE visit_type IN (5, 6) AND from_visit IS NOT NULL")}
    for row in _select_visits(con, _REQUIRED_TABLES["firefox"], "place_id", "visit_date", extras, joined):
        vid, page, url, title, raw_time, raw_type = row[:6]
        source_type = row[7] if len(row) > 7 else None
        visit_type = _int(raw_type)
        when = _to_datetime("firefox", raw_time)
        if visit_type is None:
            yield Visit(vid, page, _text(url), _text(title), when, "view", "invalid_transition")
            continue
        if visit_type in FIREFOX_REDIRECTS:
            # A redirect landing carries the transition of the visit that started the chain.
            kind = _FIREFOX_KINDS.get(1 if source_type is None else _int(source_type) or 0, "link")
        else:
            kind = _FIREFOX_KINDS.get(visit_type, "view")
        skip = "redirect" if vid in redirect_sources else _FIREFOX_SKIPS.get(visit_type)
        yield Visit(vid, page, _text(url), _text(title), when, kind, skip)


def _read_safari(con: sqlite3.Connection) -> Iterator[Visit]:
    extras = {"redirect_destination": "NULL", "load_successful": "1"}
    for vid, page, url, title, raw_time, redirect_destination, load_successful in _select_visits(
        con, _REQUIRED_TABLES["safari"], "history_item", "visit_time", extras
    ):
        skip = "redirect" if redirect_destination is not None else ("failed_load" if load_successful == 0 else None)
        yield Visit(vid, page, _text(url), _text(title), _to_datetime("safari", raw_time), "view", skip)


READERS: dict[str, Callable[[sqlite3.Connection], Iterator[Visit]]] = {
    "chrome": _read_chrome,
    "firefox": _read_firefox,
    "safari": _read_safari,
}


def detect_browser(path: Path, con: sqlite3.Connection, browser: str) -> str:
    try:
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise HistoryImportError(f"{path} is not a readable SQLite database ({exc})") from None
    found = [name for name, required in _REQUIRED_TABLES.items() if set(required) <= tables]
    shown = ", ".join(sorted(tables)) or "none"
    if browser == "auto":
        if not found:
            raise HistoryImportError(
                f"{path} is not a Chrome, Firefox or Safari history database; tables found: {shown}"
            )
        return found[0]
    if browser not in found:
        needed = " + ".join(_REQUIRED_TABLES[browser])
        raise HistoryImportError(
            f"{path} is not a {browser} history database (needs tables {needed}); tables found: {shown}"
        )
    return browser


def schema_version(con: sqlite3.Connection) -> str | None:
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
    except sqlite3.DatabaseError:
        row = None
    if row is None:
        row = con.execute("PRAGMA user_version").fetchone()
    return None if row is None or row[0] is None else str(row[0])


def copy_database(path: Path, into: Path) -> Path:
    """Copy the database and its sidecars into ``into``; the copy keeps the original's name."""
    target = into / path.name
    try:
        shutil.copyfile(path, target)
        for suffix in SIDECAR_SUFFIXES:
            sidecar = path.with_name(path.name + suffix)
            if sidecar.is_file():
                shutil.copyfile(sidecar, into / sidecar.name)
    except OSError as exc:
        raise HistoryImportError(f"cannot copy history file {path}: {exc.strerror or exc}") from None
    return target
