"""Which stored events a deletion removes: ``forget`` criteria and retention limits.

The functions only choose sequence numbers; :class:`~vane.client.store.EventStore` deletes them
for good (zeroed rows, truncated WAL).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from vane.shared.errors import ConfigError
from vane.shared.events import Event


def to_unix(value: datetime | float | int, field: str) -> float:
    """``value`` (an aware datetime or Unix seconds) as Unix seconds; ``field`` names it in errors."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{field} must be timezone-aware, got naive datetime {value!r}")
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"{field} must be an aware datetime or Unix seconds, got {type(value).__name__}")


def forgotten(stored: Sequence[tuple[int, Event]], item_id: str | None, cutoff: float | None) -> list[int]:
    """Sequence numbers of the events of ``item_id`` or (OR) older than Unix time ``cutoff``."""
    return [seq for seq, e in stored if e.item_id == item_id or (cutoff is not None and e.unix_time < cutoff)]


def check_retention(max_age_days: float | None, max_events: int | None) -> None:
    """Raise :class:`ConfigError` unless the limits are None or finite numbers >= 0 (``max_events`` an int)."""
    if max_age_days is not None and (isinstance(max_age_days, bool) or not isinstance(max_age_days, (int, float))
                                     or not math.isfinite(max_age_days) or max_age_days < 0):
        raise ConfigError(f"max_age_days must be None or a finite number of days >= 0, got {max_age_days!r}")
    if max_events is not None and (isinstance(max_events, bool) or not isinstance(max_events, int)
                                   or max_events < 0):
        raise ConfigError(f"max_events must be None or an int >= 0, got {max_events!r}")


def beyond_retention(stored: Sequence[tuple[int, Event]], max_age_days: float | None, max_events: int | None,
                     now: float) -> list[int]:
    """Sequence numbers, ascending, of events older than ``max_age_days`` or not among the newest ``max_events``.

    "Newest" is by event time (ties by sequence number), not by the order events were stored in: an
    imported history is stored after newer live events.
    """
    doomed: set[int] = set()
    if max_age_days is not None:
        cutoff = now - max_age_days * 86400.0
        doomed.update(seq for seq, e in stored if e.unix_time < cutoff)
    if max_events is not None and len(stored) > max_events:
        by_time = sorted(stored, key=lambda item: (item[1].unix_time, item[0]))
        doomed.update(seq for seq, _ in by_time[: len(stored) - max_events])
    return sorted(doomed)
