"""The central LightGBM reference: out-of-fold statistics, the full ranking, slices and the bootstrap."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from vane.shared.events import Event
from vane.shared.population import PopulationStats
from vane.simulations.baselines import BASELINES, evaluate_next_category
from vane.simulations.candidates import sample_candidates
from vane.simulations.evaluate_baselines import baseline_trace
from vane.simulations.evaluate_ranker import evaluate_reference, evaluation_sequences, new_user_split
from vane.simulations.evaluate_slices import (
    EventInfo,
    EventTrace,
    bootstrap_ratio,
    bucket_ratios,
    explore_rank,
    slice_metrics,
)
from vane.simulations.ranker_reference import RankerConfig, fold_statistics, full_rank
from vane.simulations.split import temporal_split

pytest.importorskip("lightgbm")


def _event(cat: str, t: float, item: str = "i") -> Event:
    return Event(item, (cat,), datetime.fromtimestamp(1_700_000_000 + t, tz=UTC), "view", None)


def _alternating_users(n: int, length: int = 40) -> dict[str, list[Event]]:
    """Each user alternates between two own categories: repeat-last is always wrong, transitions always right."""
    return {f"u{u}": [_event(f"c{u % 7}" if t % 2 else f"d{u % 5}", 60.0 * t, f"i{t}") for t in range(length)]
            for u in range(n)}


def test_out_of_fold_statistics_never_hold_the_persons_own_events():
    users = {f"u{i}": [_event(f"own{i}", 0), _event("shared", 1)] for i in range(10)}

    stats_of = fold_statistics(users, folds=5, seed=0)

    for uid, stats in stats_of.items():
        assert f"own{uid[1:]}" not in stats.popularity
        assert stats.popularity["shared"] == 8.0  # the other 4 folds' 8 users


def test_full_rank_puts_candidates_by_score_then_the_rest_by_popularity():
    stats = PopulationStats.from_counts({"a": 5.0, "b": 4.0, "c": 3.0, "d": 2.0, "e": 1.0}, {})
    names, scores = ["c", "a"], np.array([0.2, 0.9])

    assert full_rank(names, scores, ["c"], stats) == 2.0
    assert full_rank(names, scores, ["b"], stats) == 3.0  # after both candidates, first of the rest
    assert full_rank(names, scores, ["e"], stats) == 5.0
    assert full_rank(names, scores, ["zzz"], stats) == float("inf")
    # explore: "a" was seen (masked out) and "b" is a seen non-candidate, so "d" comes right after "c"
    assert full_rank(names, scores, ["d"], stats, np.array([False, True]), np.array([1])) == 2.0


def test_explore_rank_skips_seen_entries():
    scores = np.array([0.9, 0.5, 0.5, 0.1])

    assert explore_rank(scores, [2], np.array([True, False, False, False])) == 2.0
    assert explore_rank(scores, [2], np.array([True, True, False, False])) == 1.0
    assert explore_rank(scores, [0], np.array([True, False, False, False])) == float("inf")


def test_event_info_types_and_slices():
    before = [_event("a", 0), _event("b", 1)]
    scored = [_event("b", 2), _event("a", 3), _event("z", 4), _event("z", 5)]

    info = EventInfo.of([(before, scored)])
    result = slice_metrics(EventTrace([1.0, 2.0, 9.0, 1.0], [np.nan, np.nan, 3.0, np.nan]), info)

    assert info.kind.tolist() == ["repeat", "switch-to-seen", "new", "repeat"]
    assert info.prior.tolist() == [2, 3, 4, 5]
    assert result["types"]["repeat"]["hr@1"] == 1.0 and result["types"]["repeat"]["count"] == 2
    assert result["buckets"]["1-5"]["count"] == 4
    assert result["explore"] == {"hr@5": 1.0, "hr@1": 0.0, "count": 1.0}


def test_bootstrap_ratio_of_a_method_with_itself_is_exactly_one():
    ranks = np.array([1.0, 2.0, 1.0, np.inf, 1.0])
    users = np.array([0, 0, 1, 2, 2])

    assert bootstrap_ratio(ranks, ranks, users) == {"ratio": 1.0, "low": 1.0, "high": 1.0}
    better = bootstrap_ratio(np.ones(5), ranks, users, resamples=200)
    assert better["ratio"] == pytest.approx(5 / 3) and better["low"] <= better["ratio"] <= better["high"]


def test_baseline_trace_ranks_equal_the_protocols():
    split = temporal_split(_alternating_users(6) | {"x": [_event("c1", 60.0 * t) for t in range(30)]})
    for name in ("repeat-last", "decayed-frequency+markov"):
        predictor = BASELINES[name]()
        predictor.fit(split.train)

        trace = baseline_trace(predictor, evaluation_sequences(split))

        assert np.mean(np.asarray(trace.ranks) <= 1) == evaluate_next_category(BASELINES[name], split)["hr@1"]


def test_the_reference_learns_what_repeat_last_cannot():
    split = temporal_split(_alternating_users(30))

    methods, traces = evaluate_reference(split, ["lightgbm-strict", "lightgbm-query-time"],
                                         sample_candidates(split, 0), RankerConfig(rounds=60))

    assert evaluate_next_category(BASELINES["repeat-last"], split)["hr@1"] == 0.0
    assert methods["lightgbm-strict"]["hr@1"] > 0.9
    assert methods["lightgbm-query-time"]["hr@1"] > 0.9
    assert len(traces["lightgbm-strict"].ranks) == sum(len(split.test[u]) for u in split.evaluated_users)


def test_new_users_are_out_of_every_training_input():
    split = temporal_split(_alternating_users(20))

    held, train, val = new_user_split(split, 0.2, seed=0)

    assert len(held) == 4
    assert not set(held) & set(train) and not set(held) & set(val)


def test_the_same_seed_gives_the_same_ranks():
    split = temporal_split(_alternating_users(12) | {"x": [_event(f"c{t % 3}", 60.0 * t) for t in range(30)]})
    config = RankerConfig(rounds=20)
    candidates = sample_candidates(split, 0)

    first = evaluate_reference(split, ["lightgbm-query-time"], candidates, config)[1]["lightgbm-query-time"]
    second = evaluate_reference(split, ["lightgbm-query-time"], candidates, config)[1]["lightgbm-query-time"]

    assert first.ranks == second.ranks


def test_bucket_ratios_compare_with_the_best_baseline_of_each_bucket():
    before = [_event("a", 0)]
    scored = [_event("a", t) for t in range(1, 9)]
    info = EventInfo.of([(before, scored), (before, scored)])
    good = EventTrace([1.0] * 16)
    bad = EventTrace([1.0 if info.prior[i] <= 5 else 2.0 for i in range(16)])
    worse = EventTrace([2.0 if info.prior[i] <= 5 else 1.0 for i in range(16)])

    result = bucket_ratios({"b1": bad, "b2": worse, "m": good}, info, ["b1", "b2"])

    assert result["1-5"]["best_baseline"] == "b1" and result["6-20"]["best_baseline"] == "b2"
    assert result["1-5"]["hr@1"]["m"]["ratio"] == 1.0 == result["6-20"]["hr@1"]["m"]["ratio"]
    assert "21-50" not in result


def test_a_strict_gap_query_is_asked_a_median_gap_after_the_last_event_and_knows_nothing_later():
    from vane.shared.candidates import COLUMN
    from vane.simulations.ranker_reference import score_sequences

    asked: dict[str, list[float]] = {"strict": [], "query-time": []}

    class Recorder:
        """Scores nothing; notes the 'seconds since the last event' each variant was asked with."""

        def __init__(self, variant: str) -> None:
            self.variant = variant

        def predict(self, features: np.ndarray, num_threads: int = 1) -> np.ndarray:
            asked[self.variant].append(float(np.expm1(features[0, COLUMN["log_seconds_since_last_event"]])))
            return np.zeros(len(features))

    # gaps of 10, 10, 30, 10 s before the scored events; the scored ones arrive 500 s and 7 s later
    times = [0.0, 10.0, 20.0, 50.0, 60.0, 560.0, 567.0]
    events = [_event(f"c{i % 2}", t, f"i{i}") for i, t in enumerate(times)]
    stats = PopulationStats.from_counts({"c0": 3.0, "c1": 3.0}, {})
    for strict_gap, first_gap in ((True, 10.0), (False, 0.0)):
        for values in asked.values():
            values.clear()
        score_sequences({v: Recorder(v) for v in asked}, stats, [(events[:5], events[5:])], strict_gap=strict_gap)
        assert asked["query-time"] == pytest.approx([500.0, 7.0], rel=1e-4)
        # median of 10, 10, 30, 10 = 10; then of 10, 10, 30, 10, 500 = 10 (the 500 s gap is now past)
        assert asked["strict"] == pytest.approx([first_gap, first_gap], rel=1e-4, abs=1e-6)


def test_the_within_bucket_table_lists_every_method_that_is_not_a_baseline():
    from vane.simulations.report_slices import bucket_ratio_table

    before = [_event("a", 0)]
    scored = [_event("a", t) for t in range(1, 9)]
    info = EventInfo.of([(before, scored)])
    traces = {"repeat-last": EventTrace([1.0, 2.0] * 4), "markov": EventTrace([2.0] * 8),
              "federated-ranker": EventTrace([1.0] * 8), "lightgbm-strict": EventTrace([1.0] * 4 + [2.0] * 4)}
    section = {"bucket_ratios": bucket_ratios(traces, info, ["repeat-last", "markov"])}

    lines = bucket_ratio_table(section)

    assert lines[2] == "| bucket | best baseline | federated-ranker | lightgbm-strict |"
    assert lines[4].startswith("| 1-5 | repeat-last | ×1.667") and lines[5].startswith("| 6-20 | repeat-last | ×3.000")
    only_baselines = {"bucket_ratios": bucket_ratios({"repeat-last": traces["repeat-last"]}, info, ["repeat-last"])}
    assert bucket_ratio_table(only_baselines) == []
