"""One taxonomy along the whole path, and the model comes back to the device.

- the browsing vocabulary is the one the history rules give URLs, and a deployment app names it by hash;
- a run checks ``taxonomy-version``; the simulations keep the synthetic vocabulary;
- the ClientApp refuses a model for another taxonomy than the device's (both hashes in the error) or one
  under which the device's events would become ``other``, and changes nothing;
- the ClientApp installs each message's global weights with the version of the round that made them, so
  the device's tracker answers with that version on its next open.
"""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from privacy_runs import as_flower_task
from vane.client.app import evaluate_on_device, train_on_device
from vane.client.history.rules import DEFAULT_RULES_PATH, load_rules
from vane.client.runtime import LiteModel
from vane.client.tracker import InterestTracker
from vane.server.bundle import run_taxonomy
from vane.server.config import ServerSettings, model_version_of
from vane.server.deploy import write_app_dir
from vane.shared import Event, Taxonomy
from vane.shared import protocol as p
from vane.shared.artifact import round_version
from vane.shared.errors import TaxonomyError
from vane.shared.spec import ModelSpec
from vane.shared.topics import topics_taxonomy
from vane.shared.vocabularies import browsing_taxonomy, describe_taxonomy, synthetic_taxonomy

T0 = datetime(2024, 3, 1, 8, tzinfo=UTC)


def assert_same_prediction(got: dict, expected: dict) -> None:
    """The same answer up to float summation order: sources, categories in order, values to 1e-9."""
    assert got["source"] == expected["source"] and got.keys() == expected.keys()
    for key in got:
        if isinstance(got[key], list):
            assert [r["category"] for r in got[key]] == [r["category"] for r in expected[key]]
            assert [r["probability"] for r in got[key]] == pytest.approx([r["probability"] for r in expected[key]],
                                                                        abs=1e-9)

SEVEN = Taxonomy(["news", "social", "tech", "video", "shopping", "travel", "sports"])


# --- the vocabularies -----------------------------------------------------------------------------

def test_the_browsing_taxonomy_is_the_vocabulary_of_the_history_rules():
    raw = json.loads(DEFAULT_RULES_PATH.read_text())
    rule_categories = set(raw["hosts"]) | set(raw["paths"].values())
    assert set(browsing_taxonomy().names[1:]) == rule_categories
    rules = load_rules(None)
    for url in ("https://www.bbc.co.uk/news/x", "https://github.com/a/b", "https://www.youtube.com/watch?v=1"):
        assert all(c in browsing_taxonomy() for c in rules.categorize(url))
    assert "cooking" not in browsing_taxonomy() and describe_taxonomy(browsing_taxonomy()).startswith("browsing (")


