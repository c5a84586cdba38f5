"""Metrics of the evaluation protocol.

Next-interest ranking
    :func:`target_ranks` turns predictions and target sets into one rank per event: the best
    (smallest, 1-based) rank of **any** of the event's target categories, ``inf`` for a miss.
    Excluded categories (``other`` by default) are never a hit: they are removed from the
    targets, but a prediction of them still takes its slot in the ranking. On these ranks:
    :func:`hit_rate_at_k`, :func:`ndcg_at_k` (one relevant item at the best rank, so the ideal
    DCG is 1) and :func:`mrr`. :class:`RankingAccumulator` collects ranks event by event.

Interest intensity (binary, per category)
    :func:`accuracy`, :func:`precision`, :func:`recall`, :func:`f1` at a 0.5 threshold, and
    :func:`roc_auc` by the Mann-Whitney rank statistic with average ranks for ties (NaN when
    only one class is present). Multi-dimensional inputs are flattened (micro-averaged).
    :func:`best_f1_threshold` picks a decision threshold on held-out scores (the evaluation
    protocol tunes it on validation events and applies it to test events).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

import numpy as np
from vane.shared.events import OTHER

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)

Exclude = str | int | Iterable[str | int] | None


def _exclude_set(exclude: Exclude) -> set[Any]:
    if exclude is None:
        return set()
    if isinstance(exclude, (str, int, np.integer)):
        return {exclude}
    return set(exclude)


def _ranks_from_scores(scores: np.ndarray, targets: Any, excluded: set[Any]) -> np.ndarray:
    n, c = scores.shape
    mask = np.zeros((n, c), dtype=bool)
    if isinstance(targets, np.ndarray) and targets.dtype == bool:
        mask[:] = targets
    else:
        for row, target in enumerate(targets):
            idx = [target] if isinstance(target, (int, np.integer)) else list(target)
            mask[row, np.asarray(idx, dtype=int)] = True
    for index in excluded:
        if isinstance(index, (int, np.integer)):
            mask[:, int(index)] = False
    # A stable sort breaks ties by category index, so equal scores never all count as rank 1.
    order = np.argsort(-scores, axis=1, kind="stable")
    position = np.empty_like(order)
    position[np.arange(n)[:, None], order] = np.arange(1, c + 1)[None, :]
    ranks: np.ndarray = np.where(mask, position, np.iinfo(position.dtype).max).min(axis=1).astype(float)
    ranks[~mask.any(axis=1)] = np.inf
    return ranks


def _rank_in_list(ranked: Sequence[Any], target: Collection[Any], excluded: set[Any]) -> float:
    wanted = {t for t in target if t not in excluded}
    for position, label in enumerate(ranked, start=1):
        if label in wanted:
            return float(position)
    return float("inf")


def target_ranks(predictions: Any, targets: Iterable[Any], exclude: Exclude = OTHER) -> np.ndarray:
    """The best 1-based rank of any target per event; ``inf`` when no target is ranked.

    Parameters
    ----------
    predictions : ndarray of shape (N, C) or sequence of ranked sequences
        Either scores per category index (higher is better; ties go to the lower index), or
        for each event the predicted categories best first (names or indices).
    targets : iterable
        For each event its target categories: a collection of names/indices, one index, or a
        boolean ``(N, C)`` mask when ``predictions`` are scores.
    exclude : str, int, iterable or None, default ``"other"``
        Categories that are never a hit (indices when ``predictions`` are scores).

    Returns
    -------
    ndarray of float, shape (N,)
    """
    excluded = _exclude_set(exclude)
    if isinstance(predictions, np.ndarray) and predictions.ndim == 2:
        return _ranks_from_scores(predictions.astype(float), targets, excluded)
    out = []
    for ranked, target in zip(predictions, targets, strict=True):
        if isinstance(target, (str, int, np.integer)):
            target = [target]
        out.append(_rank_in_list(ranked, target, excluded))
    return np.asarray(out, dtype=float)


def hit_rate_from_ranks(ranks: np.ndarray, k: int) -> float:
    ranks = np.asarray(ranks, dtype=float)
    return float(np.mean(ranks <= k)) if ranks.size else float("nan")


def ndcg_from_ranks(ranks: np.ndarray, k: int) -> float:
    ranks = np.asarray(ranks, dtype=float)
    if not ranks.size:
        return float("nan")
    gains = np.zeros_like(ranks)
    hit = ranks <= k
    gains[hit] = 1.0 / np.log2(ranks[hit] + 1.0)
    return float(gains.mean())


def mrr_from_ranks(ranks: np.ndarray) -> float:
    ranks = np.asarray(ranks, dtype=float)
    return float(np.mean(1.0 / ranks)) if ranks.size else float("nan")


def hit_rate_at_k(predictions: Any, targets: Iterable[Any], k: int = 10, exclude: Exclude = OTHER) -> float:
    """Fraction of events with any target in the top ``k``; see :func:`target_ranks` for the inputs."""
    return hit_rate_from_ranks(target_ranks(predictions, targets, exclude), k)


def ndcg_at_k(predictions: Any, targets: Iterable[Any], k: int = 10, exclude: Exclude = OTHER) -> float:
    """Mean ``1 / log2(1 + rank)`` of the best-ranked target when it is in the top ``k``, else 0."""
    return ndcg_from_ranks(target_ranks(predictions, targets, exclude), k)


def mrr(predictions: Any, targets: Iterable[Any], exclude: Exclude = OTHER) -> float:
    """Mean reciprocal rank of the best-ranked target (0 for a miss)."""
    return mrr_from_ranks(target_ranks(predictions, targets, exclude))


class RankingAccumulator:
    """Collects one rank per predicted event and summarises HR@1/5/10, NDCG@10 and MRR.

    Parameters
    ----------
    ks : tuple of int, default (1, 5, 10)
        Cut-offs for the hit rate.
    ndcg_k : int, default 10
        Cut-off for NDCG.
    exclude : str, int, iterable or None, default ``"other"``
        Passed to :func:`target_ranks` by :meth:`add_ranked` and :meth:`add_scores`.
    """

    def __init__(self, ks: tuple[int, ...] = DEFAULT_KS, ndcg_k: int = 10, exclude: Exclude = OTHER) -> None:
        self.ks = ks
        self.ndcg_k = ndcg_k
        self.exclude = exclude
        self._ranks: list[float] = []

    def __len__(self) -> int:
        return len(self._ranks)

    def add_rank(self, rank: float) -> None:
        """Record an already computed 1-based rank (``inf`` for a miss)."""
        self._ranks.append(float(rank))

    def add_ranked(self, ranked: Sequence[Any], targets: Collection[Any]) -> float:
        """Record the rank of ``targets`` in one ranked prediction list; returns it."""
        rank = _rank_in_list(ranked, targets, _exclude_set(self.exclude))
        self._ranks.append(rank)
        return rank

    def add_scores(self, scores: np.ndarray, targets: Iterable[Any]) -> np.ndarray:
        """Record the ranks of a batch of ``(N, C)`` scores; returns them."""
        ranks = target_ranks(np.atleast_2d(scores), targets, self.exclude)
        self._ranks.extend(ranks.tolist())
        return ranks

    def merge(self, other: RankingAccumulator) -> None:
        self._ranks.extend(other._ranks)

    @property
    def ranks(self) -> np.ndarray:
        return np.asarray(self._ranks, dtype=float)

    def result(self) -> dict[str, float]:
        """``{"hr@1", "hr@5", "hr@10", "ndcg@10", "mrr", "count"}`` (NaN metrics when empty)."""
        ranks = self.ranks
        out = {f"hr@{k}": hit_rate_from_ranks(ranks, k) for k in self.ks}
        out[f"ndcg@{self.ndcg_k}"] = ndcg_from_ranks(ranks, self.ndcg_k)
        out["mrr"] = mrr_from_ranks(ranks)
        out["count"] = float(ranks.size)
        return out


def _binary(y_true: Any, y_score: Any, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(y_true).ravel().astype(bool)
    predicted = np.asarray(y_score, dtype=float).ravel() >= threshold
    if truth.shape != predicted.shape:
        raise ValueError(f"y_true has {truth.size} values but y_score has {predicted.size}")
    return truth, predicted


def accuracy(y_true: Any, y_score: Any, threshold: float = 0.5) -> float:
    """Fraction of correct binary decisions, predicting positive when ``score >= threshold``."""
    truth, predicted = _binary(y_true, y_score, threshold)
    return float(np.mean(truth == predicted)) if truth.size else float("nan")


def precision(y_true: Any, y_score: Any, threshold: float = 0.5) -> float:
    """TP / (TP + FP); 0 when nothing is predicted positive."""
    truth, predicted = _binary(y_true, y_score, threshold)
    positives = int(predicted.sum())
    return float((truth & predicted).sum() / positives) if positives else 0.0


def recall(y_true: Any, y_score: Any, threshold: float = 0.5) -> float:
    """TP / (TP + FN); 0 when there is no positive."""
    truth, predicted = _binary(y_true, y_score, threshold)
    actual = int(truth.sum())
    return float((truth & predicted).sum() / actual) if actual else 0.0


def f1(y_true: Any, y_score: Any, threshold: float = 0.5) -> float:
    """Harmonic mean of precision and recall, 2TP / (2TP + FP + FN); 0 when undefined."""
    truth, predicted = _binary(y_true, y_score, threshold)
    tp = int((truth & predicted).sum())
    denominator = 2 * tp + int((~truth & predicted).sum()) + int((truth & ~predicted).sum())
    return float(2 * tp / denominator) if denominator else 0.0


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], values.size] - 1
    mean_rank = (first + last) / 2.0 + 1.0
    ranks = np.empty(values.size, dtype=float)
    ranks[order] = mean_rank[group]
    return ranks


def roc_auc(y_true: Any, y_score: Any) -> float:
    """Area under the ROC curve by the Mann-Whitney U statistic; tied scores count one half.

    Returns NaN when only one class is present.
    """
    truth = np.asarray(y_true).ravel().astype(bool)
    scores = np.asarray(y_score, dtype=float).ravel()
    n_pos = int(truth.sum())
    n_neg = truth.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    u = ranks[truth].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def best_f1_threshold(y_true: Any, y_score: Any) -> float:
    """The threshold ``t`` maximising F1 of ``score >= t`` (the smallest such score; 0.5 without positives).

    Every distinct score is a candidate, so the result is exact, not a grid search.
    """
    truth = np.asarray(y_true).ravel().astype(bool)
    scores = np.asarray(y_score, dtype=float).ravel()
    if truth.shape != scores.shape:
        raise ValueError(f"y_true has {truth.size} values but y_score has {scores.size}")
    n_pos = int(truth.sum())
    if n_pos == 0:
        return 0.5
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], truth[order]
    tp = np.cumsum(t)
    predicted = np.arange(1, s.size + 1)
    # only the last index of each run of equal scores is a realisable cut
    last = np.r_[s[1:] != s[:-1], True]
    f1_at = np.where(last, 2 * tp / (predicted + n_pos), -1.0)
    return float(s[int(np.argmax(f1_at))])


def classification_report(y_true: Any, y_score: Any, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and ROC-AUC in one dict."""
    return {
        "accuracy": accuracy(y_true, y_score, threshold),
        "precision": precision(y_true, y_score, threshold),
        "recall": recall(y_true, y_score, threshold),
        "f1": f1(y_true, y_score, threshold),
        "roc_auc": roc_auc(y_true, y_score),
    }
