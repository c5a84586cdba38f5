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
    The visit time is missing, not a number, zero, negative, or outside the one time range of
    events (1970-01-01 to 3000-01-01 UTC; a Chrome ``visit_time`` of 1 is not a visit in 1601).
    Counted only when ``since`` is None, because such a visit cannot be placed relative to it.
``invalid_transition``
    Chrome ``transition`` or Firefox ``visit_type`` is not an integer (text, a blob).
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
``future_time``
    The visit lies more than 24 hours after now (:data:`vane.shared.events.MAX_CLOCK_SKEW_S`): a
    wrong clock or a forged row, which would otherwise dominate the decayed profile.
``invalid_title``, ``invalid_row``
    The visit cannot become a valid :class:`~vane.shared.events.Event` for another reason.
``duplicate``
    The one duplicate rule of the tracker (:func:`vane.shared.events.is_duplicate`):
    the same item (normalised URL) less than 1 s after the last *kept* visit,
    whatever its transition: reloads and double loads. Visits are taken in time
    order, at the same instant by visit id. (The tracker applies the same rule
    once more against the last event it already holds, and counts what it drops
    here too.)

Categories
----------
By default a visit gets Topics (full paths such as ``/Sports/Basketball``) from the curated site
rules, :mod:`~vane.client.history.site_topics` (``site_topics.json``). A store pinned to a
taxonomy without any Topics path (``builtin:browsing``, made before Topics were the default) keeps
the older coarse categories of ``history_rules.json``; see
:func:`~vane.client.history.site_topics.choose_rules`.

The modules, one concern each: :mod:`~vane.client.history.urls` (normalising URLs and
the URL skip reasons), :mod:`~vane.client.history.site_topics` (Topics from curated site rules),
:mod:`~vane.client.history.rules` (the older coarse categories from host and path
rules, ``history_rules.json``), :mod:`~vane.client.history.browsers` (reading Chrome,
Firefox and Safari databases from a private copy) and :mod:`~vane.client.history.importer`
(turning visits into events and an :class:`ImportSummary`).

Titles and URLs that are not valid UTF-8 are decoded with replacement characters (U+FFFD), so one
bad row never rejects an import. Visits are read from the copy with a cursor, oldest first, and
:func:`import_into` records them in batches (``IMPORT_BATCH`` events each, all-or-nothing per
batch, the import cursor saved after each): a million-visit history imports in well under 200 MiB.
"""


from vane.client.history.browsers import BROWSERS
from vane.client.history.importer import (
    IMPORT_BATCH,
    PROGRESS_EVERY,
    SKIP_REASONS,
    HistoryBatch,
    HistorySource,
    ImportSummary,
    import_into,
    open_history,
    read_history,
)
from vane.client.history.rules import DEFAULT_RULES_PATH, CategoryRules, load_rules
from vane.client.history.site_topics import SITE_TOPICS_PATH, SiteTopics, choose_rules, load_site_topics
from vane.client.history.urls import TRACKING_PARAMS, normalize_url

__all__ = [
    "BROWSERS",
    "DEFAULT_RULES_PATH",
    "IMPORT_BATCH",
    "PROGRESS_EVERY",
    "SITE_TOPICS_PATH",
    "SKIP_REASONS",
    "TRACKING_PARAMS",
    "CategoryRules",
    "HistoryBatch",
    "HistorySource",
    "ImportSummary",
    "SiteTopics",
    "choose_rules",
    "import_into",
    "load_rules",
    "load_site_topics",
    "normalize_url",
    "open_history",
    "read_history",
]
