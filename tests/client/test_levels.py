"""Answers at the top level of the Topics tree: interests, predictions and shifts rolled up, blocks kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from vane.client.levels import top_level
from vane.client.tracker import InterestTracker
from vane.shared import Event, Taxonomy
from vane.shared.errors import ConfigError
from vane.shared.topics import topics

T0 = datetime(2024, 3, 1, 8, tzinfo=UTC)
BASKETBALL, SOCCER, SPORTS = "/Sports/Basketball", "/Sports/Soccer", "/Sports"
POLITICS, NEWS, RECIPES = "/News/Politics", "/News/World News", "/Food & Drink/Cooking & Recipes"
#: Seven Topics paths: a taxonomy for the small (8-category) test model.
PATHS = [BASKETBALL, SOCCER, SPORTS, POLITICS, NEWS, RECIPES, "/Travel & Transportation"]


def events(plan: list[tuple[str, int]], start: int = 0) -> list[Event]:
    """``n`` events of each ``(category, n)`` in turn, nine minutes apart."""
    out = []
    for cat, n in plan:
        for _ in range(n):
            i = start + len(out)
            out.append(Event.create(item_id=f"item-{i}", categories=[cat], title=f"story {i}", kind="view",
                                    timestamp=T0 + timedelta(minutes=9 * i)))
    return out


def mixed(n: int, seed: int = 0) -> list[Event]:
    """Mostly sports (two kinds), some news (two kinds), a little cooking."""
    rng = np.random.default_rng(seed)
    cats = rng.choice([BASKETBALL, SOCCER, SPORTS, POLITICS, NEWS, RECIPES], p=[0.3, 0.2, 0.1, 0.2, 0.1, 0.1], size=n)
    return [Event.create(item_id=f"m-{i}", categories=[str(c)], title=f"story {i}", kind="view",
                         timestamp=T0 + timedelta(minutes=9 * i)) for i, c in enumerate(cats)]


def open_tracker(path: Path, blob: bytes | None = None, taxonomy: Taxonomy | None = None) -> InterestTracker:
    return InterestTracker.open(path, key_file=path.with_name(path.name + ".key"), model=blob, taxonomy=taxonomy)


def test_the_top_level_of_every_topics_path_is_the_trees_top_level_ancestor() -> None:
    tree = topics()
    assert len({top_level(t.path) for t in tree}) == 22
    for topic in tree:
        assert top_level(topic.path) == tree.top_level(topic.id).path
    assert top_level("news") == "news" and top_level("other") == "other"


def test_top_level_interests_are_the_sums_of_the_full_level_ones(tmp_path: Path) -> None:
    tracker = open_tracker(tmp_path / "s.db")
    tracker.record_many(mixed(200))
    full = {c.category: c for c in tracker.interests(100).top}
    top = tracker.interests(5, level="top")
    assert [c.category for c in top.top] == ["/Sports", "/News", "/Food & Drink"]
    for interest in top.top:
        members = [c for name, c in full.items() if top_level(name) == interest.category]
        assert interest.score == pytest.approx(sum(c.score for c in members))
        assert interest.profile_share == pytest.approx(sum(c.profile_share for c in members))
        assert interest.model_probability is None  # no model
        newest = sorted((b for c in members for b in c.because), key=lambda b: -b.timestamp)[:3]
        assert [b.item_id for b in interest.because] == [b.item_id for b in newest]
    assert sum(c.score for c in top.top) == pytest.approx(sum(c.score for c in full.values()))
    # The default is today's answer; k cuts the rolled-up list.
    assert tracker.interests(3) == tracker.interests(3, level="full")
    assert [c.category for c in tracker.interests(1, level="top").top] == ["/Sports"]
    prediction = tracker.predict(100)
    rolled = tracker.predict(5, level="top")
    assert rolled.source == prediction.source == "profile"
    assert dict(rolled.next_interest)["/Sports"] == pytest.approx(
        sum(p for c, p in prediction.next_interest if c.startswith("/Sports")))
    assert sum(p for _, p in rolled.next_interest) == pytest.approx(sum(p for _, p in prediction.next_interest))
    tracker.close()


def test_blocked_topics_are_left_out_before_the_roll_up(tmp_path: Path) -> None:
    tracker = open_tracker(tmp_path / "s.db")
    tracker.record_many(mixed(200))
    full = {c.category: c.score for c in tracker.interests(100).top}
    tracker.block(BASKETBALL)
    sports = {c.category: c.score for c in tracker.interests(5, level="top").top}["/Sports"]
    assert sports == pytest.approx(full[SOCCER] + full[SPORTS])  # basketball adds nothing to its parent
    assert "/Sports" in dict(tracker.predict(5, level="top").next_interest)
    tracker.block("/Sports")
    assert "/Sports" not in [c.category for c in tracker.interests(5, level="top").top]
    assert "/Sports" not in dict(tracker.predict(5, level="top").next_interest)
    assert [c.category for c in tracker.interests(5, level="top").top] == ["/News", "/Food & Drink"]
    tracker.close()


def test_top_level_shifts_ignore_a_change_inside_one_top_level_topic(tmp_path: Path) -> None:
    store = tmp_path / "s.db"
    tracker = open_tracker(store)
    tracker.record_many(events([(BASKETBALL, 60), (SOCCER, 60)]))
    full = tracker.shifts()
    assert len(full) == 1 and full[0].from_categories[0] == BASKETBALL and full[0].to_categories[0] == SOCCER
    assert tracker.shifts(level="top") == []  # still sports
    tracker.record_many(events([(POLITICS, 60)], start=120))
    top = tracker.shifts(level="top")
    assert len(top) == 1 and top[0].from_categories[0] == "/Sports" and top[0].to_categories[0] == "/News"
    assert set(top[0].from_categories + top[0].to_categories) == {"/Sports", "/News"}
    assert 120 < top[0].seq <= 180 and top[0].event_index == top[0].seq - 1
    # Forgetting the news events takes the top-level shift with them (the cache follows the store).
    assert tracker.forget_topic("/News") == 60
    assert tracker.shifts(level="top") == []
    tracker.close()
    tracker = open_tracker(store)
    assert tracker.shifts(level="top") == [] and len(tracker.shifts()) == 1
    tracker.close()


def test_for_a_flat_taxonomy_top_equals_full_and_a_bad_level_is_refused(tmp_path: Path) -> None:
    tracker = open_tracker(tmp_path / "s.db")
    tracker.record_many(events([("sports", 40), ("news", 40), ("food", 10)]))
    assert tracker.interests(5, level="top") == tracker.interests(5)
    assert tracker.predict(5, level="top").next_interest == tracker.predict(5).next_interest
    assert tracker.shifts(level="top") == tracker.shifts() and tracker.shifts()
    for bad in ("Top", "leaf", 1, None):
        with pytest.raises(ConfigError, match=f"level is {bad!r}; expected 'full'"):
            tracker.interests(3, level=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="level is 'all'"):
        tracker.predict(3, level="all")
    with pytest.raises(ConfigError, match="level is 'x'"):
        tracker.shifts(level="x")
    tracker.close()


def test_with_a_model_the_top_level_sums_probabilities_and_any_of_the_intensities(
        tmp_path: Path, small_training_blob: bytes) -> None:
    tracker = open_tracker(tmp_path / "s.db", small_training_blob, Taxonomy(PATHS))
    tracker.record_many(mixed(150))
    full, top = tracker.predict(20), tracker.predict(20, level="top")
    assert top.source == full.source == "model+profile"
    intensity = dict(full.intensity)
    sports = [intensity[c] for c in (BASKETBALL, SOCCER, SPORTS)]
    assert dict(top.intensity)["/Sports"] == pytest.approx(1 - np.prod([1 - p for p in sports]), rel=1e-6)
    assert set(dict(top.intensity)) == {"other", "/Sports", "/News", "/Food & Drink", "/Travel & Transportation"}
    assert dict(top.next_interest)["/News"] == pytest.approx(
        sum(p for c, p in full.next_interest if c.startswith("/News/")))
    interests = {c.category: c for c in tracker.interests(20).top}
    rolled = {c.category: c for c in tracker.interests(20, level="top").top}
    assert rolled["/Sports"].model_probability == pytest.approx(
        sum(interests[c].model_probability or 0.0 for c in (BASKETBALL, SOCCER, SPORTS)))
    tracker.close()
