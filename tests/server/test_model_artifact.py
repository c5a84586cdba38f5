"""One model artifact: `vane server export-model OUT` writes a file the tracker opens with nothing else,
that trains on real events, and that `vane client install-model` / `vane client model` install and show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from vane.client.cli_model import registry_artifact
from vane.client.runtime import LiteModel
from vane.client.store import write_key_file
from vane.client.tracker import InterestTracker
from vane.shared.artifact import MAGIC, ModelArtifact, round_version
from vane.shared.errors import ConfigError, ModelError, SpecError, StoreInUseError, TaxonomyError
from vane.shared.taxonomy import Taxonomy
from vane.shared.topics import topics_taxonomy
from vane.shared.vocabularies import browsing_taxonomy
from vane.shared.weights import Weights

SEVEN = Taxonomy(["news", "social", "tech", "video", "shopping", "travel", "sports"])  # + other = SMALL_SPEC's 8
BROWSING = ["news", "social", "tech", "news", "video", "shopping", "news", "tech", "social", "travel"]


def _events(n: int, categories: list[str] = BROWSING) -> list[dict[str, object]]:
    return [{"item_id": f"u{i}", "categories": [categories[i % len(categories)]], "timestamp": 1.79e9 + 600 * i,
             "kind": "view"} for i in range(n)]


def _key(tmp_path: Path, name: str = "me.key") -> Path:
    path = tmp_path / name
    write_key_file(path, bytes(range(32)))
    return path


def _artifact(blob: bytes, spec, taxonomy: Taxonomy = SEVEN, version: str = "v-test", weights=None) -> ModelArtifact:
    return ModelArtifact(blob, spec, taxonomy, version, "2026-11-29T12:00:00+00:00", weights)


def assert_same_prediction(got: dict, expected: dict) -> None:
    """The same answer up to float summation order: sources, categories in order, values to 1e-9."""
    assert got["source"] == expected["source"] and got.keys() == expected.keys()
    for key in got:
        if isinstance(got[key], list):
            assert [r["category"] for r in got[key]] == [r["category"] for r in expected[key]]
            assert [r["probability"] for r in got[key]] == pytest.approx([r["probability"] for r in expected[key]],
                                                                        abs=1e-9)


def vane(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from vane.client.cli import main; sys.argv = ['vane', *sys.argv[1:]]; main()"
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, env=env)


# --- the file format ----------------------------------------------------------------------------

def test_artifact_round_trip_keeps_model_spec_taxonomy_version_and_weights(tmp_path, small_training_blob,
                                                                           small_spec):
    weights = LiteModel.from_bytes(small_training_blob).get_weights()
    weights = Weights(weights.spec_hash, weights.flat + np.float32(0.5))
    art = _artifact(small_training_blob, small_spec, weights=weights)
    path = art.save(tmp_path / "model.vane")
    back = ModelArtifact.load(path)
    assert path.read_bytes()[:8] == MAGIC
    assert back.blob == small_training_blob and back.spec == small_spec and back.taxonomy == SEVEN
    assert (back.version, back.created) == ("v-test", "2026-11-29T12:00:00+00:00")
    assert back.weights is not None and np.array_equal(back.weights.flat, weights.flat)
    manifest = back.manifest()
    assert manifest["taxonomy_version"] == SEVEN.version and manifest["spec_hash"] == small_spec.hash


@pytest.mark.parametrize(("damage", "message"), [
    (lambda b: b"XXXXXXXX" + b[8:], "not a Vane model artifact"),
    (lambda b: b[:10], "truncated"),
    (lambda b: b[:-1], "body is"),
    (lambda b: b[:-100] + bytes([b[-100] ^ 1]) + b[-99:], "tflite_sha256"),
])
def test_a_damaged_artifact_is_refused_naming_the_check(small_training_blob, small_spec, damage, message):
    data = _artifact(small_training_blob, small_spec).to_bytes()
    with pytest.raises(ModelError, match=message):
        ModelArtifact.from_bytes(damage(data))


def test_an_artifact_whose_taxonomy_does_not_fit_its_spec_is_refused(small_training_blob, small_spec):
    with pytest.raises(SpecError, match="num_categories is 8 but the taxonomy"):
        _artifact(small_training_blob, small_spec, taxonomy=browsing_taxonomy())


# --- the tracker opens an artifact with nothing else ----------------------------------------------

def test_tracker_opens_an_artifact_without_a_taxonomy_and_keeps_it(tmp_path, small_training_blob, small_spec):
    path = _artifact(small_training_blob, small_spec).save(tmp_path / "model.vane")
    key = _key(tmp_path)
    with InterestTracker.open(tmp_path / "me.db", key_file=key, model=path) as tracker:
        assert tracker.taxonomy == SEVEN and tracker.model_version == "v-test"
        tracker.record_many(_events(30))
        result = tracker.train_local(epochs=1)
        assert result.num_examples > 0 and np.isfinite(result.loss)
        assert "model" in tracker.predict(3).source
    with InterestTracker.open(tmp_path / "me.db", key_file=key) as tracker:  # the store keeps model and taxonomy
        assert tracker.has_model and tracker.taxonomy == SEVEN


def test_an_artifact_for_another_taxonomy_is_refused_naming_both_hashes(tmp_path, small_training_blob, small_spec):
    other = Taxonomy(["a", "b", "c", "d", "e", "f", "g"])
    key = _key(tmp_path)
    with InterestTracker.open(tmp_path / "me.db", key_file=key, taxonomy=other) as tracker:
        tracker.record_many(_events(5))
    path = _artifact(small_training_blob, small_spec).save(tmp_path / "model.vane")
    with pytest.raises(TaxonomyError, match=rf"{SEVEN.version}.*{other.version}"):
        InterestTracker.open(tmp_path / "me.db", key_file=key, model=path)
    with InterestTracker.open(tmp_path / "me.db", key_file=key) as tracker:  # nothing changed
        assert not tracker.has_model and tracker.taxonomy == other and tracker.store.count() == 5


def test_train_local_with_one_event_says_why_it_cannot_train(tmp_path, small_training_blob, small_spec):
    path = _artifact(small_training_blob, small_spec).save(tmp_path / "model.vane")
    with InterestTracker.open(tmp_path / "me.db", key_file=_key(tmp_path), model=path) as tracker:
        tracker.record(_events(1)[0])
        with pytest.raises(ConfigError, match=r"need at least 2 events to train on.*have 1"):
            tracker.train_local()


# --- vane server export-model, end to end ----------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(find_spec("tensorflow") is None, reason="needs tensorflow (the server extra)")
def test_exported_model_opens_alone_trains_on_browsing_events_and_predicts_with_the_model(tmp_path):
    out = tmp_path / "model.vane"
    exported = vane("server", "export-model", str(out))  # the default is builtin:topics (was builtin:browsing)
    assert exported.returncode == 0, exported.stderr
    assert f"taxonomy topics (version {topics_taxonomy().version}" in exported.stdout
    with InterestTracker.open(tmp_path / "me.db", key_file=tmp_path / "me.key", model=out) as tracker:
        assert tracker.taxonomy == topics_taxonomy()
        tracker.record_many(_events(40, ["/News", "/Sports/Soccer", "/Computers & Electronics/Software",
                                         "/Travel & Transportation/Air Travel"]))
        result = tracker.train_local(epochs=2)
        assert result.num_examples > 0 and np.isfinite(result.loss)
        prediction = tracker.predict(3)
        assert prediction.source == "model+profile"


# --- vane client install-model / model -------------------------------------------------------------

def _registry(tmp_path: Path, blob: bytes, spec, weights: Weights, rounds=(1, 2)) -> Path:
    """A model registry as a run writes it: registry.json naming one checkpoint directory per round."""
    entries = []
    for rnd in rounds:
        folder = tmp_path / "out" / "checkpoints" / f"round-{rnd:04d}"
        folder.mkdir(parents=True)
        (folder / "model.tflite").write_bytes(blob)
        spec.save(folder / "spec.json")
        SEVEN.save(folder / "taxonomy.json")
        Weights(weights.spec_hash, weights.flat * np.float32(rnd)).save(folder / "weights.vw")
        entries.append({"id": round_version(rnd, spec.hash), "round": rnd, "spec_hash": spec.hash,
                        "taxonomy_version": SEVEN.version, "metrics": {}, "created_at": f"2026-11-2{rnd}T00:00:00",
                        "path": str(folder), "mix": None})
    registry = tmp_path / "out" / "registry"
    registry.mkdir(parents=True)
    (registry / "registry.json").write_text(json.dumps(entries))
    return registry


def test_install_model_from_a_registry_then_the_tracker_answers_with_that_version(tmp_path, small_training_blob,
                                                                                  small_spec):
    base = LiteModel.from_bytes(small_training_blob).get_weights()
    registry = _registry(tmp_path, small_training_blob, small_spec, base)
    store, key = tmp_path / "me.db", _key(tmp_path, "me.db.key")
    with InterestTracker.open(store, key_file=key, taxonomy=SEVEN) as tracker:
        tracker.record_many(_events(30))
    installed = vane("client", "install-model", "--store", str(store), "--registry", str(registry), "--json")
    assert installed.returncode == 0, installed.stderr
    newest = round_version(2, small_spec.hash)
    assert json.loads(installed.stdout)["version"] == newest
    shown = json.loads(vane("client", "model", "--store", str(store), "--json").stdout)
    assert shown["version"] == newest and shown["created"] == "2026-11-22T00:00:00"
    assert shown["taxonomy"] == {"name": "custom", "version": SEVEN.version, "size": 8}
    # The tracker answers with round 2's weights: the same as the model loaded with them by hand.
    expected = LiteModel.from_bytes(small_training_blob)
    expected.set_weights(registry_artifact(registry, newest).weights)
    with InterestTracker.open(store, key_file=key) as tracker, \
            InterestTracker.open(tmp_path / "ref.db", key_file=_key(tmp_path, "ref.key"),
                                 model=small_training_blob, taxonomy=SEVEN) as reference:
        reference.set_weights(expected.get_weights())
        reference.record_many(_events(30))
        assert tracker.model_version == newest
        assert_same_prediction(tracker.predict(5).to_dict(), reference.predict(5).to_dict())
    text = vane("client", "model", "--store", str(store))
    assert f"version:    {newest}" in text.stdout and SEVEN.version in text.stdout


def test_install_model_by_version_and_refusals(tmp_path, small_training_blob, small_spec):
    base = LiteModel.from_bytes(small_training_blob).get_weights()
    registry = _registry(tmp_path, small_training_blob, small_spec, base)
    store = tmp_path / "me.db"
    _key(tmp_path, "me.db.key")
    first = round_version(1, small_spec.hash)
    assert vane("client", "install-model", "--store", str(store), "--registry", str(registry),
                "--version", first).returncode == 0
    assert json.loads(vane("client", "model", "--store", str(store), "--json").stdout)["version"] == first
    missing = vane("client", "install-model", "--store", str(store), "--registry", str(registry), "--version", "r9")
    assert missing.returncode == 1 and "has no version 'r9'" in missing.stderr
    both = vane("client", "install-model", "--store", str(store))
    assert both.returncode == 2 and "exactly one of --file and --registry" in both.stderr
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(small_training_blob)
    refused = vane("client", "install-model", "--store", str(store), "--file", str(plain))
    assert refused.returncode == 1 and "not a Vane model artifact" in refused.stderr


def test_install_model_refuses_another_taxonomy_and_leaves_the_store(tmp_path, small_training_blob, small_spec):
    other = Taxonomy(["a", "b", "c", "d", "e", "f", "g"])
    store, key = tmp_path / "me.db", _key(tmp_path, "me.db.key")
    with InterestTracker.open(store, key_file=key, taxonomy=other) as tracker:
        tracker.record_many(_events(5))
    path = _artifact(small_training_blob, small_spec).save(tmp_path / "model.vane")
    refused = vane("client", "install-model", "--store", str(store), "--file", str(path))
    assert refused.returncode == 1
    assert SEVEN.version in refused.stderr and other.version in refused.stderr
    assert "is not this device's taxonomy" in refused.stderr
    assert json.loads(vane("client", "model", "--store", str(store), "--json").stdout) == {"installed": False}


def test_install_model_refuses_a_taxonomy_most_events_fall_outside(tmp_path, small_training_blob, small_spec):
    store, key = tmp_path / "me.db", _key(tmp_path, "me.db.key")
    with InterestTracker.open(store, key_file=key) as tracker:  # no taxonomy yet: its events decide
        tracker.record_many(_events(20, ["cooking", "gardening", "opera"]))
    path = _artifact(small_training_blob, small_spec).save(tmp_path / "model.vane")
    refused = vane("client", "install-model", "--store", str(store), "--file", str(path))
    assert refused.returncode == 1 and "20 of this device's 20 categorised events" in refused.stderr


def test_install_model_on_a_store_open_elsewhere_names_the_owner(tmp_path, small_training_blob, small_spec):
    store, key = tmp_path / "me.db", _key(tmp_path, "me.db.key")
    path = _artifact(small_training_blob, small_spec).save(tmp_path / "model.vane")
    with InterestTracker.open(store, key_file=key):
        busy = vane("client", "install-model", "--store", str(store), "--file", str(path))
        as_json = vane("client", "install-model", "--store", str(store), "--file", str(path), "--json")
    assert busy.returncode == 1 and f"in use by PID {os.getpid()}" in busy.stderr
    assert json.loads(as_json.stderr)["type"] == StoreInUseError.__name__


def test_opening_a_model_most_events_fall_outside_warns_loudly(tmp_path, small_training_blob, small_spec, caplog):
    key = _key(tmp_path)
    with InterestTracker.open(tmp_path / "me.db", key_file=key) as tracker:
        tracker.record_many(_events(20, ["cooking", "gardening", "opera"]))
    path = _artifact(small_training_blob, small_spec).save(tmp_path / "model.vane")
    with caplog.at_level("WARNING", logger="vane.client"), \
            InterestTracker.open(tmp_path / "me.db", key_file=key, model=path):
        pass
    assert f"20 of this device's 20 categorised events have no category in the model's taxonomy {SEVEN.version}" \
        in caplog.text
