"""The device's side of the population statistics, through the real ClientApp on a real encrypted store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from privacy_runs import as_flower_task
from vane.client import persistence
from vane.client.app import build_client_app
from vane.client.population import clip_counts, kept_population
from vane.client.store import EventStore
from vane.client.tracker import InterestTracker
from vane.shared import Event, Taxonomy
from vane.shared import protocol as p
from vane.shared.errors import TaxonomyError
from vane.shared.population import population_stats
from vane.shared.population_artifact import PopulationArtifact, count_vector, population_version

NAMES = ["sports", "news", "food", "travel"]
TAX = Taxonomy(NAMES)
T0 = datetime(2024, 3, 1, 8, tzinfo=UTC)
EVENTS = [Event.create(f"item-{i}", [NAMES[i % 3]] + ([NAMES[3]] if i % 5 == 0 else []), T0 + timedelta(minutes=7 * i),
                       title=f"story {i}") for i in range(40)]


@pytest.fixture
def device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    as_flower_task(monkeypatch)
    store, key = tmp_path / "device.db", tmp_path / "device.key"
    with InterestTracker.open(store, key_file=key, taxonomy=TAX) as tracker:
        tracker.record_many(reversed(EVENTS))  # stored out of order: counted in time order
    return store, key


def _context(device: tuple[Path, Path]) -> Context:
    return Context(run_id=1, node_id=1, node_config={"store": str(device[0]), "key-file": str(device[1])},
                   state=RecordDict(), run_config={})


def _population_message(tax: Taxonomy = TAX, **config: Any) -> Message:
    values = {p.POPULATION_ROUND_KEY: 0, p.TAXONOMY_KEY: json.dumps(tax.to_dict()),
              p.POPULATION_ENTRY_CAP_KEY: 64.0, p.POPULATION_CLIP_NORM_KEY: 0.0, p.POPULATION_CENTER_KEY: 0.0,
              **config}
    return Message(RecordDict({p.CONFIG_RECORD: ConfigRecord(values),
                               p.ARRAYS_RECORD: ArrayRecord({p.WEIGHTS_KEY: Array(np.zeros(0, np.float32))})}),
                   dst_node_id=1, message_type="train")


def test_a_device_replies_with_its_own_counts_in_time_order(device):
    reply = build_client_app()(_population_message(), _context(device))

    assert reply.has_content(), reply.error if reply.has_error() else None
    sent = reply.content[p.ARRAYS_RECORD][p.DELTA_KEY].numpy()
    assert sent.dtype == np.float32 and np.array_equal(sent, count_vector(EVENTS, TAX).astype(np.float32))
    assert dict(reply.content[p.METRICS_RECORD]) == {p.NUM_EXAMPLES_KEY: 1.0}  # nothing else leaves the device


def test_events_of_a_blocked_topic_are_not_counted(device):
    with InterestTracker.open(device[0], key_file=device[1]) as tracker:
        tracker.block("sports")
    reply = build_client_app()(_population_message(), _context(device))

    sent = reply.content[p.ARRAYS_RECORD][p.DELTA_KEY].numpy()
    kept = [e for e in EVENTS if e.categories != ("sports",)]
    assert len(kept) < len(EVENTS) and np.array_equal(sent, count_vector(kept, TAX).astype(np.float32))
    assert sent[TAX.index("sports")] == sum(1 for e in kept if "sports" in e.categories)  # only mixed events


def test_the_clip_rule_caps_entries_then_the_l2_norm_and_the_center_is_subtracted(device):
    reply = build_client_app()(_population_message(**{p.POPULATION_ENTRY_CAP_KEY: 5.0, p.POPULATION_CLIP_NORM_KEY: 4.0,
                                                      p.POPULATION_CENTER_KEY: 2.5}), _context(device))
    sent = reply.content[p.ARRAYS_RECORD][p.DELTA_KEY].numpy().astype(np.float64) + 2.5
    capped = np.minimum(count_vector(EVENTS, TAX), 5.0)

    assert np.linalg.norm(sent) == pytest.approx(4.0, rel=1e-6)
    assert np.allclose(sent, capped * 4.0 / np.linalg.norm(capped), atol=1e-6)
    assert np.array_equal(clip_counts(np.array([9.0, 1.0]), 5.0), [5.0, 1.0])


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({p.POPULATION_ENTRY_CAP_KEY: 0.0}, "population-entry-cap is 0.0; expected a finite number > 0"),
        ({p.POPULATION_CLIP_NORM_KEY: "x"}, "population-clip-norm is 'x'"),
        ({p.POPULATION_CENTER_KEY: 100.0}, "expected at most the entry cap"),
        ({p.TAXONOMY_KEY: "{"}, "taxonomy is malformed"),
    ],
)
def test_a_bad_population_message_gets_an_error_reply(device, config, words):
    reply = build_client_app()(_population_message(**config), _context(device))

    assert reply.has_error() and words in reply.error.reason


def test_counts_over_another_taxonomy_are_refused(device):
    reply = build_client_app()(_population_message(Taxonomy(["a", "b"])), _context(device))

    assert reply.has_error() and "TaxonomyError" in reply.error.reason


def test_the_device_keeps_the_shipped_statistics_sealed_and_refuses_another_taxonomy(device):
    store, key = device
    artifact = PopulationArtifact(count_vector(EVENTS, TAX) * 3, TAX.version, len(TAX), 3, population_version(0, TAX))
    with InterestTracker.open(store, key_file=key) as tracker:
        from vane.client.population import keep_population, read_population

        assert keep_population(tracker, read_population({p.POPULATION_ARTIFACT_KEY: artifact.to_bytes()}))
        assert not keep_population(tracker, read_population({p.POPULATION_ARTIFACT_KEY: artifact.to_bytes()}))
        kept = kept_population(tracker)
        assert kept is not None and kept.version == artifact.version
        own = population_stats([EVENTS])
        rest = kept.stats(TAX).without(own)
        assert rest.popularity == pytest.approx({n: 2 * c for n, c in own.popularity.items()})

        other = Taxonomy(["x", "y"])
        wrong = PopulationArtifact(np.ones(len(other) ** 2 + len(other)), other.version, len(other), 2, "pop-x")
        with pytest.raises(TaxonomyError, match="not this taxonomy"):
            keep_population(tracker, read_population({p.POPULATION_ARTIFACT_KEY: wrong.to_bytes()}))
    with EventStore.open(store, key_file=key) as raw:
        assert raw.get_state(persistence.POPULATION) == artifact.to_bytes()  # the refused one stored nothing
