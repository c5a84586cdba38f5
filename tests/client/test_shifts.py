"""ShiftDetector: the batched path equals the per-event path; bad settings are refused."""

from __future__ import annotations

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
