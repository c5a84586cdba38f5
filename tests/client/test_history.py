"""Specification of vane.client.history against real browser databases.

Counts are checked against an independent plain-SQL implementation of the skip
rules documented in the module docstring, run on a private copy of each file.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from vane.client.history import (
    CategoryRules,
    load_rules,
    normalize_url,
    read_history,
)
from vane.shared.errors import ConfigError, HistoryImportError
from vane.shared.events import KINDS, OTHER, dedupe

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "browser-history-fixtures"

CHROME_FILES = {
    "20": "plaso/chrome_History",
    "25": "grr/chrome_History2",
    "29": "grr/chrome_History3",
    "36": "plaso/chrome_History-59.0.3071.86",
    "41": "pyspark-plaso/chrome_History_demo-2019-09",
}
FIREFOX_FILE = "plaso/firefox_places.sqlite"
SAFARI_FILE = "plaso/safari_History.db"
CZECH_FILE = CHROME_FILES["41"]
ALL_FILES = [*CHROME_FILES.values(), FIREFOX_FILE, SAFARI_FILE]
BROWSER_OF = {**{f: "chrome" for f in CHROME_FILES.values()}, FIREFOX_FILE: "firefox", SAFARI_FILE: "safari"}


def fixture(name: str) -> Path:
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"browser-history fixture {path} is missing")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------------------------------
# The independent oracle: the documented skip rules as plain SQL, one query per browser.
# ---------------------------------------------------------------------------------------------------------------------

_URL_REASON = """
    CASE
        WHEN t IS NULL OR t <= 0 THEN 'invalid_time'
        WHEN url IS NULL OR trim(url) = '' OR instr(url, ':') = 0 THEN 'invalid_url'
        WHEN lower(url) NOT LIKE 'http://%' AND lower(url) NOT LIKE 'https://%' THEN 'internal'
        WHEN substr(url, instr(url, '://') + 3, 1) IN ('', '/', '?', '#') THEN 'invalid_url'
        WHEN lower(url) GLOB 'http*://localhost[/:]*' OR lower(url) GLOB 'http*://localhost'
          OR lower(url) GLOB 'http*://127.*' OR lower(url) GLOB 'http*://[[]::1]*'
          OR lower(url) GLOB 'http*://0.0.0.0*' THEN 'internal'
"""

_ORACLE_SELECT = """
    , classified AS (SELECT *, {reason} {browser_rules} END AS reason FROM raw)
    SELECT c.t, c.reason, c.url FROM classified c ORDER BY c.t, c.id
