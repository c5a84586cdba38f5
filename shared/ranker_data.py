"""What the candidate ranker reads and learns from: fixed feature scales and padded query batches.

The ranker of the interest model (``ModelSpec.ranker_units > 0``) scores each candidate of
:mod:`vane.shared.candidates` from its :data:`~vane.shared.candidates.FIELDS`. Both the TensorFlow model
and the device use what is here, so training on the server, on the device and inference agree:

- :data:`FEATURE_SCALE`: a fixed divisor per feature, set from each feature's definition (its natural
  range: 60 recency ranks, 24 hours, a log count of a few hundred events...), never from anyone's data,
  so the network sees inputs of order one without statistics being collected for it;
- :func:`pack`: queries of up to ``spec.ranker_candidates`` candidates as one ``(B, C, F)`` array and a mask;
- :func:`ranker_examples`: the training examples of one person's time-ordered events. Each event with an
  earlier one whose categories are among its candidates is one query; the listwise target is 1 for every
  candidate among the event's categories (the loss sums their negative log-softmax, so the softmax learns
  how likely each category is to be *among* the next event's: what HR@1 counts; spreading one unit over
  them instead learned ``P(c) / |categories|``, which on MovieLens' multi-genre films cost 0.005 of HR@1,
  0.547 against 0.552); the intensity target marks the candidates that occur in the next ``horizon``
  events (the event itself included).

Only numpy and the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from vane.shared.candidates import FIELDS, CandidateQuery, CandidateState
from vane.shared.events import Event
from vane.shared.population import PopulationStats

_SCALES: dict[str, float] = {
    "recency_rank": 60.0, "log_events_since_seen": 14.0, "log_events_since_first_seen": 8.0, "log_count": 5.0,
    "decayed_2": 3.0, "decayed_5": 7.0, "decayed_20": 29.0, "decayed_80": 115.0,
    "time_decayed_1h": 10.0, "time_decayed_1d": 30.0, "log_seconds_since_seen": 21.0,
    "log_kind_view": 5.0, "log_kind_cart": 5.0, "log_kind_favorite": 5.0, "log_kind_purchase": 5.0,
    "log_kind_rate": 5.0, "log_kind_other": 5.0, "log_own_transition_1_count": 5.0, "run_length": 20.0,
    "log_popularity": 16.0, "log_popularity_rank": 8.0, "log_pop_transition": 14.0, "log_pop_transition_rank": 8.0,
    "log_pop_lift": 10.0, "log_person_events": 10.0, "log_person_categories": 6.0, "last_run_length": 20.0,
    "log_seconds_since_last_event": 14.0, "hour": 24.0,
}
#: One divisor per column of :data:`~vane.shared.candidates.FIELDS` (1 where a feature is already a share,
#: a flag or a sine).
FEATURE_SCALE: np.ndarray = np.array([_SCALES.get(name, 1.0) for name in FIELDS], dtype=np.float32)


def pack(queries: Sequence[np.ndarray], candidates: int) -> tuple[np.ndarray, np.ndarray]:
    """``(B, candidates, F)`` features and a ``(B, candidates)`` mask of the given per-query feature matrices.

    A query with more candidates keeps its first ``candidates`` (candidate order puts the person's
    recent categories first); a shorter one is padded with zeros and masked out.
    """
    width = len(FIELDS)
    x = np.zeros((len(queries), candidates, width), dtype=np.float32)
    mask = np.zeros((len(queries), candidates), dtype=np.float32)
    for i, q in enumerate(queries):
        n = min(len(q), candidates)
        x[i, :n] = q[:n]
        mask[i, :n] = 1.0
    return x, mask


@dataclass
class RankerExamples:
    """Training queries of the ranker, padded to ``C`` candidates.

    Attributes
    ----------
    features : ndarray, (N, C, F) float32
    mask : ndarray, (N, C) float32
        1 for a real candidate.
    target : ndarray, (N, C) float32
        The next event's categories among the candidates, summing to 1 per query.
    future : ndarray, (N, C) float32
        1 for a candidate that occurs in the next ``horizon`` events.
    """

    features: np.ndarray
    mask: np.ndarray
    target: np.ndarray
    future: np.ndarray

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def take(self, rows: np.ndarray) -> RankerExamples:
        """The queries at ``rows``."""
        return RankerExamples(self.features[rows], self.mask[rows], self.target[rows], self.future[rows])


def query_targets(query: CandidateQuery, events: Sequence[Event], at: int, horizon: int, candidates: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The listwise target (the categories of ``events[at]``) and the intensity target (categories in
    ``events[at:at + horizon]``) over the first ``candidates`` of ``query``."""
    names = query.names[:candidates]
    hit = np.zeros(candidates, dtype=np.float32)
    hit[: len(names)] = [name in events[at].categories for name in names]
    coming = set().union(*(ev.categories for ev in events[at: at + horizon]))
    future = np.zeros(candidates, dtype=np.float32)
    future[: len(names)] = [name in coming for name in names]
    return hit, future


def ranker_examples(events: Sequence[Event], stats: PopulationStats, candidates: int, horizon: int,
                    start: int = 1, stop: int | None = None, query_time: bool = True) -> RankerExamples:
    """The ranker's training queries for ``events[start:stop]`` of one person (time-ordered).

    Each query sees only the events before it; ``query_time`` evaluates the time features at the
    predicted event's own time (the tracker knows when it is asked), else at the previous event's. A
    query whose target is not among its first ``candidates`` candidates is left out (nothing to learn).
    """
    stop = len(events) if stop is None else stop
    state = CandidateState()
    rows: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    futures: list[np.ndarray] = []
    for j, event in enumerate(events[:stop]):
        if j >= max(start, 1):
            query = state.query(stats)
            hit, future = query_targets(query, events, j, horizon, candidates)
            if hit.any():
                when = event.unix_time if query_time else state.last_event_time
                rows.append(query.features(when))
                targets.append(hit)
                futures.append(future)
        state.observe(event)
    x, mask = pack(rows, candidates)
    width = (0, candidates)
    return RankerExamples(x, mask, np.asarray(targets, np.float32).reshape(-1, candidates) if targets
                          else np.zeros((0, candidates), np.float32),
                          np.asarray(futures, np.float32).reshape(-1, candidates) if futures
                          else np.zeros(width, np.float32))
