"""What ``vane client …`` shows: tables and lines in which every string from a page is shown literally.

Titles, item ids, categories, URLs and paths come from web pages and from people, so they may hold
Rich markup (``[/bold]``, ``[link=…]``), terminal escapes (``ESC [2J``, OSC 8 hyperlinks), other
control characters, bidirectional overrides or lone surrogates. :func:`literal` makes such a
string safe to print: every one of those characters becomes a visible escape such as ``\\x1b`` or
``\\u202e``, and the result is placed in a :class:`rich.text.Text`, which Rich never parses as
markup. :func:`json_text` does the same for ``--json`` output, where the escapes stay valid JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

#: C0 and C1 controls, DEL, line/paragraph separators, zero-width and bidi format characters,
#: the byte-order mark, and lone surrogates: everything that can move the cursor, hide text or
#: reorder it, or cannot be encoded.
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff"
                    "\ufff9-\ufffb\ud800-\udfff]")


#: What :func:`json_text` escapes: :data:`UNSAFE` except the newlines of the indentation (JSON itself
#: already escapes C0 controls inside strings).
_JSON_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f" + UNSAFE.pattern[len("[\x00-\x1f"):])


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def literal(value: object) -> str:
    """``str(value)`` with every unsafe character (see :data:`UNSAFE`) replaced by a visible escape."""
    text = value if isinstance(value, str) else str(value)
    return UNSAFE.sub(_escape_char, text)


def cell(value: object, width: int | None = None) -> Text:
    """A table cell or line showing ``value`` literally (never parsed as markup), cut to ``width`` first."""
    text = value if isinstance(value, str) else str(value)
    if width is not None and len(text) > width:
        text = text[:width]
    return Text(literal(text))


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\u{code:04x}"


def json_text(data: Any) -> str:
    """``data`` as indented JSON in which no character can act on a terminal (still valid JSON)."""
    raw = json.dumps(data, ensure_ascii=False, indent=1, default=str)
    # Outside strings JSON holds only ASCII punctuation, digits and spaces, so every match is
    # inside a string, where \\uXXXX means the same character.
    return _JSON_UNSAFE.sub(_json_escape, raw)


#: A store whose newest event is older than this many days is called stale in the profile page.
STALE_DAYS = 1.0
#: What ``vane client profile`` prints for a store without events, line by line.
EMPTY_HINT = ("No events in {store} yet, so there is no profile to show. Import your browser history with",
              "  vane client import-history PATH --store {store}",
              "(PATH: Chrome's History, Firefox's places.sqlite or Safari's History.db), or record events",
              "from an app with InterestTracker.record(...).")
#: How the page names where the answers come from (``source``).
SOURCES = {"profile": "your history, no model", "model+profile": "the model and your history"}


def score_meaning(half_life_events: float, with_model: bool) -> str:
    """What the one score of ``vane client profile`` means (the line above its table, and its ``--json`` text)."""
    model = "; averaged half and half with the model's chance that it comes next" if with_model else ""
    return (f"share now = your share of attention per category: every event counts and its weight halves after "
            f"{half_life_events:g} newer events (re-centred when a shift is detected){model}. Shares of all "
            f"categories, uncategorised included, add up to 100%.")


def _pct(share: float) -> str:
    return f"{share:.1%}" if share < 0.095 else f"{share:.0%}"


def _day(iso: str | None) -> str:
    return "-" if not iso else iso[:10]


def _category(name: str) -> str:
    return "(uncategorised)" if name == "other" else name


def profile_views(page: Mapping[str, Any], store: str) -> list[RenderableType]:
    """The tables and lines of ``vane client profile`` from its ``--json`` page (format 2)."""
    summary = page["summary"]
    if not summary["events_seen"]:
        return [cell(line.format(store=store)) for line in EMPTY_HINT]
    views: list[RenderableType] = []
    span = (f"Your profile covers {summary['events_seen']} events from {_day(summary['first_event'])} "
            f"to {_day(summary['newest_event'])}.")
    age = summary["newest_event_age_days"]
    if age is not None and age >= STALE_DAYS:
        span += f" The newest event is {age:.0f} days old: this is how things looked then."
    views.append(cell(span))
    shown = page["shown"]
    source = page["interests"]["source"]
    views.append(cell(summary["score_meaning"]))  # the one score's meaning, right above its table
    table = Table(title=cell(f"Your interests now ({SOURCES.get(source, source)})"))
    table.add_column("interest")
    table.add_column("share now", justify="right")
    table.add_column("events", justify="right")
    table.add_column("recent events (full titles: --because N)")
    for c in shown:
        because = Text("; ").join(cell(b["title"] or b["item_id"], 40) for b in c["because"][:2])
        table.add_row(cell(c["category"]), cell(_pct(c["score"])), cell(c["events"]), because)
    views.append(table)
    if summary["uncategorised_events"]:
        views.append(cell(f"{summary['uncategorised_events']} of {summary['events_seen']} events had no category "
                          "(uncategorised): they count in the shares but are not listed as an interest."))
    views.append(_next_table(page["prediction"]))
    if not page["shifts"]:
        views.append(cell("No interest shifts detected."))
    for s in page["shifts"]:
        when = datetime.fromtimestamp(s["timestamp"], UTC).isoformat(timespec="minutes")
        views.append(cell(f"Shift at {when}: {', '.join(map(_category, s['from_categories']))} -> "
                          f"{', '.join(map(_category, s['to_categories']))} (JS divergence {s['magnitude']:.2f})"))
    for cat, events in (page.get("because") or {}).items():
        behind = Table(title=cell(f"Behind {cat}: the newest {len(events)} event(s)"))
        for col in ("when (UTC)", "title", "address"):
            behind.add_column(col, overflow="fold")
        for ev in events:
            behind.add_row(cell(ev["timestamp"][:16].replace("T", " ")), cell(ev["title"] or "-"), cell(ev["item_id"]))
        views.append(behind)
    return views


def _next_table(prediction: Mapping[str, Any]) -> Table:
    source = prediction["source"]
    nxt = Table(title=cell(f"What comes next ({SOURCES.get(source, source)})"))
    first, second = prediction["next_interest"], prediction["intensity"]
    columns = [(first, "next interest", "chance it is next")]
    if second:  # the next-window intensity comes from the model only
        columns.append((second, "in the next window", "chance it appears"))
    for _, name, chance in columns:
        nxt.add_column(name)
        nxt.add_column(chance, justify="right")
    for i in range(max(len(first), len(second))):
        row: list[Text] = []
        for ranked, _, _ in columns:
            entry = ranked[i] if i < len(ranked) else None
            if entry is None:
                row += [cell(""), cell("")]
            else:
                row += [cell(_category(entry["category"])), cell(_pct(entry["probability"]))]
        nxt.add_row(*row)
    return nxt


def import_table(name: str, data: Mapping[str, Any]) -> Table:
    """The summary table of ``vane client import-history``."""
    table = Table(title=cell(f"Imported {name} ({data.get('browser')}, schema {data.get('schema_version')})"))
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("visits read", cell(data.get("visits_read")))
    table.add_row("imported", cell(data.get("imported")))
    for reason, n in sorted((data.get("skipped") or {}).items()):
        table.add_row(cell(f"skipped: {reason}"), cell(n))
    table.add_row("first visit", cell(data.get("first_timestamp")))
    table.add_row("last visit", cell(data.get("last_timestamp")))
    top = data.get("top_categories") or {}
    items = top.items() if isinstance(top, Mapping) else top
    table.add_row("top categories", cell(", ".join(f"{c} ({n})" for c, n in list(items)[:5])))
    return table
