"""The sampled next-item task of the evaluation: 100 candidate items per test event.

For each test event the candidates are the true item plus 99 others drawn by training popularity. A
method scores a candidate by the probability it gives the candidate's category plus a small,
method-independent tie-break (:data:`RECENCY_BONUS` × recency of the item in the user's history +
:data:`POPULARITY_BONUS` × its normalised training popularity); ties rank the true item last
(:func:`sampled_item_rank`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from vane.shared.events import Event
from vane.simulations.split import Split

#: Candidates per test event for the sampled next-item metric (the true item included).
NUM_CANDIDATES = 100
RECENCY_BONUS = 1e-3
POPULARITY_BONUS = 1e-6
RECENCY_HALF_LIFE_EVENTS = 20.0


@dataclass
class ItemCandidates:
    """For each test event (in evaluation order) the candidate items, the true one first."""

    items: list[str]  # global item list
    categories: list[tuple[str, ...]]  # per global item
    candidates: np.ndarray  # (E, NUM_CANDIDATES) indices into items; column 0 is the true item
    tie_break: np.ndarray  # (E, NUM_CANDIDATES) the method-independent bonus

    def scores(self, row: int, probability: Callable[[str], float] | Mapping[str, float]) -> np.ndarray:
        """Scores of the candidates of test event ``row``: each item's most probable category plus the tie-break.

        Parameters
        ----------
        row : int
            The test event, in evaluation order.
        probability : callable or mapping
            A method's probability of a category name; a category it does not know counts 0.
        """
        of = (lambda c: probability.get(c, 0.0)) if isinstance(probability, Mapping) else probability
        cand = [max(of(c) for c in self.categories[k]) for k in self.candidates[row].tolist()]
        return np.asarray(cand) + self.tie_break[row]


def sample_candidates(
    split: Split,
    seed: int,
    num_candidates: int = NUM_CANDIDATES,
    catalogue: Mapping[str, Sequence[Event]] | None = None,
) -> ItemCandidates:
    """The true item plus ``num_candidates - 1`` others drawn by training popularity, per test event.

    Parameters
    ----------
    split : Split
    seed : int
    num_candidates : int, default 100
    catalogue : mapping of user id -> events, optional
        Where the items come from (default: every user's history and test events).

    Returns
    -------
    ItemCandidates
    """
    catalogue = catalogue if catalogue is not None else {uid: split.history(uid) + split.test.get(uid, [])
                                                        for uid in split.train}
    index: dict[str, int] = {}
    cats: list[tuple[str, ...]] = []
    for events in catalogue.values():
        for ev in events:
            if ev.item_id not in index:
                index[ev.item_id] = len(cats)
                cats.append(ev.categories)
    counts = np.zeros(len(cats))
    for events in split.train.values():
        for ev in events:
            counts[index[ev.item_id]] += 1
    # A little mass on items never trained on keeps the draw finite on tiny slices.
    weights = counts + 0.01
    cdf = np.cumsum(weights) / weights.sum()
    num_candidates = min(num_candidates, len(cats))
    pop_norm = counts / counts.max()
    names = list(index)
    rng = np.random.default_rng([seed, 0x17E4])
    rows, bonus = [], []
    for uid in split.evaluated_users:
        history = split.history(uid)
        last_seen: dict[str, int] = {ev.item_id: i for i, ev in enumerate(history)}
        position = len(history)
        for ev in split.test[uid]:
            row = _draw_candidates(rng, cdf, index[ev.item_id], num_candidates)
            recency = np.array([0.5 ** ((position - last_seen[names[i]]) / RECENCY_HALF_LIFE_EVENTS)
                                if names[i] in last_seen else 0.0 for i in row.tolist()])
            rows.append(row)
            bonus.append(RECENCY_BONUS * recency + POPULARITY_BONUS * pop_norm[row])
            last_seen[ev.item_id] = position
            position += 1
    shape = (len(rows), num_candidates)
    return ItemCandidates(names, cats, np.asarray(rows, dtype=np.int64).reshape(shape),
                          np.asarray(bonus, dtype=np.float64).reshape(shape))


def _draw_candidates(rng: np.random.Generator, cdf: np.ndarray, target: int, size: int) -> np.ndarray:
    """``target`` followed by ``size - 1`` distinct other items drawn by popularity."""
    chosen, taken = [target], {target}
    while len(chosen) < size:
        for d in np.minimum(np.searchsorted(cdf, rng.random(2 * size), side="right"), len(cdf) - 1).tolist():
            if d not in taken:
                taken.add(d)
                chosen.append(d)
                if len(chosen) == size:
                    break
    return np.asarray(chosen, dtype=np.int64)


def sampled_item_rank(scores: np.ndarray) -> float:
    """1-based rank of column 0 among the candidates; ties count against the true item."""
    return 1.0 + float(np.count_nonzero(scores[1:] >= scores[0]))