def test_the_deployment_app_names_the_topics_taxonomy_by_hash(tmp_path):
    # The default moved from builtin:browsing to builtin:topics (issue 16); browsing stays loadable.
    app = tomllib.loads((write_app_dir(tmp_path / "app") / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    assert app["config"]["taxonomy-file"] == "builtin:topics"
    assert app["config"]["taxonomy-version"] == topics_taxonomy().version
    old = write_app_dir(tmp_path / "old", {"taxonomy-file": "builtin:browsing"})
    old_config = tomllib.loads((old / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert old_config["taxonomy-version"] == browsing_taxonomy().version
    SEVEN.save(tmp_path / "seven.json")
    custom = write_app_dir(tmp_path / "custom", {"taxonomy-file": str(tmp_path / "seven.json")})
    config = tomllib.loads((custom / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert config["taxonomy-version"] == SEVEN.version


def test_a_run_resolves_its_taxonomy_and_refuses_another_hash():
    assert run_taxonomy(ServerSettings()) == synthetic_taxonomy()  # simulations: synthetic users
    browsing = ServerSettings(taxonomy_file="builtin:browsing", taxonomy_version=browsing_taxonomy().version)
    assert run_taxonomy(browsing) == browsing_taxonomy()
    wrong = ServerSettings(taxonomy_file="builtin:browsing", taxonomy_version=synthetic_taxonomy().version)
    with pytest.raises(TaxonomyError, match=f"{synthetic_taxonomy().version}.*{browsing_taxonomy().version}"):
        run_taxonomy(wrong)


# --- the ClientApp ------------------------------------------------------------------------------------

def _events(n: int, names: list[str]) -> list[Event]:
    return [Event.create(f"{names[i % len(names)]}-{i}", [names[i % len(names)]], T0 + timedelta(minutes=9 * i))
            for i in range(n)]


def _device(root: Path, taxonomy: Taxonomy | None, names: list[str]) -> dict[str, str]:
    store, key = root / "device.db", root / "device.key"
    with InterestTracker.open(store, key_file=key, taxonomy=taxonomy) as tracker:
        tracker.record_many(_events(60, names))
    return {"store": str(store), "key-file": str(key)}


def _context(node: dict[str, str]) -> Context:
    return Context(run_id=1, node_id=1, node_config=node, state=RecordDict(), run_config={})


def _message(kind: str, blob: bytes, spec: ModelSpec, taxonomy: Taxonomy, weights: np.ndarray,
             server_round: int) -> Message:
    config: dict[str, Any] = {p.LOCAL_EPOCHS_KEY: 1, p.SEED_KEY: 0, p.HOLDOUT_FRACTION_KEY: 0.1,
                              p.SERVER_ROUND_KEY: server_round, p.SPEC_HASH_KEY: spec.hash,
                              p.MODEL_VERSION_KEY: model_version_of(spec, taxonomy), p.MODEL_BLOB_KEY: blob,
                              p.TAXONOMY_KEY: json.dumps(taxonomy.to_dict())}
    content = RecordDict({p.CONFIG_RECORD: ConfigRecord(config),
                          p.ARRAYS_RECORD: ArrayRecord({p.WEIGHTS_KEY: Array(weights.astype(np.float32))})})
    return Message(content, dst_node_id=1, message_type=kind)


@pytest.fixture
def model(small_training_blob, small_spec, monkeypatch):
    as_flower_task(monkeypatch)
    return small_training_blob, small_spec, LiteModel.from_bytes(small_training_blob).get_weights().flat


def test_the_clientapp_refuses_a_model_for_another_taxonomy_naming_both_hashes(tmp_path, model):
    blob, spec, weights = model
    other = Taxonomy(["a", "b", "c", "d", "e", "f", "g"])
    node = _device(tmp_path, other, ["a", "b", "c"])
    with pytest.raises(TaxonomyError, match=f"{SEVEN.version}.*{other.version}"):
        train_on_device(_message("train", blob, spec, SEVEN, weights, 1), _context(node))
    with InterestTracker.open(node["store"], key_file=node["key-file"]) as tracker:
        assert not tracker.has_model and tracker.taxonomy == other


def test_the_clientapp_refuses_a_model_whose_taxonomy_its_events_fall_outside(tmp_path, model):
    blob, spec, weights = model
    node = _device(tmp_path, None, ["cooking", "gardening", "opera"])  # categories the model does not know
    with pytest.raises(TaxonomyError, match=r"60 of this device's 60 categorised events .* would all become 'other'"):
        evaluate_on_device(_message("evaluate", blob, spec, SEVEN, weights, 1), _context(node))
    with InterestTracker.open(node["store"], key_file=node["key-file"]) as tracker:
        assert not tracker.has_model


def _reference_prediction(tmp_path: Path, blob: bytes, weights: np.ndarray, spec: ModelSpec) -> dict[str, Any]:
    from vane.shared.weights import Weights

    with InterestTracker.open(tmp_path / "ref.db", key_file=tmp_path / "ref.key", model=blob,
                              taxonomy=SEVEN) as reference:
        reference.set_weights(Weights(spec.hash, weights.astype(np.float32)))
        reference.record_many(_events(60, ["news", "tech", "social", "video"]))
        return reference.predict(5).to_dict()


def test_after_evaluate_the_device_answers_with_the_rounds_model(tmp_path, model):
    blob, spec, weights = model
    node = _device(tmp_path, SEVEN, ["news", "tech", "social", "video"])
    round3 = weights + np.float32(0.01)
    evaluate_on_device(_message("evaluate", blob, spec, SEVEN, round3, 3), _context(node))
    with InterestTracker.open(node["store"], key_file=node["key-file"]) as tracker:
        assert tracker.model_version == round_version(3, spec.hash)
        assert np.array_equal(tracker.get_weights().flat, round3.astype(np.float32))
        assert_same_prediction(tracker.predict(5).to_dict(), _reference_prediction(tmp_path, blob, round3, spec))


def test_after_training_the_device_keeps_the_global_weights_of_the_previous_round(tmp_path, model):
    blob, spec, weights = model
    node = _device(tmp_path, SEVEN, ["news", "tech", "social", "video"])
    round2 = weights + np.float32(0.01)
    reply = train_on_device(_message("train", blob, spec, SEVEN, round2, 3), _context(node))
    assert np.abs(reply.content["arrays"]["delta"].numpy()).max() > 0  # it trained
    with InterestTracker.open(node["store"], key_file=node["key-file"]) as tracker:
        assert tracker.model_version == round_version(2, spec.hash)
        assert np.array_equal(tracker.get_weights().flat, round2.astype(np.float32))
