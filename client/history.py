"""Import browser history (Chrome, Firefox, Safari) as :class:`~vane.shared.events.Event` objects.

Only the standard library's :mod:`sqlite3` is used. The original database is never
opened: the file and any ``-wal``/``-shm``/``-journal`` sidecars are copied into a
temporary directory and the copy is read, so import works while the browser holds
its lock and the original stays byte-identical.

Formats are detected from the schema, and queries are built from
``PRAGMA table_info``, so optional columns (``visit_duration``, ``favicon_id``,
``visit_type``, Safari's ``history_visits.title`` …) may be missing.

=========  =====================================  ==============================
browser    tables                                 visit time
=========  =====================================  ==============================
chrome     ``urls`` + ``visits``                  µs since 1601-01-01 UTC
firefox    ``moz_places`` + ``moz_historyvisits``  µs since 1970-01-01 UTC
safari     ``history_items`` + ``history_visits``  s since 2001-01-01 UTC
=========  =====================================  ==============================

Event kinds
-----------
Chrome, from ``transition & 0xFF``:

====  ==================  ==========
core  Chromium name       kind
====  ==================  ==========
0     LINK                link
1     TYPED               typed
2     AUTO_BOOKMARK       bookmark
3     AUTO_SUBFRAME       (skipped: ``subframe``)
4     MANUAL_SUBFRAME     link
5     GENERATED           search
6     AUTO_TOPLEVEL       view
7     FORM_SUBMIT         link
8     RELOAD              reload
9     KEYWORD             search
10    KEYWORD_GENERATED   search
*     anything else       view
====  ==================  ==========

Firefox ``visit_type``: 1 LINK → link, 2 TYPED → typed, 3 BOOKMARK → bookmark,
4 EMBED → skipped (``subframe``), 5/6 redirect landings → the kind of the visit
that started the redirect (``link`` if unknown), 7 DOWNLOAD → skipped
(``download``), 8 FRAMED_LINK → link, 9 RELOAD → reload, other → view.
Safari records no transition: every visit is ``view``.

Skip rules
----------
Each visit is skipped for the first reason that applies, and counted under that
reason in :attr:`ImportSummary.skipped`:

``invalid_time``
    The visit time is zero, negative or out of range (counted only when
    ``since`` is None, because such a visit cannot be placed relative to it).
``invalid_url``
    The URL is missing, empty, has no scheme, or is http(s) without a host or
    with a malformed port.
``internal``
    Any scheme other than ``http``/``https`` (``chrome:``, ``about:``,
    ``file:``, ``data:``, ``javascript:``, ``view-source:``, ``blob:``,
    ``chrome-extension:``, ``moz-extension:``, ``edge:``, ``safari-*:`` …), and
    loopback hosts (``localhost``, ``*.localhost``, ``127.0.0.0/8``, ``::1``,
    ``0.0.0.0``): a local development server says nothing about interests.
``redirect``
    The visit was a hop the browser left by a redirect before the page was
    shown; the page the user landed on is kept. Chrome: the CHAIN_END qualifier
    (``0x20000000``) is unset, so the visit is a chain start or middle.
    Firefox: another visit of type 5 or 6 names it as ``from_visit``.
    Safari: ``redirect_destination`` is set.
``subframe``
    Chrome AUTO_SUBFRAME (3) and Firefox EMBED (4): frames the user did not
    ask for, mostly ads.
``download``
    Firefox DOWNLOAD (7).
``failed_load``
    Safari ``load_successful = 0``.
``reload``
    A visit less than 1 s after the previous not-otherwise-skipped visit to the
    same page (same ``urls``/``moz_places``/``history_items`` row), whatever
    its transition: reloads, double loads and gallery clicks. Visits at the same
    instant are ordered by visit id.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import shutil
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from vane.shared.errors import ConfigError, HistoryImportError
from vane.shared.events import MAX_ITEM_ID_LEN, OTHER, Event

logger = logging.getLogger("vane.client")

BROWSERS: tuple[str, ...] = ("chrome", "firefox", "safari")
DEFAULT_RULES_PATH = Path(__file__).with_name("history_rules.json")
SIDECAR_SUFFIXES: tuple[str, ...] = ("-wal", "-shm", "-journal")
RELOAD_WINDOW = timedelta(seconds=1)
PROGRESS_EVERY = 500
#: Every reason :attr:`ImportSummary.skipped` may hold, in the order the rules are tried.
SKIP_REASONS: tuple[str, ...] = (
    "invalid_time", "invalid_url", "internal", "redirect", "subframe", "download", "failed_load", "reload",
)

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

TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "mc_cid", "mc_eid", "yclid", "_ga", "_gl",
    "ref_src", "ref_url", "igshid", "_hsenc", "_hsmi", "mkt_tok", "vero_id", "oly_enc_id", "oly_anon_id",
    "spm", "s_cid", "wt.mc_id",
})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_WEB_SCHEMES = frozenset({"http", "https"})


# ---------------------------------------------------------------------------------------------------------------------
# URLs and categories
# ---------------------------------------------------------------------------------------------------------------------


def _is_tracking_param(name: str) -> bool:
    key = unquote(name).strip().lower()
    return key.startswith("utm_") or key in TRACKING_PARAMS


def normalize_url(url: str) -> str | None:
    """The canonical form of an http(s) URL, or None when it has no usable host.

    Scheme and host are lowercased, user info, default ports, the fragment and
    tracking parameters (``utm_*``, ``fbclid``, ``gclid`` …) are dropped; the
    other query parameters keep their order and exact text. An empty path
    becomes ``/``.

    Parameters
    ----------
    url : str
        An absolute URL.

    Returns
    -------
    str or None
        The normalised URL, or None for a malformed one.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if not scheme or not host:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc = f"{netloc}:{port}"
    query = "&".join(p for p in parts.query.split("&") if p and not _is_tracking_param(p.split("=", 1)[0]))
    return f"{scheme}://{netloc}{parts.path or '/'}" + (f"?{query}" if query else "")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _url_skip_reason(url: str | None) -> tuple[str | None, str | None]:
    """(normalised URL, None) for an importable URL, else (None, skip reason)."""
    if not isinstance(url, str) or not url.strip():
        return None, "invalid_url"
    scheme = urlsplit(url.strip()).scheme.lower()
    if not scheme:
        return None, "invalid_url"
    if scheme not in _WEB_SCHEMES:
        return None, "internal"
    normalized = normalize_url(url)
    if normalized is None:
        return None, "invalid_url"
    if _is_loopback(urlsplit(normalized).hostname or ""):
        return None, "internal"
    return normalized, None


