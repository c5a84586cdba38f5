"""What a tracker answers an app with: :class:`Prediction` and :class:`Recommendation`.

(The interest profile, :class:`~vane.client.profile.InterestProfile`, lives with the profile.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Prediction:
    """What comes next: the next-interest distribution and next-window intensity.

    Attributes
    ----------
    next_interest : tuple of (str, float)
        Categories and their probability of being next, most likely first.
    intensity : tuple of (str, float)
        Categories and the model's probability that they appear in the next window (empty without
        a model).
    source : str
        ``"ranker"`` when the candidate ranker answered, ``"model+profile"`` when the LSTM contributed,
        else ``"profile"``.
    reasons : dict of str to tuple of str
        With the ranker: why each of the top categories is predicted, in words (the feature groups that
        drove its score).
    """

    next_interest: tuple[tuple[str, float], ...]
    intensity: tuple[tuple[str, float], ...]
    source: str
    reasons: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "source": self.source,
            "next_interest": [{"category": c, "probability": p, "reasons": list(self.reasons.get(c, ()))}
                              for c, p in self.next_interest],
            "intensity": [{"category": c, "probability": p} for c, p in self.intensity],
        }


@dataclass(frozen=True)
class Recommendation:
    """One ranked candidate item, with a sentence saying why."""

    item_id: str
    score: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"item_id": self.item_id, "score": self.score, "reason": self.reason}


def ranked(dist: dict[str, float], k: int | None = None) -> list[tuple[str, float]]:
    """``dist``'s items by probability descending, then name ascending; the first ``k`` if given."""
    items = sorted(dist.items(), key=lambda kv: (-kv[1], kv[0]))
    return items if k is None else items[:k]
