"""The history-ranker reference of ``vane.simulations.headroom``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from vane.shared.events import Event
from vane.simulations.headroom import pessimistic_ranks, run_headroom
from vane.simulations.split import temporal_split

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_ranks_are_pessimistic_on_ties_and_infinite_without_a_target():
    scores = np.array([[0.5, 0.5, 0.1], [0.9, 0.2, 0.0], [0.3, 0.2, 0.1]])
    mask = np.array([[1, 1, 1], [1, 1, 0], [1, 1, 1]], dtype=bool)
    target = np.array([[0, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=bool)
    assert pessimistic_ranks(scores, mask, target).tolist() == [2.0, 2.0, float("inf")]


def _users(pattern, n_users=12, length=60):
    rng = np.random.default_rng(0)
    users = {}
    for u in range(n_users):
        cats = [f"c{u}-{k}" for k in range(4)]
        users[f"u{u}"] = [
            Event.create(f"i{u}-{j}-{int(rng.integers(9))}", [pattern(cats, j, rng)], T0 + timedelta(minutes=5 * j))
            for j in range(length)
        ]
    return users


def test_the_ranker_learns_what_repeat_last_cannot():
    # every person alternates between two categories: repeat-last never hits, the 2nd-most-recent always does
    split = temporal_split(_users(lambda cats, j, rng: cats[j % 2]))
    result = run_headroom(split)
    assert result["repeat_last_same_harness"]["hr@1"] == 0.0
    assert result["history_ranker"]["hr@1"] == pytest.approx(1.0)
    assert result["new_category_share"] == 0.0
    assert result["weights"]["is_2nd"] > result["weights"]["is_last"]
    # the evaluation protocol's repeat-last agrees with this harness's
    assert result["baselines"]["repeat-last"]["hr@1"] == 0.0
    # so does a Markov chain, the best baseline here: the ratio compares against it
    assert result["best_baseline"] in ("markov", "decayed-frequency+markov")
    assert result["ratio"]["hr@1"] == pytest.approx(1.0)


def test_on_sticky_people_the_ranker_keeps_repeating_and_new_categories_are_counted_as_misses():
    def sticky(cats, j, rng):
        return f"fresh-{j}" if j % 10 == 9 else cats[(j // 20) % 4]

    split = temporal_split(_users(sticky))
    result = run_headroom(split)
    assert result["new_category_share"] > 0.05
    assert result["history_ranker"]["hr@1"] >= result["repeat_last_same_harness"]["hr@1"] - 0.02
    assert result["history_ranker"]["hr@1"] <= 1.0 - result["new_category_share"] + 1e-9


def test_hindsight_ceiling_is_the_best_single_category_of_each_persons_test_events():
    from vane.simulations.headroom import hindsight_constant_hr1
    from vane.simulations.split import Split

    def ev(cats, minute):
        return Event.create(f"i{minute}", cats, T0 + timedelta(minutes=minute))

    history = [ev(["a"], m) for m in range(5)]
    split = Split(
        train={"u": history, "v": history, "w": history},
        val={"u": [], "v": [], "w": []},
        # u: a, a, b -> 2 of 3; v: {x, y}, {y}, {z} -> y in 2 of 3; w: no test events (not evaluated)
        test={"u": [ev(["a"], 10), ev(["a"], 11), ev(["b"], 12)],
              "v": [ev(["x", "y"], 10), ev(["y"], 11), ev(["z"], 12)], "w": []},
    )
    assert hindsight_constant_hr1(split) == pytest.approx(4 / 6)
