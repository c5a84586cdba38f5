"""The decayed interest profile (the interest vector U) and the transition estimate.

Both work on raw category names, not only the taxonomy's, so a person's rare
categories stay visible to them even when the shared model folds them into
``other``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Contribution:
    """One recent event that raised a category's score."""

    seq: int
    item_id: str
    title: str | None
    timestamp: float
    weight: float


@dataclass(frozen=True)
class CategoryInterest:
    """One category in an :class:`InterestProfile`."""

    category: str
    score: float
    profile_share: float
    model_probability: float | None
    because: tuple[Contribution, ...]


@dataclass(frozen=True)
class InterestProfile:
    """What the person is into now, strongest first.

    ``source`` says where the scores come from: ``"model+profile"`` when the
    LSTM contributed, ``"profile"`` when the tracker has no model.
    """

    top: tuple[CategoryInterest, ...]
    source: str
    events_seen: int
    half_life_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "events_seen": self.events_seen,
            "half_life_s": self.half_life_s,
            "top": [
                {
                    "category": c.category,
                    "score": c.score,
                    "profile_share": c.profile_share,
                    "model_probability": c.model_probability,
                    "because": [b.__dict__ for b in c.because],
                }
                for c in self.top
            ],
        }


@dataclass
class DecayedProfile:
    """Per-category scores that halve every ``half_life_s`` seconds of event time.

    Scores are stored relative to a reference time, so an update costs one
    multiplication per touched category rather than a pass over all of them.
    """

    half_life_s: float = 7 * 86400.0
    keep_reasons: int = 3
    ref_time: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, list[Contribution]] = field(default_factory=dict)
    count: int = 0
    #: Events per category (an event with two categories counts in both), undecayed.
    counts: dict[str, int] = field(default_factory=dict)
    #: Unix time of the oldest event taken (None before any).
    first_time: float | None = None

    def update(self, seq: int, item_id: str, title: str | None, categories: tuple[str, ...], now: float,
               weight: float = 1.0) -> None:
        """Add one event of total weight ``weight``, split over its categories.

        Scores are kept relative to ``ref_time`` (an event's boost grows as
        ``2**(age/half_life)`` instead of every other score shrinking), so an
        update touches only the event's own categories.
        """
        if self.ref_time is None:
            self.ref_time = now
        exponent = (now - self.ref_time) / self.half_life_s
        if exponent > 30:  # rebase before the growth factor gets large
            factor = 2.0 ** -exponent
            self.scores = {cat: s * factor for cat, s in self.scores.items()}
            self.ref_time, exponent = now, 0.0
        boost = weight / len(categories) * 2.0**exponent
        self.first_time = now if self.first_time is None else min(self.first_time, now)
        for cat in categories:
            self.scores[cat] = self.scores.get(cat, 0.0) + boost
            self.counts[cat] = self.counts.get(cat, 0) + 1
            kept = self.reasons.setdefault(cat, [])
            kept.append(Contribution(seq, item_id, title, now, weight / len(categories)))
            if len(kept) > self.keep_reasons:
                del kept[0]
        self.count += 1

    def scores_at(self, now: float) -> dict[str, float]:
        """Absolute decayed scores at time ``now``."""
        if self.ref_time is None:
            return {}
        factor = 2.0 ** (-(now - self.ref_time) / self.half_life_s)
        return {cat: s * factor for cat, s in self.scores.items()}

    def shares(self) -> dict[str, float]:
        """Scores normalised to sum to 1 (empty when nothing was seen)."""
        total = sum(self.scores.values())
        if total <= 0 or not math.isfinite(total):
            return {}
        return {cat: s / total for cat, s in self.scores.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "half_life_s": self.half_life_s,
            "keep_reasons": self.keep_reasons,
            "ref_time": self.ref_time,
            "scores": self.scores,
            "reasons": {c: [r.__dict__ for r in rs] for c, rs in self.reasons.items()},
            "count": self.count,
            "counts": self.counts,
            "first_time": self.first_time,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecayedProfile:
        return cls(
            half_life_s=float(data["half_life_s"]),
            keep_reasons=int(data["keep_reasons"]),
            ref_time=data["ref_time"],
            scores={str(k): float(v) for k, v in data["scores"].items()},
            reasons={c: [Contribution(**r) for r in rs] for c, rs in data["reasons"].items()},
            count=int(data["count"]),
            counts={str(k): int(v) for k, v in data.get("counts", {}).items()},
            first_time=data.get("first_time"),
        )


@dataclass
class TransitionEstimate:
    """First-order category transitions of this person, with add-one smoothing in the ranking."""

    counts: dict[str, dict[str, float]] = field(default_factory=dict)
    last: tuple[str, ...] = ()

    def update(self, categories: tuple[str, ...]) -> None:
        for prev in self.last:
            row = self.counts.setdefault(prev, {})
            for cat in categories:
                row[cat] = row.get(cat, 0.0) + 1.0 / (len(self.last) * len(categories))
        self.last = categories

    def next_distribution(self) -> dict[str, float]:
        """P(next category | last event's categories), empty when unknown."""
        merged: dict[str, float] = {}
        for prev in self.last:
            for cat, n in self.counts.get(prev, {}).items():
                merged[cat] = merged.get(cat, 0.0) + n
        total = sum(merged.values())
        return {c: n / total for c, n in merged.items()} if total > 0 else {}

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.counts, "last": list(self.last)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TransitionEstimate:
        return cls(counts={k: dict(v) for k, v in data["counts"].items()}, last=tuple(data["last"]))
