"""Crafted browser-history SQLite files (Chrome, Firefox, Safari) with whatever rows a test needs.

Each writer takes visit rows as dicts; missing keys get ordinary values. Raw column values are
written as given, so a test can put text in an integer column, a blob in a text column, or bytes
that are not UTF-8 in a title (inserted as a blob cast to text, which SQLite stores verbatim).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CHROME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
SAFARI_EPOCH = datetime(2001, 1, 1, tzinfo=UTC)
CHAIN_END = 0x20000000


def chrome_time(when: datetime) -> int:
    return int((when - CHROME_EPOCH).total_seconds()) * 1_000_000 + when.microsecond


def firefox_time(when: datetime) -> int:
    return int(when.timestamp()) * 1_000_000 + when.microsecond


def safari_time(when: datetime) -> float:
    return (when - SAFARI_EPOCH).total_seconds()


def _title_sql(value: object) -> tuple[str, object]:
    """Bytes become TEXT holding exactly those bytes (possibly not UTF-8)."""
    if isinstance(value, bytes):
        return "CAST(? AS TEXT)", value
    return "?", value


def chrome_history(path: Path, visits: Iterable[Mapping[str, Any]]) -> Path:
    """Rows: url, title, time (datetime or raw visit_time), transition (default LINK | CHAIN_END)."""
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE meta(key LONGVARCHAR NOT NULL UNIQUE PRIMARY KEY, value LONGVARCHAR);"
        "INSERT INTO meta VALUES ('version', '67');"
        "CREATE TABLE urls(id INTEGER PRIMARY KEY, url LONGVARCHAR, title LONGVARCHAR);"
        "CREATE TABLE visits(id INTEGER PRIMARY KEY, url INTEGER NOT NULL, visit_time INTEGER NOT NULL, "
        "from_visit INTEGER, transition INTEGER DEFAULT 0 NOT NULL, visit_duration INTEGER DEFAULT 0 NOT NULL);"
    )
    for i, row in enumerate(visits, start=1):
        when = row.get("time", datetime(2025, 1, 1, tzinfo=UTC))
        raw_time = chrome_time(when) if isinstance(when, datetime) else when
        title_sql, title = _title_sql(row.get("title", f"Page {i}"))
        con.execute(f"INSERT INTO urls(id, url, title) VALUES (?, ?, {title_sql})",
                    (i, row.get("url", f"https://site{i}.example.com/page"), title))
        con.execute("INSERT INTO visits(id, url, visit_time, transition, visit_duration) VALUES (?, ?, ?, ?, ?)",
                    (i, i, raw_time, row.get("transition", CHAIN_END), row.get("duration", 0)))
    con.commit()
    con.close()
    return path


def firefox_history(path: Path, visits: Iterable[Mapping[str, Any]]) -> Path:
    """Rows: url, title, time (datetime or raw visit_date), visit_type (default 1), from_visit."""
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE moz_places(id INTEGER PRIMARY KEY, url LONGVARCHAR, title LONGVARCHAR);"
        "CREATE TABLE moz_historyvisits(id INTEGER PRIMARY KEY, from_visit INTEGER, place_id INTEGER, "
        "visit_date INTEGER, visit_type INTEGER);"
    )
    for i, row in enumerate(visits, start=1):
        when = row.get("time", datetime(2025, 1, 1, tzinfo=UTC))
        raw_time = firefox_time(when) if isinstance(when, datetime) else when
        title_sql, title = _title_sql(row.get("title", f"Page {i}"))
        con.execute(f"INSERT INTO moz_places(id, url, title) VALUES (?, ?, {title_sql})",
                    (i, row.get("url", f"https://site{i}.example.com/page"), title))
        con.execute("INSERT INTO moz_historyvisits(id, from_visit, place_id, visit_date, visit_type) "
                    "VALUES (?, ?, ?, ?, ?)", (i, row.get("from_visit"), i, raw_time, row.get("visit_type", 1)))
    con.commit()
    con.close()
    return path


def safari_history(path: Path, visits: Iterable[Mapping[str, Any]]) -> Path:
    """Rows: url, title, time (datetime or raw visit_time in seconds since 2001)."""
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE history_items(id INTEGER PRIMARY KEY, url TEXT NOT NULL UNIQUE);"
        "CREATE TABLE history_visits(id INTEGER PRIMARY KEY, history_item INTEGER NOT NULL, visit_time REAL "
        "NOT NULL, title TEXT NULL, load_successful BOOLEAN NOT NULL DEFAULT 1, redirect_destination INTEGER);"
    )
    for i, row in enumerate(visits, start=1):
        when = row.get("time", datetime(2025, 1, 1, tzinfo=UTC))
        raw_time = safari_time(when) if isinstance(when, datetime) else when
        title_sql, title = _title_sql(row.get("title", f"Page {i}"))
        con.execute("INSERT INTO history_items(id, url) VALUES (?, ?)",
                    (i, row.get("url", f"https://site{i}.example.com/page")))
        con.execute(f"INSERT INTO history_visits(id, history_item, visit_time, title) VALUES (?, ?, ?, {title_sql})",
                    (i, i, raw_time, title))
    con.commit()
    con.close()
    return path


WRITERS = {"chrome": chrome_history, "firefox": firefox_history, "safari": safari_history}
