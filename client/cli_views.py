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
from collections.abc import Iterable, Mapping
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


def profile_views(interests: Any, prediction: Any, shifts: Iterable[Any]) -> list[RenderableType]:
    """The tables and lines of ``vane client profile``."""
    table = Table(title=cell(f"Interests now ({interests.source}, {interests.events_seen} events)"))
    for col in ("category", "score", "profile share", "model", "because of"):
        table.add_column(col)
    for c in interests.top:
        because = Text("; ").join(cell(b.title or b.item_id, 40) for b in c.because[:2])
        model = "-" if c.model_probability is None else f"{c.model_probability:.2f}"
        table.add_row(cell(c.category), cell(f"{c.score:.2f}"), cell(f"{c.profile_share:.2f}"), cell(model), because)
    nxt = Table(title=cell(f"What comes next ({prediction.source})"))
    nxt.add_column("next interest")
    nxt.add_column("p", justify="right")
    nxt.add_column("next-window intensity")
    nxt.add_column("p", justify="right")
    rows = max(len(prediction.next_interest), len(prediction.intensity))
    for i in range(rows):
        a = prediction.next_interest[i] if i < len(prediction.next_interest) else ("", None)
        b = prediction.intensity[i] if i < len(prediction.intensity) else ("", None)
        nxt.add_row(cell(a[0]), cell("" if a[1] is None else f"{a[1]:.2f}"),
                    cell(b[0]), cell("" if b[1] is None else f"{b[1]:.2f}"))
    views: list[RenderableType] = [table, nxt]
    shifts = list(shifts)
    if not shifts:
        views.append(cell("No interest shifts detected."))
    for s in shifts:
        when = datetime.fromtimestamp(s.timestamp, UTC).isoformat(timespec="minutes")
        views.append(cell(f"Shift at {when}: {', '.join(s.from_categories)} -> {', '.join(s.to_categories)} "
                          f"(JS divergence {s.magnitude:.2f})"))
    return views


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
