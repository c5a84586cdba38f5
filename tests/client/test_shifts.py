"""ShiftDetector: the batched path equals the per-event path; bad settings are refused."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from vane.client.shifts import ShiftDetector
from vane.shared.divergence import js_divergence_of
from vane.shared.errors import ConfigError


def stream(n: int, seed: int) -> list[tuple[tuple[str, ...], int, float]]:
    rng = np.random.default_rng(seed)
    cats = ["a", "b", "c", "d", "e"]
    out = []
    for i in range(n):
        main = cats[(i // 150) % 5]
        cat = main if rng.random() < 0.7 else cats[int(rng.integers(5))]
        out.append(((cat,) if i % 7 else (cat, "z"), i, float(i)))
    return out


def test_update_many_matches_update_event_by_event() -> None:
    events = stream(900, seed=1)
    one = ShiftDetector()
    singles = [s for s in (one.update(*e) for e in events) if s]
    many = ShiftDetector()
    batched = many.update_many(events[:300]) + [s for s in (many.update(*e) for e in events[300:333]) if s]
    batched += many.update_many(events[333:])
    assert [s.event_index for s in singles] == [s.event_index for s in batched] and len(singles) >= 2
    assert singles == batched
    assert many.divergence == pytest.approx(one.divergence, abs=1e-12)
    assert many.current.keys() == one.current.keys()
    for cat, share in one.current.items():
        assert many.current[cat] == pytest.approx(share, abs=1e-9)


def test_current_jumps_to_the_new_mix_at_a_shift_and_otherwise_follows_the_long_memory() -> None:
    before = [(("a",), i, float(i)) for i in range(60)]
    after = [(("b",), 60 + i, 60.0 + i) for i in range(40)]
    det = ShiftDetector()
    shift_at = None
    for e in before + after:
        if det.update(*e) and shift_at is None:
            shift_at = det.seen
            # at the report, ``current`` is the short memory and already favours the new category
            assert det.current == pytest.approx(det.short)
            assert det.current["b"] > det.long["b"]
    assert shift_at is not None
    assert det.current["b"] > 0.9 > det.long["b"]
    calm = ShiftDetector()
    for e in before:
        calm.update(*e)
    assert calm.current == pytest.approx(calm.long)


def test_a_state_saved_before_current_existed_starts_current_from_the_long_memory() -> None:
    det = ShiftDetector()
    for e in stream(50, seed=3):
        det.update(*e)
    old = det.to_dict()
    del old["current_mass"]
    assert ShiftDetector.from_dict(old).current == pytest.approx(det.long)


def test_state_round_trips() -> None:
    events = stream(200, seed=2)
    a = ShiftDetector()
    for e in events[:120]:
        a.update(*e)
    b = ShiftDetector.from_dict(a.to_dict())
    for e in events[120:]:
        assert a.update(*e) == b.update(*e)
    assert a.current == b.current


def test_js_divergence_bounds() -> None:
    assert js_divergence_of({"a": 1.0}, {"b": 1.0}) == pytest.approx(1.0)
    assert js_divergence_of({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0.0


@pytest.mark.parametrize("kwargs", [{"short_half_life": 50, "long_half_life": 10}, {"enter": 0.1, "exit": 0.2}])
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        ShiftDetector(**kwargs)  # type: ignore[arg-type]


def soft(events: list[tuple[tuple[str, ...], int, float]], seed: int) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [list(rng.dirichlet(np.ones(len(cats)))) for cats, _, _ in events]


def test_weights_none_and_one_hot_weights_give_the_category_path() -> None:
    events = stream(700, seed=4)
    plain, none, onehot = ShiftDetector(), ShiftDetector(), ShiftDetector()
    everything = ("a", "b", "c", "d", "e", "z")
    for cats, seq, ts in events:
        a = plain.update(cats, seq, ts)
        b = none.update(cats, seq, ts, weights=None)
        # the event's single category as a one-hot vector over every category
        c = onehot.update(everything, seq, ts, weights=[1.0 if x == cats[0] else 0.0 for x in everything]
                          ) if len(cats) == 1 else onehot.update(cats, seq, ts)
        assert a == b == c
    assert plain.to_dict() == none.to_dict()
    assert len(plain.shifts) >= 1 and plain.divergence == pytest.approx(onehot.divergence, abs=1e-12)
    for cat, share in plain.current.items():
        assert onehot.current[cat] == pytest.approx(share, abs=1e-12)
    assert "cooldown" not in plain.to_dict()  # the default state format is unchanged


@pytest.mark.parametrize("settings", [{}, {"cooldown": 40, "measure": "tv", "enter": 0.3, "exit": 0.2}])
def test_update_many_with_weights_matches_an_update_loop(settings: dict[str, object]) -> None:
    events = stream(900, seed=5)
    weights: list[list[float] | None] = list(soft(events, seed=6))
    weights[10] = None
    one = ShiftDetector(**settings)
    singles = [s for s in (one.update(*e, weights=w) for e, w in zip(events, weights, strict=True)) if s]
    many = ShiftDetector(**settings)
    batched = many.update_many(events[:400], weights[:400]) + many.update_many(events[400:], weights[400:])
    assert singles == batched and len(singles) >= 2
    assert many.divergence == pytest.approx(one.divergence, abs=1e-9)
    for cat, share in one.current.items():
        assert many.current[cat] == pytest.approx(share, abs=1e-9)
    for cat, share in one.long.items():
        assert many.long[cat] == pytest.approx(share, abs=1e-9)


def test_cooldown_reseeds_the_long_memory_and_waits_and_round_trips() -> None:
    before = [(("a",), i, float(i)) for i in range(60)]
    after = [(("b",), 60 + i, 60.0 + i) for i in range(100)]
    det = ShiftDetector(cooldown=40, measure="tv", enter=0.3, exit=0.2)
    reports = []
    for e in before + after:
        if det.update(*e):
            reports.append(det.seen - 1)
            assert det.long == pytest.approx(det.short)  # re-seeded at the report
    assert reports and reports[0] >= 60
    assert all(b - a > 40 for a, b in itertools.pairwise(reports))
    state = det.to_dict()
    assert state["cooldown"] == 40 and state["measure"] == "tv"
    again = ShiftDetector.from_dict(state)
    assert again.to_dict() == state


@pytest.mark.parametrize("weights", [[0.5], [0.5, -0.1, 0.6], [0.0, 0.0, 0.0], [0.2, float("nan"), 0.8],
                                     [1.0, float("inf"), 0.0], ["x", 1, 1]])
def test_bad_weights_are_refused_and_leave_the_state_intact(weights: list[object]) -> None:
    det = ShiftDetector()
    for e in stream(50, seed=7):
        det.update(*e)
    saved = det.to_dict()
    with pytest.raises(ConfigError, match="weights"):
        det.update(("a", "b", "new"), 99, 99.0, weights=weights)
    assert det.to_dict() == saved
    events = [(("a", "b", "new"), 100 + i, 100.0 + i) for i in range(3)]
    with pytest.raises(ConfigError, match="weights"):
        det.update_many(events, [[1, 1, 1], [1, 1, 1], weights])
    with pytest.raises(ConfigError, match="weight rows"):
        det.update_many(events, [[1, 1, 1]])
    assert det.to_dict() == saved


def test_bad_cooldown_or_measure_is_refused() -> None:
    with pytest.raises(ConfigError, match="cooldown"):
        ShiftDetector(cooldown=-1)
    with pytest.raises(ConfigError, match="measure"):
        ShiftDetector(measure="kl")


def test_update_many_with_one_weight_matrix_over_shared_categories_matches_an_update_loop() -> None:
    rng = np.random.default_rng(8)
    names = ("a", "b", "c", "d")
    mains = np.repeat(np.arange(4), 120)
    weights = np.array([rng.dirichlet(np.where(np.arange(4) == m, 30.0, 1.0)) for m in mains]) * 3.0  # not summing to 1
    events = [(names, i, float(i)) for i in range(len(mains))]
    one = ShiftDetector()
    singles = [s for s in (one.update(*e, weights=list(w)) for e, w in zip(events, weights, strict=True)) if s]
    many = ShiftDetector()
    assert many.update_many(events, weights) == singles and len(singles) >= 2
    for cat, share in one.current.items():
        assert many.current[cat] == pytest.approx(share, abs=1e-9)
    bad = weights.copy()
    bad[300, 2] = -1.0
    with pytest.raises(ConfigError, match="weights"):
        ShiftDetector().update_many(events, bad)
