"""The central reference ranker: LightGBM lambdarank over the device's candidates and features.

What a federated ranker should get close to. It scores the candidates of :mod:`vane.shared.candidates`
with their :data:`~vane.shared.candidates.FIELDS`, trained centrally on every training user's events
(LightGBM runs in simulations and on the server only, never on the device).

- **Population statistics are out-of-fold by user.** Training users are dealt into ``folds`` folds; the
  rows of a person in fold *k* use :func:`~vane.shared.population.population_stats` of the *other* folds'
  training events, so the features a person trains on never contain their own targets. Test rows use the
  statistics of all training users' training events (what the devices would receive).
- **Rows**: one ranking group per event with at least one earlier event and its target among the
  candidates; label 1 for the candidates among the event's categories. Training events fit the model,
  validation events stop it early (best ``ndcg@1``).
- **Two variants**: ``strict`` evaluates the time features at the time of the last event before the
  predicted one; ``query-time`` at the predicted event's own time (the tracker knows when it is asked).
- **Ranking**: candidates by score (ties to the earlier candidate), then every other category of the
  statistics in popularity order; a category outside both is a miss.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from vane.shared.candidates import FIELDS, CandidateQuery, CandidateState
from vane.shared.events import OTHER, Event
from vane.shared.population import PopulationStats, popularity_positions, population_stats
from vane.simulations.evaluate_slices import EventTrace

if TYPE_CHECKING:
    import lightgbm

logger = logging.getLogger("vane.simulations")

#: The two evaluated variants, as method names of ``vane sim evaluate``.
VARIANTS: dict[str, str] = {"lightgbm-strict": "strict", "lightgbm-query-time": "query-time"}


@dataclass
class RankerConfig:
    """LightGBM lambdarank settings of the reference.

    Parameters
    ----------
    folds : int, default 5
        User folds of the out-of-fold population statistics.
    rounds : int, default 600
        Most boosting rounds (early stopping on the validation events picks fewer).
    learning_rate, num_leaves, min_data_in_leaf, feature_fraction : LightGBM parameters
    early_stopping : int, default 50
        Rounds without a better validation ``ndcg@1`` before stopping.
    threads : int, default 1
        LightGBM threads (on a shared 2-core machine, 2 OpenMP threads ran 4x slower than 1).
    seed : int, default 0
    """

    folds: int = 5
    rounds: int = 600
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.8
    early_stopping: int = 50
    threads: int = 1
    seed: int = 0

    def params(self) -> dict[str, Any]:
        return {
            "objective": "lambdarank", "metric": "ndcg", "eval_at": [1, 5], "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves, "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction, "bagging_fraction": 0.8, "bagging_freq": 1,
            "lambdarank_truncation_level": 20, "num_threads": self.threads, "seed": self.seed,
            "deterministic": True, "force_row_wise": True, "verbose": -1,
        }


@dataclass
class RowSet:
    """Ranking groups: strict and query-time features, labels and group sizes."""

    strict: list[np.ndarray] = field(default_factory=list)
    query: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)

    def add(self, candidates: CandidateQuery, strict_time: float, query_time: float, event: Event) -> None:
        label = np.fromiter((c in event.categories for c in candidates.names), dtype=np.float32,
                            count=len(candidates))
        if not label.any():
            return
        self.strict.append(candidates.features(strict_time))
        self.query.append(candidates.features(query_time))
        self.labels.append(label)

    def dataset(self, variant: str, reference: lightgbm.Dataset | None = None) -> lightgbm.Dataset:
        import lightgbm

        parts = self.strict if variant == "strict" else self.query
        return lightgbm.Dataset(np.concatenate(parts), label=np.concatenate(self.labels),
                                group=[len(g) for g in self.labels], feature_name=list(FIELDS),
                                reference=reference, free_raw_data=True)

    def __len__(self) -> int:
        return len(self.labels)


def fold_statistics(train: Mapping[str, Sequence[Event]], folds: int, seed: int) -> dict[str, PopulationStats]:
    """Each user's out-of-fold statistics: those of the training events of users in the other folds."""
    users = list(train)
    order = np.random.default_rng(seed).permutation(len(users))
    fold_of = {users[i]: k % folds for k, i in enumerate(order)}
    stats = [population_stats([train[u] for u in users if fold_of[u] != k]) for k in range(folds)]
    return {u: stats[fold_of[u]] for u in users}


def training_rows(histories: Mapping[str, tuple[Sequence[Event], int]], stats_of: Mapping[str, PopulationStats]
                  ) -> tuple[RowSet, RowSet]:
    """Rows of every position of ``histories`` (events, how many are training ones): training, validation."""
    train, val = RowSet(), RowSet()
    for uid, (events, n_train) in histories.items():
        stats = stats_of[uid]
        state = CandidateState()
        for j, event in enumerate(events):
            if j >= 1:
                rows = train if j < n_train else val
                rows.add(state.query(stats), events[j - 1].unix_time, event.unix_time, event)
            state.observe(event)
    return train, val


def fit_variants(train: RowSet, val: RowSet, config: RankerConfig,
                 variants: Sequence[str] = ("strict", "query-time")) -> dict[str, lightgbm.Booster]:
    """One LightGBM lambdarank booster per variant (early stopping on ``val`` when it has rows)."""
    import lightgbm

    boosters = {}
    for variant in variants:
        train_set = train.dataset(variant)
        valid = [val.dataset(variant, reference=train_set)] if len(val) else []
        callbacks: list[Callable[..., Any]] = (
            [lightgbm.early_stopping(config.early_stopping, first_metric_only=True, verbose=False)] if valid else [])
        booster = lightgbm.train(config.params(), train_set, num_boost_round=config.rounds, valid_sets=valid,
                                 valid_names=["val"] * len(valid), callbacks=callbacks)
        logger.info("lightgbm %s: %d rounds", variant, booster.best_iteration or booster.current_iteration())
        boosters[variant] = booster
    return boosters


