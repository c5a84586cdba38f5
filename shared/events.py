"""The event schema: one thing a person did with one item.

Every :class:`Event` is valid: the constructor itself validates and normalises every field (so
``Event(...)``, :meth:`Event.create` and :meth:`Event.from_dict` follow one rule), and a bad field
raises :class:`~vane.shared.errors.EventValidationError` naming the field, the value and what was
expected.

Rules for missing data:

- ``item_id`` and ``timestamp`` are required. In a mapping (:meth:`Event.from_dict`, and so
  ``record({...})``), ``kind`` is required too; a missing one is rejected. In Python,
  ``Event(...)`` and :meth:`Event.create` default ``kind`` to ``"view"``.
- A missing or empty category list maps to ``("other",)``.
- A missing ``dwell_s`` stays ``None``; it is never invented.
- A missing or blank ``title`` stays ``None``.

Rules for values:

- Text fields are stripped; item ids are at most 2048 characters, categories 128 (at most 16 of
  them), titles are cut to 4096. Text must be encodable (no lone surrogates); control characters
  are kept as they are (whoever prints them must escape them).
- One time range for every form of timestamp (aware datetime, ISO-8601 string, Unix seconds):
  ``1970-01-01T00:00:00Z <= timestamp < 3000-01-01T00:00:00Z``. Naive datetimes and ISO strings
  without an offset are rejected; the stored time is in UTC.
- A *new* event may not lie in the future by more than :data:`MAX_CLOCK_SKEW_S` (24 hours) of
  :data:`clock`: :func:`check_not_future`, applied where events are recorded and imported (not
  when stored events are read back, so a device whose clock was reset can still read its store).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
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
_KIND_SET = frozenset(KINDS)
_FIELDS = ("item_id", "categories", "timestamp", "kind", "title", "dwell_s")
_REQUIRED = (("item_id", "a non-empty string"), ("timestamp", "a timestamp"), ("kind", f"one of {', '.join(KINDS)}"))

MAX_ITEM_ID_LEN = 2048
MAX_TITLE_LEN = 4096
MAX_CATEGORIES = 16
MAX_CATEGORY_LEN = 128

#: The one accepted time range, for every form of timestamp: ``MIN_TIME <= t < MAX_TIME``.
MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(3000, 1, 1, tzinfo=UTC)
_MAX_UNIX = (MAX_TIME - MIN_TIME).total_seconds()
_RANGE = "between 1970-01-01T00:00:00Z (included) and 3000-01-01T00:00:00Z (excluded)"
#: How far in the future (seconds past :data:`clock`) a new event may lie: clock skew between devices.
MAX_CLOCK_SKEW_S = 24 * 3600.0
#: "Now" for :func:`check_not_future`, as Unix seconds; replace it (e.g. with monkeypatch) in tests.
clock: Callable[[], float] = time.time

_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean_text(field: str, value: object, max_len: int) -> str:
    """:func:`_check_text`, with a fast path for text that is already clean (most of it)."""
    if (type(value) is str and value and len(value) <= max_len and not value[0].isspace()
            and not value[-1].isspace() and (value.isascii() or _SURROGATE.search(value) is None)):
        return value
    return _check_text(field, value, max_len)


def _check_text(field: str, value: object, max_len: int) -> str:
    if type(value) is not str:
        if not isinstance(value, str):
            raise EventValidationError(field, value, "a string")
        value = str(value)
    text = value.strip()
    if not text:
        raise EventValidationError(field, value, "a non-empty string")
    if len(text) > max_len:
        raise EventValidationError(field, value, f"at most {max_len} characters")
    if _SURROGATE.search(text):
        raise EventValidationError(field, value, "text without lone surrogates (valid Unicode)")
    return text


def _check_timestamp(value: object) -> datetime:
    if type(value) is datetime and value.tzinfo is UTC:
        if not MIN_TIME <= value < MAX_TIME:
            raise EventValidationError("timestamp", value, f"a time {_RANGE}")
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise EventValidationError("timestamp", value, "a timezone-aware datetime")
        try:
            utc = value if value.tzinfo is UTC else value.astimezone(UTC)
        except (OverflowError, ValueError):
            raise EventValidationError("timestamp", value, f"a time {_RANGE}") from None
        if not MIN_TIME <= utc < MAX_TIME:
            raise EventValidationError("timestamp", value, f"a time {_RANGE}")
        return utc
    if isinstance(value, bool):
        raise EventValidationError("timestamp", value, "an aware datetime, ISO-8601 string or Unix seconds")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or not (0 <= value < _MAX_UNIX):
            raise EventValidationError("timestamp", value, f"Unix seconds {_RANGE}")
        return datetime.fromtimestamp(float(value), tz=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise EventValidationError("timestamp", value, "an ISO-8601 timestamp") from None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise EventValidationError("timestamp", value, "an ISO-8601 timestamp with a UTC offset (or Z)")
        return _check_timestamp(parsed)
    raise EventValidationError("timestamp", value, "an aware datetime, ISO-8601 string or Unix seconds")


def _check_categories(value: object) -> tuple[str, ...]:
    if value is None:
        return (OTHER,)
    if type(value) is tuple and 0 < len(value) <= MAX_CATEGORIES:
        clean = tuple(_clean_text("categories", cat, MAX_CATEGORY_LEN) for cat in value)
        if len(clean) == 1 or len(set(clean)) == len(clean):
            return clean
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise EventValidationError("categories", value, "a list of category names")
    if len(value) > MAX_CATEGORIES:
        raise EventValidationError("categories", value, f"at most {MAX_CATEGORIES} categories")
    seen: dict[str, None] = {}
    for cat in value:
        name = _clean_text("categories", cat, MAX_CATEGORY_LEN)
        seen.setdefault(name, None)
    return tuple(seen) if seen else (OTHER,)


def _check_title(value: object) -> str | None:
    if value is None:
        return None
    if type(value) is str and value and len(value) <= MAX_TITLE_LEN and not value[0].isspace() \
            and not value[-1].isspace() and (value.isascii() or _SURROGATE.search(value) is None):
        return value
    if not isinstance(value, str):
        raise EventValidationError("title", value, "a string or None")
    text = value.strip()[:MAX_TITLE_LEN].strip()
    if _SURROGATE.search(text):
        raise EventValidationError("title", value, "text without lone surrogates (valid Unicode)")
    return text or None


def _check_dwell(value: object) -> float | None:
    if value is None or (type(value) is float and 0 <= value < math.inf):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EventValidationError("dwell_s", value, "a number of seconds or None")
    if not math.isfinite(value) or value < 0:
        raise EventValidationError("dwell_s", value, "a finite number of seconds >= 0")
    return float(value)


@dataclass(frozen=True, slots=True)
class Event:
    """A validated, immutable event.

    The constructor validates and normalises every field (see the module docstring), so an
    ``Event`` that exists is valid: it can be stored and read back identically.

    Attributes
    ----------
    item_id : str
        What was seen: a product id, a movie id, a normalised URL. An int is turned into its
        decimal string.
    categories : tuple of str
        One or more category names; ``("other",)`` when unknown.
    timestamp : datetime
        When it happened, timezone-aware, in UTC.
    kind : str, default "view"
        One of :data:`KINDS`.
    title : str or None
        The item's title, if known.
    dwell_s : float or None
        Seconds spent on the item, if measured.

    Raises
    ------
    EventValidationError
        Naming the field, the value and what was expected.
    """

    item_id: str
    categories: tuple[str, ...]
    timestamp: datetime
    kind: str = "view"
    title: str | None = None
    dwell_s: float | None = None

    def __post_init__(self) -> None:
        item_id: object = self.item_id
        if item_id is None:
            raise EventValidationError("item_id", item_id, "a non-empty string (required)")
        if isinstance(item_id, int) and not isinstance(item_id, bool):
            item_id = str(item_id)
        set_field = object.__setattr__
        set_field(self, "item_id", _clean_text("item_id", item_id, MAX_ITEM_ID_LEN))
        categories: object = self.categories
        set_field(self, "categories", _check_categories(categories))
        timestamp: object = self.timestamp
        if timestamp is None:
            raise EventValidationError("timestamp", timestamp, "a timestamp (required)")
        set_field(self, "timestamp", _check_timestamp(timestamp))
        kind: object = self.kind
        if kind is None:
            raise EventValidationError("kind", kind, f"one of {', '.join(KINDS)} (required)")
        if not isinstance(kind, str) or kind not in _KIND_SET:
            raise EventValidationError("kind", kind, f"one of {', '.join(KINDS)}")
        set_field(self, "title", _check_title(self.title))
        set_field(self, "dwell_s", _check_dwell(self.dwell_s))

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
        """Validate every field and build an event (the same as the constructor, with keyword defaults).

        Raises
        ------
        EventValidationError
            Naming the field, the value and what was expected.
        """
        return cls(item_id, categories, timestamp, kind, title, dwell_s)  # type: ignore[arg-type]

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
        """Validate and build an event from a mapping such as :meth:`to_dict` gives.

        ``item_id``, ``timestamp`` and ``kind`` are required; an unknown field is rejected.
        """
        if not isinstance(data, Mapping):
            raise EventValidationError("event", data, "a mapping of event fields")
        unknown = sorted(set(data) - set(_FIELDS), key=str)
        if unknown:
            raise EventValidationError(
                str(unknown[0]), data[unknown[0]], "no such field (known: item_id, categories, "
                "timestamp, kind, title, dwell_s)"
            )
        for name, expected in _REQUIRED:
            if data.get(name) is None:
                raise EventValidationError(name, None, f"{expected} (required)")
        # The constructor validates and normalises whatever the mapping holds.
        categories: Any = data.get("categories")
        return cls(data["item_id"], categories, data["timestamp"], data["kind"],
                   data.get("title"), data.get("dwell_s"))

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


def check_not_future(event: Event, now: float | None = None) -> Event:
    """``event`` if it is no later than ``now`` plus :data:`MAX_CLOCK_SKEW_S`; else an error.

    Parameters
    ----------
    event : Event
    now : float, optional
        Unix seconds; :data:`clock` when omitted.

    Raises
    ------
    EventValidationError
        The event lies more than a day in the future: a wrong clock or a forged event, which would
        otherwise dominate every time-decayed profile.
    """
    current = clock() if now is None else now
    if event.unix_time > current + MAX_CLOCK_SKEW_S:
        limit = datetime.fromtimestamp(current + MAX_CLOCK_SKEW_S, UTC).isoformat(timespec="seconds")
        raise EventValidationError("timestamp", event.timestamp.isoformat(),
                                   f"a time no later than {limit} (now plus the 24 h clock-skew allowance)")
    return event


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
