"""Population knowledge a device may hold: how popular each category is and what usually follows what.

:class:`PopulationStats` is a plain value object of summable counts, so it can be computed centrally
(:func:`population_stats`, the simulations' reference) or summed across devices by federated analytics
and shipped back to them as an artifact. It holds two tables:

- ``popularity``: how often each category occurs (one count per event that has it);
- ``transitions``: ``transitions[a][b]``, how often an event with category ``a`` is directly followed by
  one with ``b``, each pair weighted ``1 / (|previous categories| * |next categories|)`` (the Markov
  baseline's weighting, so a multi-genre event adds one unit in all).

``other`` is never a candidate: it is left out of the popularity order and of every transition row's
targets (it may still be a row's source, the category *before* a transition).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from vane.shared.events import OTHER, Event


class PopulationStats:
    """Category popularity and category-to-category transition counts of a population.

    Parameters
    ----------
    popularity : mapping of str to float
        Occurrences of each category.
    transitions : mapping of str to mapping of str to float
        ``transitions[a][b]``: weighted count of ``a`` directly followed by ``b``.

    Attributes
    ----------
    categories : tuple of str
        Every category but ``other``, most popular first (ties by name): the fallback order of a ranking.
    rank : dict of str to int
        0-based position of a category in :attr:`categories`.
    """

    def __init__(self, popularity: Mapping[str, float], transitions: Mapping[str, Mapping[str, float]]) -> None:
        for name, count in popularity.items():
            if not (math.isfinite(count) and count >= 0):
                raise ValueError(f"popularity[{name!r}] is {count!r}; expected a finite count >= 0")
        ranked = sorted(((n, float(c)) for n, c in popularity.items() if n != OTHER and c > 0),
                        key=lambda item: (-item[1], item[0]))
        self.popularity: dict[str, float] = {n: c for n, c in ranked}
        self.categories: tuple[str, ...] = tuple(n for n, _ in ranked)
        self.rank: dict[str, int] = {n: i for i, n in enumerate(self.categories)}
        self.total = float(sum(self.popularity.values()))
        self.transitions: dict[str, dict[str, float]] = {
            a: {b: float(w) for b, w in row.items() if b != OTHER and w > 0} for a, row in transitions.items()
        }
        self._row_prob: dict[str, dict[str, float]] = {}
        self._row_rank: dict[str, dict[str, int]] = {}
        self._row_top: dict[str, tuple[str, ...]] = {}
        for a, row in self.transitions.items():
            total = sum(row.values())
            if total <= 0:
                continue
            order = sorted(row, key=lambda b: (-row[b], self.rank.get(b, len(self.rank)), b))
            self._row_prob[a] = {b: row[b] / total for b in order}
            self._row_rank[a] = {b: i for i, b in enumerate(order)}
            self._row_top[a] = tuple(order)

    @classmethod
    def from_counts(cls, popularity: Mapping[str, float],
                    transitions: Mapping[str, Mapping[str, float]]) -> PopulationStats:
        """The statistics of summed counts (a central count, or the federated sum of devices' counts)."""
        return cls(popularity, transitions)

    def __len__(self) -> int:
        return len(self.categories)

    def share(self, name: str) -> float:
        """Popularity share of ``name`` (0 when unknown)."""
        return self.popularity.get(name, 0.0) / self.total if self.total else 0.0

    def top_popular(self, k: int) -> tuple[str, ...]:
        """The ``k`` most popular categories."""
        return self.categories[:k]

    def transition(self, previous: Sequence[str], name: str) -> float:
        """Mean over ``previous`` of ``P(name | a)`` (0 for a source without transitions)."""
        if not previous:
            return 0.0
        return sum(self._row_prob.get(a, {}).get(name, 0.0) for a in previous) / len(previous)

    def transition_vector(self, previous: Sequence[str], names: Sequence[str]) -> np.ndarray:
        """:meth:`transition` of each of ``names`` (one pass per source row)."""
        out = np.zeros(len(names))
        for a in previous:
            row = self._row_prob.get(a)
            if row:
                out += np.fromiter((row.get(n, 0.0) for n in names), dtype=np.float64, count=len(names))
        return out / len(previous) if previous else out

    def transition_rank(self, previous: Sequence[str], name: str) -> int:
        """Best 0-based rank of ``name`` in the transition rows of ``previous``; ``len(self)`` when absent."""
        worst = len(self.categories)
        return min((self._row_rank.get(a, {}).get(name, worst) for a in previous), default=worst)

    def stickiness(self, name: str) -> float:
        """``P(name | name)``: how often the population stays in ``name`` for the next event."""
        return self._row_prob.get(name, {}).get(name, 0.0)

    def top_transitions(self, previous: Sequence[str], k: int) -> tuple[str, ...]:
        """The ``k`` likeliest next categories after ``previous`` by :meth:`transition`.

        Drawn from the union of each source row's ``k`` best (exact for one source category); ties go to
        the more popular category.
        """
        pool = {b for a in previous for b in self._row_top.get(a, ())[:k]}
        scored = sorted(pool, key=lambda b: (-self.transition(previous, b), self.rank.get(b, len(self.rank)), b))
        return tuple(scored[:k])

    def without(self, own: PopulationStats, tolerance: float = 1e-9) -> PopulationStats:
        """These statistics less ``own``'s counts: what the rest of the population contributed.

        A device that trains on federated statistics subtracts its own counts
        (:func:`population_stats` of its own events), so the features it trains on never contain its
        own training targets. A count at or below ``tolerance`` after the subtraction is dropped (the
        rounding of secure aggregation and any DP noise leave small remainders; pass the statistics'
        stated tolerance). Raises ValueError for a negative ``tolerance``.
        """
        if not (math.isfinite(tolerance) and tolerance >= 0):
            raise ValueError(f"tolerance is {tolerance!r}; expected a finite number >= 0")

        def less(mine: Mapping[str, float], theirs: Mapping[str, float]) -> dict[str, float]:
            out = {k: v - theirs.get(k, 0.0) for k, v in mine.items()}
            return {k: v for k, v in out.items() if v > tolerance}

        transitions = {a: less(row, own.transitions.get(a, {})) for a, row in self.transitions.items()}
        return PopulationStats(less(self.popularity, own.popularity), {a: r for a, r in transitions.items() if r})

    def to_dict(self) -> dict[str, dict[str, object]]:
        """The counts as JSON-ready dicts; ``from_counts(**d)`` rebuilds the same statistics."""
        return {"popularity": dict(self.popularity), "transitions": {a: dict(r) for a, r in self.transitions.items()}}


def population_counts(users: Iterable[Sequence[Event]]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Popularity and transition counts of every given person's events (each sequence in time order)."""
    popularity: dict[str, float] = defaultdict(float)
    transitions: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for events in users:
        previous: tuple[str, ...] = ()
        for event in events:
            cats = event.categories
            for name in cats:
                popularity[name] += 1.0
            if previous:
                weight = 1.0 / (len(previous) * len(cats))
                for a in previous:
                    row = transitions[a]
                    for b in cats:
                        row[b] += weight
            previous = cats
    return dict(popularity), {a: dict(row) for a, row in transitions.items()}


def population_stats(users: Iterable[Sequence[Event]]) -> PopulationStats:
    """:class:`PopulationStats` of the given people's events (a pure function of them)."""
    popularity, transitions = population_counts(users)
    return PopulationStats.from_counts(popularity, transitions)


def popularity_positions(stats: PopulationStats, names: Iterable[str]) -> np.ndarray:
    """The 0-based popularity rank of each of ``names`` (``len(stats)`` when unknown), as an int array."""
    worst = len(stats)
    return np.fromiter((stats.rank.get(n, worst) for n in names), dtype=np.int64)
