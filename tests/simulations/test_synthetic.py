"""The synthetic population: determinism, known truth, shifts and consistency."""

from __future__ import annotations

import numpy as np
import pytest
from vane.shared.errors import ConfigError
from vane.simulations.synthetic import SyntheticPopulation


@pytest.fixture(scope="module")
def population():
    return SyntheticPopulation(60, seed=7)


def test_same_seed_gives_same_population(population):
    again = SyntheticPopulation(60, seed=7)

    assert again.users == population.users
    assert all(np.array_equal(again.truth[u], population.truth[u]) for u in population.users)
    assert again.shifts == population.shifts


def test_different_seed_gives_different_events(population):
    other = SyntheticPopulation(60, seed=8)

    assert other.users["u0000"] != population.users["u0000"]


def test_user_data_does_not_depend_on_population_size(population):
    small = SyntheticPopulation(3, seed=7)

    assert small.users["u0002"] == population.users["u0002"]


def test_truth_rows_are_distributions_one_per_event(population):
    for uid, events in population.users.items():
        truth = population.truth[uid]
        assert truth.shape == (len(events), len(population.categories))
        assert np.allclose(truth.sum(axis=1), 1.0)
        assert (truth >= 0).all()


def test_event_counts_timestamps_and_ids(population):
    for events in population.users.values():
        assert 150 <= len(events) <= 300
        stamps = [e.timestamp for e in events]
        assert stamps == sorted(stamps)
    first = population.users["u0000"][0]
    assert first.item_id.startswith("c") and "-i" in first.item_id and first.title


def test_shifts_are_recorded_with_changed_dominant_categories(population):
    shifted = [u for u, s in population.shifts.items() if s]

    assert 0.25 * len(population.users) < len(shifted) < 0.75 * len(population.users)
    for uid in shifted:
        n = len(population.users[uid])
        assert 1 <= len(population.shifts[uid]) <= 2
        for shift in population.shift_details[uid]:
            assert 0 < shift.index < n
            assert shift.from_top != shift.to_top
            # the new dominant category jumps: its mass rises sharply at the shift
            j = population.category_index(shift.to_top[0])
            assert population.truth[uid][shift.index, j] > 2 * population.truth[uid][shift.index - 1, j]


def test_no_shifts_when_fraction_is_zero():
    population = SyntheticPopulation(10, shift_fraction=0.0)

    assert all(not s for s in population.shifts.values())


def test_category_frequencies_follow_the_truth(population):
    observed = np.zeros(len(population.categories))
    expected = np.zeros(len(population.categories))
    for uid, events in population.users.items():
        for event in events:
            observed[population.category_index(event.categories[0])] += 1
        expected += population.truth[uid].sum(axis=0)

    assert np.abs(observed / observed.sum() - expected / expected.sum()).max() < 0.02


def test_per_user_frequencies_follow_the_truth(population):
    uid = "u0000"
    events = population.users[uid]
    observed = np.bincount([population.category_index(e.categories[0]) for e in events], minlength=12)

    top_truth = np.argsort(-population.truth[uid].mean(axis=0))[:3]

    assert set(np.argsort(-observed)[:3]) & set(top_truth)


def test_kinds_are_mostly_views_and_clicks(population):
    kinds = [e.kind for events in population.users.values() for e in events]

    assert sum(k in ("view", "click") for k in kinds) / len(kinds) > 0.8
    assert {"cart", "purchase"} <= set(kinds)


def test_as_dataset_keeps_users_and_counts(population):
    dataset = population.as_dataset()

    assert dataset.name == "synthetic" and dataset.users is population.users
    assert dataset.stats["shifts"] == sum(len(s) for s in population.shifts.values())


def test_invalid_settings_raise_config_error():
    with pytest.raises(ConfigError, match="events_per_user"):
        SyntheticPopulation(5, events_per_user=(10, 5))
