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


def test_one_blend_rule_the_device_and_the_compact_form_give_the_same_numbers():
    """``blend`` (the tracker's dicts) and ``BlendCase.blend`` (the evaluation's arrays) share one rule."""
    from vane.shared.blend import blend

    rng = np.random.default_rng(3)
    names = ["other", *[f"c{i}" for i in range(6)]]
    for _ in range(200):
        dists = [{} if rng.random() < 0.2 else
                 {str(c): float(rng.random()) for c in rng.choice(names, size=int(rng.integers(1, 5)), replace=False)}
                 for _ in MIX_FIELDS]
        weights = [0.0 if rng.random() < 0.3 else float(rng.random()) for _ in MIX_FIELDS]
        case = BlendCase.from_dicts(dists, ["c0"])
        device = blend(dists, weights)
        compact = dict(zip(case.keys, case.blend(weights).tolist(), strict=True))
        covered = {k for k, c in zip(case.keys, case.covered(weights), strict=True) if c}
        assert set(device) - {"other"} == covered
        assert all(device[k] == compact[k] for k in covered)  # exactly, not approximately


def test_the_tracker_predicts_through_the_one_blend(tmp_path):
    """``InterestTracker.predict`` is ``NextInterestPredictor.next_interest``, whose compact form ranks the same."""
    from datetime import UTC, datetime, timedelta

    from vane.client.predictor import Mix
    from vane.client.tracker import InterestTracker
    from vane.shared.events import Event

    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    events = [Event.create(item_id=f"i{t}", categories=["abcde"[(t * t) % 5]], timestamp=t0 + timedelta(minutes=t))
              for t in range(40)]
    mix = Mix(model=0.0, recent=0.3, profile=0.2, transitions=0.1, last=0.4)
    with InterestTracker.open(tmp_path / "s.store", key=b"k" * 32, mix=mix) as tracker:
        tracker.record_many(events)
        predicted = tracker.predict(k=10).next_interest
        case = tracker.predictor.blend_case(tracker.personal_state, None, ["b"])
    scores = case.blend(mix.weights())
    order = sorted(range(len(case.keys)), key=lambda i: (-scores[i], case.keys[i]))
    assert [(case.keys[i], float(scores[i])) for i in order] == list(predicted)