@dataclass(frozen=True)
class CategoryRules:
    """Host and URL-path rules that give a URL its categories.

    Build one with :func:`load_rules`.

    Attributes
    ----------
    hosts : Mapping[str, str]
        Host name → category; a host also matches its subdomains.
    paths : Mapping[str, str]
        Path section such as ``/sport/`` → category.
    """

    hosts: Mapping[str, str]
    paths: Mapping[str, str]

    def host_category(self, host: str) -> str | None:
        """The category of the most specific rule host that ``host`` equals or is a subdomain of."""
        labels = host.lower().rstrip(".").split(".")
        for i in range(len(labels)):
            category = self.hosts.get(".".join(labels[i:]))
            if category is not None:
                return category
        return None

    def categorize(self, url: str) -> tuple[str, ...]:
        """Path categories (in rule order), then the host category; ``("other",)`` when none match."""
        parts = urlsplit(url)
        segments = "/" + parts.path.lower().strip("/") + "/"
        found = [category for section, category in self.paths.items() if section in segments]
        host_category = self.host_category(parts.hostname or "")
        if host_category is not None:
            found.append(host_category)
        return tuple(dict.fromkeys(found)) or (OTHER,)


def _rules_error(source: Path, what: str, value: object, expected: str) -> ConfigError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return ConfigError(
        f"history rules file {source}: {what} is {shown}; expected {expected}. "
        f"Fix the file, or remove it to use the defaults in {DEFAULT_RULES_PATH.name}"
    )


def _clean_rule_host(source: Path, category: str, host: object) -> str:
    if not isinstance(host, str) or not host.strip(" .*"):
        raise _rules_error(source, f"a host of category {category!r}", host, "a host name such as 'bbc.co.uk'")
    return host.strip().lower().lstrip("*.").rstrip(".")


