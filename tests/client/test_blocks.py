"""Blocked topics: never predicted, recommended, listed as an interest or trained on; forgetting by topic and range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from vane.client.blocks import BLOCKED
from vane.client.tracker import InterestTracker
from vane.shared import Event, Taxonomy
from vane.shared.errors import ConfigError

T0 = datetime(2024, 3, 1, 8, tzinfo=UTC)
NAMES = ["sports", "news", "food", "travel", "music", "films", "games", "other"]


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return Taxonomy(NAMES[:-1])


def person(n: int, seed: int = 0) -> list[Event]:
    """Mostly sports, some news, a little of everything else."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        roll = rng.random()
        cat = "sports" if roll < 0.6 else "news" if roll < 0.8 else NAMES[int(rng.integers(2, 7))]
        out.append(Event.create(item_id=f"{cat}-{i}", categories=[cat], timestamp=T0 + timedelta(minutes=9 * i),
                                title=f"{cat} story {i}", kind="view"))
    return out


def open_tracker(path: Path, blob: bytes | None = None, taxonomy: Taxonomy | None = None) -> InterestTracker:
    return InterestTracker.open(path, key_file=path.with_name(path.name + ".key"), model=blob, taxonomy=taxonomy)


def test_a_blocked_topic_never_appears_in_answers_and_the_block_is_kept_sealed(
        tmp_path: Path, small_training_blob: bytes, taxonomy: Taxonomy) -> None:
    store = tmp_path / "s.db"
    tracker = open_tracker(store, small_training_blob, taxonomy)
    tracker.record_many(person(120))
    assert tracker.predict(3).next_interest[0][0] == "sports"
    assert "sports" in [c.category for c in tracker.interests(3).top]
    assert tracker.block("sports") is True
    assert tracker.block(" sports ") is False  # already blocked (names are stripped)
    assert tracker.blocked() == {"sports"}
    prediction = tracker.predict(3)
    assert len(prediction.next_interest) == 3 and "sports" not in dict(prediction.next_interest)
    assert "sports" not in dict(tracker.predict(50).intensity) and tracker.predict(50).intensity
    top = [c.category for c in tracker.interests(5).top]
    assert "sports" not in top and top[0] == "news" and len(top) == 5
    assert "sports" not in tracker.export()["interests"]["top"][0]["category"]
    tracker.close()
    # The blocked set is a sealed state blob: no plaintext topic in the file, and it survives a reopen.
    assert b'"sports"]' not in store.read_bytes()
    tracker = open_tracker(store)
    assert tracker.blocked() == {"sports"}
    assert tracker.store.get_state(BLOCKED) == b'["sports"]'
    assert tracker.unblock("sports") is True and tracker.unblock("sports") is False
    assert tracker.predict(3).next_interest[0][0] == "sports"
    tracker.close()


def test_recommend_drops_candidates_whose_topics_are_all_blocked_and_scores_the_rest_by_unblocked_ones(
        tmp_path: Path) -> None:
    with open_tracker(tmp_path / "s.db") as tracker:
        tracker.record_many(person(80))
        tracker.block("sports")
        ranked = tracker.recommend([{"item_id": "s", "categories": ["sports"]},
                                    {"item_id": "mixed", "categories": ["sports", "food"]},
                                    {"item_id": "n", "categories": ["news"]},
                                    Event.create(item_id="e", categories=["sports"], timestamp=T0)], k=10)
        assert [r.item_id for r in ranked] == ["n", "mixed"]
        food = tracker.predict(50).next_interest
        assert ranked[1].score == pytest.approx(dict(food)["food"])
        with pytest.raises(Exception, match=r"candidates\[1\]\.item_id"):
            tracker.recommend([{"item_id": "a"}, {"categories": ["news"]}])


def test_a_path_topic_blocks_the_topics_under_it(tmp_path: Path) -> None:
    with open_tracker(tmp_path / "s.db") as tracker:
        events = [Event.create(item_id=f"i{i}", categories=[cat], timestamp=T0 + timedelta(minutes=i), kind="view")
                  for i, cat in enumerate(["/Sports/Basketball", "/Sports", "/News", "/Sportswear"] * 5)]
        tracker.record_many(events)
        tracker.block("/Sports")
        assert sorted(c.category for c in tracker.interests(10).top) == ["/News", "/Sportswear"]
        assert tracker.forget_topic("/Sports") == 10
        assert sorted({ev.categories[0] for _, ev in tracker.store.events()}) == ["/News", "/Sportswear"]


def test_training_skips_events_whose_topics_are_all_blocked(tmp_path: Path, small_training_blob: bytes,
                                                            taxonomy: Taxonomy) -> None:
    events = person(150, seed=3)
    results = {}
    for blocked in ((), ("sports",), tuple(NAMES)):
        with open_tracker(tmp_path / f"s{len(blocked)}.db", small_training_blob, taxonomy) as tracker:
            tracker.record_many(events)
            for topic in blocked:
                tracker.block(topic)
            if len(blocked) == len(NAMES):
                with pytest.raises(ConfigError, match="need at least 2 events to train on"):
                    tracker.train_local(epochs=1, seed=0)
                continue
            results[blocked] = tracker.train_local(epochs=1, seed=0)
    kept = sum(1 for ev in events if ev.categories != ("sports",))
    assert results[()].holdout == tracker.holdout_size(len(events))
    assert results[("sports",)].holdout == tracker.holdout_size(kept)
    assert results[("sports",)].num_examples < results[()].num_examples


def test_forget_topic_and_range_delete_for_good_and_keep_the_blocks(tmp_path: Path) -> None:
    store = tmp_path / "s.db"
    events = person(60)
    with open_tracker(store) as tracker:
        tracker.record_many(events)
        tracker.block("news")
        news = sum(1 for ev in events if "news" in ev.categories)
        assert tracker.forget_topic("news") == news
        assert all("news" not in ev.categories for _, ev in tracker.store.events())
        assert tracker.personal_state.profile.counts.get("news", 0) == 0
        assert tracker.blocked() == {"news"}
        left = [ev for _, ev in tracker.store.events()]
        after, before = T0 + timedelta(minutes=90), T0 + timedelta(minutes=180)
        inside = sum(1 for ev in left if after <= ev.timestamp < before)
        assert inside > 0
        assert tracker.forget_range(after, before.timestamp()) == inside
        assert all(not after <= ev.timestamp < before for _, ev in tracker.store.events())
        assert tracker.forget_topic("nothing-like-it") == 0
    with open_tracker(store) as tracker:
        assert tracker.store.count() == len(left) - inside
        assert tracker.blocked() == {"news"}


@pytest.mark.parametrize("bad", ["", "   ", None, 7, "x" * 129])
def test_a_bad_topic_is_refused_by_name_and_nothing_changes(tmp_path: Path, bad: object) -> None:
    with open_tracker(tmp_path / "s.db") as tracker:
        tracker.record_many(person(10))
        for call in (tracker.block, tracker.unblock, tracker.forget_topic):
            with pytest.raises(ConfigError, match=r"topic is .*expected a non-empty topic name"):
                call(bad)  # type: ignore[arg-type]
        assert tracker.blocked() == frozenset() and tracker.store.count() == 10
        with pytest.raises(ConfigError, match=r"after .* must be earlier than before"):
            tracker.forget_range(T0 + timedelta(days=1), T0)
        with pytest.raises(ConfigError, match="needs after=, before= or both"):
            tracker.forget_range()
        assert tracker.store.count() == 10
