"""The non-neural baselines on the evaluation's three tasks (next interest, intensity, sampled next item).

The baselines of :mod:`vane.simulations.baselines` rank category names and have no intensity head: their
next-window intensity is *derived* from their normalised scores, ``1 - (1 - p)^H`` per taxonomy entry (a
reference, not a model of its own).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from vane.shared.events import OTHER, Event
from vane.shared.features import Featurizer
from vane.shared.taxonomy import Taxonomy
from vane.simulations.baselines import OnlinePredictor, best_rank
from vane.simulations.candidates import ItemCandidates, sampled_item_rank
from vane.simulations.collector import MethodCollector, intensity_targets
from vane.simulations.evaluate_slices import EventTrace, explore_rank
from vane.simulations.split import Split


def evaluate_baseline(
    factory: Callable[[], OnlinePredictor], split: Split, featurizer: Featurizer, candidates: ItemCandidates
) -> dict[str, float]:
    """Online evaluation of one baseline on all three tasks (intensity derived from its scores).

    Parameters
    ----------
    factory : callable
        Builds the (unfitted) predictor; it is fitted on ``split.train``.
    split : Split
    featurizer : Featurizer
        Gives the taxonomy, the intensity horizon and the true intensity targets.
    candidates : ItemCandidates
        The sampled next-item candidates, in evaluation order.

    Returns
    -------
    dict
        The metrics of :class:`~vane.simulations.collector.MethodCollector`.
    """
    predictor = factory()
    predictor.fit(split.train)
    taxonomy = featurizer.taxonomy
    horizon = featurizer.spec.intensity_horizon
    collector = MethodCollector()
    tax_of: list[int] = []
    row = 0
    for uid in split.evaluated_users:
        predictor.reset()
        history, test = split.history(uid), split.test[uid]
        truth = intensity_targets(featurizer, history + test)
        n_train = len(split.train[uid])
        for j, ev in enumerate(history):
            if j >= n_train:
                collector.val_true.append(truth[j - 1])
                collector.val_score.append(_derived_intensity(predictor, predictor.scores(), tax_of, taxonomy, horizon))
            predictor.observe(ev)
        for j, ev in enumerate(test):
            scores = predictor.scores()
            targets = predictor.known_indices(c for c in ev.categories if c != OTHER)
            collector.ranking.add_rank(best_rank(scores, targets) if targets else float("inf"))
            total = float(scores.sum())
            probs = scores / total if total > 0 else scores
            collector.intensity_true.append(truth[len(history) + j - 1])
            collector.intensity_score.append(_derived_intensity(predictor, scores, tax_of, taxonomy, horizon))
            collector.item_ranks.append(sampled_item_rank(candidates.scores(row, _probability_of(predictor, probs))))
            row += 1
            predictor.observe(ev)
    return collector.result()


def baseline_trace(predictor: OnlinePredictor, sequences: Sequence[tuple[Sequence[Event], Sequence[Event]]]
                   ) -> EventTrace:
    """Online ranks of a fitted baseline on ``sequences`` (per user: events before, scored events).

    The same ranks as :func:`evaluate_baseline`'s on the test events, plus each explore rank: on events none
    of whose categories the person has seen, the target's rank among the categories the person has not seen.
    """
    trace = EventTrace()
    for before, scored in sequences:
        predictor.reset()
        seen: set[int] = set()
        for ev in before:
            predictor.observe(ev)
            seen.update(predictor.known_indices(ev.categories))
        for ev in scored:
            scores = predictor.scores()
            wanted = [c for c in ev.categories if c != OTHER]
            targets = predictor.known_indices(wanted)
            rank = best_rank(scores, targets) if targets else float("inf")
            explore = float("nan")
            if wanted and not any(predictor.index_of(c) in seen for c in wanted):
                mask = np.zeros(scores.shape[0], dtype=bool)
                mask[[i for i in seen if i < scores.shape[0]]] = True
                explore = explore_rank(scores, targets, mask)
            trace.add(rank, explore)
            predictor.observe(ev)
            seen.update(predictor.known_indices(ev.categories))
    return trace


def _probability_of(predictor: OnlinePredictor, probs: np.ndarray) -> Callable[[str], float]:
    """A category's normalised score; 0 when the predictor has not seen it (or it grew after ``probs``)."""

    def probability(name: str) -> float:
        i = predictor.index_of(name)
        return float(probs[i]) if 0 <= i < len(probs) else 0.0

    return probability


def _derived_intensity(predictor: OnlinePredictor, scores: np.ndarray, tax_of: list[int], taxonomy: Taxonomy,
                       horizon: int) -> np.ndarray:
    """A baseline's next-window intensity: ``1 - (1 - p)^H`` of its normalised ``scores`` per taxonomy entry."""
    total = float(scores.sum())
    probs = scores / total if total > 0 else scores
    while len(tax_of) < len(probs):
        tax_of.append(taxonomy.index(predictor.vocab[len(tax_of)]))
    p_tax = np.bincount(np.asarray(tax_of[: len(probs)], dtype=np.int64), weights=probs, minlength=len(taxonomy))
    return 1.0 - (1.0 - np.clip(p_tax, 0.0, 1.0)) ** horizon
