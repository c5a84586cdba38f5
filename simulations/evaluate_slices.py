"""Where each method wins: metrics per slice of the test events, the explore list, and user-bootstrap intervals.

Every method of the evaluation sees the same test events in the same order (evaluated users in order,
each user's events in time order). :class:`EventInfo` describes them once:

- **prior events**: how many of the person's events came before (buckets :data:`BUCKETS`);
- **event type** (:data:`EVENT_TYPES`): ``repeat`` (a target category was in the last event),
  ``switch-to-seen`` (not a repeat, but the person has seen a target category before) or ``new``
  (no target category seen before); events whose only category is ``other`` have type ``none``.

A method that records an :class:`EventTrace` (its rank per event, and its **explore rank** on ``new``
events: the rank of the target when only categories the person has not seen are ranked) gets per-bucket
and per-type rows, the explore list's HR@5, and ratios to another method with a 95% interval from
resampling users.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from vane.shared.events import OTHER, Event
from vane.shared.metrics import hit_rate_from_ranks, mrr_from_ranks, ndcg_from_ranks

BUCKETS: tuple[tuple[str, int, int], ...] = (("1-5", 1, 5), ("6-20", 6, 20), ("21-50", 21, 50), ("51+", 51, 10**12))
EVENT_TYPES: tuple[str, ...] = ("repeat", "switch-to-seen", "new")
EXPLORE_K = 5


@dataclass
class EventTrace:
    """One method's rank of every scored event (``inf``: a miss) and its explore rank (NaN unless ``new``)."""

    ranks: list[float] = field(default_factory=list)
    explore: list[float] = field(default_factory=list)

    def add(self, rank: float, explore: float = float("nan")) -> None:
        self.ranks.append(float(rank))
        self.explore.append(float(explore))


@dataclass
class EventInfo:
    """What every scored event is: its user (index), prior event count and type."""

    user: np.ndarray
    prior: np.ndarray
    kind: np.ndarray  # str

    @classmethod
    def of(cls, sequences: Sequence[tuple[Sequence[Event], Sequence[Event]]]) -> EventInfo:
        """``sequences``: per user, the events before the scored ones and the scored ones."""
        users, priors, kinds = [], [], []
        for u, (before, scored) in enumerate(sequences):
            seen = {c for ev in before for c in ev.categories}
            last = set(before[-1].categories) if before else set()
            for j, ev in enumerate(scored):
                targets = {c for c in ev.categories if c != OTHER}
                kinds.append(event_type(targets, last, seen))
                users.append(u)
                priors.append(len(before) + j)
                seen.update(ev.categories)
                last = set(ev.categories)
        return cls(np.asarray(users, dtype=np.int64), np.asarray(priors, dtype=np.int64), np.asarray(kinds))

    def __len__(self) -> int:
        return int(self.user.shape[0])


def event_type(targets: set[str], last: set[str], seen: set[str]) -> str:
    """``repeat``, ``switch-to-seen``, ``new`` or ``none`` (no target but ``other``)."""
    if not targets:
        return "none"
    if targets & last:
        return "repeat"
    return "switch-to-seen" if targets & seen else "new"


def explore_rank(scores: np.ndarray, targets: Sequence[int], seen: np.ndarray) -> float:
    """Best 1-based rank of ``targets`` among the entries not ``seen`` (ties to the lower index); inf if none."""
    best = float("inf")
    positions = np.arange(scores.shape[0])
    open_ = ~seen[: scores.shape[0]] if seen.shape[0] >= scores.shape[0] else ~np.pad(seen, (0, scores.shape[0]
                                                                                             - seen.shape[0]))
    for t in targets:
        if t >= scores.shape[0] or not open_[t]:
            continue
        s = scores[t]
        rank = 1 + int(np.count_nonzero(open_ & (scores > s))) + int(np.count_nonzero(open_ & (scores == s)
                                                                                      & (positions < t)))
        best = min(best, float(rank))
    return best


