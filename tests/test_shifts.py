"""ShiftDetector: the batched path equals the per-event path; bad settings are refused."""

from __future__ import annotations

import numpy as np
import pytest
from vane.client.shifts import ShiftDetector, js_divergence
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


def test_state_round_trips() -> None:
    events = stream(200, seed=2)
    a = ShiftDetector()
    for e in events[:120]:
        a.update(*e)
    b = ShiftDetector.from_dict(a.to_dict())
    for e in events[120:]:
        assert a.update(*e) == b.update(*e)


def test_js_divergence_bounds() -> None:
    assert js_divergence({"a": 1.0}, {"b": 1.0}) == pytest.approx(1.0)
    assert js_divergence({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0.0


@pytest.mark.parametrize("kwargs", [{"short_half_life": 50, "long_half_life": 10}, {"enter": 0.1, "exit": 0.2}])
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        ShiftDetector(**kwargs)  # type: ignore[arg-type]
