"""The categoriser: the order of its sources, confidences, corrections kept sealed, and the head.

The order is checked with fixed vectors fed directly (a head trained on them, topic vectors for the
prior) and, in the slow test, with the real int8 encoder (``encoder_blob``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from vane.client.categorize import Categorizer
from vane.client.categorize_store import (
    correct,
    labelled_examples,
    load_categorizer,
    read_corrections,
    read_head,
    save_head,
    train_head,
)
from vane.client.store import EventStore
from vane.client.topic_head import SoftmaxHead, head_layout, head_topics
from vane.shared import Event
from vane.shared.errors import ConfigError, ModelError

DIMS = 16
T0 = datetime(2025, 5, 1, 9, tzinfo=UTC)
NAMES = head_topics()
BASKETBALL, SOCCER, COOKING = "/Sports/Basketball", "/Sports/Soccer", "/Food & Drink/Cooking & Recipes"


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    """Fixed topic vectors for the prior: one random unit vector per topic."""
    return _unit(np.random.default_rng(7).normal(size=(len(NAMES), DIMS)))


def _near(vectors: np.ndarray, topic: str, n: int, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(scale=0.05, size=(n, DIMS))
    return _unit(vectors[NAMES.index(topic)] + noise)


@pytest.fixture(scope="module")
def head(vectors: np.ndarray) -> SoftmaxHead:
    """A head that learnt: titles near the prior's Soccer vector are Basketball; near Cooking, Cooking."""
    x = np.concatenate([_near(vectors, SOCCER, 30, 1), _near(vectors, COOKING, 30, 2)])
    labels = [NAMES.index(BASKETBALL)] * 30 + [NAMES.index(COOKING)] * 30
    trained = SoftmaxHead.zeros(DIMS)
    report = trained.fit(x, labels, epochs=200, learning_rate=2.0)
    assert report.loss_after < report.loss_before / 5
    return trained


def test_light_mode_gives_rules_else_other():
    light = Categorizer()
    youtube = light.categorize("Metallica - One", "https://m.youtube.com/watch?v=1")
    assert youtube.topics == ("/Arts & Entertainment/TV & Video",) and youtube.source == "rule"
    assert youtube.confidence == 1.0
    nothing = light.categorize("A page about knitting", "https://unknown-host.example/knit")
    assert nothing.topics == ("other",) and nothing.source == "none" and nothing.confidence == 0.0
    assert nothing.to_dict()["topics"] == [{"topic": "other", "source": "none", "confidence": 0.0}]


def test_the_order_rule_then_head_then_prior_with_fixed_vectors(vectors, head):
    soccerish = _near(vectors, SOCCER, 1, 99)[0]
    prior_only = Categorizer(topic_vectors=vectors)
    by_prior = prior_only.categorize("match report", None, embedding=soccerish)
    assert (by_prior.topics[0], by_prior.source) == (SOCCER, "prior")
    with_head = Categorizer(head=head, topic_vectors=vectors)
    by_head = with_head.categorize("match report", None, embedding=soccerish)
    assert (by_head.topics[0], by_head.source) == (BASKETBALL, "model") and by_head.confidence >= 0.5
    by_rule = with_head.categorize("match report", "https://www.allrecipes.com/recipe/1", embedding=soccerish)
    assert by_rule.topics == (COOKING,) and by_rule.source == "rule"
    # An input the head is not sure about (nothing of what it learnt in it) goes to the prior.
    learnt = np.stack([vectors[NAMES.index(SOCCER)], vectors[NAMES.index(COOKING)]]).T
    cats = vectors[NAMES.index("/Pets & Animals/Pets/Cats")]
    unsure = _unit(cats - learnt @ np.linalg.lstsq(learnt, cats, rcond=None)[0])
    assert head.probabilities(unsure).max() < 0.5
    fallback = with_head.categorize("a cat", None, embedding=unsure)
    assert (fallback.topics[0], fallback.source) == ("/Pets & Animals/Pets/Cats", "prior")
    for result in (by_prior, by_head, by_rule, fallback):
        assert all(0.0 <= a.confidence <= 1.0 for a in result.assignments)


def test_a_higher_threshold_sends_the_head_to_the_prior(vectors, head):
    soccerish = _near(vectors, SOCCER, 1, 5)[0]
    strict = Categorizer(head=head, topic_vectors=vectors, threshold=1.0)
    assert strict.categorize("x", None, embedding=soccerish).source == "prior"
    with pytest.raises(ConfigError, match=r"threshold is 1\.5"):
        Categorizer(threshold=1.5)