def ranking_metrics(ranks: np.ndarray) -> dict[str, float]:
    return {"hr@1": hit_rate_from_ranks(ranks, 1), "hr@5": hit_rate_from_ranks(ranks, 5),
            "hr@10": hit_rate_from_ranks(ranks, 10), "ndcg@10": ndcg_from_ranks(ranks, 10),
            "mrr": mrr_from_ranks(ranks), "count": float(ranks.size)}


def slice_metrics(trace: EventTrace, info: EventInfo) -> dict[str, dict[str, dict[str, float]]]:
    """Ranking metrics per prior-event bucket and per event type, and the explore list's HR@5."""
    ranks = np.asarray(trace.ranks, dtype=float)
    if ranks.size != len(info):
        raise ValueError(f"the trace has {ranks.size} events; the evaluation scored {len(info)}")
    buckets = {label: ranking_metrics(ranks[(info.prior >= lo) & (info.prior <= hi)]) for label, lo, hi in BUCKETS}
    types = {kind: ranking_metrics(ranks[info.kind == kind]) for kind in EVENT_TYPES}
    explore = np.asarray(trace.explore, dtype=float)[info.kind == "new"]
    return {"buckets": buckets, "types": types,
            "explore": {f"hr@{EXPLORE_K}": hit_rate_from_ranks(explore, EXPLORE_K),
                        "hr@1": hit_rate_from_ranks(explore, 1), "count": float(explore.size)}}


def bootstrap_ratio(ranks: np.ndarray, reference: np.ndarray, users: np.ndarray, metric: str = "hr@1",
                    resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """The ratio of ``metric`` between two methods' ranks of the same events, with a 95% user-bootstrap interval.

    Users are drawn with replacement; each draw keeps all of a drawn user's events.
    """
    def per_user(values: np.ndarray) -> np.ndarray:
        return np.bincount(users, weights=values, minlength=int(users.max()) + 1)

    def gain(r: np.ndarray) -> np.ndarray:
        return (r <= 1).astype(float) if metric == "hr@1" else 1.0 / r

    if metric not in ("hr@1", "mrr"):
        raise ValueError(f"metric is {metric!r}; expected hr@1 or mrr")
    a, b = per_user(gain(np.asarray(ranks, dtype=float))), per_user(gain(np.asarray(reference, dtype=float)))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, a.shape[0], size=(resamples, a.shape[0]))
    ratios = a[draws].sum(axis=1) / np.maximum(b[draws].sum(axis=1), 1e-12)
    low, high = np.quantile(ratios, [0.025, 0.975])
    return {"ratio": float(a.sum() / b.sum()) if b.sum() else float("nan"), "low": float(low), "high": float(high)}


def bucket_ratios(traces: Mapping[str, EventTrace], info: EventInfo, baselines: Sequence[str], seed: int = 0
                  ) -> dict[str, dict[str, object]]:
    """Per bucket of prior events: the best of ``baselines`` there by HR@1, and every method's HR@1 ratio to it."""
    out: dict[str, dict[str, object]] = {}
    for label, lo, hi in BUCKETS:
        mask = (info.prior >= lo) & (info.prior <= hi)
        if not mask.any() or not baselines:
            continue
        ranks = {name: np.asarray(t.ranks, dtype=float)[mask] for name, t in traces.items()}
        best = max(baselines, key=lambda n: (float(np.mean(ranks[n] <= 1)), float(np.mean(1.0 / ranks[n]))))
        users = np.unique(info.user[mask], return_inverse=True)[1]
        out[label] = {"best_baseline": best, "hr@1": {name: bootstrap_ratio(r, ranks[best], users, seed=seed)
                                                      for name, r in ranks.items()}}
    return out


def compare(traces: Mapping[str, EventTrace], info: EventInfo, reference: str, seed: int = 0
            ) -> dict[str, dict[str, dict[str, float]]]:
    """Every traced method's HR@1 and MRR ratio to ``reference`` (the best baseline), with 95% intervals."""
    base = np.asarray(traces[reference].ranks, dtype=float)
    return {name: {metric: bootstrap_ratio(np.asarray(t.ranks, dtype=float), base, info.user, metric, seed=seed)
                   for metric in ("hr@1", "mrr")}
            for name, t in traces.items()}
