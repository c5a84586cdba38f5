"""The compact blend: vectorised ranks under many weightings, the grid, and choosing a candidate."""

from __future__ import annotations

import numpy as np
import pytest
from vane.shared.blend import MIX_FIELDS, BlendCase, best_candidate, grid_ranks, mix_grid, tune_mix


def _random_cases(n: int, seed: int = 0) -> list[BlendCase]:
    rng = np.random.default_rng(seed)
    names = [f"c{i}" for i in range(8)]
    cases = []
    for _ in range(n):
        dists = []
        for _ in MIX_FIELDS:
            if rng.random() < 0.2:
                dists.append({})  # an absent component (e.g. no model yet)
                continue
            chosen = rng.choice(names, size=int(rng.integers(1, 6)), replace=False)
            # coarse values so that ties happen and the name order has to break them
            dists.append({str(c): float(rng.integers(1, 4)) / 4 for c in chosen})
        cases.append(BlendCase.from_dicts(dists, [str(rng.choice(names))]))
    return cases


def test_grid_ranks_equal_ranking_each_blend_one_by_one():
    cases = _random_cases(60)
    grid = mix_grid(0.25)
    ranks = grid_ranks(cases, grid)
    assert ranks.shape == (len(grid), len(cases))
    expected = np.array([[c.rank(c.blend(w), c.covered(w)) for c in cases] for w in grid])
    assert np.array_equal(ranks, expected)
    assert np.isinf(ranks).any() and (ranks == 1).any() and (ranks > 1).any()  # misses, hits and others


def test_mix_grid_sizes_and_bad_steps():
    assert len(mix_grid(0.5)) == 15 and len(mix_grid(0.25)) == 70 and len(mix_grid(0.1)) == 1001
    assert all(abs(sum(w) - 1) < 1e-9 for w in mix_grid(0.25))
    for bad in (0.0, 0.3, 1.5, -0.25):
        with pytest.raises(ValueError, match="mix grid step"):
            mix_grid(bad)


def test_best_candidate_and_tune_mix_agree():
    assert best_candidate([0.2, 0.5, 0.5], [0.3, 0.4, 0.4]) == 1  # first of the tied best
    # A person who always returns to the last event's category: the "last" component alone wins.
    cases = [BlendCase.from_dicts([{}, {"a": 0.6, "b": 0.4}, {"a": 0.7, "b": 0.3}, {"a": 0.9, "b": 0.1},
                                   {"b": 1.0}], ["b"]) for _ in range(5)]
    mix, objective = tune_mix(cases, mix_grid(0.5))
    assert mix["last"] > 0.5 and objective == pytest.approx(1.0)