"""

ORACLE_SQL = {
    "chrome": "WITH raw AS (SELECT v.id, v.url AS page, v.visit_time AS t, v.transition AS tr, u.url "
    "FROM visits v LEFT JOIN urls u ON u.id = v.url)"
    + _ORACLE_SELECT.format(
        reason=_URL_REASON,
        browser_rules="WHEN (tr & 536870912) = 0 THEN 'redirect' WHEN (tr & 255) = 3 THEN 'subframe'",
    ),
    "firefox": "WITH raw AS (SELECT v.id, v.place_id AS page, v.visit_date AS t, v.visit_type AS vt, p.url, "
    "EXISTS (SELECT 1 FROM moz_historyvisits w WHERE w.from_visit = v.id AND w.visit_type IN (5, 6)) AS src "
    "FROM moz_historyvisits v LEFT JOIN moz_places p ON p.id = v.place_id)"
    + _ORACLE_SELECT.format(
        reason=_URL_REASON,
        browser_rules="WHEN src THEN 'redirect' WHEN vt = 4 THEN 'subframe' WHEN vt = 7 THEN 'download'",
    ),
    "safari": "WITH raw AS (SELECT v.id, v.history_item AS page, v.visit_time AS t, v.redirect_destination AS rd, "
    "v.load_successful AS ok, i.url FROM history_visits v LEFT JOIN history_items i ON i.id = v.history_item)"
    + _ORACLE_SELECT.format(
        reason=_URL_REASON,
        browser_rules="WHEN rd IS NOT NULL THEN 'redirect' WHEN ok = 0 THEN 'failed_load'",
    ),
}
ORACLE_EPOCH = {
    "chrome": (datetime(1601, 1, 1, tzinfo=UTC), "microseconds"),
    "firefox": (datetime(1970, 1, 1, tzinfo=UTC), "microseconds"),
    "safari": (datetime(2001, 1, 1, tzinfo=UTC), "seconds"),
}


def oracle(path: Path, browser: str, tmp_path: Path) -> tuple[Counter[str], list[datetime]]:
    """(skip reasons, sorted times of kept visits), from plain SQL on a private copy."""
    copy = tmp_path / "oracle" / path.name
    copy.parent.mkdir()
    shutil.copyfile(path, copy)
    con = sqlite3.connect(copy)
    try:
        rows = con.execute(ORACLE_SQL[browser]).fetchall()
    finally:
        con.close()
    epoch, unit = ORACLE_EPOCH[browser]
    reasons = Counter(reason for _, reason, _ in rows if reason is not None)
    # The one duplicate rule: the same page (normalised URL) within 1 s of the last *kept* visit.
    window = 1 if unit == "seconds" else 1_000_000
    kept: list[datetime] = []
    last: tuple[str | None, float] | None = None
    for t, reason, url in rows:
        if reason is not None:
            continue
        page = normalize_url(url)
        if last is not None and last[0] == page and 0 <= t - last[1] < window:
            reasons["duplicate"] += 1
            continue
        last = (page, t)
        kept.append(epoch + timedelta(**{unit: t}))
    return reasons, sorted(kept)


# ---------------------------------------------------------------------------------------------------------------------
# Synthetic Chrome databases for rules the fixtures do not exercise
# ---------------------------------------------------------------------------------------------------------------------

CHAIN = 0x30000000  # CHAIN_START | CHAIN_END: a visit that was not redirected


def chrome_time(when: datetime) -> int:
    return (when - datetime(1601, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def make_chrome(path: Path, visits: list[tuple[str, datetime, int]], wal: bool = False) -> sqlite3.Connection:
    """A minimal Chrome History with one urls row per distinct URL; the connection stays open."""
    con = sqlite3.connect(path)
    if wal:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("CREATE TABLE urls(id INTEGER PRIMARY KEY, url LONGVARCHAR, title LONGVARCHAR)")
    con.execute("CREATE TABLE visits(id INTEGER PRIMARY KEY, url INTEGER, visit_time INTEGER, transition INTEGER)")
    ids: dict[str, int] = {}
    for url, when, transition in visits:
        if url not in ids:
            ids[url] = con.execute("INSERT INTO urls(url, title) VALUES (?, ?)", (url, f"t:{url}")).lastrowid
        con.execute(
            "INSERT INTO visits(url, visit_time, transition) VALUES (?, ?, ?)",
            (ids[url], chrome_time(when), transition),
        )
    con.commit()
    return con


T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------------------------------
# Real fixtures
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", sorted(CHROME_FILES))
def test_every_chrome_schema_version_imports(version: str) -> None:
    batch = read_history(fixture(CHROME_FILES[version]))

    assert batch.summary.browser == "chrome"
    assert batch.summary.schema_version == version
    assert batch.events


@pytest.mark.parametrize(("name", "browser"), [(FIREFOX_FILE, "firefox"), (SAFARI_FILE, "safari")])
def test_firefox_and_safari_import(name: str, browser: str) -> None:
    batch = read_history(fixture(name))

    assert batch.summary.browser == browser
    assert batch.events


@pytest.mark.parametrize("name", ALL_FILES)
def test_counts_and_time_range_match_independent_sql(name: str, tmp_path: Path) -> None:
    path = fixture(name)
    expected_skips, kept_times = oracle(path, BROWSER_OF[name], tmp_path)

    batch = read_history(path)

    summary = batch.summary
    assert summary.imported == len(batch.events) == len(kept_times)
    assert Counter(summary.skipped) == expected_skips
    assert summary.visits_read == len(kept_times) + sum(expected_skips.values())
    assert summary.first_timestamp == kept_times[0]
    assert summary.last_timestamp == kept_times[-1]
    assert [e.timestamp for e in batch.events] == kept_times


@pytest.mark.parametrize("name", ALL_FILES)
def test_events_are_time_ordered_aware_utc_with_known_kinds(name: str) -> None:
    events = read_history(fixture(name)).events

    assert all(e.timestamp.utcoffset() == timedelta(0) for e in events)
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
    assert {e.kind for e in events} <= set(KINDS)


def test_originals_are_untouched_and_get_no_sidecars() -> None:
    paths = [fixture(name) for name in ALL_FILES]
    before = {p: sha256(p) for p in paths}
    listing = {p.parent: sorted(p.parent.iterdir()) for p in paths}

    for path in paths:
        read_history(path)

    assert {p: sha256(p) for p in paths} == before
    assert {d: sorted(d.iterdir()) for d in listing} == listing


def test_writable_wal_original_gets_no_sidecars(tmp_path: Path) -> None:
    original = tmp_path / "History.db"
    shutil.copyfile(fixture(SAFARI_FILE), original)
    digest = sha256(original)

    read_history(original)

    assert sha256(original) == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["History.db"]


def test_uncheckpointed_wal_contents_are_read_while_the_browser_holds_the_file(tmp_path: Path) -> None:
    path = tmp_path / "History"
    con = make_chrome(
        path, [("https://example.org/a", T0, CHAIN), ("https://example.org/b", T0 + timedelta(1), CHAIN)], wal=True
    )
    try:
        assert (tmp_path / "History-wal").stat().st_size > 0
        wal_digest = sha256(tmp_path / "History-wal")

        batch = read_history(path)

        assert [e.item_id for e in batch.events] == ["https://example.org/a", "https://example.org/b"]
        assert sha256(tmp_path / "History-wal") == wal_digest
    finally:
        con.close()


def test_chrome_timestamps_convert_from_1601_microseconds() -> None:
    batch = read_history(fixture(CHROME_FILES["36"]))

    # visit_time 13161017332037692 µs after 1601-01-01
    assert batch.events[0].timestamp == datetime(2018, 1, 21, 14, 8, 52, 37692, tzinfo=UTC)


def test_firefox_timestamp_and_kind() -> None:
    (event,) = read_history(fixture(FIREFOX_FILE)).events

    assert event.timestamp == datetime(2011, 7, 1, 11, 16, 21, 371935, tzinfo=UTC)
    assert event.kind == "typed"
    assert event.item_id == "http://news.google.com/"
    assert event.categories == ("/News",)  # Topics by default (was "news" before builtin:topics)


def test_safari_keeps_landing_page_and_titles_from_history_visits() -> None:
    events = read_history(fixture(SAFARI_FILE)).events

    assert events[0].timestamp == datetime(2017, 11, 9, 21, 23, 34, 791503, tzinfo=UTC)
    assert events[0].title == "Ubuntu Start Page"
    assert "http://facebook.com/" in {e.item_id for e in events}  # a later, direct visit
    assert "https://www.facebook.com/" in {e.item_id for e in events}
    assert {e.kind for e in events} == {"view"}


@pytest.mark.parametrize("name", ALL_FILES)
def test_incremental_import_from_last_visit_time_returns_nothing_new(name: str) -> None:
    path = fixture(name)
    batch = read_history(path)

    again = read_history(path, since=batch.last_visit_time)

    assert again.events == []
    assert again.summary.visits_read == 0
    assert again.last_visit_time == batch.last_visit_time


def test_incremental_import_returns_only_strictly_newer_visits() -> None:
    path = fixture(CZECH_FILE)
    full = read_history(path)
    cut = full.events[10].timestamp

    later = read_history(path, since=cut)

    assert later.events == [e for e in full.events if e.timestamp > cut]


def test_progress_reports_the_final_count() -> None:
    calls: list[tuple[int, int]] = []

    read_history(fixture(CZECH_FILE), progress=lambda done, total: calls.append((done, total)))

    assert calls[-1] == (89, 89)


def test_summary_to_dict_is_json_ready() -> None:
    summary = read_history(fixture(SAFARI_FILE)).summary

    data = json.loads(json.dumps(summary.to_dict()))

    assert data["browser"] == "safari"
    assert data["imported"] == summary.imported
    assert data["first_timestamp"] == summary.first_timestamp.isoformat()


# ---------------------------------------------------------------------------------------------------------------------
# Format detection and bad files
# ---------------------------------------------------------------------------------------------------------------------


def test_forcing_the_wrong_browser_names_the_file_and_tables() -> None:
    path = fixture(CHROME_FILES["20"])

    with pytest.raises(HistoryImportError, match=r"not a firefox history.*tables found: .*urls"):
        read_history(path, browser="firefox")


def test_forcing_the_right_browser_works() -> None:
    assert read_history(fixture(SAFARI_FILE), browser="safari").summary.browser == "safari"


def test_corrupted_file_raises_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "History"
    path.write_bytes(random.Random(7).randbytes(8192))

    with pytest.raises(HistoryImportError, match=str(path)):
        read_history(path)


def test_non_history_sqlite_raises_naming_the_path_and_tables(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
    con.close()

    with pytest.raises(HistoryImportError, match=rf"{path}.*tables found: notes"):
        read_history(path)


def test_empty_file_raises_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "History"
    path.touch()

    with pytest.raises(HistoryImportError, match=rf"{path} is empty"):
        read_history(path)


def test_missing_file_raises_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(HistoryImportError, match=str(tmp_path / "nope")):
        read_history(tmp_path / "nope")


def test_unknown_browser_and_naive_since_are_rejected() -> None:
    path = fixture(SAFARI_FILE)

    with pytest.raises(ConfigError, match="browser"):
        read_history(path, browser="opera")
    with pytest.raises(ConfigError, match="since"):
        read_history(path, since=datetime(2020, 1, 1))


# ---------------------------------------------------------------------------------------------------------------------
# Skip rules on synthetic data
# ---------------------------------------------------------------------------------------------------------------------


def test_internal_local_and_invalid_urls_are_skipped_by_reason(tmp_path: Path) -> None:
    urls = [
        "chrome://settings/",
        "about:blank",
        "file:///home/me/a.html",
        "data:text/html,hi",
        "javascript:void(0)",
        "view-source:https://a.com/",
        "chrome-extension://abc/p.html",
        "moz-extension://x/",
        "blob:https://a.com/1",
        "edge://flags",
        "http://localhost:8000/",
        "http://127.0.0.1/",
        "http://[::1]/x",
        "",
        "nonsense",
        "http://",
        "https://example.org/",
    ]
    path = tmp_path / "History"
    make_chrome(path, [(u, T0 + timedelta(minutes=i), CHAIN) for i, u in enumerate(urls)]).close()

    batch = read_history(path)

    assert batch.summary.skipped == {"internal": 13, "invalid_url": 3}
    assert [e.item_id for e in batch.events] == ["https://example.org/"]


def test_redirect_sources_are_skipped_and_the_landing_page_kept(tmp_path: Path) -> None:
    path = tmp_path / "History"
    visits = [
        ("http://a.com/", T0, 1 | 0x10000000),  # TYPED, CHAIN_START
        ("https://www.a.com/", T0, 1 | 0x80000000),  # SERVER_REDIRECT, chain middle
        ("https://www.a.com/home", T0, 1 | 0xA0000000),  # SERVER_REDIRECT | CHAIN_END: the landing page
    ]
    make_chrome(path, visits).close()

    batch = read_history(path)

    assert batch.summary.skipped == {"redirect": 2}
    assert [(e.item_id, e.kind) for e in batch.events] == [("https://www.a.com/home", "typed")]


def test_repeat_within_one_second_is_a_duplicate_but_later_reload_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "History"
    url = "https://a.com/"
    visits = [
        (url, T0, CHAIN),
        (url, T0 + timedelta(seconds=0.5), 8 | CHAIN),
        (url, T0 + timedelta(seconds=5), 8 | CHAIN),
    ]
    make_chrome(path, visits).close()

    batch = read_history(path)

    assert batch.summary.skipped == {"duplicate": 1}
    assert [e.kind for e in batch.events] == ["link", "reload"]


def test_duplicates_follow_the_trackers_rule_against_the_last_kept_visit(tmp_path: Path) -> None:
    """A burst at 0, 0.5 and 1.2 s keeps 0 and 1.2 s (the one rule of vane.shared.events), and a
    visit to another page in between breaks a burst, as it does for live recording."""
    path = tmp_path / "History"
    a, b = "https://a.com/", "https://b.com/"
    visits = [
        (a, T0, CHAIN),
        (a, T0 + timedelta(seconds=0.5), 8 | CHAIN),
        (a, T0 + timedelta(seconds=1.2), 8 | CHAIN),
        (b, T0 + timedelta(seconds=10), CHAIN),
        (a, T0 + timedelta(seconds=10.2), CHAIN),
        (a, T0 + timedelta(seconds=10.4), CHAIN),
    ]
    make_chrome(path, visits).close()

    batch = read_history(path)

    assert batch.summary.skipped == {"duplicate": 2}
    assert [(e.item_id, (e.timestamp - T0).total_seconds()) for e in batch.events] == [
        (a, 0.0), (a, 1.2), (b, 10.0), (a, 10.2)
    ]
    assert batch.events == dedupe(batch.events)


@pytest.mark.parametrize(
    ("core", "kind"), [(0, "link"), (1, "typed"), (2, "bookmark"), (5, "search"), (6, "view"), (8, "reload")]
)
def test_chrome_core_transition_gives_the_kind(core: int, kind: str, tmp_path: Path) -> None:
    path = tmp_path / "History"
    make_chrome(path, [("https://a.com/", T0, core | CHAIN)]).close()

    assert read_history(path).events[0].kind == kind


# ---------------------------------------------------------------------------------------------------------------------
# URLs and categories
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTPS://WWW.Example.COM/Path?b=1&a=2", "https://www.example.com/Path?b=1&a=2"),
        ("http://example.com:80/x", "http://example.com/x"),
        ("https://example.com:443/x", "https://example.com/x"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("https://example.com/a#section", "https://example.com/a"),
        ("https://example.com", "https://example.com/"),
        ("https://a.com/p?utm_source=x&id=7&UTM_Medium=y&fbclid=1&gclid=2&q=z", "https://a.com/p?id=7&q=z"),
        ("https://a.com/p?mc_cid=1&mc_eid=2&yclid=3&_ga=4&ref_src=5", "https://a.com/p"),
        ("https://user:pw@a.com/", "https://a.com/"),
        ("http://[::1]:80/", "http://[::1]/"),
        ("https://a.com:notaport/", None),
        ("https:///nohost", None),
    ],
)
def test_normalize_url(raw: str, expected: str | None) -> None:
    assert normalize_url(raw) == expected


def test_czech_zpravy_path_is_news_on_the_pyspark_file() -> None:
    events = read_history(fixture(CZECH_FILE)).events

    zpravy = [e for e in events if "/zpravy/" in e.item_id]
    assert zpravy
    assert all("/News" in e.categories for e in zpravy)  # Topics by default (was "news")


def test_path_sections_come_before_the_host_category() -> None:
    rules = load_rules()

    assert rules.categorize("https://zpravy.aktualne.cz/ekonomika/auto/x") == ("finance", "cars", "news")
    assert rules.categorize("https://www.bbc.co.uk/sport/football") == ("sports", "news")


@pytest.mark.parametrize(
    ("url", "category"),
    [
        ("https://www.idnes.cz/", "news"),
        ("https://www.amazon.com/dp/1", "shopping"),
        ("https://m.youtube.com/", "video"),
        ("https://x.com/someone", "social"),
        ("https://github.com/a/b", "tech"),
        ("https://www.espn.com/", "sports"),
        ("https://www.booking.com/", "travel"),
        ("https://www.paypal.com/", "finance"),
    ],
)
def test_host_suffix_rules(url: str, category: str) -> None:
    assert load_rules().categorize(url) == (category,)


def test_unknown_host_is_other() -> None:
    assert load_rules().categorize("https://unknown-host.example/") == (OTHER,)


def test_host_rule_matches_on_label_boundaries_only() -> None:
    assert load_rules().categorize("https://notx.com/") == (OTHER,)


def test_user_rules_merge_over_defaults(tmp_path: Path) -> None:
    user = tmp_path / "rules.json"
    user.write_text(
        json.dumps({"hosts": {"hobby": ["unknown-host.example", "github.com"]}, "paths": {"/knit/": "crafts"}})
    )

    rules = load_rules(user)

    assert rules.categorize("https://unknown-host.example/knit/x") == ("crafts", "hobby")
    assert rules.categorize("https://github.com/") == ("hobby",)
    assert rules.categorize("https://www.idnes.cz/") == ("news",)


def test_rules_can_be_passed_to_read_history() -> None:
    rules = CategoryRules(hosts={"google.com": "mine"}, paths={})

    batch = read_history(fixture(FIREFOX_FILE), rules=rules)

    assert batch.events[0].categories == ("mine",)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "top level"),
        ('{"hosts": {"news": "bbc.com"}}', "hosts.news"),
        ('{"hosts": {"news": [3]}}', "host of category 'news'"),
        ('{"paths": {"sport": "sports"}}', "path section"),
        ('{"colours": {}}', "'colours'"),
    ],
)
def test_malformed_rules_file_raises_naming_the_file(content: str, message: str, tmp_path: Path) -> None:
    user = tmp_path / "rules.json"
    user.write_text(content)

    with pytest.raises(ConfigError, match=message) as info:
        load_rules(user)
    assert str(user) in str(info.value)


def test_firefox_redirect_source_is_skipped_and_landing_inherits_its_kind(tmp_path: Path) -> None:
    path = tmp_path / "places.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE moz_places(id INTEGER PRIMARY KEY, url LONGVARCHAR)")
    con.execute(
        "CREATE TABLE moz_historyvisits(id INTEGER PRIMARY KEY, from_visit INTEGER, place_id INTEGER, "
        "visit_date INTEGER, visit_type INTEGER)"
    )
    urls = ["http://a.com/", "https://www.a.com/", "https://ads.b.com/", "https://c.com/file.zip"]
    con.executemany("INSERT INTO moz_places(id, url) VALUES (?, ?)", enumerate(urls, start=1))
    t = 1_700_000_000_000_000
    visits = [(1, 0, 1, t, 2), (2, 1, 2, t + 1, 5), (3, 0, 3, t + 10**7, 4), (4, 0, 4, t + 2 * 10**7, 7)]
    con.executemany("INSERT INTO moz_historyvisits VALUES (?, ?, ?, ?, ?)", visits)
    con.commit()
    con.close()

    batch = read_history(path)

    assert batch.summary.skipped == {"redirect": 1, "subframe": 1, "download": 1}
    assert [(e.item_id, e.kind) for e in batch.events] == [("https://www.a.com/", "typed")]
