"""Next-category baselines on hand-made sequences, and their numbers on the real datasets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from vane.shared.events import Event
from vane.simulations.baselines import (
    BASELINES,
    DecayedFrequency,
    DecayedFrequencyMarkov,
    GlobalPopularity,
    MarkovChain,
    RepeatLast,
    evaluate_baselines,
    evaluate_next_category,
)
from vane.simulations.datasets import MOVIELENS_DIR, TAOBAO_PATH, load_movielens, load_taobao
from vane.simulations.split import temporal_split

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _events(categories: str) -> list[Event]:
    """One event per letter, a minute apart."""
    return [Event.create(f"i{i}", [c], T0 + timedelta(minutes=i)) for i, c in enumerate(categories)]


TRAIN = {"u1": _events("abcabcabcabc"), "u2": _events("aaab")}


def _replay(predictor, categories: str):
    predictor.fit(TRAIN)
    predictor.reset()
    for event in _events(categories):
        predictor.observe(event)
    return predictor.ranked()


def test_popularity_ranks_by_training_counts():
    assert _replay(GlobalPopularity(), "ccc") == ["a", "b", "c"]


def test_decayed_frequency_prefers_recent_categories():
    # b is more frequent overall, but c was seen more recently under a short half-life.
    assert _replay(DecayedFrequency(half_life_events=1.0), "bbbc")[0] == "c"
    assert _replay(DecayedFrequency(half_life_events=None), "bbbc")[0] == "b"


def test_decayed_frequency_time_based_half_life_decays_by_elapsed_time():
    predictor = DecayedFrequency(half_life_events=None, half_life_s=60.0)
    predictor.fit(TRAIN)
    predictor.observe(Event.create("x", ["b"], T0))
    predictor.observe(Event.create("y", ["c"], T0 + timedelta(minutes=2)))

    u = predictor.interest

    assert u[predictor.vocab.index("b")] == pytest.approx(0.25 / 1.25)


def test_repeat_last_puts_last_category_first_then_frequency():
    assert _replay(RepeatLast(), "bbbbc")[:2] == ["c", "b"]


def test_markov_follows_learned_transitions():
    # training says a -> b -> c -> a
    assert _replay(MarkovChain(), "a")[0] == "b"
    assert _replay(MarkovChain(), "b")[0] == "c"


def test_markov_user_counts_override_global_transitions():
    # this user always goes a -> c
    assert _replay(MarkovChain(beta=1.0), "acacacaca")[0] == "c"


def test_markov_backs_off_to_popularity_for_unseen_state():
    assert _replay(MarkovChain(), "z")[:3] == ["a", "b", "c"]


def test_markov_probabilities_sum_to_one():
    predictor = MarkovChain()
    _replay(predictor, "abca")

    assert predictor.transition_probabilities().sum() == pytest.approx(1.0)


def test_mix_interpolates_frequency_and_markov():
    pure_frequency = _replay(DecayedFrequencyMarkov(weight=1.0, half_life_events=None), "bbbbc")
    pure_markov = _replay(DecayedFrequencyMarkov(weight=0.0), "bbbbc")

    assert pure_frequency[0] == "b"
    assert pure_markov[0] == "a"


def test_online_protocol_predicts_each_test_event_before_observing_it():
    users = {"u": _events("ababababab")}
    split = temporal_split(users, test_frac=0.2, val_frac=0.0, min_train=2)

    result = evaluate_next_category(RepeatLast, split)

    # the last category never repeats, so repeat-last always ranks the target second
    assert result["count"] == 2 and result["hr@1"] == 0.0 and result["mrr"] == pytest.approx(0.5)
    assert evaluate_next_category(MarkovChain, split)["hr@1"] == 1.0


def test_unseen_test_category_is_a_miss():
    split = temporal_split({"u": _events("aaaaaaaaaz")}, test_frac=0.1, val_frac=0.0, min_train=2)

    assert evaluate_next_category(GlobalPopularity, split)["hr@10"] == 0.0


def _report(name, dataset):
    split = temporal_split(dataset.users, test_frac=0.1, val_frac=0.1)
    results = evaluate_baselines(split)
    print(f"\n{name}: {split.stats()}")
    for baseline, r in results.items():
        print(
            f"  {baseline:26s} HR@1={r['hr@1']:.3f} HR@5={r['hr@5']:.3f} HR@10={r['hr@10']:.3f} "
            f"NDCG@10={r['ndcg@10']:.3f} MRR={r['mrr']:.3f} n={r['count']:.0f}"
        )
    assert set(results) == set(BASELINES)
    assert all(np.isfinite(r["mrr"]) for r in results.values())


@pytest.mark.skipif(not TAOBAO_PATH.is_file(), reason="Taobao dataset not present")
def test_report_baselines_on_taobao():
    _report("taobao", load_taobao())


@pytest.mark.skipif(not (MOVIELENS_DIR / "ratings.csv").is_file(), reason="MovieLens not present")
def test_report_baselines_on_movielens():
    _report("movielens", load_movielens())