def test_categorize_many_keeps_order_and_embeds_only_what_needs_it(vectors, head):
    calls: list[list[str]] = []

    class Recorder:
        def embed(self, texts):
            calls.append(list(texts))
            return np.stack([_near(vectors, SOCCER, 1, len(t))[0] for t in texts])

    cat = Categorizer(encoder=Recorder(), head=head, topic_vectors=vectors)
    results = cat.categorize_many([("Lakers win", "https://www.espn.com/nba/1"), ("derby tonight", None),
                                   (None, None)])
    assert [r.source for r in results] == ["rule", "model", "none"]
    assert calls == [["derby tonight"]]  # one batch, only the title no rule answered


def test_a_correction_beats_everything_and_persists_sealed_across_reopen(tmp_path: Path, vectors, head):
    path, key = tmp_path / "s.db", b"\x05" * 32
    with EventStore.open(path, key=key) as store:
        seq = store.append(Event.create("https://www.espn.com/nba/game-1", ["/Sports"], T0, title="Quinoa bowls"))
        with pytest.raises(ConfigError, match="not a Topics v2 topic"):
            correct(store, seq, ["/Food/Soup"])
        with pytest.raises(ConfigError, match="no stored event has seq 99"):
            correct(store, 99, [COOKING])
        assert read_corrections(store) == {}  # refused corrections change nothing
        kept = correct(store, seq, [COOKING])
        assert kept.topics == (COOKING,) and kept.title == "Quinoa bowls"
        correct(store, "https://example.org/page", [299])  # an id is accepted, stored as its path
    with EventStore.open(path, key=key) as store:
        cat = load_categorizer(store, topic_vectors=vectors)
        cat.head = head
        result = cat.categorize("Lakers win", "https://www.espn.com/nba/game-1",
                                embedding=_near(vectors, SOCCER, 1, 3)[0])
        assert result.topics == (COOKING,) and result.source == "correction" and result.confidence == 1.0
        assert cat.categorize(None, "https://example.org/page").topics == ("/Sports",)
        assert labelled_examples(store)[0][1] == NAMES.index(COOKING)  # the correction is a label
    raw = path.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("s.db-*"))
    assert b"Food & Drink" not in raw and b"Quinoa" not in raw


def test_the_head_is_one_flat_float32_vector_kept_sealed(tmp_path: Path, head):
    layout = head_layout(DIMS, len(NAMES))
    assert layout["W"] == (0, DIMS * len(NAMES), (DIMS, len(NAMES)))
    assert layout["b"] == (DIMS * len(NAMES), DIMS * len(NAMES) + len(NAMES), (len(NAMES),))
    assert head.flat.dtype == np.float32 and head.flat.shape == (layout["b"][1],)
    assert np.array_equal(head.W.ravel(), head.flat[: layout["W"][1]])
    again = SoftmaxHead.from_bytes(head.to_bytes())
    assert np.array_equal(again.flat, head.flat)
    with EventStore.open(tmp_path / "h.db", key=b"\x06" * 32) as store:
        save_head(store, head)
    with EventStore.open(tmp_path / "h.db", key=b"\x06" * 32) as store:
        stored = read_head(store)
        assert stored is not None and np.array_equal(stored.flat, head.flat)
    with pytest.raises(ModelError, match="expected float32"):
        SoftmaxHead(head.flat.astype(np.float64), DIMS, len(NAMES))
    with pytest.raises(ModelError, match="not a Vane topic head"):
        SoftmaxHead.from_bytes(b"x" * 64)
    with pytest.raises(ModelError, match=r"expected \[n, 16\]"):
        head.probabilities(np.zeros(3, dtype=np.float32))