def full_rank(names: Sequence[str], scores: np.ndarray, targets: Sequence[str], stats: PopulationStats,
              excluded: np.ndarray | None = None, excluded_ranks: np.ndarray | None = None) -> float:
    """Best 1-based rank of ``targets``: candidates by score, then the statistics' other categories by popularity.

    ``excluded`` masks candidates out of the list, and ``excluded_ranks`` (popularity ranks) removes
    non-candidate categories from the fallback order (the explore list leaves out what the person saw).
    """
    keep = np.ones(len(names), dtype=bool) if excluded is None else ~excluded
    position = {n: i for i, n in enumerate(names)}
    best = float("inf")
    order = np.argsort(-np.where(keep, scores, -np.inf), kind="stable")
    place = np.empty(len(names), dtype=np.int64)
    place[order] = np.arange(1, len(names) + 1)
    kept = int(keep.sum())
    pop = popularity_positions(stats, names)
    for target in targets:
        i = position.get(target)
        if i is not None:
            if keep[i]:
                best = min(best, float(place[i]))
            continue
        r = stats.rank.get(target)
        if r is None:
            continue
        before = int(np.count_nonzero(pop < r))
        if excluded_ranks is not None:
            before += int(np.count_nonzero(excluded_ranks < r))
        best = min(best, float(kept + r - before + 1))
    return best


#: Gaps between the person's events whose median a ``strict_gap`` query adds to the last event's time.
STRICT_GAPS = 32


def score_sequences(boosters: Mapping[str, lightgbm.Booster], stats: PopulationStats,
                    sequences: Sequence[tuple[Sequence[Event], Sequence[Event]]],
                    on_probabilities: Callable[[str, dict[str, float]], None] | None = None,
                    strict_gap: bool = False) -> dict[str, EventTrace]:
    """Online: per user, observe the events before, then rank each scored event and observe it.

    Returns each variant's :class:`EventTrace` (ranks; explore ranks on events new to the person).
    ``on_probabilities(variant, probs)`` receives each event's softmax over the candidates. The
    ``strict`` variant knows only the events before: it is asked at the last one's time, or with
    ``strict_gap`` (for a model trained on query times) that time plus the median of the person's last
    :data:`STRICT_GAPS` gaps between events.
    """
    traces = {variant: EventTrace() for variant in boosters}
    for before, scored in sequences:
        state = CandidateState()
        times = deque((ev.unix_time for ev in before), maxlen=STRICT_GAPS + 1)
        for ev in before:
            state.observe(ev)
        for event in scored:
            query = state.query(stats)
            targets = [c for c in event.categories if c != OTHER]
            new = bool(targets) and not any(c in state.index for c in targets)
            strict_time = state.last_event_time if state.events else event.unix_time
            if strict_gap and len(times) > 1:
                strict_time += float(np.median(np.diff(times)))
            for variant, booster in boosters.items():
                when = strict_time if variant == "strict" else event.unix_time
                scores = np.asarray(booster.predict(query.features(when), num_threads=1) if len(query) else [],
                                    dtype=np.float64)
                rank = full_rank(query.names, scores, targets, stats)
                explore = float("nan")
                if new:
                    listed = set(query.names)
                    seen_ranks = popularity_positions(stats, (c for c in state.index if c not in listed))
                    explore = full_rank(query.names, scores, targets, stats, query.seen, seen_ranks)
                traces[variant].add(rank, explore)
                if on_probabilities is not None:
                    z = np.exp(scores - scores.max()) if len(scores) else scores
                    on_probabilities(variant, dict(zip(query.names, (z / z.sum()).tolist(), strict=True)))
            state.observe(event)
            times.append(event.unix_time)
    return traces


def train_reference(train: Mapping[str, Sequence[Event]], val: Mapping[str, Sequence[Event]],
                    config: RankerConfig, variants: Sequence[str] = ("strict", "query-time"),
                    progress: Callable[[str], None] | None = None
                    ) -> tuple[dict[str, lightgbm.Booster], dict[str, Any]]:
    """Out-of-fold rows of every training user (training then validation events) and the fitted boosters."""
    say = progress or (lambda _: None)
    stats_of = fold_statistics(train, config.folds, config.seed)
    histories = {u: (list(train[u]) + list(val.get(u, [])), len(train[u])) for u in train}
    train_rows, val_rows = training_rows(histories, stats_of)
    say(f"lightgbm: {len(train_rows)} training and {len(val_rows)} validation groups "
        f"({sum(len(g) for g in train_rows.labels)} rows, {len(FIELDS)} features)")
    boosters = fit_variants(train_rows, val_rows, config, variants)
    info = {"training_groups": len(train_rows), "validation_groups": len(val_rows),
            "rounds": {v: int(b.best_iteration or b.current_iteration()) for v, b in boosters.items()},
            "feature_importance": {v: _importance(b) for v, b in boosters.items()}}
    return boosters, info


def _importance(booster: lightgbm.Booster, top: int = 12) -> dict[str, float]:
    gain = booster.feature_importance(importance_type="gain")
    total = float(gain.sum()) or 1.0
    order = np.argsort(-gain)[:top]
    return {FIELDS[i]: float(gain[i] / total) for i in order}
