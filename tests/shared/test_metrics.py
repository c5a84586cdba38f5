"""Ranking and classification metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from vane.shared.metrics import (
    RankingAccumulator,
    accuracy,
    classification_report,
    f1,
    hit_rate_at_k,
    mrr,
    ndcg_at_k,
    precision,
    recall,
    roc_auc,
    target_ranks,
)

# Three events: targets ranked 1st, 3rd (best of two targets) and not at all.
RANKED = [["a", "b", "c"], ["b", "a", "c", "d"], ["a", "b"]]
TARGETS = [{"a"}, {"d", "c"}, {"z"}]


def test_target_ranks_take_best_target_and_inf_for_miss():
    assert target_ranks(RANKED, TARGETS).tolist() == [1.0, 3.0, math.inf]


def test_hit_rate_at_k():
    assert hit_rate_at_k(RANKED, TARGETS, k=1) == pytest.approx(1 / 3)
    assert hit_rate_at_k(RANKED, TARGETS, k=3) == pytest.approx(2 / 3)


def test_ndcg_at_k():
    assert ndcg_at_k(RANKED, TARGETS, k=10) == pytest.approx((1.0 + 1.0 / math.log2(4)) / 3)
    assert ndcg_at_k(RANKED, TARGETS, k=2) == pytest.approx(1 / 3)


def test_mrr():
    assert mrr(RANKED, TARGETS) == pytest.approx((1.0 + 1 / 3 + 0.0) / 3)


def test_other_is_never_a_hit_but_keeps_its_slot():
    ranks = target_ranks([["other", "x"], ["other", "x"]], [{"other"}, {"other", "x"}])

    assert ranks.tolist() == [math.inf, 2.0]


def test_scores_matrix_ranks_with_index_exclusion_and_stable_ties():
    scores = np.array([[0.1, 0.5, 0.3], [0.2, 0.2, 0.6], [0.9, 0.05, 0.05]])

    ranks = target_ranks(scores, [[2], [0, 1], 0], exclude=0)

    # row 1: tie between 0 and 1 goes to index 0, which is excluded; index 1 is third.
    assert ranks.tolist() == [2.0, 3.0, math.inf]


def test_scores_matrix_accepts_boolean_masks():
    scores = np.array([[0.1, 0.5, 0.3]])

    assert target_ranks(scores, np.array([[True, False, True]]), exclude=None).tolist() == [2.0]


def test_accumulator_summarises_ranks():
    acc = RankingAccumulator()
    for rank in (1, 2, 6, 11):
        acc.add_rank(rank)
    acc.add_ranked(["x", "y"], {"y"})

    result = acc.result()

    assert result["count"] == 5
    assert result["hr@1"] == pytest.approx(1 / 5)
    assert result["hr@5"] == pytest.approx(3 / 5)
    assert result["hr@10"] == pytest.approx(4 / 5)
    assert result["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 6 + 1 / 11 + 1 / 2) / 5)
    assert result["ndcg@10"] == pytest.approx((1 + 2 / math.log2(3) + 1 / math.log2(7)) / 5)


def test_empty_accumulator_gives_nan():
    assert math.isnan(RankingAccumulator().result()["mrr"])


def test_binary_metrics_at_half_threshold():
    y_true = [1, 1, 1, 0, 0, 0]
    y_score = [0.9, 0.6, 0.2, 0.7, 0.1, 0.5]  # TP=2, FN=1, FP=2 (0.7 and 0.5), TN=1

    assert accuracy(y_true, y_score) == pytest.approx(3 / 6)
    assert precision(y_true, y_score) == pytest.approx(2 / 4)
    assert recall(y_true, y_score) == pytest.approx(2 / 3)
    assert f1(y_true, y_score) == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))


def test_f1_is_zero_without_predicted_or_actual_positives():
    assert f1([0, 0], [0.1, 0.2]) == 0.0
    assert precision([1, 0], [0.1, 0.2]) == 0.0


def test_roc_auc_without_ties():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_roc_auc_counts_ties_as_half():
    # positive pairs: (0.5 vs 0.5) = 1/2, (0.5 vs 0.2) = 1, (0.9 vs 0.5) = 1, (0.9 vs 0.2) = 1
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx(3.5 / 4)
    assert roc_auc([1, 0, 1, 0], [0.3, 0.3, 0.3, 0.3]) == pytest.approx(0.5)


def test_roc_auc_is_nan_with_one_class():
    assert math.isnan(roc_auc([1, 1], [0.2, 0.9]))


def test_classification_metrics_flatten_matrices():
    y_true = np.array([[1, 0], [0, 1]])
    y_score = np.array([[0.8, 0.3], [0.6, 0.4]])

    report = classification_report(y_true, y_score)

    assert report["accuracy"] == pytest.approx(0.5)
    assert report["roc_auc"] == pytest.approx(roc_auc(y_true.ravel(), y_score.ravel()))


def test_best_f1_threshold_matches_a_hand_computed_case():
    from vane.shared.metrics import best_f1_threshold, f1

    y_true = [1, 0, 1, 1, 0, 0]
    y_score = [0.9, 0.8, 0.35, 0.3, 0.3, 0.1]
    # cuts: >=0.9 F1 2/4; >=0.8 2/5; >=0.35 4/6; >=0.3 (ties 0.3 together) 6/8=0.75; >=0.1 6/9
    assert best_f1_threshold(y_true, y_score) == pytest.approx(0.3)
    assert f1(y_true, y_score, 0.3) == pytest.approx(0.75)
    assert best_f1_threshold([0, 0], [0.2, 0.7]) == 0.5
    with pytest.raises(ValueError):
        best_f1_threshold([1, 0], [0.5])