def test_train_head_learns_from_rule_labelled_events_and_refuses_too_few(tmp_path: Path, vectors):
    class Fixed:
        """Titles starting with 'hoops' land near Soccer's vector, the rest near Cooking's."""

        def embed(self, texts):
            return np.stack([_near(vectors, SOCCER if t.startswith("hoops") else COOKING, 1, i)[0]
                             for i, t in enumerate(texts)])

    with EventStore.open(tmp_path / "t.db", key=b"\x08" * 32) as store:
        with pytest.raises(ConfigError, match="0 labelled events"):
            train_head(store, Fixed())
        store.append_many([Event.create(f"https://www.nba.com/{i}", [BASKETBALL], T0 + timedelta(minutes=i),
                                        title=f"hoops {i}") for i in range(15)]
                          + [Event.create(f"https://www.allrecipes.com/{i}", [COOKING],
                                          T0 + timedelta(hours=1, minutes=i), title=f"recipe {i}") for i in range(15)]
                          + [Event.create("https://x.example/", ["other"], T0 + timedelta(hours=3), title="skip")])
        assert len(labelled_examples(store)) == 30
        report = train_head(store, Fixed(), learning_rate=2.0)
        assert report.examples == 30 and report.loss_after < report.loss_before
        cat = load_categorizer(store, Fixed(), topic_vectors=vectors)
        assert cat.categorize("hoops tonight", None).topics[0] == BASKETBALL
        assert cat.categorize("hoops tonight", None).source == "model"


@pytest.mark.slow
def test_the_order_with_the_real_encoder(tmp_path: Path, encoder_blob: bytes):
    from vane.client.encoder import TextEncoder

    encoder = TextEncoder.from_bytes(encoder_blob)
    light = Categorizer(encoder=encoder)
    prior = light.categorize("Lakers beat the Celtics in overtime, LeBron scores 40")
    assert prior.source == "prior" and prior.topics[0].startswith("/Sports")
    assert light.categorize("Lakers beat the Celtics", "https://www.allrecipes.com/x").source == "rule"
    with EventStore.open(tmp_path / "e.db", key=b"\x09" * 32) as store:
        titles = {BASKETBALL: ["Lakers beat Celtics", "NBA playoffs preview", "Curry hits ten threes",
                               "Bucks sign a new point guard", "Warriors win the title"],
                  COOKING: ["Easy pasta carbonara recipe", "How to bake sourdough bread", "Vegan chili recipe",
                            "Roast chicken with lemon", "Quick weeknight stir fry"]}
        events = [Event.create(f"https://site.example/{topic[1:5]}/{i}", [topic], T0 + timedelta(minutes=10 * i + j),
                               title=title)
                  for j, (topic, names) in enumerate(titles.items()) for i, title in enumerate(names * 3)]
        store.append_many(sorted(events, key=lambda e: e.timestamp))
        train_head(store, encoder, min_examples=10, learning_rate=5.0)
        cat = load_categorizer(store, encoder, threshold=0.3)
        by_head = cat.categorize("Celtics lose to the Knicks at home")
        assert (by_head.topics[0], by_head.source) == (BASKETBALL, "model")
        correct(store, "https://news.example/celtics", [SOCCER])
        cat = load_categorizer(store, encoder, threshold=0.3)
        corrected = cat.categorize("Celtics lose to the Knicks at home", "https://news.example/celtics")
        assert corrected.source == "correction" and corrected.topics == (SOCCER,)


def test_tracker_correct_keeps_the_correction_across_reopen(tmp_path: Path):
    from vane.client.tracker import InterestTracker

    path, key = tmp_path / "tr.db", b"\x0a" * 32
    with InterestTracker.open(path, key=key) as tracker:
        seq = tracker.record(Event.create("https://www.cnn.com/x", ["/News"], T0, title="Bread recipes"))
        assert tracker.correct(seq, [COOKING]).topics == (COOKING,)
        with pytest.raises(ConfigError, match="'/Nope' is not a Topics v2"):
            tracker.correct(seq, ["/Nope"])
    with InterestTracker.open(path, key=key) as tracker:
        assert read_corrections(tracker.store)["https://www.cnn.com/x"].topics == (COOKING,)
        assert load_categorizer(tracker.store).categorize(None, "https://www.cnn.com/x").source == "correction"


def test_forget_deletes_the_corrections_and_the_head_with_the_events(tmp_path: Path, head):
    from vane.client.tracker import InterestTracker

    path, key = tmp_path / "f.db", b"\x0e" * 32
    with InterestTracker.open(path, key=key) as tracker:
        seq = tracker.record(Event.create("https://secret.example/zq81", ["/News"], T0, title="Secret title zq81"))
        tracker.correct(seq, [COOKING])
        save_head(tracker.store, head)
        tracker.forget(item_id="https://secret.example/zq81")
        assert read_corrections(tracker.store) == {} and read_head(tracker.store) is None
    raw = path.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("f.db-*"))
    assert b"zq81" not in raw
