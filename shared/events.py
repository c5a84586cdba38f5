"""The event schema: one thing a person did with one item.

Rules for missing data, applied by :meth:`Event.create` and :meth:`Event.from_dict`:

- ``item_id``, ``timestamp`` and ``kind`` are required; a missing one is rejected.
- A missing or empty category list maps to ``("other",)``.
- A missing ``dwell_s`` stays ``None``; it is never invented.
- A missing ``title`` stays ``None``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vane.shared.errors import EventValidationError

OTHER = "other"

#: Kinds an event may have. Browser transitions (typed, link, reload, …) and
#: shop actions (view, click, cart, purchase, …) share one vocabulary.
KINDS: tuple[str, ...] = (
    "view",
    "click",
    "cart",
    "favorite",
    "purchase",
    "rate",
    "search",
    "typed",
    "link",
    "bookmark",
    "reload",
    "other",
)

MAX_ITEM_ID_LEN = 2048
MAX_TITLE_LEN = 4096
MAX_CATEGORIES = 16
MAX_CATEGORY_LEN = 128


def _check_text(field: str, value: object, max_len: int) -> str:
    if not isinstance(value, str):
        raise EventValidationError(field, value, "a string")
    text = value.strip()
    if not text:
        raise EventValidationError(field, value, "a non-empty string")
    if len(text) > max_len:
        raise EventValidationError(field, value, f"at most {max_len} characters")
    return text


def _check_timestamp(value: object) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise EventValidationError("timestamp", value, "a timezone-aware datetime")
        return value.astimezone(UTC)
    if isinstance(value, bool):
        raise EventValidationError("timestamp", value, "an aware datetime, ISO-8601 string or Unix seconds")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or not (0 <= value < 32503680000):
            raise EventValidationError("timestamp", value, "Unix seconds between 1970 and 3000")
        return datetime.fromtimestamp(float(value), tz=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise EventValidationError("timestamp", value, "an ISO-8601 timestamp") from None
        return _check_timestamp(parsed)
    raise EventValidationError("timestamp", value, "an aware datetime, ISO-8601 string or Unix seconds")


def _check_categories(value: object) -> tuple[str, ...]:
    if value is None:
        return (OTHER,)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise EventValidationError("categories", value, "a list of category names")
    if len(value) > MAX_CATEGORIES:
        raise EventValidationError("categories", value, f"at most {MAX_CATEGORIES} categories")
    seen: dict[str, None] = {}
    for cat in value:
        name = _check_text("categories", cat, MAX_CATEGORY_LEN)
        seen.setdefault(name, None)
    return tuple(seen) if seen else (OTHER,)


@dataclass(frozen=True, slots=True)
class Event:
    """A validated, immutable event.

    Build one with :meth:`create` (or :meth:`from_dict`), which validates
    every field; the constructor trusts its arguments.

    Attributes
    ----------
    item_id : str
        What was seen: a product id, a movie id, a normalised URL.
    categories : tuple of str
        One or more category names; ``("other",)`` when unknown.
    timestamp : datetime
        When it happened, timezone-aware, in UTC.
    kind : str
        One of :data:`KINDS`.
    title : str or None
        The item's title, if known.
    dwell_s : float or None
        Seconds spent on the item, if measured.
    """

    item_id: str
    categories: tuple[str, ...]
    timestamp: datetime
    kind: str = "view"
    title: str | None = None
    dwell_s: float | None = None

    @classmethod
    def create(
        cls,
        item_id: object,
        categories: object = None,
        timestamp: object = None,
        kind: object = "view",
        title: object = None,
        dwell_s: object = None,
    ) -> Event:
        """Validate every field and build an event.

        Raises
        ------
        EventValidationError
            Naming the field, the value and what was expected.
        """
        if item_id is None:
            raise EventValidationError("item_id", item_id, "a non-empty string (required)")
        if isinstance(item_id, int) and not isinstance(item_id, bool):
            item_id = str(item_id)
        item = _check_text("item_id", item_id, MAX_ITEM_ID_LEN)
        if timestamp is None:
            raise EventValidationError("timestamp", timestamp, "a timestamp (required)")
        ts = _check_timestamp(timestamp)
        if kind is None:
            raise EventValidationError("kind", kind, f"one of {', '.join(KINDS)} (required)")
        if not isinstance(kind, str) or kind not in KINDS:
            raise EventValidationError("kind", kind, f"one of {', '.join(KINDS)}")
        clean_title: str | None = None
        if title is not None:
            if not isinstance(title, str):
                raise EventValidationError("title", title, "a string or None")
            clean_title = title.strip()[:MAX_TITLE_LEN] or None
        dwell: float | None = None
        if dwell_s is not None:
            if isinstance(dwell_s, bool) or not isinstance(dwell_s, (int, float)):
                raise EventValidationError("dwell_s", dwell_s, "a number of seconds or None")
            if not math.isfinite(dwell_s) or dwell_s < 0:
                raise EventValidationError("dwell_s", dwell_s, "a finite number of seconds >= 0")
            dwell = float(dwell_s)
        return cls(item, _check_categories(categories), ts, kind, clean_title, dwell)

    @property
    def unix_time(self) -> float:
        """The timestamp as Unix seconds."""
        return self.timestamp.timestamp()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` inverts it exactly."""
        return {
            "item_id": self.item_id,
            "categories": list(self.categories),
            "timestamp": self.timestamp.isoformat(),
            "kind": self.kind,
            "title": self.title,
            "dwell_s": self.dwell_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """Validate and build an event from a dict such as :meth:`to_dict` gives."""
        if not isinstance(data, Mapping):
            raise EventValidationError("event", data, "a mapping of event fields")
        unknown = set(data) - {"item_id", "categories", "timestamp", "kind", "title", "dwell_s"}
        if unknown:
            raise EventValidationError(
                sorted(unknown)[0], data[sorted(unknown)[0]], "no such field (known: item_id, categories, "
                "timestamp, kind, title, dwell_s)"
            )
        return cls.create(
            item_id=data.get("item_id"),
            categories=data.get("categories"),
            timestamp=data.get("timestamp"),
            kind=data.get("kind", "view"),
            title=data.get("title"),
            dwell_s=data.get("dwell_s"),
        )

    def to_json(self) -> str:
        """Compact JSON; :meth:`from_json` inverts it."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        """Parse and validate an event from JSON."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise EventValidationError("event", text, f"valid JSON ({exc})") from None
        return cls.from_dict(data)


#: The same item again within this many seconds of the last *kept* event is a duplicate.
DUPLICATE_WINDOW_S = 1.0


def is_duplicate(event: Event, last_kept: Event | None, window_s: float = DUPLICATE_WINDOW_S) -> bool:
    """The one duplicate rule: ``event`` repeats ``last_kept``'s item less than ``window_s`` seconds later.

    ``last_kept`` is the previous event that was *stored*, never one that was itself dropped, so a
    burst at 0 s, 0.5 s and 1.2 s keeps 0 s and 1.2 s however it arrives (one by one, in a batch,
    or from a history import).
    """
    if last_kept is None or last_kept.item_id != event.item_id:
        return False
    gap = event.unix_time - last_kept.unix_time
    return 0 <= gap < window_s


def dedupe(
    events: Iterable[Event], last_kept: Event | None = None, window_s: float = DUPLICATE_WINDOW_S
) -> list[Event]:
    """The events that :func:`is_duplicate` keeps, in order, after ``last_kept`` (the newest stored one)."""
    out: list[Event] = []
    for event in events:
        if is_duplicate(event, out[-1] if out else last_kept, window_s):
            continue
        out.append(event)
    return out
