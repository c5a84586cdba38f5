"""What one evaluated method predicted for every test event, and the metrics it earns.

A :class:`MethodCollector` gathers, for one method:

- the rank of each test event's true category (next interest: HR@1/5/10, NDCG@10, MRR);
- the next-window intensity, true and predicted, on test events and on validation events (the latter only
  choose the decision threshold, the one maximising F1);
- the rank of each true item among its sampled candidates (item HR@10, NDCG@10).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from vane.shared.events import Event
from vane.shared.features import Featurizer
from vane.shared.metrics import (
    RankingAccumulator,
    best_f1_threshold,
    classification_report,
    hit_rate_from_ranks,
    ndcg_from_ranks,
)

CATEGORY_METRICS = ("hr@1", "hr@5", "hr@10", "ndcg@10", "mrr")
INTENSITY_METRICS = ("accuracy", "recall", "f1", "roc_auc")
ITEM_METRICS = ("item_hr@10", "item_ndcg@10")
ALL_METRICS = CATEGORY_METRICS + INTENSITY_METRICS + ITEM_METRICS


class MethodCollector:
    """Collects what one method predicts for every test event."""

    def __init__(self) -> None:
        self.ranking = RankingAccumulator()
        self.item_ranks: list[float] = []
        self.intensity_true: list[np.ndarray] = []
        self.intensity_score: list[np.ndarray] = []
        # intensity on validation events, only to choose the decision threshold applied to test events
        self.val_true: list[np.ndarray] = []
        self.val_score: list[np.ndarray] = []

    def result(self) -> dict[str, float]:
        """The method's metrics: the ranking metrics, intensity metrics (with their threshold), item metrics."""
        out = {k: v for k, v in self.ranking.result().items()}
        if self.intensity_true:
            threshold = best_f1_threshold(np.stack(self.val_true), np.stack(self.val_score)) if self.val_true else 0.5
            report = classification_report(np.stack(self.intensity_true), np.stack(self.intensity_score), threshold)
            out.update({k: report[k] for k in INTENSITY_METRICS})
            out["intensity_threshold"] = threshold
        ranks = np.asarray(self.item_ranks)
        out["item_hr@10"] = hit_rate_from_ranks(ranks, 10)
        out["item_ndcg@10"] = ndcg_from_ranks(ranks, 10)
        return out


def intensity_targets(featurizer: Featurizer, events: Sequence[Event]) -> np.ndarray:
    """The true next-window intensity after each of ``events`` (row ``j``: the window after event ``j``)."""
    _, intensity, _ = featurizer.targets(events)
    return intensity