def _parse_rules(source: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Read and validate one rules file into (host → category, section → category)."""
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"history rules file {source} cannot be read: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"history rules file {source} is not valid JSON ({exc}); fix the syntax") from None
    if not isinstance(data, dict):
        raise _rules_error(source, "the top level", data, "a JSON object with 'hosts' and 'paths'")
    unknown = sorted(set(data) - {"_comment", "hosts", "paths"})
    if unknown:
        raise _rules_error(source, "the key", unknown[0], "one of '_comment', 'hosts', 'paths'")
    host_lists = data.get("hosts", {})
    if not isinstance(host_lists, dict):
        raise _rules_error(source, "'hosts'", host_lists, "an object of category → list of hosts")
    hosts: dict[str, str] = {}
    for category, names in host_lists.items():
        if not category.strip():
            raise _rules_error(source, "a category name in 'hosts'", category, "a non-empty string")
        if not isinstance(names, list):
            raise _rules_error(source, f"'hosts.{category}'", names, "a list of host names")
        for name in names:
            hosts[_clean_rule_host(source, category, name)] = category
    sections = data.get("paths", {})
    if not isinstance(sections, dict):
        raise _rules_error(source, "'paths'", sections, "an object of '/section/' → category")
    paths: dict[str, str] = {}
    for section, category in sections.items():
        if not section.startswith("/") or not section.endswith("/") or len(section) < 3:
            raise _rules_error(source, "the path section", section, "a section written like '/sport/'")
        if not isinstance(category, str) or not category.strip():
            raise _rules_error(source, f"'paths.{section}'", category, "a category name")
        paths[section.lower()] = category.strip()
    return hosts, paths


@lru_cache(maxsize=1)
def _default_rules() -> CategoryRules:
    hosts, paths = _parse_rules(DEFAULT_RULES_PATH)
    return CategoryRules(hosts, paths)


def load_rules(path: str | Path | None = None) -> CategoryRules:
    """Load the category rules: the packaged defaults, with a user file merged over them.

    Parameters
    ----------
    path : str or Path or None, default None
        A user rules file in the format of ``history_rules.json``. Its hosts
        override the defaults host by host, its path sections section by
        section. None gives the defaults alone.

    Returns
    -------
    CategoryRules

    Raises
    ------
    ConfigError
        The file is missing, unreadable, not JSON, or has a malformed entry;
        the message names the file, the entry and what was expected.
    """
    defaults = _default_rules()
    if path is None:
        return defaults
    hosts, paths = _parse_rules(Path(path))
    return CategoryRules({**defaults.hosts, **hosts}, {**defaults.paths, **paths})


# ---------------------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------------
# Reading the database
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Visit:
    """One visit row, decoded but not yet filtered by URL or reload rules."""

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
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw <= 0:
        return None
    try:
        if browser == "safari":
            return _EPOCHS[browser] + timedelta(seconds=float(raw))
        return _EPOCHS[browser] + timedelta(microseconds=int(raw))
    except (OverflowError, ValueError):
        return None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else None


def _select_visits(
    con: sqlite3.Connection, tables: tuple[str, str], page_fk: str, time_col: str, extras: dict[str, str]
) -> list[tuple[Any, ...]]:
    """Rows of (visit id, page id, url, title, raw time, *extras), oldest first.

    ``extras`` maps optional visit columns to the SQL default used when the schema lacks them. The title comes
    from the visit row when it has one (Safari), else from the page row.
    """
    pages_table, visits_table = tables
    visit_cols, page_cols = _columns(con, visits_table), _columns(con, pages_table)
    title = _optional(visit_cols, "v", "title", _optional(page_cols, "p", "title"))
    extra_sql = "".join(f", {_optional(visit_cols, 'v', name, default)}" for name, default in extras.items())
    sql = (
        f"SELECT v.id, v.{page_fk}, p.url, {title}, v.{time_col}{extra_sql} "
        f"FROM {visits_table} v LEFT JOIN {pages_table} p ON p.id = v.{page_fk} ORDER BY v.{time_col}, v.id"
    )
    return con.execute(sql).fetchall()


def _read_chrome(con: sqlite3.Connection) -> list[_Visit]:
    extras = {"transition": str(CHROME_CHAIN_END), "visit_duration": "NULL"}
    out = []
    for vid, page, url, title, raw_time, transition, duration in _select_visits(
        con, _REQUIRED_TABLES["chrome"], "url", "visit_time", extras
    ):
        transition = int(transition or 0)
        core = transition & CHROME_CORE_MASK
        skip = None
        if not transition & CHROME_CHAIN_END:
            skip = "redirect"
        elif core == CHROME_AUTO_SUBFRAME:
            skip = "subframe"
        dwell = duration / 1e6 if isinstance(duration, (int, float)) and duration > 0 else None
        when = _to_datetime("chrome", raw_time)
        out.append(_Visit(vid, page, _text(url), _text(title), when, _CHROME_KINDS.get(core, "view"), skip, dwell))
    return out


def _read_firefox(con: sqlite3.Connection) -> list[_Visit]:
    extras = {"visit_type": "1", "from_visit": "NULL"}
    rows = _select_visits(con, _REQUIRED_TABLES["firefox"], "place_id", "visit_date", extras)
    types = {row[0]: row[5] for row in rows}
    redirect_sources = {row[6] for row in rows if row[5] in FIREFOX_REDIRECTS}
    out = []
    for vid, page, url, title, raw_time, visit_type, from_visit in rows:
        if visit_type in FIREFOX_REDIRECTS:
            # A redirect landing carries the transition of the visit that started the chain.
            kind = _FIREFOX_KINDS.get(types.get(from_visit, 1), "link")
        else:
            kind = _FIREFOX_KINDS.get(visit_type, "view")
        skip = "redirect" if vid in redirect_sources else _FIREFOX_SKIPS.get(visit_type)
        out.append(_Visit(vid, page, _text(url), _text(title), _to_datetime("firefox", raw_time), kind, skip))
    return out


def _read_safari(con: sqlite3.Connection) -> list[_Visit]:
    extras = {"redirect_destination": "NULL", "load_successful": "1"}
    out = []
    for vid, page, url, title, raw_time, redirect_destination, load_successful in _select_visits(
        con, _REQUIRED_TABLES["safari"], "history_item", "visit_time", extras
    ):
        skip = "redirect" if redirect_destination is not None else ("failed_load" if load_successful == 0 else None)
        out.append(_Visit(vid, page, _text(url), _text(title), _to_datetime("safari", raw_time), "view", skip))
    return out


_READERS: dict[str, Callable[[sqlite3.Connection], list[_Visit]]] = {
    "chrome": _read_chrome,
    "firefox": _read_firefox,
    "safari": _read_safari,
}


def _detect_browser(path: Path, con: sqlite3.Connection, browser: str) -> str:
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


def _schema_version(con: sqlite3.Connection) -> str | None:
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
    except sqlite3.DatabaseError:
        row = None
    if row is None:
        row = con.execute("PRAGMA user_version").fetchone()
    return None if row is None or row[0] is None else str(row[0])


def _copy_database(path: Path, into: Path) -> Path:
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


# ---------------------------------------------------------------------------------------------------------------------
# Turning visits into events
# ---------------------------------------------------------------------------------------------------------------------


def _visit_event(visit: _Visit, url: str, rules: CategoryRules) -> Event:
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
    visits: list[_Visit],
    summary: ImportSummary,
    since: datetime | None,
    rules: CategoryRules,
    progress: Callable[[int, int], None] | None,
) -> HistoryBatch:
    skipped: Counter[str] = Counter()
    events: list[Event] = []
    last_by_page: dict[int | None, datetime] = {}
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
        url, reason = _url_skip_reason(visit.url)
        reason = reason or visit.skip
        if reason is None:
            previous = last_by_page.get(visit.page_id)
            last_by_page[visit.page_id] = visit.timestamp
            if previous is not None and visit.timestamp - previous < RELOAD_WINDOW:
                reason = "reload"
        if since is not None and visit.timestamp <= since:
            continue
        newest = visit.timestamp if newest is None else max(newest, visit.timestamp)
        summary.visits_read += 1
        if reason is not None or url is None:
            skipped[reason or "invalid_url"] += 1
            continue
        events.append(_visit_event(visit, url, rules))
    events.sort(key=lambda e: e.timestamp)
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
    path: str | Path,
    browser: str = "auto",
    since: datetime | None = None,
    rules: CategoryRules | str | Path | None = None,
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
        copy = _copy_database(source, Path(tmp))
        con = sqlite3.connect(copy)
        try:
            detected = _detect_browser(source, con, browser)
            summary = ImportSummary(str(source), detected, _schema_version(con))
            visits = _READERS[detected](con)
        except sqlite3.DatabaseError as exc:
            raise HistoryImportError(f"cannot read history from {source}: {exc}") from None
        finally:
            con.close()
    batch = _build_batch(visits, summary, since, category_rules, progress)
    logger.info("imported %s of %s %s visits from %s", summary.imported, summary.visits_read, detected, source)
    return batch
