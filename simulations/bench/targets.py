"""The benchmarks' targets: each measure's comparison, goal and unit, and whether a value meets it."""

from __future__ import annotations

from dataclasses import dataclass

#: Comparisons a target may use; "" reports the measure with no goal.
COMPARISONS = ("<=", ">=", "")


@dataclass(frozen=True)
class Target:
    """What one measure should reach.

    Parameters
    ----------
    op : {"<=", ">=", ""}
        How a measured value compares with ``goal``; "" means the measure is only reported.
    goal : float, default 0.0
    unit : str, default ""
    description : str, default ""
    """

    op: str
    goal: float = 0.0
    unit: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if self.op not in COMPARISONS:
            raise ValueError(f"target comparison is {self.op!r}; expected one of {COMPARISONS}")

    def met(self, value: float, slack: float = 0.0) -> bool | None:
        """Whether ``value`` meets the goal (widened by ``slack``); None for a measure with no goal."""
        if not self.op:
            return None
        return value <= self.goal + slack if self.op == "<=" else value >= self.goal - slack

