"""The candidate ranker in the tracker: predictions with reasons, kept in step with the events, trained on device."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from model_cache import cached_models
from model_inputs import RANKER_SPEC
from vane.client.persistence import TrackerSlots
from vane.client.ranker import rank_now, training_population
from vane.client.tracker import InterestTracker
from vane.shared import Event, Taxonomy
from vane.shared.candidates import CandidateState
from vane.shared.errors import ConfigError
from vane.shared.population import population_stats
from vane.shared.population_artifact import PopulationArtifact, count_vector
from vane.shared.weights import lstm_layout

T0 = datetime(2024, 3, 1, 8, tzinfo=UTC)
NAMES = ["sports", "news", "food", "travel", "music", "films", "games"]


@pytest.fixture(scope="module")
def blob() -> bytes:
    return cached_models(RANKER_SPEC, ["training"])["training"]


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return Taxonomy(NAMES)


def person(n: int, seed: int = 0) -> list[Event]:
    """Alternates sports and news runs, with some of everything else."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        roll = rng.random()
        cat = ("sports" if (i // 5) % 2 == 0 else "news") if roll < 0.8 else NAMES[int(rng.integers(2, 7))]
        out.append(Event.create(item_id=f"{cat}-{i}", categories=[cat], timestamp=T0 + timedelta(minutes=7 * i),
                                kind="view"))
    return out


def open_tracker(path: Path, blob: bytes | None, taxonomy: Taxonomy | None) -> InterestTracker:
    return InterestTracker.open(path, key_file=path.with_name(path.name + ".key"), model=blob, taxonomy=taxonomy)


def artifact_of(events: list[Event], taxonomy: Taxonomy, devices: int = 1) -> PopulationArtifact:
    return PopulationArtifact(count_vector(events, taxonomy), taxonomy.version, len(taxonomy), devices, "pop-test",
                              clip={"entry-cap": 16384.0})


def test_predict_comes_from_the_ranker_with_reasons_and_matches_a_fresh_replay(tmp_path: Path, blob: bytes,
                                                                              taxonomy: Taxonomy) -> None:
    events = person(80)
    at = events[-1].unix_time + 60.0
    with open_tracker(tmp_path / "s.db", blob, taxonomy) as tracker:
        tracker.record_many(events[:50])
        for event in events[50:]:
            tracker.record(event)
        prediction = tracker.predict(3, at=at)
        assert prediction.source == "ranker"
        assert len(prediction.next_interest) == 3
        assert all(prediction.reasons[c] for c, _ in prediction.next_interest)
        top = prediction.next_interest[0][0]
        assert prediction.to_dict()["next_interest"][0]["reasons"] == list(prediction.reasons[top])
        state = CandidateState()
        for event in events:
            state.observe(event)
        fresh = rank_now(tracker.model, state, population_stats([]), at)
    expected = sorted(fresh.distribution.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    assert [c for c, _ in prediction.next_interest] == [c for c, _ in expected]
    assert np.allclose([p for _, p in prediction.next_interest], [p for _, p in expected], atol=1e-6)
    # Reopened: the candidate state is rebuilt from the store, the same answer.
    with open_tracker(tmp_path / "s.db", None, None) as tracker:
        again = tracker.predict(3, at=at)
    assert again.next_interest == prediction.next_interest


def test_forgetting_rebuilds_the_candidates(tmp_path: Path, blob: bytes, taxonomy: Taxonomy) -> None:
    events = person(40)
    at = events[-1].unix_time + 60.0
    with open_tracker(tmp_path / "s.db", blob, taxonomy) as tracker:
        tracker.record_many(events)
        games = [e.item_id for e in events if "games" in e.categories]
        assert games and any(c == "games" for c in tracker.ranked_now(at).names)
        for item in games:
            tracker.forget(item_id=item)
        after = tracker.predict(7, at=at)
        assert "games" not in tracker.ranked_now(at).names
        assert "games" not in dict(after.next_interest)


def test_ranker_training_on_the_device_moves_only_the_ranker_and_excludes_its_own_counts(
        tmp_path: Path, blob: bytes, taxonomy: Taxonomy) -> None:
    events = person(120, seed=3)
    others = person(200, seed=9)
    with open_tracker(tmp_path / "s.db", blob, taxonomy) as tracker:
        tracker.record_many(events)
        # The population's statistics hold this device's counts and another device's.
        TrackerSlots(tracker.store).save_population(artifact_of(events + others, taxonomy, devices=2).to_bytes())
        stats = training_population(TrackerSlots(tracker.store).population(), taxonomy, events)
        alone = population_stats([[Event.create(item_id=e.item_id, categories=e.categories, timestamp=e.timestamp,
                                                kind=e.kind) for e in others]])
        assert stats.popularity == pytest.approx(alone.popularity)  # its own counts are out
        before = tracker.get_weights().flat.copy()
        result = tracker.train_local(epochs=2, parts="ranker", seed=1)
        after = tracker.get_weights().flat
        assert result.num_examples > 50 and result.steps >= 4 and np.isfinite(result.loss)
        first = sum(int(np.prod(s)) for _, s in lstm_layout(RANKER_SPEC))
        assert np.array_equal(before[:first], after[:first])
        assert not np.array_equal(before[first:], after[first:])
        with pytest.raises(ConfigError, match="parts is 'everything'"):
            tracker.train_local(parts="everything")
