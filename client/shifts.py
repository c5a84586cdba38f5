"""Incremental detection of interest shifts.

A short-memory and a long-memory category distribution are updated with each
event (exponential decay by event count). When the Jensen–Shannon divergence
between them rises above ``enter`` a shift is reported, from the long-memory
top categories to the short-memory ones; another shift can only be reported
after the divergence has fallen back below ``exit`` (hysteresis), so one change
of taste is reported once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from vane.shared.errors import ConfigError


@dataclass(frozen=True)
class Shift:
    """One detected change of interests."""

    seq: int
    timestamp: float
    event_index: int
    from_categories: tuple[str, ...]
    to_categories: tuple[str, ...]
    magnitude: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def js_divergence(p: dict[str, float], q: dict[str, float]) -> float:
    """Jensen–Shannon divergence in bits (0 = identical, 1 = disjoint) of two normalised distributions."""
    total = 0.0
    for key in p.keys() | q.keys():
        a, b = p.get(key, 0.0), q.get(key, 0.0)
        m = 0.5 * (a + b)
        if a > 0:
            total += 0.5 * a * math.log2(a / m)
        if b > 0:
            total += 0.5 * b * math.log2(b / m)
    return max(0.0, min(1.0, total))


def _top(dist: dict[str, float], k: int, floor: float) -> tuple[str, ...]:
    ranked = sorted(dist.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple(cat for cat, share in ranked[:k] if share >= floor)


@dataclass
class ShiftDetector:
    """Short- versus long-memory profile comparison with hysteresis.

    Parameters
    ----------
    short_half_life : float, default 8
        Events after which the short memory's weight of an event halves.
    long_half_life : float, default 60
        The same for the long memory.
    enter, exit : float, default 0.2 and 0.08
        JS divergence (bits) that opens a shift, and below which the next may open.
    warmup : int, default 30
        Events before the first shift can be reported.
    """

    short_half_life: float = 8.0
    long_half_life: float = 60.0
    enter: float = 0.2
    exit: float = 0.08
    warmup: int = 30
    short: dict[str, float] = field(default_factory=dict)
    long: dict[str, float] = field(default_factory=dict)
    seen: int = 0
    armed: bool = True
    divergence: float = 0.0
    shifts: list[Shift] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0 < self.short_half_life < self.long_half_life:
            raise ConfigError(
                f"short_half_life={self.short_half_life} and long_half_life={self.long_half_life}: "
                "expected 0 < short < long"
            )
        if not 0 <= self.exit < self.enter <= 1:
            raise ConfigError(f"exit={self.exit}, enter={self.enter}: expected 0 <= exit < enter <= 1")

    @staticmethod
    def _mix(dist: dict[str, float], categories: tuple[str, ...], half_life: float) -> None:
        keep = 0.5 ** (1.0 / half_life)
        for cat in list(dist):
            dist[cat] *= keep
            if dist[cat] < 1e-6:
                del dist[cat]
        for cat in categories:
            dist[cat] = dist.get(cat, 0.0) + (1.0 - keep) / len(categories)

    @staticmethod
    def _normalised(dist: dict[str, float]) -> dict[str, float]:
        total = sum(dist.values())
        return {k: v / total for k, v in dist.items()} if total > 0 else {}

    def update(self, categories: tuple[str, ...], seq: int, timestamp: float) -> Shift | None:
        """Take one event; return the shift it completes, if any."""
        self._mix(self.short, categories, self.short_half_life)
        self._mix(self.long, categories, self.long_half_life)
        self.seen += 1
        short, long = self._normalised(self.short), self._normalised(self.long)
        self.divergence = js_divergence(short, long)
        if self.seen < self.warmup:
            return None
        if self.armed and self.divergence > self.enter:
            self.armed = False
            shift = Shift(
                seq=seq,
                timestamp=timestamp,
                event_index=self.seen - 1,
                from_categories=_top(long, 3, 0.1),
                to_categories=_top(short, 3, 0.1),
                magnitude=round(self.divergence, 4),
            )
            self.shifts.append(shift)
            return shift
        if not self.armed and self.divergence < self.exit:
            self.armed = True
        return None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["shifts"] = [s.to_dict() for s in self.shifts]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ShiftDetector":
        data = dict(data)
        shifts = [
            Shift(**{**s, "from_categories": tuple(s["from_categories"]), "to_categories": tuple(s["to_categories"])})
            for s in data.pop("shifts")
        ]
        return cls(**data, shifts=shifts)
